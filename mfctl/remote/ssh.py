"""``SshTransport``: one node over SSH, with Fabric/paramiko.

Decisions that live here:

* OpenSSH semantics where users expect them: the ssh_config (``~/.ssh/config`` and
  ``/etc/ssh/ssh_config``, or one explicit file like ``ssh -F``) supplies Host aliases, User, Port,
  IdentityFile, ConnectTimeout, ProxyJump/ProxyCommand and UserKnownHostsFile. Key or agent auth.
* Host keys are always checked. Fabric's default is paramiko's ``AutoAddPolicy`` (trust any key,
  silently); we replace the client of every connection, ProxyJump hops included, with one that
  loads the known_hosts files and rejects unknown hosts with a message that says how to add them.
  ``accept_new_hosts`` (or ``StrictHostKeyChecking accept-new|no`` in the ssh_config) records a
  new host's key in the known_hosts file like OpenSSH's ``accept-new``; a changed key is refused
  whatever the setting.
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
"""

from __future__ import annotations

import errno
import fcntl
import os
import shlex
import socket
import threading
import time
from functools import lru_cache
from typing import Iterator

import paramiko
from fabric import Config, Connection
from invoke.exceptions import CommandTimedOut, ThreadException
from paramiko.client import MissingHostKeyPolicy, SSHClient
from paramiko.ssh_exception import (
    AuthenticationException,
    BadHostKeyException,
    NoValidConnectionsError,
    SSHException,
)

from mfctl.errors import BadInput
from mfctl.remote.base import NodeUnreachable, RunResult

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_KEEPALIVE = 5.0
DEFAULT_DEAD_PEER_TIMEOUT = 20.0
_USER_SSH_CONFIG = "~/.ssh/config"
_SYSTEM_SSH_CONFIG = "/etc/ssh/ssh_config"
_USER_KNOWN_HOSTS = "~/.ssh/known_hosts"
_GLOBAL_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
_MAX_LINE = 1 << 20  # a stream yields an over-long "line" in pieces rather than growing without bound
_known_hosts_lock = threading.Lock()

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


# ----- ssh_config ------------------------------------------------------------------------------
@lru_cache(maxsize=16)
def _parse_ssh_config(paths: tuple[str, ...], stamps: tuple[float, ...]) -> paramiko.SSHConfig:
    config = paramiko.SSHConfig()
    for path in paths:
        if os.path.isfile(path):
            try:
                with open(path) as f:
                    config.parse(f)
            except (paramiko.ssh_exception.ConfigParseError, ValueError) as e:
                raise BadInput(f"{path}: cannot parse ssh config: {e}") from e
    return config


def load_ssh_config(ssh_config_path: str | os.PathLike[str] | None = None) -> paramiko.SSHConfig:
    """The parsed ssh_config: the given file only (like ``ssh -F``), else the user's and the system's.

    Cached per file set and modification time, so many transports share one parse.
    """
    if ssh_config_path is not None:
        path = os.path.expanduser(os.fspath(ssh_config_path))
        if not os.path.isfile(path):
            raise BadInput(f"{path}: ssh config file not found; check the --ssh-config path")
        paths: tuple[str, ...] = (path,)
    else:
        paths = (os.path.expanduser(_USER_SSH_CONFIG), _SYSTEM_SSH_CONFIG)
    stamps = tuple(os.stat(p).st_mtime if os.path.isfile(p) else -1.0 for p in paths)
    return _parse_ssh_config(paths, stamps)


def resolve_address(alias: str, ssh_config_path: str | os.PathLike[str] | None = None) -> str:
    """The address ``alias`` connects to: its ssh_config HostName, else the alias itself.

    This is what other nodes should use to reach it (e.g. msrun's MASTER_ADDR), as long as the
    nodes see the same addresses as the controller (no ProxyJump-only names).
    """
    host = alias.rsplit("@", 1)[-1]
    if host.startswith("[") and "]" in host:
        host = host[1 : host.index("]")]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return str(load_ssh_config(ssh_config_path).lookup(host).get("hostname", host))


def _expand_path(value: str, user: str) -> str:
    home = os.path.expanduser("~")
    return os.path.expanduser(value.replace("%d", home).replace("%u", user))


# ----- host keys -------------------------------------------------------------------------------
def _fingerprint(key: paramiko.PKey) -> str:
    return key.fingerprint  # "SHA256:..." like OpenSSH


def _scan_hint(hostname_key: str) -> str:
    """``ssh-keyscan`` arguments for a paramiko known_hosts name (``host`` or ``[host]:port``)."""
    if hostname_key.startswith("["):
        host, port = hostname_key[1:].split("]:", 1)
        return f"-p {port} -H {host}"
    return f"-H {hostname_key}"


class _UnknownHostKey(SSHException):
    def __init__(self, hostname: str, key: paramiko.PKey, path: str) -> None:
        super().__init__(f"unknown host key for {hostname}")
        self.hostname = hostname
        self.key = key
        self.path = path


