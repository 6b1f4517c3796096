"""What a rank's row says: its displayed state, its cells, the ``/`` filter and the sort order.

Pure functions of the snapshot's rank rows (``mfctl.metrics.types.RankRow``), so the table's
behaviour is tested without an app: ``RankTable`` (``mfctl.tui.table``) only draws what these
return. A rank's displayed state is its own state, except that a running rank the cluster calls a
straggler shows as ``straggler``: that is the colour a user scans for.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mfctl.metrics.types import RankRow, RankState
from mfctl.tui.format import as_number, fmt_loss, fmt_mfu, fmt_ms, fmt_rate, fmt_step

STATES: tuple[str, ...] = tuple(s.value for s in RankState)  # the states a rank reports
# The label a running rank gets in the table when the cluster reports it as a straggler.
STRAGGLER = "straggler"

# Row colours by displayed state. Plain Rich styles so the table reads the same in every theme.
STATE_STYLE: dict[str, str] = {
    "starting": "dim",
    "running": "",
    STRAGGLER: "#c38cff",
    "stalled": "#ffb000",
    "finished": "#5fd75f",
    "failed": "bold #ff5f5f",
}

# Problems first when the table is sorted by state.
_STATE_SEVERITY = {"failed": 0, "stalled": 1, STRAGGLER: 2, "starting": 3, "running": 4, "finished": 5}


def display_state(rank: RankRow, straggler: bool) -> str:
    """The state the row shows: ``straggler`` for a running rank the cluster calls one."""
    state = rank.get("state") or "starting"
    return STRAGGLER if straggler and state == "running" else state


@dataclass(frozen=True)
class ColumnSpec:
    key: str
    label: str
    width: int
    right: bool
    # Sort direction the column starts with: the useful end first (slowest, furthest behind, worst).
    descending: bool = False


COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("rank", "rank", 5, True),
    ColumnSpec("node", "node", 14, False),
    ColumnSpec("step", "step", 11, True),
    ColumnSpec("loss", "loss", 8, True, descending=True),
    ColumnSpec("step_ms", "step ms", 8, True, descending=True),
    ColumnSpec("samples", "samples/s", 10, True),
    ColumnSpec("tokens", "tokens/s", 9, True),
    # TFLOPS over the chip's peak (mfctl.metrics.mfu); the lowest first: the rank holding the others back.
    ColumnSpec("mfu", "MFU", 6, True),
    ColumnSpec("state", "state", 9, False),
    ColumnSpec("reason", "reason", 24, False),  # the least it gets: it widens to fill the pane
)
COLUMN_KEYS: tuple[str, ...] = tuple(c.key for c in COLUMNS)
SORTABLE: tuple[str, ...] = COLUMN_KEYS[:-1]  # reason: free text, sorting by it says nothing
COLUMN_BY_KEY: dict[str, ColumnSpec] = {c.key: c for c in COLUMNS}

RowCells = tuple[str, ...]  # one string per column, in COLUMNS order; the last one is the state label


def row_cells(rank: RankRow, straggler: bool = False) -> tuple[RowCells, str]:
    """The texts a rank's row shows, and its displayed state (which picks the row colour)."""
    state = display_state(rank, straggler)
    cells = (
        str(rank.get("rank", "?")),
        str(rank.get("node") or "-"),
        fmt_step(rank.get("step"), rank.get("total_steps")),
        fmt_loss(rank.get("loss")),
        fmt_ms(rank.get("step_time_ms")),
        fmt_rate(rank.get("samples_per_s")),
        fmt_rate(rank.get("tokens_per_s")),
        fmt_mfu(rank.get("mfu")),
        state,
        str(rank.get("reason") or ""),
    )
    return cells, state


_RANGE = re.compile(r"^(\d+)-(\d+)$")
_STATE_WORDS = {**{s: s for s in STATES}, STRAGGLER: STRAGGLER, "stragglers": STRAGGLER, "slow": STRAGGLER}


@dataclass(frozen=True)
class RankFilter:
    """What ``/`` typed: whitespace- or comma-separated terms; a row shows when ANY term matches.

    A term is a rank (``12``), a rank range (``8-15``), a state (``failed``, ``stalled``,
    ``straggler``/``slow``, ...) or else a substring of the node name. ``rank:``, ``state:`` and
    ``node:`` prefixes force the meaning (``node:10`` for a host literally named with digits).
    """

    ranks: frozenset[int] = frozenset()
    ranges: tuple[tuple[int, int], ...] = ()
    states: frozenset[str] = frozenset()
    nodes: tuple[str, ...] = ()
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> RankFilter:
        ranks: set[int] = set()
        ranges: list[tuple[int, int]] = []
        states: set[str] = set()
        nodes: list[str] = []
        for term in re.split(r"[\s,]+", text.strip().lower()):
            if not term:
                continue
            kind, _, value = term.partition(":")
            if not value:
                kind, value = "", term
            if kind in ("", "rank") and value.isdigit():
                ranks.add(int(value))
            elif kind in ("", "rank") and (m := _RANGE.match(value)):
                lo, hi = sorted((int(m.group(1)), int(m.group(2))))
                ranges.append((lo, hi))
            elif kind in ("", "state") and value in _STATE_WORDS:
                states.add(_STATE_WORDS[value])
            else:
                nodes.append(value if kind in ("node", "") else term)
        return cls(frozenset(ranks), tuple(ranges), frozenset(states), tuple(nodes), text.strip())

    @property
    def active(self) -> bool:
        return bool(self.ranks or self.ranges or self.states or self.nodes)

    def matches(self, rank: RankRow, straggler: bool = False) -> bool:
        if not self.active:
            return True
        r = rank.get("rank")
        if r in self.ranks or any(lo <= r <= hi for lo, hi in self.ranges if isinstance(r, int)):
            return True
        if self.states and (rank.get("state") in self.states
                            or display_state(rank, straggler) in self.states):
            return True
        node = str(rank.get("node") or "").lower()
        return any(n in node for n in self.nodes)


def _sort_value(column: str, rank: RankRow, straggler: bool) -> Any:
    if column == "rank":
        return rank.get("rank")
    if column == "node":
        return rank.get("node")
    if column == "state":
        return _STATE_SEVERITY.get(display_state(rank, straggler), 9)
    field = {"step": "step", "loss": "loss", "step_ms": "step_time_ms", "samples": "samples_per_s",
             "tokens": "tokens_per_s", "mfu": "mfu"}[column]
    v = as_number(rank.get(field))
    return None if v is None or math.isnan(v) else v


def sort_ranks(ranks: Iterable[RankRow], column: str, descending: bool,
               stragglers: frozenset[int] = frozenset()) -> list[int]:
    """Rank numbers ordered by ``column``; ties by rank, unknown values last in either direction."""
    by_rank = sorted(ranks, key=lambda r: r.get("rank", 0))
    known: list[tuple[Any, int]] = []
    unknown: list[int] = []
    for r in by_rank:
        n = r.get("rank", 0)
        v = _sort_value(column, r, n in stragglers)
        (unknown.append(n) if v is None else known.append((v, n)))
    # sorted() is stable with reverse=True too, so equal values stay in rank order.
    known.sort(key=lambda item: item[0], reverse=descending)
    return [n for _, n in known] + unknown
