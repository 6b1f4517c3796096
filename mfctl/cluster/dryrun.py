"""MindSpore DryRun output: which ranks to simulate and what memory each reports (pure).

DryRun (``MS_SIMULATION_LEVEL=1``) compiles one rank's real graph without a card and ends its log
with MindSpore's memory statistic. Since MindSpore 2.3 (O0/O1) it reads
``Used peak memory usage (without fragments): 48874M`` and
``Actual peak memory usage (with fragments): 48874M``; the O2 (GE) form is
``Total Static Memory size: 496M`` and ``Total Dynamic memory size: 0M``. One rank per pipeline
stage is enough: ``RANK_ID = stage x world / pp`` (as MindFormers' pipeline_balance dryrun.sh).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MIB = 1024 ** 2
_PATTERNS = {
    "used_peak": r"Used peak memory usage \(without fragments\):\s*(\d+)M",
    "actual_peak": r"Actual peak memory usage(?: \(with fragments\))?:\s*(\d+)M",
    "static": r"Total Static Memory size:\s*(\d+)M",
    "dynamic": r"Total Dynamic memory size:\s*(\d+)M",
    "device": r"Device (?:HBM|MOC) memory size:\s*(\d+)M",
}


@dataclass(frozen=True, slots=True)
class DryRunMemory:
    """One rank's memory as DryRun printed it, in MiB (None: not printed)."""

    used_peak: int | None = None
    actual_peak: int | None = None
    static: int | None = None
    dynamic: int | None = None
    device: int | None = None

    @property
    def peak_mib(self) -> int | None:
        """The peak to hold against the limit: with fragments, else without, else O2's static +
        dynamic."""
        if self.actual_peak is not None:
            return self.actual_peak
        if self.used_peak is not None:
            return self.used_peak
        if self.static is not None:
            return self.static + (self.dynamic or 0)
        return None

    def to_json(self) -> dict[str, Any]:
        return {"used_peak_mib": self.used_peak, "actual_peak_mib": self.actual_peak,
                "static_mib": self.static, "dynamic_mib": self.dynamic,
                "peak_gb": None if self.peak_mib is None else round(self.peak_mib / 1024, 2)}


def parse_dryrun(text: str) -> DryRunMemory | None:
    """The last memory statistic in a DryRun log; None when it printed none."""
    found: dict[str, int] = {}
    for key, pattern in _PATTERNS.items():
        values = re.findall(pattern, text)
        if values:
            found[key] = int(values[-1])
    if not any(k in found for k in ("used_peak", "actual_peak", "static")):
        return None
    return DryRunMemory(**found)


def stage_ranks(world_size: int, pipeline_stage: int) -> list[tuple[int, int]]:
    """(stage, rank) of the first rank of every pipeline stage."""
    per = world_size // pipeline_stage
    return [(s, s * per) for s in range(pipeline_stage)]
