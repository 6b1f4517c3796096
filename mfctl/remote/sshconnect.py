"""Building blocks of an OpenSSH-like connection for ``SshTransport``.

The hosts-file name split, the Fabric Connection that runs ProxyCommand like ssh does, the
attribution of a failure to a ProxyJump hop, and the one-line reason for every connect failure.
Then the paramiko and Fabric pieces made cheaper for the controller's CPU per node (measured by
bench/controller.py): one shared Fabric Config, commands read in ``select`` instead of by polling
threads, the handshake deadline without a timer thread, MACs compared in C.
"""

from __future__ import annotations

import errno
import functools
import hmac
import logging
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

    def __setattr__(self, key: str, value: object) -> None:
        # invoke's DataProxy.__setattr__ calls dir(self) on every attribute set (~30 per
        # connection, ~1 ms of CPU per node) to tell real attributes from config keys. A class
        # attribute is always real: set it directly, as DataProxy would; anything else goes the
        # usual way.
        if key in _CLASS_ATTRS:
            object.__setattr__(self, key, value)
        else:
            super().__setattr__(key, value)

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


_CLASS_ATTRS = frozenset(dir(OpenSshConnection))


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


# ----- paramiko and Fabric, made cheaper per node (bench/controller.py measures it) --------------


@functools.cache
def fabric_config() -> Config:
    """One Fabric Config for every connection (building one per node cost ~0.1 ms each; nothing
    mutates it). An explicit empty SSHConfig: Fabric must not resolve anything itself (ssh -G did)."""
    return _QuietConfig(ssh_config=paramiko.SSHConfig())


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


# paramiko compares every received packet's MAC in a Python loop over its bytes (~20 us a packet,
# about a tenth of a check's per-node CPU). The standard library's constant-time comparison does
# the same in C; packet.py looks the function up on paramiko.util at each packet.
paramiko.util.constant_time_bytes_eq = hmac.compare_digest

_DIGEST_NAMES: dict[object, str] = {}


def _compute_hmac(key: bytes, message: bytes, digest_class) -> bytes:  # type: ignore[no-untyped-def]
    """paramiko's per-packet MAC, computed by OpenSSL in one call (``hmac.digest``) instead of a
    Python ``HMAC`` object per packet (~30 us each, ~18 packets a node): the same bytes."""
    name = _DIGEST_NAMES.get(digest_class)
    if name is None:
        name = _DIGEST_NAMES[digest_class] = digest_class().name
    return hmac.digest(key, message, name)


# packet.py looks compute_hmac up in its module at each packet.
paramiko.packet.compute_hmac = _compute_hmac


class _QuietConfig(Config):
    """Fabric's Config, answering invoke's internal ``_root``/``_keypath`` probes cheaply.

    invoke asks a root config ``hasattr(self, "_keypath")`` and ``getattr(self, "_root", self)``
    each time a nested key (``connect_kwargs``, ``timeouts``) is read; on the root both miss, and
    each miss built an error message listing every key and attribute (~0.1 ms, 6 a node). The
    lookups still miss, with the same AttributeError type, without the listing.
    """

    def __getattr__(self, key: str):  # type: ignore[no-untyped-def]
        if key in ("_root", "_keypath"):
            raise AttributeError(key)
        return super().__getattr__(key)


class _Packetizer(paramiko.Packetizer):
    """paramiko's Packetizer with the handshake deadline kept as a time, not a timer thread.

    paramiko starts a ``threading.Timer`` per connection only to set a flag that its reader checks
    when the socket times out (every 0.1 s); starting and cancelling it cost ~0.13 ms of CPU per
    node. Checking the deadline at the same place gives the same timeout without the thread.
    """

    _deadline: float | None = None
    _done = False

    def start_handshake(self, timeout: float) -> None:
        if self._deadline is None:
            self._deadline = time.monotonic() + float(timeout)

    def handshake_timed_out(self) -> bool:
        return self._deadline is not None and not self._done and time.monotonic() > self._deadline

    def complete_handshake(self) -> None:
        if self._deadline is not None:
            self._done = True

    def _log(self, level: int, msg: object) -> None:
        # ~20 DEBUG lines a connection, each a call into logging that drops it.
        logger = self._Packetizer__logger  # type: ignore[attr-defined]
        if logger is not None and logger.isEnabledFor(level):
            super()._log(level, msg)


class ParamikoTransport(paramiko.Transport):
    """paramiko's Transport, acknowledging the server's unsolicited global requests at once.

    Right after auth, OpenSSH's sshd sends ``hostkeys-00@openssh.com`` (no reply wanted). Our TCP
    ACK for it is delayed (~40 ms) and sshd's next packet, the answer to our first channel open,
    waits for that ACK (Nagle on the server), so the first command of every fresh connection took
    ~45 ms longer (measured with strace). Setting TCP_QUICKACK sends the pending ACK right away.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.packetizer.__class__ = _Packetizer  # nothing ran on it yet: same state, other methods

    _filtered: dict[str, tuple[object, tuple[str, ...], tuple[str, ...]]] | None = None

    def _filter_algorithm(self, type_: str) -> tuple[str, ...]:
        # paramiko filters its preferred algorithms again at every read of a preference (~85 a
        # connection); keep the answer while the preference and the disabled list stay the same.
        default = getattr(self, "_preferred_" + type_)
        disabled = tuple(self.disabled_algorithms.get(type_, ()))
        if self._filtered is None:
            self._filtered = {}
        hit = self._filtered.get(type_)
        if hit is not None and hit[0] is default and hit[1] == disabled:
            return hit[2]
        result = tuple(x for x in default if x not in disabled)
        self._filtered[type_] = (default, disabled, result)
        return result

    def _log(self, level: int, msg: object, *args: object) -> None:
        # ~35 DEBUG lines a connection, each a call into logging that drops it.
        if self.logger.isEnabledFor(level):
            super()._log(level, msg, *args)

    def _parse_debug(self, m: paramiko.Message) -> None:
        # sshd sends a debug message per authorized_keys option; paramiko escapes each one byte
        # by byte for a DEBUG log line that is off unless someone enabled it.
        m.get_boolean()
        msg = m.get_string()
        m.get_string()
        if self.logger.isEnabledFor(logging.DEBUG):
            super()._log(logging.DEBUG, "Debug msg: " + paramiko.util.safe_string(msg).decode("ascii", "replace"))

    def _parse_global_request(self, m: paramiko.Message) -> None:
        super()._parse_global_request(m)
        if hasattr(socket, "TCP_QUICKACK") and isinstance(self.sock, socket.socket):
            try:
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            except OSError:
                pass
