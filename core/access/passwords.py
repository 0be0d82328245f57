"""Password hashes for ``.streamlit/secrets.toml``: scrypt from the standard library.

A hash reads ``scrypt$<n>$<r>$<p>$<salt>$<key>`` (salt and key in URL-safe base64), so the cost
travels with it and a later, costlier setting still verifies old hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SCHEME = "scrypt"
COST_N, BLOCK_R, PARALLEL_P = 2**14, 8, 1  # OWASP's minimum for scrypt; ~16 MiB, ~50 ms
KEY_BYTES = 32
SALT_BYTES = 16
MAX_COST_N = 2**20  # a hash from secrets.toml may not make one login take minutes


class BadHash(ValueError):
    """A configured password hash that cannot be read (not a secret-safe message: no hash shown)."""


def hash_password(password: str, *, n: int = COST_N, r: int = BLOCK_R, p: int = PARALLEL_P) -> str:
    """A new salted hash of ``password`` to paste into secrets.toml."""
    if not password:
        raise ValueError("an empty password cannot be hashed")
    salt = secrets.token_bytes(SALT_BYTES)
    key = _derive(password, salt, n, r, p)
    return "$".join([SCHEME, str(n), str(r), str(p), _b64(salt), _b64(key)])


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored``; the key comparison takes constant time."""
    n, r, p, salt, key = _parse(stored)
    return hmac.compare_digest(_derive(password, salt, n, r, p), key)


def check_hash(stored: str) -> None:
    """Raise :class:`BadHash` unless ``stored`` is a hash this module wrote."""
    _parse(stored)


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=KEY_BYTES, maxmem=256 * n * r * p
    )


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes]:
    parts = str(stored).split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise BadHash("not a scrypt hash from `python -m core hash-password`")
    try:
        n, r, p = (int(value) for value in parts[1:4])
        salt, key = base64.urlsafe_b64decode(parts[4]), base64.urlsafe_b64decode(parts[5])
    except ValueError as error:
        raise BadHash("a damaged scrypt hash (copy it again from `python -m core hash-password`)") from error
    if not (1 < n <= MAX_COST_N and n & (n - 1) == 0 and 0 < r <= 32 and 0 < p <= 16 and salt and key):
        raise BadHash("scrypt hash parameters out of range")
    return n, r, p, salt, key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()
