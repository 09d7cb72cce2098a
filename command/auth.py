"""Passwords and tokens. Pure (hashlib and secrets only).

Passwords: scrypt (memory-hard, in the standard library, so no native
dependency to keep patched) with a random salt; the stored string carries
its parameters so they can be raised later without breaking old hashes.
Tokens: 32 random bytes; only their SHA-256 is stored, so a leaked sessions
table grants nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# ~16 MiB and ~50 ms per hash on this class of machine: slow for an
# attacker with a stolen table, tolerable for a login.
_N, _R, _P = 2**14, 8, 1
_MAXMEM = 64 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    """A salted scrypt hash: ``scrypt$N$r$p$salt$hash``. CPU-heavy: call off the event loop."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=_MAXMEM, dklen=32)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a stored hash. CPU-heavy."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_MAXMEM,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# A hash to verify against when the user does not exist, so a login for an
# unknown name takes as long as one with a wrong password.
DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def validate_new_password(password: str) -> None:
    """Raises ValueError when a password is too weak to set."""
    if len(password) < 10:
        raise ValueError("password must have at least 10 characters")
    if len(password) > 1024:
        raise ValueError("password longer than 1024 characters")
