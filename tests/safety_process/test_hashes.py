"""The safety process hashes with CPython's built-in SHA-256, with OpenSSL's results.

``python -m safety`` marks OpenSSL's ``_hashlib`` absent before anything imports
``hashlib`` (``safety.host.hashes``: 3.4 MB of resident memory saved). The library's
content hash and the IPC handshake's HMAC-SHA256 must come out exactly as OpenSSL's (the
controller still computes them with OpenSSL) and as RFC 4231 says.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hil_tests.harness.processes import write_toml
from safety.host.hashes import prefer_builtin_hashes
from safety.ipc import auth
from safety.ipc.client import SafetyClient
from safety.ipc.launch import start_safety_process
from safety.library import load_library

pytestmark = [pytest.mark.hil, pytest.mark.timeout(60)]

#: RFC 4231, test cases 1 and 2: (key, data, HMAC-SHA256)
RFC_4231 = [
    (
        bytes([0x0B] * 20),
        b"Hi There",
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
    ),
    (
        b"Jefe",
        b"what do ya want for nothing?",
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    ),
]

PROBE = r"""
import json, sys
from safety.host.hashes import prefer_builtin_hashes
switched = prefer_builtin_hashes()
import hashlib, hmac
from safety.ipc import auth
from safety.library import load_library
cases = json.loads(sys.argv[1])
out = {
    "switched": switched,
    "hashlib_openssl": sys.modules.get("_hashlib") is not None,
    "libcrypto": "libcrypto" in open("/proc/self/maps").read(),
    "hmac": [hmac.new(bytes.fromhex(k), bytes.fromhex(d), hashlib.sha256).hexdigest()
             for k, d in cases],
    "proofs": [auth.client_proof(bytes.fromhex(k), bytes.fromhex(d), b"c" * 32)
               for k, d in cases],
    "library": load_library().content_hash,
}
print(json.dumps(out))
"""


def test_builtin_hashes_give_openssls_and_rfc_4231s_digests() -> None:
    cases = [(key.hex(), data.hex()) for key, data, _ in RFC_4231]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    seen = json.loads(done.stdout)
    assert seen["switched"] is True
    assert seen["hashlib_openssl"] is False and seen["libcrypto"] is False
    assert seen["hmac"] == [expected for _, _, expected in RFC_4231]
    assert seen["proofs"] == [
        auth.client_proof(key, data, b"c" * 32) for key, data, _ in RFC_4231
    ]  # this process: OpenSSL
    assert seen["library"] == load_library().content_hash
    assert hmac.new(b"Jefe", RFC_4231[1][1], hashlib.sha256).hexdigest() == RFC_4231[1][2]


def test_too_late_to_choose_changes_nothing() -> None:
    assert "hashlib" in sys.modules  # imported above, with OpenSSL in this process
    assert prefer_builtin_hashes() is False
    assert sys.modules.get("_hashlib") is not None


def test_the_safety_process_runs_without_libcrypto_and_authenticates(short_dir: Path) -> None:
    config = write_toml(
        short_dir / "safety.toml",
        {
            "pump": {"driver": "mock", "syringe": "bd-plastipak-50ml"},
            "gpio": {"backend": "none"},
            "paths": {
                "journal": str(short_dir / "journal.sqlite"),
                "socket": str(short_dir / "safety.sock"),
                "key_file": str(short_dir / "ipc.key"),
            },
        },
    )
    child = start_safety_process(config, stderr=subprocess.DEVNULL)
    try:
        maps = Path(f"/proc/{child.process.pid}/maps").read_text()
        assert "libcrypto" not in maps
        # the handshake's HMACs, built-in on that side and OpenSSL on this one, agree
        with SafetyClient(child.socket_path, key_file=short_dir / "ipc.key") as client:
            snapshot = client.attach()
            assert snapshot.library_hash == load_library().content_hash
    finally:
        assert child.stop() == 0
