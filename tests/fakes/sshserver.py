"""An SSH server in this process on 127.0.0.1, for unit tests of host keys and authentication.

It speaks real SSH (paramiko's server side): mfctl's client goes through its whole connect path
(``ssh -G``, the host-key check, the keys offered, the command channel) without root, network
namespaces or an sshd. It accepts public keys listed in ``authorized`` (blobs) and records every key
offered, in order (``offered``: ``(keytype, fingerprint)``); a command gets ``reply`` on stdout and
exit status 0 (nothing is executed). ``global_request`` makes it send an unsolicited global
request after auth, as OpenSSH's sshd sends ``hostkeys-00@openssh.com``.

``Lab`` puts one together with the files a user would write (keys made by ``ssh-keygen``, an
ssh_config whose ``Host node`` is this server, known_hosts) and connects through ``SshTransport``.

A stand-in for host keys and auth only: the real sshd parity suite (tests/integration) checks the
same verdicts against ``ssh`` itself.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import paramiko

from mfctl.remote.base import NodeUnreachable
from mfctl.remote.ssh import SshTransport


def fingerprint(blob: bytes) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


class _Server(paramiko.ServerInterface):
    def __init__(self, owner: SshServer) -> None:
        self.owner = owner

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        blob = key.asbytes()
        with self.owner.lock:
            entry = (key.get_name(), fingerprint(blob))
            if not self.owner.offered or self.owner.offered[-1] != entry:
                self.owner.offered.append(entry)  # paramiko asks once per query and once signed
        if username == self.owner.user and blob in self.owner.authorized:
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        with self.owner.lock:
            self.owner.commands.append(command.decode())

        def answer() -> None:
            # EOF, not close: a close could overtake paramiko's reply to the exec request, and
            # the client would see the channel closed before its command started. It closes.
            channel.sendall(self.owner.reply.encode())
            channel.send_exit_status(0)
            channel.shutdown_write()

        threading.Thread(target=answer, daemon=True).start()
        return True


class SshServer:
    """Listens on 127.0.0.1:<ephemeral>; ``close()`` stops it. One host key (a private key file)."""

    def __init__(self, host_key: Path, *, user: str = "tester", authorized: tuple[bytes, ...] = (),
                 reply: str = "ok\n", global_request: str | None = None) -> None:
        self.host_key = paramiko.PKey.from_path(host_key)
        self.user = user
        self.authorized = set(authorized)
        self.reply = reply
        self.global_request = global_request
        self.offered: list[tuple[str, str]] = []
        self.commands: list[str] = []
        self.channels: list[paramiko.Channel] = []
        self.lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.port = self._sock.getsockname()[1]
        self._transports: list[paramiko.Transport] = []
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._start(self._accept)

    def _start(self, target, *args: object) -> None:  # type: ignore[no-untyped-def]
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            t = paramiko.Transport(conn)
            t.add_server_key(self.host_key)
            self._transports.append(t)
            try:
                t.start_server(server=_Server(self))
            except (paramiko.SSHException, EOFError, OSError):
                continue  # the client refused the host key or went away: what the tests check
            self._start(self._serve, t)

    def _serve(self, t: paramiko.Transport) -> None:
        while t.is_active():
            if t.is_authenticated():
                if self.global_request:
                    t.global_request(self.global_request, wait=False)
                break
            threading.Event().wait(0.01)
        while t.is_active():
            channel = t.accept(0.1)  # off paramiko's queue; the exec request answers itself
            if channel is not None:
                self.channels.append(channel)  # held: a dropped Channel closes itself

    def close(self) -> None:
        """Stop accepting, end every connection and wait for every thread of the server: none may
        outlive the test (Python 3.11's traceback formatting, which a dying paramiko thread logs,
        parses source and races the main thread's compiles)."""
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self._sock.close()
        for t in self._transports:
            t.close()  # also ends a start_server() the accept thread may be waiting in
        for thread in self._threads:
            thread.join(10)
        for t in self._transports:
            t.close()  # one accepted meanwhile
            t.join(10)


def keygen(path: Path, kind: str = "ed25519", passphrase: str = "") -> Path:
    """A key pair made by ``ssh-keygen``: ``path`` (private) and ``path.pub``."""
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", path.name, "-f", str(path)],
                   check=True, capture_output=True)
    return path


def pub(path: Path) -> str:
    """``keytype base64`` of a key's .pub file."""
    return " ".join((path.parent / (path.name + ".pub")).read_text().split()[:2])


def blob(path: Path) -> bytes:
    return base64.b64decode(pub(path).split()[1])


@dataclass
class Lab:
    """A server and the client's files in ``d``; ``config()`` writes the ssh_config of ``node``."""

    d: Path
    server: SshServer
    host_key: Path
    other_host_key: Path
    user_key: Path

    @property
    def name(self) -> str:
        """How known_hosts names this server: a port other than 22 is ``[host]:port``."""
        return f"[127.0.0.1]:{self.server.port}"

    def config(self, extra: str = "", known_hosts: str = "", *, identity: bool = True) -> Path:
        """``extra`` lines go into ``Host node`` (first value wins: they override the defaults
        below); ``identity=False`` leaves the default IdentityFile out (IdentityFile adds up)."""
        (self.d / "known_hosts").write_text(known_hosts)
        cfg = self.d / "ssh_config"
        cfg.write_text(
            f"Host node\n  HostName 127.0.0.1\n  Port {self.server.port}\n  User tester\n{extra}"
            f"Host *\n  UserKnownHostsFile {self.d}/known_hosts\n"
            f"  GlobalKnownHostsFile {self.d}/global_known_hosts\n"
            + (f"  IdentityFile {self.user_key}\n" if identity else "")
            + "  IdentityAgent none\n  StrictHostKeyChecking yes\n  ConnectTimeout 5\n")
        return cfg

    def known(self) -> str:
        """The known_hosts line of this server's host key."""
        return f"{self.name} {pub(self.host_key)}\n"

    def run(self, cfg: Path, *, accept_new: bool = False) -> str:
        """``true`` on the node through mfctl's SSH transport: its stdout (the server's reply)."""
        t = SshTransport("node", ssh_config_path=cfg, accept_new_hosts=accept_new)
        try:
            res = t.run("true")
        finally:
            t.close()
        assert res.exit_code == 0
        return res.stdout

    def refused(self, cfg: Path, *, accept_new: bool = False) -> str:
        """The one-line reason mfctl gives for not reaching the node; nothing ran there."""
        ran = len(self.server.commands)
        try:
            self.run(cfg, accept_new=accept_new)
        except NodeUnreachable as e:
            message = str(e)
        else:
            raise AssertionError("mfctl connected and ran the command; it should have refused")
        assert "\n" not in message and message.startswith("node:"), message
        assert len(self.server.commands) == ran  # refused before anything ran
        return message
