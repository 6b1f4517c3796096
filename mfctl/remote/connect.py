"""Opening transports for a job's nodes: local for the embedded default, SSH otherwise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mfctl.cluster.hostfile import HostEntry
from mfctl.remote.base import Transport


@dataclass(frozen=True)
class SshOptions:
    ssh_config: str | None = None
    accept_new_hosts: bool = False
    #: None: the ssh_config's ConnectTimeout, else 10 s (an explicit value wins, like ``ssh -o``).
    connect_timeout: float | None = None
    fanout: int = 64

    def to_json(self) -> dict[str, Any]:
        return {"ssh_config": self.ssh_config, "accept_new_hosts": self.accept_new_hosts,
                "connect_timeout": self.connect_timeout, "fanout": self.fanout}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SshOptions:
        return cls(data.get("ssh_config"), bool(data.get("accept_new_hosts", False)),
                   _seconds(data.get("connect_timeout")), int(data.get("fanout", 64)))


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)


def open_transport(entry: HostEntry, local_dir: str, opts: SshOptions) -> Transport:
    if entry.is_local:
        from mfctl.remote.local import LocalTransport

        return LocalTransport(local_dir)
    from mfctl.remote.ssh import SshTransport

    transport = SshTransport(
        entry.host, user=entry.user, port=entry.port, ssh_config_path=opts.ssh_config,
        connect_timeout=opts.connect_timeout, accept_new_hosts=opts.accept_new_hosts,
    )
    # Results are keyed by the node as the hosts file names it (user@host:port included).
    transport.host = entry.label
    return transport
