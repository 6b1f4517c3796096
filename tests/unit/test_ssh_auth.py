"""Public-key authentication end to end, without root: which keys mfctl offers, in which order,
and what it says when none works, against an SSH server in this process (tests/fakes/sshserver.py)
that records every key offered. ssh_config resolution is the real ``ssh -G``; the agent is a real
``ssh-agent``. The root-only parity suite (tests/integration/test_ssh_parity.py) checks the same
choices against ``ssh`` itself on real sshd nodes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mfctl.remote import sshauth, sshconfig
from tests.fakes.sshserver import Lab, SshServer, blob, fingerprint, keygen

pytestmark = [
    pytest.mark.skipif(shutil.which("ssh") is None or shutil.which("ssh-keygen") is None,
                       reason="needs the OpenSSH client (ssh -G) and ssh-keygen"),
    pytest.mark.timeout(60),
]


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    monkeypatch.setenv("MFCTL_SSH_G_CACHE", "0")  # nothing written to the user's ~/.cache
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    host_key = keygen(tmp_path / "host_key")
    keygen(tmp_path / "id_a")
    keygen(tmp_path / "id_b")
    server = SshServer(host_key, authorized=())
    yield Lab(tmp_path, server, host_key, host_key, tmp_path / "id_a")
    server.close()


def fp(key: Path) -> tuple[str, str]:
    """A key as the server records it when offered: (type, fingerprint)."""
    return ("ssh-ed25519", fingerprint(blob(key)))


def config(lab: Lab, *lines: str) -> Path:
    return lab.config("".join(f"  {line}\n" for line in lines), lab.known(), identity=False)


def test_identity_files_in_config_order_until_one_is_accepted(lab: Lab) -> None:
    a, b = lab.d / "id_a", lab.d / "id_b"
    lab.server.authorized = {blob(b)}
    assert lab.run(config(lab, f"IdentityFile {a}", f"IdentityFile {b}")) == "ok\n"
    assert lab.server.offered == [fp(a), fp(b)]
    lab.server.offered.clear()
    assert lab.run(config(lab, f"IdentityFile {b}", f"IdentityFile {a}")) == "ok\n"
    assert lab.server.offered == [fp(b)]  # the first that works ends it


def test_a_key_the_node_refuses_is_named(lab: Lab) -> None:
    a = lab.d / "id_a"
    message = lab.refused(config(lab, f"IdentityFile {a}"))
    assert f"authentication failed for user tester at 127.0.0.1:{lab.server.port}" in message
    assert f"the node accepted none of: {a}" in message


def test_a_private_key_others_can_read_is_not_offered(lab: Lab) -> None:
    a = lab.d / "id_a"
    lab.server.authorized = {blob(a)}
    a.chmod(0o644)
    message = lab.refused(config(lab, f"IdentityFile {a}"))
    assert f"{a} is readable by others and ssh ignores it (chmod 600 {a})" in message
    assert lab.server.offered == []
    a.chmod(0o600)
    assert lab.run(config(lab, f"IdentityFile {a}")) == "ok\n"


def test_an_encrypted_key_is_never_prompted_for(lab: Lab) -> None:
    c = keygen(lab.d / "id_c", passphrase="secret phrase")
    lab.server.authorized = {blob(c)}
    message = lab.refused(config(lab, f"IdentityFile {c}"))
    assert "needs a passphrase (mfctl never asks: add it to ssh-agent)" in message
    assert "no ssh-agent is reachable" in message and lab.server.offered == []


def test_no_identity_file_at_all(lab: Lab) -> None:
    message = lab.refused(config(lab, f"IdentityFile {lab.d}/missing"))
    assert "no usable key: no IdentityFile exists or loads without a passphrase" in message


def test_pubkey_authentication_no(lab: Lab) -> None:
    lab.server.authorized = {blob(lab.d / "id_a")}
    message = lab.refused(config(lab, "PubkeyAuthentication no", f"IdentityFile {lab.d}/id_a"))
    assert "PubkeyAuthentication is no and mfctl never asks for a password" in message


def test_pubkey_accepted_algorithms_excludes_the_key(lab: Lab) -> None:
    lab.server.authorized = {blob(lab.d / "id_a")}
    message = lab.refused(config(lab, "PubkeyAcceptedAlgorithms rsa-sha2-512", f"IdentityFile {lab.d}/id_a"))
    assert "PubkeyAcceptedAlgorithms excludes every key" in message and lab.server.offered == []


# ----- ssh-agent ------------------------------------------------------------------------------


def listening(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(path)
        except OSError:
            return False
    return True


@pytest.fixture
def agent(lab: Lab) -> Iterator[str]:
    """A real ssh-agent on a socket in the lab; ``ssh-add`` loads keys into it."""
    if shutil.which("ssh-agent") is None or shutil.which("ssh-add") is None:
        pytest.skip("needs ssh-agent and ssh-add")
    sock = str(lab.d / "agent.sock")
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", sock], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not listening(sock) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # the socket file appears at bind(), before the agent listens
        assert listening(sock), "ssh-agent did not start"
        yield sock
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def ssh_add(sock: str, *keys: Path) -> None:
    subprocess.run(["ssh-add", *map(str, keys)], env={**os.environ, "SSH_AUTH_SOCK": sock},
                   check=True, capture_output=True)


def test_agent_keys_come_first(lab: Lab, agent: str) -> None:
    a, b = lab.d / "id_a", lab.d / "id_b"
    ssh_add(agent, b)
    lab.server.authorized = {blob(b)}
    assert lab.run(config(lab, f"IdentityAgent {agent}", f"IdentityFile {a}")) == "ok\n"
    assert lab.server.offered == [fp(b)]


def test_agent_keys_named_by_identity_files_first_in_config_order(lab: Lab, agent: str) -> None:
    a, b = lab.d / "id_a", lab.d / "id_b"
    ssh_add(agent, a, b)  # the agent lists a, then b
    lab.server.authorized = {blob(a)}
    assert lab.run(config(lab, f"IdentityAgent {agent}", f"IdentityFile {b}", f"IdentityFile {a}")) == "ok\n"
    assert lab.server.offered == [fp(b), fp(a)]


def test_identities_only_keeps_the_agent_to_the_configured_keys(lab: Lab, agent: str) -> None:
    a, b = lab.d / "id_a", lab.d / "id_b"
    ssh_add(agent, b)
    lab.server.authorized = {blob(b)}
    message = lab.refused(config(lab, f"IdentityAgent {agent}", "IdentitiesOnly yes", f"IdentityFile {a}"))
    assert f"the node accepted none of: {a}" in message and lab.server.offered == [fp(a)]
    # The key's private half only in the agent: its public file names it.
    lab.server.offered.clear()
    b.unlink()
    assert lab.run(config(lab, f"IdentityAgent {agent}", "IdentitiesOnly yes", f"IdentityFile {b}")) == "ok\n"
    assert lab.server.offered == [fp(b)]


def test_an_encrypted_key_works_through_the_agent(lab: Lab, agent: str) -> None:
    c = keygen(lab.d / "id_c", passphrase="secret phrase")
    decrypted = lab.d / "id_c_plain"  # what ssh-add would hold after asking for the passphrase
    shutil.copy(c, decrypted)
    subprocess.run(["ssh-keygen", "-q", "-p", "-P", "secret phrase", "-N", "", "-f", str(decrypted)],
                   check=True, capture_output=True)
    ssh_add(agent, decrypted)
    lab.server.authorized = {blob(c)}
    assert lab.run(config(lab, f"IdentityAgent {agent}", "IdentitiesOnly yes", f"IdentityFile {c}")) == "ok\n"


# ----- certificates (the order offered; the parity suite signs in with them on real sshd) -----


def test_a_certificate_is_offered_before_its_plain_key(lab: Lab) -> None:
    a = lab.d / "id_a"
    ca = keygen(lab.d / "ca")
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca), "-I", "tester", "-n", "tester", str(a) + ".pub"],
                   check=True, capture_output=True)
    r = sshconfig.resolve("node", config(lab, f"IdentityFile {a}"))
    offered = [(desc, key.public_blob.key_type if key.public_blob else key.get_name())
               for desc, key in sshauth.KeyAuth(r).candidates(None)]
    assert offered == [(f"{a} with {a}-cert.pub", "ssh-ed25519-cert-v01@openssh.com"), (str(a), "ssh-ed25519")]
