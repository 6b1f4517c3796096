"""Host names as msrun sees them: an ssh_config alias resolves to its HostName.

msrun on the nodes cannot resolve an alias that only exists in the controller's ssh_config, so
MASTER_ADDR must be the real address behind it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from mfctl.cluster.hostfile import HostEntry


def make_resolver(ssh_config: Path | None) -> Callable[[HostEntry], str]:
    def resolve(entry: HostEntry) -> str:
        if entry.is_local:
            return entry.host
        from mfctl.remote.ssh import resolve_address

        return resolve_address(entry.host, ssh_config)

    return resolve
