"""One node's preflight facts, as ``mfctl/node/preflight.sh`` prints them.

``key value`` lines are values (``python 3.11.2``, ``stale 0``); ``@name line`` lines are one line
each of a tool's raw output (``@npu_info | 0  910B2 | OK | ...``, ``@link.3 link status: UP``),
read with the parsers of ``npu.py`` when a row asks. Standard library only (shipped to Slurm nodes
with ``preflight.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mfctl.cluster import npu


@dataclass(frozen=True)
class DeviceNet:
    """One device's NIC as ``hccn_tool`` says (None: not asked, or not read)."""

    device: int
    link: str | None
    net_health: str | None
    ip: str | None

    def to_json(self) -> dict[str, object]:
        return {"device": self.device, "link": self.link, "net_health": self.net_health, "ip": self.ip}


@dataclass
class NodeFacts:
    """One node's facts: ``values`` (``key value`` lines) and ``raw`` tool output (``@name`` lines)."""

    host: str
    node_rank: int
    values: dict[str, str] = field(default_factory=dict)
    raw: dict[str, list[str]] = field(default_factory=dict)

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.values.get(key, default)

    def text(self, name: str) -> str:
        return "\n".join(self.raw.get(name, []))

    @property
    def npu_smi(self) -> npu.NpuSmiInfo | None:
        if "npu_smi" not in self.values or self.values["npu_smi"] == "MISSING":
            return None
        return npu.parse_npu_smi_info(self.text("npu_info"))

    def health(self, npu_id: int) -> npu.Health | None:
        name = f"health.{npu_id}"
        return npu.parse_health(self.text(name)) if name in self.raw else None

    def net(self, device: int) -> DeviceNet:
        return DeviceNet(device, npu.parse_link(self.text(f"link.{device}")),
                         npu.parse_net_health(self.text(f"net_health.{device}")),
                         npu.parse_ip(self.text(f"ip.{device}")))

    def hccn_asked(self, device: int) -> bool:
        return f"link.{device}" in self.raw or f"net_health.{device}" in self.raw or f"ip.{device}" in self.raw

    def versions(self) -> dict[str, str]:
        """npu-smi's version (the driver's, as it says), and the driver, firmware and CANN
        toolkit versions of their version files."""
        out = {}
        info = self.npu_smi
        if info is not None and info.version:
            out["npu_smi"] = info.version
        for key in ("driver", "firmware", "cann"):
            v = npu.parse_version_file(self.text(f"{key}.info"))
            if v:
                out[key] = v
        return out

    def npu_json(self, devices: Sequence[int]) -> dict[str, object] | None:
        """``check --json``'s ``npu`` of this node (None: the NPU rows did not apply)."""
        if "npu_smi" not in self.values:
            return None
        info = self.npu_smi
        return {"chips": [c.to_json() for c in info.chips] if info else [],
                "links": [self.net(d).to_json() for d in devices if self.hccn_asked(d)],
                "versions": self.versions()}


def read_facts(host: str, node_rank: int, text: str) -> NodeFacts:
    """``preflight.sh``'s output as facts. ``@name line``: one line of a tool's raw output."""
    f = NodeFacts(host, node_rank)
    for line in text.splitlines():
        if line.startswith("@"):
            name, _, rest = line[1:].partition(" ")
            f.raw.setdefault(name, []).append(rest)
            continue
        key, _, value = line.partition(" ")
        if key:
            f.values[key] = value.strip()
    return f
