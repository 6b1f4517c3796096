"""What mfctl's SSH code takes from paramiko and Fabric beyond their documented API, pinned.

mfctl uses them through their public API (no assignment into their modules, no ``__class__``
swap: tests/unit/test_library_api.py reads the whole package's source to hold that). A few places
still go past it:

* ``ParamikoTransport`` overrides the protected ``Transport._parse_global_request`` (the
  immediate ACK of sshd's ``hostkeys-00`` message: ~45 ms off each fresh connection's first command);
* ``sshauth`` opens an agent on the IdentityAgent socket with the protected ``AgentSSH._connect``
  and ``_close`` (paramiko's ``Agent()`` reads only SSH_AUTH_SOCK).

When a paramiko release renames one of them or changes its signature, these tests fail, before
users see a connection break: that is the moment to re-check the override and widen the pin in
pyproject.toml. The tested range is the pin; paramiko/fabric/invoke updates go through here.
"""

from __future__ import annotations

import inspect
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import fabric
import paramiko
import pytest
from paramiko.agent import AgentSSH
from paramiko.client import SSHClient

from mfctl.remote import sshconnect
from mfctl.remote.base import NodeUnreachable
from mfctl.remote.ssh import SshTransport
from mfctl.remote.sshconnect import OpenSshConnection, ParamikoTransport
from tests.fakes.sshserver import Lab, SshServer, blob, keygen

needs_ssh = pytest.mark.skipif(shutil.which("ssh") is None or shutil.which("ssh-keygen") is None,
                               reason="needs the OpenSSH client (ssh -G) and ssh-keygen")


def params(func: object) -> list[str]:
    return list(inspect.signature(func).parameters)  # type: ignore[arg-type]


def test_overridden_protected_transport_member_is_still_there() -> None:
    base = paramiko.Transport._parse_global_request
    assert params(base) == ["self", "m"]
    assert params(ParamikoTransport._parse_global_request) == params(base)
    # The handler table dispatches the message type to it by name at run time.
    assert "self._parse_global_request" in inspect.getsource(paramiko.Transport)


def test_protected_agent_members_used_are_still_there() -> None:
    assert params(AgentSSH._connect) == ["self", "conn"]
    assert params(AgentSSH._close) == ["self"]
    assert params(AgentSSH.get_keys) == ["self"]


def test_public_api_used_has_the_arguments_mfctl_passes() -> None:
    connect = params(SSHClient.connect)
    for name in ("banner_timeout", "auth_timeout", "channel_timeout", "allow_agent", "look_for_keys",
                 "auth_strategy", "transport_factory"):
        assert name in connect, name
    assert params(fabric.Connection.open_gateway) == ["self"]
    assert "timeout" in params(paramiko.Transport.open_session)
    assert params(paramiko.PKey.from_path)[0] == "path"
    # sshauth sets a key's public_blob (its certificate, or None for the plain key), which the
    # auth handler reads to choose what to offer.
    assert paramiko.ECDSAKey.generate().public_blob is None
    assert "public_blob" in inspect.getsource(paramiko.auth_handler)


def test_security_options_take_the_lists_mfctl_sets() -> None:
    a, b = socket.socketpair()
    try:
        t = paramiko.Transport(a)
        opts = t.get_security_options()
        opts.ciphers = ["aes256-ctr"]
        opts.digests = ["hmac-sha2-256"]
        opts.kex = ["curve25519-sha256@libssh.org"]
        opts.key_types = ["ssh-ed25519"]
        assert (t.preferred_ciphers, t.preferred_macs, t.preferred_kex, t.preferred_keys[:1]) == (
            ("aes256-ctr",), ("hmac-sha2-256",), ("curve25519-sha256@libssh.org",), ("ssh-ed25519",))
        assert isinstance(t.handshake_timeout, (int, float))  # set per connection, see below
    finally:
        a.close()
        b.close()


def test_connections_do_not_write_into_the_shared_fabric_config(tmp_path: Path) -> None:
    # Every Connection shares one Fabric Config; an attribute Fabric does not declare on the class
    # would be written into that config (invoke's DataProxy) and leak into every other node.
    before = repr(sshconnect.fabric_config())
    cfg = tmp_path / "cfg"
    cfg.write_text("Host *\n  HostName 127.0.0.1\n  ProxyCommand nc %h %p\n  ConnectTimeout 3\n")
    if shutil.which("ssh") is None:
        pytest.skip("needs the OpenSSH client (ssh -G)")
    t = SshTransport("a", ssh_config_path=cfg)  # builds its Connection (ProxyCommand, timeouts, client)
    assert t.resolved.proxy_command == "nc 127.0.0.1 22" and t.connect_timeout == 3
    assert repr(sshconnect.fabric_config()) == before
    for name in ("connect_timeout", "connect_kwargs", "client", "gateway", "inline_ssh_env", "proxy_command"):
        assert name in vars(fabric.Connection) or name in vars(OpenSshConnection), name


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    monkeypatch.setenv("MFCTL_SSH_G_CACHE", "0")
    host_key, user_key = keygen(tmp_path / "host_key"), keygen(tmp_path / "id_user")
    server = SshServer(host_key, authorized=(blob(user_key),), global_request="hostkeys-00@openssh.com")
    yield Lab(tmp_path, server, host_key, host_key, user_key)
    server.close()


@needs_ssh
def test_the_global_request_override_runs_and_the_connection_works(lab: Lab,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    original = ParamikoTransport._parse_global_request

    def spy(self: ParamikoTransport, m: paramiko.Message) -> None:
        seen.append(m.asbytes()[1:].decode("latin-1"))
        original(self, m)

    monkeypatch.setattr(ParamikoTransport, "_parse_global_request", spy)  # the test's own class
    t = SshTransport("node", ssh_config_path=lab.config(known_hosts=lab.known()))
    try:
        assert t.run("true").stdout == "ok\n"
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert t.run("true").stdout == "ok\n"
    finally:
        t.close()
    assert len(seen) == 1 and "hostkeys-00@openssh.com" in seen[0]


@needs_ssh
def test_a_stalled_key_exchange_ends_within_the_connect_timeout(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # A node whose sshd sends its banner and then nothing (overloaded, or stuck reading its keys).
    monkeypatch.setenv("MFCTL_SSH_G_CACHE", "0")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    held: list[socket.socket] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        conn.sendall(b"SSH-2.0-OpenSSH_9.2 stalled\r\n")
        held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    cfg = tmp_path / "cfg"
    cfg.write_text(f"Host node\n  HostName 127.0.0.1\n  Port {port}\n  UserKnownHostsFile {tmp_path}/kh\n"
                   f"  IdentityFile {tmp_path}/none\n  IdentityAgent none\n")
    t = SshTransport("node", ssh_config_path=cfg, connect_timeout=1)
    started = time.monotonic()
    try:
        with pytest.raises(NodeUnreachable) as err:
            t.run("true")
    finally:
        t.close()
        listener.close()
        thread.join(5)
        for conn in held:
            conn.close()
    assert time.monotonic() - started < 8  # bounded by the 1 s timeout, not paramiko's 15 s default
    message = str(err.value)
    assert f"SSH handshake with 127.0.0.1:{port} did not finish within 1s" in message and "\n" not in message
