"""Host-key checking end to end, without root: mfctl's SSH transport against an SSH server in this
process on 127.0.0.1 (tests/fakes/sshserver.py), resolved by the real ``ssh -G``.

Each test writes an ssh_config and known_hosts files the way a user would and checks what the user
sees: the command runs, or one line naming the host, the file:line and what to do, and what ends up
in known_hosts. The root-only parity suite (tests/integration/test_ssh_parity.py) checks the same
verdicts against ``ssh`` itself on real sshd nodes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mfctl.remote import hostkeys, knownhosts
from tests.fakes.sshserver import Lab, SshServer, blob, keygen, pub

pytestmark = [
    pytest.mark.skipif(shutil.which("ssh") is None or shutil.which("ssh-keygen") is None,
                       reason="needs the OpenSSH client (ssh -G) and ssh-keygen"),
    pytest.mark.timeout(60),
]


def hashed(name: str) -> str:
    salt = b"salt-for-the-tests!!"
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    monkeypatch.setenv("MFCTL_SSH_G_CACHE", "0")  # nothing written to the user's ~/.cache
    monkeypatch.setattr(hostkeys, "_warned", set())  # each test sees its own warnings
    host_key, other = keygen(tmp_path / "host_key"), keygen(tmp_path / "other_host_key")
    user_key = keygen(tmp_path / "id_user")
    server = SshServer(host_key, authorized=(blob(user_key),))
    yield Lab(tmp_path, server, host_key, other, user_key)
    server.close()


def test_known_host_key_connects(lab: Lab) -> None:
    assert lab.run(lab.config(known_hosts=f"{lab.name} {pub(lab.host_key)}\n")) == "ok\n"


@pytest.mark.parametrize("line", [
    "{hashed} {key}",  # HashKnownHosts: the port is part of the hashed name
    "[127.0.0.*]:{port} {key} wildcard",
    "other,{name} {key}",
    "# comment\nnot a key line\n{name} {key}",  # junk lines are skipped, as ssh does
])
def test_known_hosts_forms_that_match(lab: Lab, line: str) -> None:
    text = line.format(hashed=hashed(lab.name), key=pub(lab.host_key), port=lab.server.port, name=lab.name)
    assert lab.run(lab.config(known_hosts=text + "\n")) == "ok\n"


def test_key_in_the_global_file_only(lab: Lab) -> None:
    (lab.d / "global_known_hosts").write_text(f"{lab.name} {pub(lab.host_key)}\n")
    assert lab.run(lab.config()) == "ok\n"


@pytest.mark.parametrize("line", [
    "127.0.0.1 {key}",  # port 22's name: not this port's
    "{hashed_22} {key}",
    "*,!{name} {key}",  # the negation excludes the host
])
def test_known_hosts_forms_that_do_not_match_are_a_new_host(lab: Lab, line: str) -> None:
    text = line.format(key=pub(lab.host_key), name=lab.name, hashed_22=hashed("127.0.0.1"))
    message = lab.refused(lab.config(known_hosts=text + "\n"))
    assert f"host key of {lab.name} is not known" in message
    assert "ssh-keyscan -p" in message and "--accept-new-hosts" in message
    assert (lab.d / "known_hosts").read_text() == text + "\n"  # nothing recorded


def test_host_key_alias_names_the_line(lab: Lab) -> None:
    cfg = lab.config("  HostKeyAlias lab-node\n", known_hosts=f"lab-node {pub(lab.host_key)}\n")
    assert lab.run(cfg) == "ok\n"
    cfg = lab.config("  HostKeyAlias lab-node\n", known_hosts=f"{lab.name} {pub(lab.host_key)}\n")
    assert "host key of lab-node is not known" in lab.refused(cfg)


def test_changed_key_is_refused_even_with_accept_new(lab: Lab) -> None:
    text = f"{lab.name} {pub(lab.other_host_key)}\n"
    for strict, accept_new in (("yes", False), ("accept-new", False), ("yes", True)):
        cfg = lab.config(f"  StrictHostKeyChecking {strict}\n", known_hosts=text)
        message = lab.refused(cfg, accept_new=accept_new)
        assert f"host key of {lab.name} has CHANGED" in message
        assert f"{lab.d}/known_hosts:1" in message and "ssh-keygen -R" in message
        assert (lab.d / "known_hosts").read_text() == text


def test_changed_key_with_strict_no_connects_and_warns(lab: Lab, capfd: pytest.CaptureFixture[str]) -> None:
    cfg = lab.config("  StrictHostKeyChecking no\n", known_hosts=f"{lab.name} {pub(lab.other_host_key)}\n")
    assert lab.run(cfg) == "ok\n"
    assert "has CHANGED" in capfd.readouterr().err


def test_revoked_key_is_refused_even_when_also_listed(lab: Lab) -> None:
    text = f"{lab.name} {pub(lab.host_key)}\n@revoked * {pub(lab.host_key)}\n"
    message = lab.refused(lab.config(known_hosts=text))
    assert "is marked @revoked in" in message and f"{lab.d}/known_hosts:2" in message


def test_revoked_host_keys_file(lab: Lab) -> None:
    (lab.d / "revoked").write_text(f"{pub(lab.host_key)}\n")
    cfg = lab.config(f"  RevokedHostKeys {lab.d}/revoked\n", known_hosts=f"{lab.name} {pub(lab.host_key)}\n")
    assert "revoked by RevokedHostKeys" in lab.refused(cfg)


def test_cert_authority_line_does_not_vouch_for_a_plain_key(lab: Lab) -> None:
    ca = keygen(lab.d / "ca")
    message = lab.refused(lab.config(known_hosts=f"@cert-authority * {pub(ca)}\n"))
    assert "only @cert-authority line(s) match" in message


def test_unknown_host_accept_new_records_it_once(lab: Lab) -> None:
    cfg = lab.config("  StrictHostKeyChecking accept-new\n")
    assert lab.run(cfg) == "ok\n"
    assert lab.run(cfg) == "ok\n"
    assert (lab.d / "known_hosts").read_text() == f"{lab.name} {pub(lab.host_key)}\n"


def test_accept_new_hosts_flag_relaxes_yes_and_hashes_when_asked(lab: Lab) -> None:
    cfg = lab.config("  HashKnownHosts yes\n")
    lab.refused(cfg)
    assert lab.run(cfg, accept_new=True) == "ok\n"
    line = (lab.d / "known_hosts").read_text().split()
    assert line[0].startswith("|1|") and knownhosts.matches(line[0], lab.name)
    assert " ".join(line[1:]) == pub(lab.host_key)


def test_unknown_host_strict_no_connects_warns_and_records(lab: Lab, capfd: pytest.CaptureFixture[str]) -> None:
    cfg = lab.config("  StrictHostKeyChecking no\n")
    assert lab.run(cfg) == "ok\n"
    assert "StrictHostKeyChecking no: accepted the unverified host key" in capfd.readouterr().err
    assert pub(lab.host_key) in (lab.d / "known_hosts").read_text()


def test_known_hosts_command_output_is_read(lab: Lab) -> None:
    script = lab.d / "khc.sh"
    script.write_text(f"#!/bin/sh\necho \"$1 {pub(lab.host_key)}\"\n")
    script.chmod(0o755)
    cfg = lab.config(f"  KnownHostsCommand {script} %H\n")
    assert lab.run(cfg) == "ok\n"


def test_algorithms_ssh_would_not_offer_are_not_offered(lab: Lab) -> None:
    # The server has an ed25519 host key only: with HostKeyAlgorithms limited to RSA there is no
    # algorithm in common, and the message says which option to look at.
    cfg = lab.config("  HostKeyAlgorithms rsa-sha2-512\n", known_hosts=f"{lab.name} {pub(lab.host_key)}\n")
    message = lab.refused(cfg)
    assert "HostKeyAlgorithms" in message
    cfg = lab.config("  Ciphers chacha20-poly1305@openssh.com\n",
                     known_hosts=f"{lab.name} {pub(lab.host_key)}\n")
    assert "Ciphers allows only chacha20-poly1305@openssh.com, none of which mfctl" in lab.refused(cfg)
