"""What Ascend's own tools print, read into typed values (pure: the node preflight runs the tools).

``npu-smi info`` is a box-drawn table whose layout changed over the driver versions:
- 23.x-25.x: 98 columns; each NPU has a first row (``NPU Name | Health | Power Temp Hugepages``)
  and a chip row (``Chip | Bus-Id | AICore Memory-Usage HBM-Usage``); a used HBM of five digits
  loses the space before its slash (``64293/ 65536``);
- 26.x: 116 columns, the process table gains a "Process id in container" column;
- A3: two die rows per NPU, each a first row and a chip row whose first cell is ``Chip Phy-ID``;
- the 310 family: ``Chip Device`` and no HBM column (a 310 has no HBM);
- the process table: ``NPU Chip | pid | name | MB`` rows, names cut to the column's width, or
  ``No running processes found in NPU N``.

A chip's ``id`` is the device id the job's workers and ``hccn_tool -i`` use: the second number of
the chip row (A3's Phy-ID, the 310's Device) when there is one, else the NPU id (one chip per NPU).

Nothing here raises on odd input: a line it cannot read is kept (``unreadable``, the first one)
for a warning that quotes it.

This module and ``preflight.py`` import only the standard library: a Slurm job ships them to its
nodes, where they judge the facts with the same code as the controller does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The 310 series (310, 310B, 310P...) runs inference only.
_INFERENCE_CHIP = re.compile(r"^(Ascend)?310", re.IGNORECASE)
_PAIR = re.compile(r"(\d+|NA|-)\s*/\s*(\d+|NA|-)")
_NO_PROCS = re.compile(r"No running processes found in NPU\s+(\d+)", re.IGNORECASE)
_VERSION = re.compile(r"Version:\s*(\S+)")


def is_inference_chip(name: str) -> bool:
    return bool(_INFERENCE_CHIP.match(name.strip()))


@dataclass(frozen=True)
class NpuProcess:
    pid: int
    name: str
    memory_mb: int

    def to_json(self) -> dict[str, object]:
        return {"pid": self.pid, "name": self.name, "memory_mb": self.memory_mb}


@dataclass(frozen=True)
class Chip:
    """One chip (an A3 NPU has two): ``id`` is its device id."""

    id: int
    npu: int
    chip: int
    name: str
    health: str
    hbm_used_mb: int | None
    hbm_total_mb: int | None
    processes: tuple[NpuProcess, ...] = ()

    @property
    def inference_only(self) -> bool:
        return is_inference_chip(self.name)

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "npu": self.npu, "chip": self.chip, "name": self.name, "health": self.health,
                "hbm_used_mb": self.hbm_used_mb, "hbm_total_mb": self.hbm_total_mb,
                "processes": [p.to_json() for p in self.processes]}


@dataclass(frozen=True)
class NpuSmiInfo:
    """``npu-smi info``: its version (the driver's), every chip, and the first line not understood."""

    version: str | None
    chips: tuple[Chip, ...]
    unreadable: str | None = None
    #: Every process row read, as (NPU id, chip, process); a chip's own are also in its ``processes``.
    processes: tuple[tuple[int, int, NpuProcess], ...] = ()

    def chip(self, device: int) -> Chip | None:
        return next((c for c in self.chips if c.id == device), None)


def _cells(line: str) -> list[str] | None:
    """The cells of a table row (``| a | b |``), or None for a border or anything else."""
    s = line.strip()
    if not s.startswith("|"):
        return None
    return [c.strip() for c in s.strip("|").split("|")]


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def parse_npu_smi_info(text: str) -> NpuSmiInfo:
    """Read ``npu-smi info`` (any layout above)."""
    version: str | None = None
    unreadable: str | None = None
    hbm_column: bool | None = None  # unknown until the header says (an excerpt may lack it)
    section = ""  # "devices" or "processes", after their header rows
    pending: tuple[int, str, str, str] | None = None  # an NPU's first row (and the line), waiting for its chip row
    chips: list[Chip] = []
    procs: dict[tuple[int, int], list[NpuProcess]] = {}
    seen_table = False

    def bad(line: str) -> None:
        nonlocal unreadable
        if unreadable is None:
            unreadable = line.strip()

    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith("+"):
            seen_table = True
            continue
        cells = _cells(s)
        if cells is None:
            bad(line)
            continue
        seen_table = True
        first = cells[0]
        words = first.split()
        if first.startswith("npu-smi"):
            m = _VERSION.search(s)
            version = m.group(1) if m else (words[1] if len(words) > 1 else None)
            continue
        if words[:2] == ["NPU", "Name"] or (words[:1] == ["NPU"] and "Health" in cells[1:2]):
            section = "devices"
            continue
        if words[:1] == ["Chip"] and section == "devices":
            hbm_column = "HBM" in s
            continue
        if words[:2] == ["NPU", "Chip"] or "Process id" in s:
            section = "processes"
            continue
        m = _NO_PROCS.search(s)
        if m:
            section = "processes"
            continue
        if section == "" and len(words) >= 2 and words[0].isdigit() and not words[1].isdigit() and len(cells) >= 3:
            section = "devices"  # a table without its header (cut): its rows say what they are
        if section == "devices":
            # The rows alternate: an NPU's first row (id, name, health), then its chip row.
            if pending is None and len(words) >= 2 and words[0].isdigit() and len(cells) >= 3:
                pending = (int(words[0]), " ".join(words[1:]), cells[1].split()[0] if cells[1] else "", s)
                continue
            if pending is not None and words and len(words) <= 2 and all(w.isdigit() for w in words) \
                    and len(cells) >= 3:
                npu, name, health, _ = pending
                pending = None
                chip_no = int(words[0])
                device = int(words[1]) if len(words) == 2 else npu
                pairs = _PAIR.findall(cells[2])
                used = total = None
                if hbm_column or (hbm_column is None and len(pairs) >= 2):
                    if len(pairs) >= 2:  # Memory-Usage, then HBM-Usage
                        used, total = _int(pairs[-1][0]), _int(pairs[-1][1])
                    else:
                        bad(line)  # the row is cut before its HBM
                chips.append(Chip(device, npu, chip_no, name, health, used, total))
                continue
            pending = None
            bad(line)
            continue
        if section == "processes":
            nums = first.split()
            if len(nums) == 2 and all(n.isdigit() for n in nums) and len(cells) >= 4 and cells[1].isdigit():
                memory = re.match(r"\d+", cells[3])
                if memory:
                    key = (int(nums[0]), int(nums[1]))
                    procs.setdefault(key, []).append(NpuProcess(int(cells[1]), cells[2], int(memory.group())))
                    continue
            bad(line)
            continue
        bad(line)
    if pending is not None:
        bad(pending[3])  # a first row without its chip row
    if not seen_table and unreadable is None:
        unreadable = "(no output)"
    with_procs = tuple(
        Chip(c.id, c.npu, c.chip, c.name, c.health, c.hbm_used_mb, c.hbm_total_mb,
             tuple(procs.get((c.npu, c.chip), ())))
        for c in chips)
    every = tuple((npu_id, chip_no, p) for (npu_id, chip_no), ps in procs.items() for p in ps)
    return NpuSmiInfo(version, with_procs, unreadable, every)


@dataclass(frozen=True)
class Health:
    """``npu-smi info -t health -i N -c 0``."""

    status: str | None
    code: str | None
    info: str | None


def parse_health(text: str) -> Health:
    """``Health Status : Alarm`` / ``Error Code : ...`` / ``Error Information : ...`` (the information
    may run over several lines, and the codes may be several, space-separated)."""
    fields: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        k = " ".join(key.split()).lower()
        if colon and k in ("health status", "error code", "error information"):
            current = k
            fields[k] = [value.strip()]
        elif current is not None and line.strip():
            fields[current].append(line.strip())

    def get(k: str) -> str | None:
        v = " ".join(x for x in fields.get(k, []) if x)
        return v or None

    return Health(get("health status"), get("error code"), get("error information"))


# --------------------------------------------------------------------------- hccn_tool

def _after(text: str, key: str) -> str | None:
    """The value after ``key:`` on the first line that starts with it (case-insensitive)."""
    for line in text.splitlines():
        k, colon, value = line.partition(":")
        if colon and k.strip().lower() == key:
            return value.strip()
    return None


def parse_link(text: str) -> str | None:
    """``hccn_tool -i N -link -g``: ``link status: UP`` -> ``UP``."""
    return _after(text, "link status")


def parse_net_health(text: str) -> str | None:
    """``hccn_tool -i N -net_health -g``: ``net health status: Success`` -> ``Success``."""
    return _after(text, "net health status")


def parse_ip(text: str) -> str | None:
    """``hccn_tool -i N -ip -g``: ``ipaddr:10.20.11.24`` -> the address."""
    return _after(text, "ipaddr")


@dataclass(frozen=True)
class Ping:
    sent: int
    received: int

    @property
    def lost(self) -> bool:
        return self.received < self.sent or self.sent == 0


_PING = re.compile(r"(\d+)\s+packets transmitted,\s*(\d+)\s+received")


def parse_ping(text: str) -> Ping | None:
    """``hccn_tool -i N -ping -g address A``: ``3 packets transmitted, 3 received, 0.00% packet loss``."""
    m = _PING.search(text)
    return Ping(int(m.group(1)), int(m.group(2))) if m else None


def parse_version_file(text: str, key: str = "version") -> str | None:
    """``Version=24.1.rc1`` of a driver/firmware ``version.info``, or ``version=8.5.0`` of CANN's
    ``ascend_toolkit_install.info`` (the first ``key=`` line, case-insensitive)."""
    for line in text.splitlines():
        k, eq, value = line.partition("=")
        if eq and k.strip().lower() == key:
            return value.strip() or None
    return None
