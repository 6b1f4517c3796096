"""Host names as msrun sees them: an ssh_config alias resolves to its HostName.

msrun on the nodes cannot resolve an alias that only exists in the controller's ssh_config, so
MASTER_ADDR must be the real address behind it, as ``ssh -G`` resolves it for that node's user
and port (a ``Match user`` block may choose another HostName).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from mfctl.cluster.hostfile import HostEntry


def make_resolver(ssh_config: Path | None,
                  entries: Iterable[HostEntry] = ()) -> Callable[[HostEntry], str]:
    """``entries``, when given, are resolved in parallel up front (``ssh -G`` costs ~6 ms each)."""
    remote = [e for e in entries if not e.is_local]
    if len(remote) > 1:
        from mfctl.remote.sshconfig import prefetch

        prefetch([(e.host, e.user, e.port) for e in remote], ssh_config)

    def resolve(entry: HostEntry) -> str:
        if entry.is_local:
            return entry.host
        from mfctl.remote.sshconfig import resolve as ssh_resolve

        return ssh_resolve(entry.host, ssh_config, user=entry.user, port=entry.port).hostname

    return resolve
