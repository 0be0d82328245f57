"""Telling "no connection" apart from a server's answer when a download fails."""

from __future__ import annotations

import errno
import socket
import urllib.error

_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED, errno.ECONNRESET}


def is_offline(error: BaseException) -> bool:
    """True when the request never reached a server: no DNS, no route, refused, timed out.

    An HTTP error (404, 500) is an answer, so not offline.
    """
    if isinstance(error, urllib.error.HTTPError):
        return False
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, (socket.gaierror, socket.timeout, TimeoutError, ConnectionError)):
        return True
    return getattr(reason, "errno", None) in _UNREACHABLE
