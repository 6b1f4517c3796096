"""``SshTransport``: one node over SSH, with Fabric/paramiko.

Decisions that live here:

* OpenSSH parity: where and how to connect comes from OpenSSH itself (``ssh -G``, see
  ``sshconfig``), the host-key verdict and the keys offered follow ``ssh -o BatchMode=yes``
  (``knownhosts``, ``hostkeys``, ``sshauth``), for the node and every ProxyJump hop. Fabric's
  default host-key policy (paramiko's ``AutoAddPolicy``: trust any key, silently) is replaced on
  every connection.
  ``accept_new_hosts`` turns StrictHostKeyChecking yes into accept-new; a changed or revoked key
  is refused unless the ssh_config says StrictHostKeyChecking no (then, like ssh, mfctl connects
  and warns on stderr).
* Every wait is bounded: the connect timeout (default 10 s) covers TCP connect, banner, auth and
  opening a channel; after connecting, SSH keepalives plus ``TCP_USER_TIMEOUT`` make a partition
  kill the connection after ``dead_peer_timeout`` instead of hanging a command or a stream forever.
* Commands run as ``sh -c <command>`` whatever the login shell is (it only has to parse one
  single-quoted word: sh, bash, dash, zsh, ksh do), behind a small stdin watchdog: when the SSH
  channel goes away before the command ends (timeout, ``close()``, a dropped stream) the command's
  process group is killed, so a timed-out command or a closed ``tail -F`` does not linger on the
  node. Processes detached with ``setsid`` are in their own group and are not affected.
* Latency: TCP_NODELAY, and an immediate ACK of sshd's post-auth ``hostkeys-00`` message, take
  the Nagle/delayed-ACK stalls (~40 ms each) out of the handshake and the first command.
* A reused connection that died while idle is replaced once, transparently, when opening the
  channel fails (nothing ran on the node yet); a failure after that is reported, never retried.
* Failures to reach a node become ``NodeUnreachable(host, one-line reason)``; a non-zero exit is
  a normal ``RunResult`` (``exit_code`` -1: the session ended without an exit status, i.e. killed
  by a signal).

Size: about 400 lines: one transport whose connect, run, put, stream and close share the
connection and its failure handling; the connection building blocks are already in
``sshconnect``, authentication in ``sshauth``, host keys in ``hostkeys``.
"""

from __future__ import annotations

import os
import shlex
import socket
from collections.abc import Iterator

import paramiko
from fabric import Connection
from paramiko.client import SSHClient
from paramiko.ssh_exception import SSHException

from mfctl.errors import BadInput
from mfctl.remote import hostkeys, sshauth, sshconfig
from mfctl.remote.base import NodeUnreachable, RunResult
from mfctl.remote.sshconnect import (
    HopFailed,
    OpenSshConnection,
    ParamikoTransport,
    collect,
    fabric_config,
    reason_at,
    resolve_address,
    split_host,
)

__all__ = ["SshTransport", "resolve_address", "wrap_command"]

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_KEEPALIVE = 5.0
DEFAULT_DEAD_PEER_TIMEOUT = 20.0
_MAX_LINE = 1 << 20  # a stream yields an over-long "line" in pieces rather than growing without bound

# The stdin watchdog (see the module docstring). fd 3 keeps the channel's stdin for the watchdog
# (sh gives background jobs /dev/null as stdin unless told otherwise); the command itself gets
# /dev/null. When the command ends normally the watchdog is dismissed; when the channel closes
# first, `cat` sees EOF and the watchdog kills the session's process group (sshd made it a session
# leader), which includes the command and everything it started without setsid.
_WATCHDOG = (
    'exec 3<&0 </dev/null; '
    '{ cat <&3 >/dev/null 2>&1; kill -TERM 0; } >/dev/null 2>&1 & w=$!; exec 3<&-; '
    'sh -c {cmd}; rc=$?; kill "$w" 2>/dev/null; exit "$rc"'
)


def wrap_command(command: str) -> str:
    """The exact string sent to the node's login shell for ``command``."""
    return "sh -c " + shlex.quote(_WATCHDOG.replace("{cmd}", shlex.quote(command)))


def _close_quietly(channel: paramiko.Channel) -> None:
    """Close a channel whose connection may already be gone (paramiko then raises EOFError)."""
    try:
        channel.close()
    except (SSHException, EOFError, OSError):
        pass


