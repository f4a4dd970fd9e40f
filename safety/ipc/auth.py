"""The shared key and the challenge-response that proves each side holds it.

The socket is mode 0600, so only its owner can connect; the key adds a second, explicit
lock: a process of the same user that was not given the key file (a stray script, a
test left running) cannot command the pump. The key never crosses the socket:

- server -> client: ``nonce`` (32 random bytes, fresh per connection);
- client -> server: ``cnonce`` (32 random bytes) and
  ``HMAC-SHA256(key, "pumpctl-ipc-1 client" | nonce | cnonce)``;
- server -> client: ``HMAC-SHA256(key, "pumpctl-ipc-1 server" | nonce | cnonce)``.

The role labels keep one side's proof from being replayed as the other's; the fresh
server nonce keeps a recorded exchange from being replayed later. Comparisons are
constant-time (``hmac.compare_digest``).

Key file: 64 hex characters (32 random bytes) and a newline, mode 0600. The safety
process creates it when missing (atomically, ``O_EXCL``); both sides refuse a key file
that others can read, as ssh refuses such a private key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

KEY_BYTES = 32
NONCE_BYTES = 32
_LABEL = b"pumpctl-ipc-1 "


class KeyFileError(Exception):
    """The key file is missing, malformed or readable by others; the message says how."""


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


def client_proof(key: bytes, nonce: bytes, cnonce: bytes) -> str:
    return _mac(key, b"client", nonce, cnonce)


def server_proof(key: bytes, nonce: bytes, cnonce: bytes) -> str:
    return _mac(key, b"server", nonce, cnonce)


def proofs_match(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode("ascii"), given.encode("ascii", "replace"))


def _mac(key: bytes, role: bytes, nonce: bytes, cnonce: bytes) -> str:
    return hmac.new(key, _LABEL + role + b"|" + nonce + b"|" + cnonce, hashlib.sha256).hexdigest()


def load_key(path: str | os.PathLike[str]) -> bytes:
    """Read the key; ``KeyFileError`` if missing, malformed or open to group/others."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise KeyFileError(
            f"IPC key file {p} does not exist; the safety process creates it at start "
            "(give the controller the same key_file path)"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"IPC key file {p}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise KeyFileError(f"IPC key file {p} is not a regular file")
        if mode & 0o077:
            raise KeyFileError(
                f"IPC key file {p} has mode {stat.S_IMODE(mode):04o}; it must be readable by "
                f"its owner only: chmod 600 {p}"
            )
        raw = f.read(4 * KEY_BYTES)
    text = raw.strip()
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise KeyFileError(
            f"IPC key file {p} must hold {2 * KEY_BYTES} hex characters ({KEY_BYTES} bytes); "
            "delete it to have the safety process make a new one"
        )
    return key


def load_or_create_key(path: str | os.PathLike[str]) -> bytes:
    """The safety process's side: make a new random key (mode 0600) if there is none."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return load_key(p)
    except OSError as exc:
        raise KeyFileError(f"IPC key file {p}: cannot create it: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_hex(KEY_BYTES) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        p.unlink(missing_ok=True)
        raise KeyFileError(f"IPC key file {p}: cannot write it: {exc.strerror or exc}") from None
    return load_key(p)


__all__ = [
    "KEY_BYTES",
    "KeyFileError",
    "client_proof",
    "load_key",
    "load_or_create_key",
    "new_nonce",
    "proofs_match",
    "server_proof",
]
