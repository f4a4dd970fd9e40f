"""The safety process hashes with CPython's built-in SHA-256 rather than OpenSSL's.

It needs two hashes: SHA-256 for the drug library's content hash and HMAC-SHA256 for the
IPC handshake (``safety.ipc.auth``). CPython carries both itself (``_sha256``, and
``hmac``'s own construction over it: the fallback it uses when built without OpenSSL).
Importing ``hashlib`` or ``hmac`` otherwise loads OpenSSL's ``libcrypto`` through
``_hashlib``, and pydantic imports ``hmac`` (through ``secrets``) whatever we do: 3.4 MB of
the process's resident memory (VmHWM, measured on the bench machine) for a library it
never otherwise uses, in a process whose memory goal is 40 MB.

``prefer_builtin_hashes`` marks ``_hashlib`` absent before anything imports ``hashlib``,
so both modules take their built-in path. The digests are the same (checked against
OpenSSL's and RFC 4231's in ``tests/safety_process/test_hashes.py``). Nothing changes where
the built-in module is missing (a CPython built with OpenSSL-only hashes), or when
``hashlib`` is already imported (too late to choose): the process then runs on OpenSSL.
"""

from __future__ import annotations

import importlib.util
import sys


def prefer_builtin_hashes() -> bool:
    """Make ``hashlib``/``hmac`` use CPython's own SHA-256; True if that was possible."""
    if "hashlib" in sys.modules or "hmac" in sys.modules:
        return sys.modules.get("_hashlib", False) is None
    if importlib.util.find_spec("_sha256") is None:
        return False
    sys.modules["_hashlib"] = None  # type: ignore[assignment]  # "import _hashlib" fails
    return True


__all__ = ["prefer_builtin_hashes"]
