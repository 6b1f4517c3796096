"""known_hosts reading and verdicts (pure file logic; the parity suite checks them against ssh)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import pytest

from mfctl.remote import knownhosts

KEY = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519" + b"A" * 36).decode()
OTHER = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519" + b"B" * 36).decode()
BLOB = base64.b64decode(KEY)


def hashed(name: str) -> str:
    salt = b"0123456789abcdefghij"
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


@pytest.mark.parametrize("patterns, name, expected", [
    ("node1", "node1", True),
    ("NODE1", "node1", True),
    ("node1,node2", "node2", True),
    ("node*", "node7", True),
    ("node?", "node10", False),
    ("*,!node1", "node1", False),
    ("*,!node1", "node2", True),
    ("!node1", "node2", False),  # a negation alone matches nothing
    ("[10.0.0.1]:2222", "[10.0.0.1]:2222", True),
    ("10.0.0.1", "[10.0.0.1]:2222", False),
    ("[10.0.0.*]:2222", "[10.0.0.9]:2222", True),
    (hashed("node1"), "node1", True),
    (hashed("node1"), "node2", False),
    ("|1|bad|hash", "node1", False),
])
def test_matches(patterns: str, name: str, expected: bool) -> None:
    assert knownhosts.matches(patterns, name) is expected


@pytest.mark.parametrize("text, status, line", [
    (f"node1 ssh-ed25519 {KEY}\n", "ok", 1),
    (f"node1 ssh-ed25519 {OTHER}\n", "changed", 1),
    (f"node1 ssh-ed25519 {OTHER}\nnode1 ssh-ed25519 {KEY}\n", "ok", 2),
    (f"node1 ssh-rsa {OTHER}\n", "new", None),  # another key type: not a change
    (f"node1 ssh-ed25519 {KEY}\n@revoked * ssh-ed25519 {KEY}\n", "revoked", 2),
    (f"@cert-authority * ssh-ed25519 {KEY}\n", "new", None),
    (f"# comment\n\ngarbage\n@weird node1 ssh-ed25519 {KEY}\nnode1 ssh-ed25519 !!notbase64\n", "new", None),
    (f"node2 ssh-ed25519 {KEY}\n", "new", None),
])
def test_verdict(tmp_path: Path, text: str, status: str, line: int | None) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(text)
    v = knownhosts.verdict([str(path), str(tmp_path / "missing")], "node1", "ssh-ed25519", BLOB)
    assert v.status == status
    assert (v.entry.line if v.entry else None) == line


def test_cert_authority_lines_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(f"@cert-authority *.lab ssh-ed25519 {OTHER}\n")
    v = knownhosts.verdict([str(path)], "n1.lab", "ssh-ed25519", BLOB)
    assert v.status == "new" and [e.line for e in v.ca_lines] == [1]


def test_record_appends_once_and_hashes(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "known_hosts"
    knownhosts.record(str(path), "[node1]:2222", "ssh-ed25519", KEY)
    knownhosts.record(str(path), "[node1]:2222", "ssh-ed25519", KEY)
    assert path.read_text() == f"[node1]:2222 ssh-ed25519 {KEY}\n"
    knownhosts.record(str(path), "node2", "ssh-ed25519", KEY, hashed=True)
    last = path.read_text().splitlines()[-1]
    assert last.startswith("|1|") and knownhosts.matches(last.split()[0], "node2")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
