"""Building blocks of an OpenSSH-like connection for ``SshTransport``.

The hosts-file name split, the Fabric Connection that runs ProxyCommand like ssh does, the
attribution of a failure to a ProxyJump hop, and the one-line reason for every connect failure.
Then the pieces that keep the controller's CPU per node low (measured by bench/controller.py):
one shared Fabric Config and commands read in ``select`` instead of by polling threads.

paramiko and Fabric are used through their public API: no assignment into their modules, no
``__class__`` swap. The one protected member overridden, ``Transport._parse_global_request`` (see
``ParamikoTransport``), is pinned by tests/unit/test_ssh_library_api.py, which fails when a
paramiko release renames it or changes its signature.
"""

from __future__ import annotations

import errno
import functools
import os
import select
import shlex
import socket
import time

import paramiko
from fabric import Config, Connection
from paramiko.ssh_exception import AuthenticationException, NoValidConnectionsError, SSHException

from mfctl.remote import hostkeys, sshconfig


def split_host(alias: str) -> tuple[str | None, str, int | None]:
    """``user@host:port`` / ``[v6]:port`` as a hosts file may write it -> (user, host, port)."""
    user, _, host = alias.rpartition("@")
    port: int | None = None
    if host.startswith("[") and "]" in host:
        host, _, rest = host[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif host.count(":") == 1 and host.split(":")[1].isdigit():
        host, p = host.split(":")
        port = int(p)
    return user or None, host, port


def resolve_address(alias: str, ssh_config_path: str | os.PathLike[str] | None = None) -> str:
    """The address ``alias`` connects to: its HostName as ``ssh -G`` resolves it.

    This is what other nodes should use to reach it (e.g. msrun's MASTER_ADDR), as long as the
    nodes see the same addresses as the controller (no ProxyJump-only names).
    """
    user, host, port = split_host(alias)
    return sshconfig.resolve(host, ssh_config_path, user=user, port=port).hostname


class HopFailed(Exception):
    """Reaching a ProxyJump hop (or opening the tunnel through it) failed."""

    def __init__(self, hop: Connection, inner: BaseException) -> None:
        super().__init__(str(inner))
        self.hop = hop
        self.inner = inner


class OpenSshConnection(Connection):
    """Fabric's Connection, with a ProxyCommand whose tokens ``ssh -G`` resolution expanded.

    Fabric would re-parse a string gateway through paramiko's own ssh_config (other token rules).
    """

    proxy_command: str | None = None
    # A real attribute (Fabric sets it in __init__; as a config key each set cost a config merge).
    inline_ssh_env: bool | None = None

    def open_gateway(self):  # type: ignore[override]
        if self.proxy_command is not None:
            # ssh runs it as `$SHELL -c "exec <command>"` (pipes, redirections, variables work);
            # paramiko would split it into argv itself.
            shell = os.environ.get("SHELL") or "/bin/sh"
            return paramiko.ProxyCommand(shlex.join([shell, "-c", "exec " + self.proxy_command]))
        try:
            return super().open_gateway()
        except HopFailed:
            raise  # an outer hop failed: already attributed
        except Exception as e:
            raise HopFailed(self.gateway, e) from e


# ----- the transport ---------------------------------------------------------------------------


def reason_at(e: BaseException, host: str, port: int, user: str, t: float,
               proxy_command: str | None) -> str | None:
    where = f"{host}:{port}"
    if isinstance(e, hostkeys.HostKeyRefused):
        return str(e)
    if isinstance(e, paramiko.ChannelException):
        return f"it could not open the tunnel onward (to the next hop or the node): {e}"
    if isinstance(e, NoValidConnectionsError):
        codes = {err.errno for err in e.errors.values()}
        if codes == {errno.ECONNREFUSED}:
            return f"connection refused at {where} (is sshd running there?)"
        return f"cannot connect to {where}: no route to host"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return f"no answer from {where} within {t:g}s (host down, firewalled, or wrong address)"
    if isinstance(e, socket.gaierror):
        return f"cannot resolve {host}: {e.strerror}"
    if isinstance(e, AuthenticationException):
        return (
            f"authentication failed for user {user} at {where}: {e}; check User, "
            "IdentityFile, IdentitiesOnly, CertificateFile, ssh-agent and the node's authorized_keys"
        )
    if isinstance(e, SSHException):
        if str(e) == "No existing session":  # paramiko's start_client gave up waiting for the key exchange
            return (f"SSH handshake with {where} did not finish within {t:g}s (it answered, then stalled: "
                    "sshd overloaded or stuck?)")
        if "Incompatible ssh peer" in str(e):
            return (f"SSH handshake with {where} failed: {e}; no algorithm in common: check "
                    "HostKeyAlgorithms, KexAlgorithms, Ciphers and MACs for this host")
        if proxy_command:
            return (f"SSH handshake with {where} through ProxyCommand {proxy_command!r} failed: {e}; "
                    "run that command by hand to see why")
        return f"SSH handshake with {where} failed: {e}"
    if isinstance(e, EOFError):
        return f"{where} closed the connection during the SSH handshake"
    if isinstance(e, OSError):
        return f"cannot connect to {where}: {e.strerror or e}"
    return None


# ----- paramiko and Fabric, cheap per node (bench/controller.py measures it) -------------------


@functools.cache
def fabric_config() -> Config:
    """One Fabric Config for every connection (building one per node cost ~0.1 ms each; nothing
    mutates it). An explicit empty SSHConfig: Fabric must not resolve anything itself (ssh -G did)."""
    return Config(ssh_config=paramiko.SSHConfig())


def collect(channel: paramiko.Channel, timeout: float | None) -> tuple[bytes, bytes, bool]:
    """A command's stdout and stderr until its exit status (or the channel's close); False when
    ``timeout`` ran out first.

    Waits in ``select`` on the channel (paramiko signals a pipe when data or EOF arrives): no
    polling and no helper threads, so a node that takes long to answer costs the controller
    nothing while it waits. (Fabric's runner used three threads per command and woke every 10 ms.)
    """
    out, err = bytearray(), bytearray()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        done = channel.eof_received or channel.closed  # read before draining: no data follows EOF
        while channel.recv_ready():
            out += channel.recv(1 << 16)
        while channel.recv_stderr_ready():
            err += channel.recv_stderr(1 << 16)
        remaining = None if deadline is None else deadline - time.monotonic()
        if done:  # the exit status comes right after EOF (or the close sets the event)
            finished = channel.status_event.wait(None if remaining is None else max(0.0, remaining))
            return bytes(out), bytes(err), finished
        if remaining is not None and remaining <= 0:
            return bytes(out), bytes(err), False
        select.select([channel], [], [], remaining)


class ParamikoTransport(paramiko.Transport):
    """paramiko's Transport, acknowledging the server's unsolicited global requests at once.

    Right after auth, OpenSSH's sshd sends ``hostkeys-00@openssh.com`` (no reply wanted). Our TCP
    ACK for it is delayed (~40 ms) and sshd's next packet, the answer to our first channel open,
    waits for that ACK (Nagle on the server), so the first command of every fresh connection took
    ~45 ms longer (measured with strace). Setting TCP_QUICKACK sends the pending ACK right away.
    """

    def _parse_global_request(self, m: paramiko.Message) -> None:
        super()._parse_global_request(m)
        if hasattr(socket, "TCP_QUICKACK") and isinstance(self.sock, socket.socket):
            try:
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            except OSError:
                pass
