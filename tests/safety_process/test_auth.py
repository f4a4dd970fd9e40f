"""The key file and the challenge-response proofs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safety.ipc.auth import (
    KEY_BYTES,
    KeyFileError,
    client_proof,
    load_key,
    load_or_create_key,
    new_nonce,
    proofs_match,
    server_proof,
)


def test_a_missing_key_is_created_private_and_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "ipc.key"
    key = load_or_create_key(path)
    assert len(key) == KEY_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text(encoding="ascii")
    assert len(text.strip()) == 2 * KEY_BYTES and text.endswith("\n")
    assert load_or_create_key(path) == key
    assert load_key(path) == key


def test_two_new_keys_differ(tmp_path: Path) -> None:
    assert load_or_create_key(tmp_path / "a") != load_or_create_key(tmp_path / "b")


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ipc.key"
    load_or_create_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key(path)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_or_create_key(path)


@pytest.mark.parametrize("content", ["", "abc", "zz" * 32, "ab" * 31, "ab" * 33])
def test_a_malformed_key_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "ipc.key"
    path.write_text(content, encoding="ascii")
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match="64 hex characters"):
        load_key(path)


def test_a_missing_key_is_a_clear_error_for_the_client(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        load_key(tmp_path / "nope")


def test_a_symlinked_key_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.key"
    load_or_create_key(real)
    link = tmp_path / "link.key"
    link.symlink_to(real)
    with pytest.raises(KeyFileError):
        load_key(link)


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_proofs_bind_key_nonce_and_role(key: bytes, other: bytes) -> None:
    nonce, cnonce = new_nonce(), new_nonce()
    proof = client_proof(key, nonce, cnonce)
    assert proofs_match(proof, client_proof(key, nonce, cnonce))
    assert not proofs_match(proof, server_proof(key, nonce, cnonce))  # no reflection
    assert not proofs_match(proof, client_proof(key, new_nonce(), cnonce))  # no replay
    if other != key:
        assert not proofs_match(proof, client_proof(other, nonce, cnonce))


def test_proof_comparison_tolerates_junk() -> None:
    assert not proofs_match("ab" * 32, "é" * 64)
    assert not proofs_match("ab" * 32, "")