class _RejectUnknown(MissingHostKeyPolicy):
    """paramiko's RejectPolicy, raising an exception that carries what the message needs."""

    def __init__(self, path: str) -> None:
        self.path = path

    def missing_host_key(self, client: SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise _UnknownHostKey(hostname, key, self.path)


class _AcceptNew(MissingHostKeyPolicy):
    """OpenSSH's ``accept-new``: record an unknown host's key; paramiko itself refuses changed keys."""

    def __init__(self, path: str) -> None:
        self.path = path

    def missing_host_key(self, client: SSHClient, hostname: str, key: paramiko.PKey) -> None:
        _record_host_key(self.path, hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)


def _record_host_key(path: str, hostname: str, key: paramiko.PKey) -> None:
    """Append ``hostname key`` to the known_hosts file, once, safely against parallel writers."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    with _known_hosts_lock:  # threads of this process; flock below covers other processes
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "r+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            known = paramiko.HostKeys(path)  # re-read under the lock: others may have added it
            existing = known.lookup(hostname)
            if existing is not None and key.get_name() in existing:
                if existing[key.get_name()] != key:
                    raise BadHostKeyException(hostname, key, existing[key.get_name()])
                return  # another connection recorded it meanwhile
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


# ----- the transport ---------------------------------------------------------------------------
def _close_quietly(channel: paramiko.Channel) -> None:
    """Close a channel whose connection may already be gone (paramiko then raises EOFError)."""
    try:
        channel.close()
    except (SSHException, EOFError, OSError):
        pass


class _Transport(paramiko.Transport):
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


class SshTransport:
    """One node over SSH. Connects lazily on first use and reconnects after a dropped connection.

    ``host`` is an ssh_config alias or a name/address (``user@host:port`` also works); explicit
    ``user``/``port``/``key_filename``/``connect_timeout`` override the ssh_config.
    ``known_hosts_path`` overrides the ssh_config's UserKnownHostsFile (default
    ``~/.ssh/known_hosts``).
    """

    def __init__(
        self,
        host: str,
        *,
        ssh_config_path: str | os.PathLike[str] | None = None,
        user: str | None = None,
        port: int | None = None,
        key_filename: str | os.PathLike[str] | None = None,
        connect_timeout: float | None = None,
        accept_new_hosts: bool = False,
        known_hosts_path: str | os.PathLike[str] | None = None,
        keepalive: float = DEFAULT_KEEPALIVE,
        dead_peer_timeout: float = DEFAULT_DEAD_PEER_TIMEOUT,
    ) -> None:
        self.host = host
        self._accept_new = accept_new_hosts
        self._known_hosts_override = os.fspath(known_hosts_path) if known_hosts_path else None
        self._keepalive = keepalive
        self._dead_peer_timeout = dead_peer_timeout
        config = Config(
            ssh_config=load_ssh_config(ssh_config_path),
            overrides={"run": {"in_stream": False, "hide": True, "warn": True}},
        )
        connect_kwargs: dict[str, object] = {}
        if key_filename is not None:
            connect_kwargs["key_filename"] = [os.fspath(key_filename)]
        try:
            self._conn = Connection(host, user=user, port=port, config=config, connect_kwargs=connect_kwargs)
        except ValueError as e:  # fabric's int() of a non-numeric ssh_config Port or ConnectTimeout
            where = os.fspath(ssh_config_path) if ssh_config_path else _USER_SSH_CONFIG
            raise BadInput(f"{where}: Host {host}: a number is expected ({e}); fix Port or "
                           "ConnectTimeout there") from None
        # Fabric truncates the timeout to int (0.5 s would become "none"); set it ourselves.
        if connect_timeout is not None:
            self._conn.connect_timeout = float(connect_timeout)
        self._harden(self._conn)
        # Fabric's Remote runner opens its channel through Connection.create_session: route it
        # through ours to learn whether a failed run got as far as opening its channel.
        self._conn.create_session = self._open_session
        self.connect_timeout = float(self._conn.connect_timeout)
        self._sftp: paramiko.SFTPClient | None = None
        self._session_opened = False
        self._streams: set[paramiko.Channel] = set()
        self._cancelled: set[paramiko.Channel] = set()

    # ----- setup -------------------------------------------------------------------------------
    def _known_hosts_files(self, conn: Connection) -> tuple[str, list[str]]:
        """(file new keys go to, files to read) for one hop, as OpenSSH chooses them."""
        if self._known_hosts_override:
            user_files = [self._known_hosts_override]
        else:
            raw = conn.ssh_config.get("userknownhostsfile", _USER_KNOWN_HOSTS)
            user_files = [_expand_path(p, conn.user) for p in shlex.split(raw)] or [_USER_KNOWN_HOSTS]
        global_raw = conn.ssh_config.get("globalknownhostsfile", _GLOBAL_KNOWN_HOSTS)
        global_files = [_expand_path(p, conn.user) for p in shlex.split(global_raw)]
        user_files = [os.path.expanduser(p) for p in user_files]
        return user_files[0], user_files + global_files

    def _harden(self, conn: Connection) -> None:
        """Bounded timeouts and strict host-key checking on ``conn`` and every ProxyJump hop."""
        if conn.connect_timeout is None:
            conn.connect_timeout = DEFAULT_CONNECT_TIMEOUT
        conn.connect_timeout = float(conn.connect_timeout)
        t = conn.connect_timeout
        conn.connect_kwargs = dict(
            conn.connect_kwargs, banner_timeout=t, auth_timeout=t, channel_timeout=t,
            transport_factory=self._make_transport,
        )
        write_to, read_from = self._known_hosts_files(conn)
        client = SSHClient()
        for path in read_from:
            if os.path.isfile(path):
                try:
                    client.load_system_host_keys(path)
                except (OSError, SSHException) as e:
                    raise BadInput(f"{path}: cannot read known_hosts: {e}") from e
        strict = str(conn.ssh_config.get("stricthostkeychecking", "ask")).lower()
        accept = self._accept_new or strict in ("accept-new", "no", "off")
        client.set_missing_host_key_policy(_AcceptNew(write_to) if accept else _RejectUnknown(write_to))
        conn.client = client
        if isinstance(conn.gateway, Connection):
            self._harden(conn.gateway)

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

    def _make_transport(self, sock: object, **kwargs: object) -> paramiko.Transport:
        """paramiko's ``transport_factory`` hook: tune the connected socket before the handshake."""
        if isinstance(sock, socket.socket):
            self._tune_socket(sock)
        transport = _Transport(sock, **kwargs)  # type: ignore[arg-type]
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
        where = self._where()
        t = self.connect_timeout
        if isinstance(e, _UnknownHostKey):
            return (
                f"host key of {e.hostname} is not known ({e.key.get_name()} {_fingerprint(e.key)}, "
                f"not in {e.path}); check it and add it with `ssh-keyscan {_scan_hint(e.hostname)} >> "
                f"{shlex.quote(e.path)}`, or re-run with --accept-new-hosts"
            )
        if isinstance(e, BadHostKeyException):
            name = e.hostname
            path = self._known_hosts_files(self._conn)[0]
            return (
                f"host key of {name} has CHANGED (now {e.key.get_name()} {_fingerprint(e.key)}, "
                f"known_hosts has {_fingerprint(e.expected_key)}); refusing to connect: this may be an "
                f"attack. If the host was reinstalled, remove the old key with "
                f"`ssh-keygen -R {name} -f {shlex.quote(path)}`"
            )
        if isinstance(e, NoValidConnectionsError):
            codes = {err.errno for err in e.errors.values()}
            if codes == {errno.ECONNREFUSED}:
                return f"connection refused at {where} (is sshd running there?)"
            return f"cannot connect to {where}: no route to host"
        if isinstance(e, (socket.timeout, TimeoutError)):
            return f"no answer from {where} within {t:g}s (host down, firewalled, or wrong address)"
        if isinstance(e, socket.gaierror):
            return f"cannot resolve {self._conn.host}: {e.strerror}"
        if isinstance(e, AuthenticationException):
            return (
                f"authentication failed for user {self._conn.user} at {where} "
                f"(check IdentityFile, ssh-agent and the node's authorized_keys): {e}"
            )
        if isinstance(e, SSHException):
            return f"SSH handshake with {where} failed: {e}"
        if isinstance(e, EOFError):
            return f"{where} closed the connection during the SSH handshake"
        if isinstance(e, OSError):
            return f"cannot connect to {where}: {e.strerror or e}"
        return None

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
    _RETRYABLE = (SSHException, EOFError, OSError, ThreadException)

    def _open_session(self) -> paramiko.Channel:
        channel = self._conn.transport.open_session(timeout=self.connect_timeout)
        self._session_opened = True
        return channel

    def run(self, command: str, timeout: float | None = None) -> RunResult:
        for attempt in (1, 2):
            reused = self._open()
            self._session_opened = False
            started = time.monotonic()
            try:
                result = self._conn.run(wrap_command(command), timeout=timeout)
            except CommandTimedOut as e:
                # Fabric closed the channel; the watchdog kills the command on the node.
                raise NodeUnreachable(self.host, f"command did not finish within {timeout:g}s") from e
            except self._RETRYABLE as e:
                if reused and not self._session_opened and attempt == 1:
                    self._drop()
                    continue
                raise self._lost(e, "running a command") from e
            if result.exited == -1:
                # The channel closed without an exit status: the connection died under the command,
                # or invoke's timer closed it but lost the race to report CommandTimedOut.
                if not self._conn.is_connected:
                    self._drop()
                    raise NodeUnreachable(self.host, f"connection to {self._where()} lost while running a command")
                if timeout is not None and time.monotonic() - started >= timeout:
                    raise NodeUnreachable(self.host, f"command did not finish within {timeout:g}s")
                # Otherwise the command's session was killed by a signal: exit_code stays -1.
            return RunResult(self.host, int(result.exited), result.stdout, result.stderr)
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
            except (SSHException, EOFError, socket.timeout) as e:
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
                except socket.timeout:
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
