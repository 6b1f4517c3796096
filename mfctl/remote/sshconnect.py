"""Building blocks of an OpenSSH-like connection for ``SshTransport``.

The hosts-file name split, the Fabric Connection that runs ProxyCommand like ssh does, the
attribution of a failure to a ProxyJump hop, and the one-line reason for every connect failure.
"""

from __future__ import annotations

import errno
import os
import shlex
import socket

import paramiko
from fabric import Connection
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
