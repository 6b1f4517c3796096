"""An SSH server in this process on 127.0.0.1, for unit tests of host keys and authentication.

It speaks real SSH (paramiko's server side): mfctl's client goes through its whole connect path
(``ssh -G``, the host-key check, the keys offered, the command channel) without root, network
namespaces or an sshd. It accepts public keys listed in ``authorized`` (blobs) and records every key
offered, in order (``offered``: ``(keytype, fingerprint)``); a command gets ``reply`` on stdout and
exit status 0 (nothing is executed). ``global_request`` makes it send an unsolicited global
request after auth, as OpenSSH's sshd sends ``hostkeys-00@openssh.com``.

A stand-in for host keys and auth only: the real sshd parity suite (tests/integration) checks the
same verdicts against ``ssh`` itself.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
from pathlib import Path

import paramiko


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