class SshTransport:
    """One node over SSH. Connects lazily on first use and reconnects after a dropped connection.

    ``host`` is an ssh_config alias or a name/address (``user@host:port`` also works); it is
    resolved by ``ssh -G`` with ``user``/``port`` given like ``ssh -l user -p port`` would.
    An explicit ``connect_timeout`` overrides the ssh_config's ConnectTimeout (default 10 s).
    """

    def __init__(
        self,
        host: str,
        *,
        ssh_config_path: str | os.PathLike[str] | None = None,
        user: str | None = None,
        port: int | None = None,
        connect_timeout: float | None = None,
        accept_new_hosts: bool = False,
        keepalive: float = DEFAULT_KEEPALIVE,
        dead_peer_timeout: float = DEFAULT_DEAD_PEER_TIMEOUT,
    ) -> None:
        self.host = host
        self._accept_new = accept_new_hosts
        self._keepalive = keepalive
        self._dead_peer_timeout = dead_peer_timeout
        self._timeout = float(connect_timeout) if connect_timeout is not None else None
        self._config = fabric_config()
        a_user, a_host, a_port = split_host(host)
        self.resolved = sshconfig.resolve(a_host, ssh_config_path, user=user or a_user, port=port or a_port)
        self._conn = self._connection(self.resolved, depth=0)
        self.connect_timeout = float(self._conn.connect_timeout)
        self._sftp: paramiko.SFTPClient | None = None
        self._streams: set[paramiko.Channel] = set()
        self._cancelled: set[paramiko.Channel] = set()

    # ----- setup -------------------------------------------------------------------------------
    def _connection(self, r: sshconfig.ResolvedHost, depth: int, *, own_proxy: bool = True) -> Connection:
        """A Connection to ``r`` with its host-key check, keys and proxies, as ssh would make it.

        ProxyJump ``a,b`` is ssh's ``-J``: ``b`` is reached through ``a``; ``a`` keeps its own
        proxy settings, ``b``'s are overridden (``own_proxy``). Every hop is resolved by ``ssh -G``
        with the same config file and has its own host key checked.
        """
        if depth > 8:
            raise BadInput(f"{self.host}: ProxyJump/ProxyCommand chain deeper than 8 hops (a loop?); "
                           "fix ProxyJump in the ssh config")
        conn = OpenSshConnection(r.hostname, user=r.user, port=r.port, config=self._config)
        # An explicit timeout wins (like `ssh -o ConnectTimeout=`), then the config's, then 10 s.
        t = self._timeout or r.connect_timeout or DEFAULT_CONNECT_TIMEOUT
        conn.connect_timeout = t
        conn.connect_kwargs = dict(
            banner_timeout=t, auth_timeout=t, channel_timeout=t, allow_agent=False,
            look_for_keys=False, auth_strategy=sshauth.KeyAuth(r),
            transport_factory=lambda sock, **kw: self._make_transport(sock, r, t, **kw),
        )
        client = SSHClient()  # its host-key tables stay empty: every key goes to HostKeyCheck
        client.set_missing_host_key_policy(hostkeys.HostKeyCheck(r, self._accept_new, hop=depth > 0))
        conn.client = client
        if own_proxy and r.proxy_jump:
            hops = [sshconfig.parse_jump(spec) for spec in r.proxy_jump]
            gateway: Connection | None = None
            for i, (h_user, h_host, h_port) in enumerate(hops):
                hop = sshconfig.resolve(h_host, r.config_path, user=h_user, port=h_port)
                gateway_next = self._connection(hop, depth + 1, own_proxy=(i == 0))
                if gateway is not None:
                    gateway_next.gateway = gateway
                gateway = gateway_next
            conn.gateway = gateway
        elif own_proxy and r.proxy_command:
            conn.proxy_command = r.proxy_command
            conn.gateway = r.proxy_command  # truthy: Fabric then asks open_gateway for the socket
        else:
            conn.gateway = None
        return conn

    @property
    def address(self) -> str:
        """The HostName this transport connects to (see ``resolve_address``)."""
        return str(self._conn.host)

    @property
    def user(self) -> str:
        return str(self._conn.user)

    # ----- connection --------------------------------------------------------------------------
    def _where(self) -> str:
        return f"{self._conn.host}:{self._conn.port}"

    def _open(self) -> bool:
        """Connect if needed; True when an existing connection is reused (it may have died idle)."""
        if self._conn.is_connected:
            return True
        self._drop()
        try:
            self._conn.open()
        except Exception as e:
            self._drop()
            reason = self._connect_reason(e)
            if reason is None:
                raise
            raise NodeUnreachable(self.host, reason) from e
        return False

    def _make_transport(self, sock: object, r: sshconfig.ResolvedHost, timeout: float,
                        **kwargs: object) -> paramiko.Transport:
        """paramiko's ``transport_factory`` hook: tune the connected socket before the handshake."""
        if isinstance(sock, socket.socket):
            self._tune_socket(sock)
        transport = ParamikoTransport(sock, **kwargs)  # type: ignore[arg-type]
        # SSHClient.connect stops waiting for the key exchange after the connect timeout (and sets
        # the banner and auth timeouts from connect_kwargs). The transport's own handshake limit
        # (paramiko's default: 15 s) only ends its thread: a second later, so that the connect
        # timeout is what a stalled node reports ("did not finish within").
        transport.handshake_timeout = timeout + 1
        hostkeys.restrict_algorithms(r, transport)
        # SSH-level keepalives put data on the wire; TCP_USER_TIMEOUT then aborts the connection
        # when that data stays unacknowledged (a partition) instead of retransmitting for ~15 min.
        transport.set_keepalive(max(1, int(self._keepalive)))
        return transport

    def _tune_socket(self, sock: socket.socket) -> None:
        try:
            # SSH exchanges many small packets; with Nagle plus delayed ACKs each round trip of
            # the handshake and of every command costs ~40 ms (measured: `true` 55 ms -> 4 ms).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if hasattr(socket, "TCP_KEEPIDLE"):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, int(self._keepalive)))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, int(self._keepalive)))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
            if hasattr(socket, "TCP_USER_TIMEOUT"):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(self._dead_peer_timeout * 1000))
        except OSError:
            pass  # not fatal: only latency or the partition bound is lost

    def _connect_reason(self, e: BaseException) -> str | None:
        if isinstance(e, HopFailed):
            inner = reason_at(e.inner, e.hop.host, e.hop.port, e.hop.user, float(e.hop.connect_timeout),
                                    None)
            if inner is None:
                return None
            if isinstance(e.inner, hostkeys.HostKeyRefused):
                return inner  # already names the hop
            return f"ProxyJump hop {e.hop.user}@{e.hop.host}:{e.hop.port}: {inner}"
        return reason_at(e, self._conn.host, self._conn.port, self._conn.user, self.connect_timeout,
                               self.resolved.proxy_command if not self.resolved.proxy_jump else None)

    def _drop(self) -> None:
        """Forget a connection that is (or may be) broken; the next call reconnects."""
        if self._sftp is not None:
            try:
                self._sftp.close()
            except Exception:
                pass
            self._sftp = None
        try:
            self._conn.close()
        except Exception:
            pass

    def _lost(self, e: BaseException, doing: str) -> NodeUnreachable:
        self._drop()
        detail = str(e) or type(e).__name__
        return NodeUnreachable(self.host, f"connection to {self._where()} lost while {doing}: {detail}")

    # ----- Transport protocol ------------------------------------------------------------------
    # A reused connection can have died while idle (sshd restarted, a NAT forgot it) without the
    # transport noticing yet. When opening the channel fails on such a connection, nothing ran on
    # the node, so the operation is retried once on a fresh connection.
    _RETRYABLE = (SSHException, EOFError, OSError)

    def _open_session(self) -> paramiko.Channel:
        return self._conn.transport.open_session(timeout=self.connect_timeout)

    def run(self, command: str, timeout: float | None = None) -> RunResult:
        for attempt in (1, 2):
            reused = self._open()
            try:
                channel = self._open_session()
            except self._RETRYABLE as e:
                if reused and attempt == 1:
                    self._drop()
                    continue
                raise self._lost(e, "running a command") from e
            try:
                channel.exec_command(wrap_command(command))
                out, err, finished = collect(channel, timeout)
            except (SSHException, EOFError, OSError) as e:
                raise self._lost(e, "running a command") from e
            finally:
                _close_quietly(channel)  # on a timeout this ends the command (the watchdog)
            if not finished:
                raise NodeUnreachable(self.host, f"command did not finish within {timeout:g}s")
            if channel.exit_status == -1 and not self._conn.is_connected:
                # The channel closed without an exit status because the connection died under the
                # command (otherwise the command's session was killed by a signal: exit_code -1).
                self._drop()
                raise NodeUnreachable(self.host, f"connection to {self._where()} lost while running a command")
            return RunResult(self.host, int(channel.exit_status), out.decode("utf-8", "replace"),
                             err.decode("utf-8", "replace"))
        raise AssertionError("unreachable")

    def _sftp_client(self) -> paramiko.SFTPClient:
        for attempt in (1, 2):
            reused = self._open()
            if self._sftp is not None:
                return self._sftp
            try:
                self._sftp = self._conn.client.open_sftp()
            except (SSHException, EOFError, OSError) as e:
                if reused and attempt == 1:
                    self._drop()
                    continue
                raise self._lost(e, "starting SFTP") from e
            self._sftp.get_channel().settimeout(self.connect_timeout + self._dead_peer_timeout)
            return self._sftp
        raise AssertionError("unreachable")

    def put(self, local_path: str, remote_path: str, mode: int | None = None) -> None:
        with open(local_path, "rb") as src:  # a missing local file is the caller's error, raised as is
            sftp = self._sftp_client()
            try:
                with sftp.open(remote_path, "wb") as dst:
                    if mode is not None:
                        dst.chmod(mode)  # before any data lands, so a secret is never readable
                    dst.set_pipelined(True)
                    while chunk := src.read(1 << 15):
                        dst.write(chunk)
            except (TimeoutError, SSHException, EOFError) as e:
                raise self._lost(e, f"copying {local_path}") from e
            except OSError as e:
                if not self._conn.is_connected:
                    raise self._lost(e, f"copying {local_path}") from e
                # An SFTP status error (no such directory, permission denied): name the node and path.
                raise type(e)(e.errno, f"{self.host}:{remote_path}: {e.strerror or e}") from e

    def stream(self, command: str) -> Iterator[str]:
        for attempt in (1, 2):
            reused = self._open()
            try:
                channel = self._conn.transport.open_session(timeout=self.connect_timeout)
            except (SSHException, EOFError, OSError) as e:
                if reused and attempt == 1:
                    self._drop()
                    continue
                raise self._lost(e, "starting a stream") from e
            try:
                channel.exec_command(wrap_command(command))
            except (SSHException, EOFError, OSError) as e:
                raise self._lost(e, "starting a stream") from e
            self._streams.add(channel)
            return self._lines(channel)
        raise AssertionError("unreachable")

    def _lines(self, channel: paramiko.Channel) -> Iterator[str]:
        # A short recv timeout lets the loop drain stderr (discarded, but unread it would fill the
        # channel window and stall the command) and notice close() from another thread.
        channel.settimeout(0.25)
        buf = bytearray()
        try:
            while True:
                if channel.recv_stderr_ready():
                    channel.recv_stderr(1 << 16)
                try:
                    data = channel.recv(1 << 16)
                except TimeoutError:
                    if channel.closed:
                        break
                    continue
                if not data:
                    break
                buf += data
                start = 0
                while (end := buf.find(b"\n", start)) >= 0:
                    yield buf[start:end].decode("utf-8", "replace").rstrip("\r")
                    start = end + 1
                del buf[:start]
                if len(buf) > _MAX_LINE:
                    yield buf.decode("utf-8", "replace")
                    buf.clear()
            if buf:
                yield buf.decode("utf-8", "replace").rstrip("\r")
            if channel not in self._cancelled:
                # A dead transport also marks the channel's status "ready", with no exit code (-1).
                transport = self._conn.transport
                dead = transport is None or not transport.is_active()
                if dead and (not channel.exit_status_ready() or channel.recv_exit_status() == -1):
                    self._drop()
                    raise NodeUnreachable(self.host, f"connection to {self._where()} lost while streaming")
        finally:
            _close_quietly(channel)
            self._streams.discard(channel)
            self._cancelled.discard(channel)

    def close(self) -> None:
        """Stop open streams and close the connection (a later call reconnects).

        May be called from another thread to end a stream that one thread is iterating.
        """
        for channel in list(self._streams):
            self._cancelled.add(channel)
            _close_quietly(channel)
        self._drop()

    def __enter__(self) -> SshTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SshTransport({self.host!r} -> {self._conn.user}@{self._where()})"
