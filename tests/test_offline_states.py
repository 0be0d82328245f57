"""Issue 10 item 5: a download without a connection is named as such (not a raw urlopen error),
and the Models page points users without checkpoints to every way forward.
"""

from __future__ import annotations

import http.server
import socket
import threading
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.access import Role
from core.io.network import is_offline
from core.models import checkpoints, registry
from tests.markdown_text import shown

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "3_Models.py")


def closed_port() -> int:
    """A local port nobody listens on (connections are refused, as when offline)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def not_found_server():
    """A real HTTP server that answers 404 to everything."""
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def failure(url: str) -> OSError:
    try:
        urllib.request.urlopen(url, timeout=5)
    except OSError as error:
        return error
    raise AssertionError(f"{url} answered")


def test_refused_connection_is_offline_but_an_http_error_is_not(not_found_server: str) -> None:
    assert is_offline(failure(f"http://127.0.0.1:{closed_port()}/weights.pt"))
    assert not is_offline(failure(f"{not_found_server}/weights.pt"))


def test_checkpoint_download_without_connection_says_so(data_dir: Path) -> None:
    spec = registry.builtin_specs()["emonet_8"]
    unreachable = f"http://127.0.0.1:{closed_port()}/emonet_8.pth"
    offline_spec = replace(spec, checkpoints=(replace(spec.checkpoints[0], url=unreachable),))
    with pytest.raises(checkpoints.NoConnectionError, match="no internet connection.*register a local copy"):
        checkpoints.download(offline_spec)
    assert not list((data_dir / "checkpoints").rglob(".download-*"))  # no half-written file left


def test_run_tab_without_checkpoints_points_to_import_predictions(sessions) -> None:
    from db.queries import get_or_create_study

    with sessions.begin() as session:
        get_or_create_study(session, "Pilot", actor=Role.OPERATOR)
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception
    assert any("No model has its checkpoint yet" in text and "Import predictions" in text
               for text in (shown(info.value) for info in at.info))


def test_missing_mtcnn_weights_tell_a_browser_user_what_to_click(sessions) -> None:
    from db.queries import get_or_create_study

    with sessions.begin() as session:
        get_or_create_study(session, "Pilot", actor=Role.OPERATOR)
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    next(box for box in at.selectbox if box.label == "Face detector").select("mtcnn").run()
    warning = next(shown(w.value) for w in at.warning if "MTCNN" in w.value)
    assert "Click Download MTCNN weights" in warning.replace("**", "") and "haar" in warning
    assert "pip" not in warning and "python -m" not in warning
