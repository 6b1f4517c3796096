"""Host names as msrun sees them: an ssh_config alias resolves to its HostName.

msrun on the nodes cannot resolve an alias that only exists in the controller's ssh_config, so
MASTER_ADDR must be the real address behind it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from mfctl.cluster.hostfile import HostEntry
from mfctl.errors import BadInput


def load_ssh_config(path: Path | None):
    """The parsed ssh_config: the given file, else ~/.ssh/config, else an empty one."""
    import paramiko

    if path is not None:
        if not path.is_file():
            raise BadInput(f"{path}: ssh_config not found; check --ssh-config")
        return paramiko.SSHConfig.from_path(str(path))
    default = Path.home() / ".ssh" / "config"
    if default.is_file():
        return paramiko.SSHConfig.from_path(str(default))
    return paramiko.SSHConfig()


def make_resolver(ssh_config: Path | None) -> Callable[[HostEntry], str]:
    config = None

    def resolve(entry: HostEntry) -> str:
        nonlocal config
        if config is None:
            config = load_ssh_config(ssh_config)
        return config.lookup(entry.host).get("hostname", entry.host)

    return resolve
