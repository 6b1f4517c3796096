"""Widgets of the ``mfctl watch`` dashboard, and the pure helpers they render with.

The per-rank table is the one piece that must scale: a 1024-rank job changes nearly every cell every
second. Textual's ``DataTable`` cannot keep up with that: any ``update_cell`` bumps a table-wide
counter that keys its render cache, so one changed cell re-renders every visible cell through Rich
(``bench/dashboard.py``, 1024 ranks at 200x60 on a 2-core machine: ~230 ms of CPU per refresh
with ``update_cell``, ~25 ms with this widget). ``RankTable`` is a line-API widget: it keeps the
values each rank's line was drawn from, compares a new snapshot rank by rank, drops only the cached
lines of ranks that changed, and formats lines only for the rows on screen. Sorting and filtering
produce a new list of rank numbers; nothing is rebuilt.

The helpers above the widgets (formatting, ``RankFilter``, ``sort_ranks``) are pure functions of the
snapshot dicts so they can be tested without an app. The plots are in ``mfctl.tui.plots``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Input, Static

from mfctl.metrics.ranks import rank_label

STATES = ("starting", "running", "stalled", "finished", "failed")
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


# --------------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------------

def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def fmt_rate(value: Any) -> str:
    """A throughput figure in at most 7 characters: ``812.3``, ``45.2k``, ``1.23M``."""
    v = _number(value)
    if v is None or math.isnan(v):
        return "-"
    a = abs(v)
    if a < 1_000:
        return f"{v:.1f}"
    if a < 1_000_000:
        return f"{v / 1_000:.1f}k"
    if a < 1_000_000_000:
        return f"{v / 1_000_000:.2f}M"
    return f"{v / 1_000_000_000:.2f}G"


def fmt_loss(value: Any) -> str:
    v = _number(value)
    if v is None:
        return "-"
    if math.isnan(v) or math.isinf(v):
        return str(v)
    return f"{v:.4f}"


def fmt_ms(value: Any) -> str:
    v = _number(value)
    return "-" if v is None or math.isnan(v) else f"{v:.0f}"


def fmt_step(step: Any, total: Any) -> str:
    if step is None:
        return "-"
    return f"{step}/{total}" if total else str(step)


def fmt_duration(seconds: Any) -> str:
    """``45s``, ``12m05s``, ``3h07m``, ``2d04h``; ``-`` when unknown or negative."""
    v = _number(seconds)
    if v is None or math.isnan(v) or math.isinf(v) or v < 0:
        return "-"
    s = int(v)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def fmt_clock(seconds: Any) -> str:
    """Elapsed time as ``H:MM:SS`` (``-`` when unknown)."""
    v = _number(seconds)
    if v is None or math.isnan(v) or v < 0:
        return "-"
    s = int(v)
    return f"{s // 3600}:{(s % 3600) // 60:02d}:{s % 60:02d}"


def display_state(rank: Mapping[str, Any], straggler: bool) -> str:
    state = rank.get("state") or "starting"
    return STRAGGLER if straggler and state == "running" else state


# --------------------------------------------------------------------------------------------------
# Columns, rows, filter, sort
# --------------------------------------------------------------------------------------------------

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
    ColumnSpec("state", "state", 9, False),
    ColumnSpec("reason", "reason", 24, False),  # the least it gets: it widens to fill the pane
)
COLUMN_KEYS: tuple[str, ...] = tuple(c.key for c in COLUMNS)
SORTABLE: tuple[str, ...] = COLUMN_KEYS[:-1]  # reason: free text, sorting by it says nothing
_SPEC = {c.key: c for c in COLUMNS}

RowCells = tuple[str, ...]  # one string per column, in COLUMNS order; the last one is the state label


def row_cells(rank: Mapping[str, Any], straggler: bool = False) -> tuple[RowCells, str]:
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

    def matches(self, rank: Mapping[str, Any], straggler: bool = False) -> bool:
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


def _sort_value(column: str, rank: Mapping[str, Any], straggler: bool) -> Any:
    if column == "rank":
        return rank.get("rank")
    if column == "node":
        return rank.get("node")
    if column == "state":
        return _STATE_SEVERITY.get(display_state(rank, straggler), 9)
    field = {"step": "step", "loss": "loss", "step_ms": "step_time_ms", "samples": "samples_per_s",
             "tokens": "tokens_per_s"}[column]
    v = _number(rank.get(field))
    return None if v is None or math.isnan(v) else v


def sort_ranks(ranks: Iterable[Mapping[str, Any]], column: str, descending: bool,
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


# --------------------------------------------------------------------------------------------------
# The rank table
# --------------------------------------------------------------------------------------------------

class RankTable(ScrollView, can_focus=True):
    """One line per rank under a fixed header row; a cursor selects a rank.

    Rows are drawn through the line API: ``show()`` only stores each rank's values and forgets the
    cached line of a rank whose values changed; ``render_line`` formats and caches lines for the
    rows actually on screen. So a refresh of 1024 changed ranks costs 1024 tuple comparisons plus
    one screenful of rows, and sorting or filtering is a new list of rank numbers.
    """

    DEFAULT_CSS = """
    RankTable {
        background: $surface;
    }
    RankTable > .rank-table--header {
        text-style: bold;
        background: $panel;
        color: $foreground;
    }
    RankTable > .rank-table--cursor {
        background: $block-cursor-blurred-background;
    }
    RankTable:focus > .rank-table--cursor {
        background: $block-cursor-background;
        text-style: bold;
    }
    """
    COMPONENT_CLASSES = {"rank-table--header", "rank-table--cursor"}
    BINDINGS = [
        Binding("up", "cursor(-1)", "up", show=False),
        Binding("down", "cursor(1)", "down", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("pagedown", "page(1)", "page down", show=False),
        Binding("home", "cursor_to(0)", "first", show=False),
        Binding("end", "cursor_to(-1)", "last", show=False),
    ]

    class SortChanged(Message):
        """The user picked a sort column by clicking a header."""

    class Selected(Message):
        """The cursor is on another rank now (the plots follow it)."""

        def __init__(self, rank: int | None) -> None:
            super().__init__()
            self.rank = rank

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.sort_column = "rank"
        self.sort_descending = False
        self.filter = RankFilter()
        self.total_ranks = 0
        self._latest: dict[int, Mapping[str, Any]] = {}
        self._raw: dict[int, tuple] = {}  # the values each rank's line was drawn from
        self._stragglers: frozenset[int] = frozenset()
        self._order: list[int] = []  # visible ranks, top to bottom
        self._index: dict[int, int] = {}  # rank -> its line in _order
        self._cursor_rank: int | None = None
        self._lines: dict[int, Strip] = {}  # rendered rows (without the cursor), by rank
        self._reason_width = COLUMNS[-1].width
        self._styles: tuple[Style, Style, Style] | None = None
        # What the last show() did, for tests and the benchmark.
        self.last_changed_rows = 0

    # -- public API ----------------------------------------------------------------------------

    def show(self, ranks: Sequence[Mapping[str, Any]], stragglers: Iterable[int] = ()) -> None:
        """Take a snapshot's ``ranks`` list; redraw what changed."""
        stragglers = frozenset(stragglers)
        latest: dict[int, Mapping[str, Any]] = {}
        raw: dict[int, tuple] = {}
        changed = 0
        lines = self._lines
        old_raw = self._raw
        for i, r in enumerate(ranks):
            n = r.get("rank", i)
            latest[n] = r
            values = (r.get("node"), r.get("step"), r.get("total_steps"), r.get("loss"),
                      r.get("step_time_ms"), r.get("samples_per_s"), r.get("tokens_per_s"),
                      r.get("state"), r.get("reason"), n in stragglers)
            raw[n] = values
            if old_raw.get(n) != values:
                changed += 1
                lines.pop(n, None)
        for gone in old_raw.keys() - raw.keys():
            lines.pop(gone, None)
        self._latest, self._raw, self._stragglers = latest, raw, stragglers
        self.total_ranks = len(latest)
        self.last_changed_rows = changed
        self._reorder()
        if changed:
            self.refresh()

    def set_filter(self, text: str) -> None:
        new = RankFilter.parse(text)
        if new != self.filter:
            self.filter = new
            self._reorder()
            self.refresh()

    def set_sort(self, column: str, descending: bool | None = None) -> None:
        if column not in SORTABLE:
            return
        self.sort_column = column
        self.sort_descending = _SPEC[column].descending if descending is None else descending
        self._reorder()
        self.refresh()

    def cycle_sort(self) -> None:
        i = SORTABLE.index(self.sort_column) if self.sort_column in SORTABLE else -1
        self.set_sort(SORTABLE[(i + 1) % len(SORTABLE)])

    def reverse_sort(self) -> None:
        self.set_sort(self.sort_column, not self.sort_descending)

    def selected_rank(self) -> int | None:
        return self._cursor_rank

    @property
    def cursor_row(self) -> int:
        """The cursor's line among the visible rows (0 when there are none)."""
        return self._row_of(self._cursor_rank)

    @property
    def visible_ranks(self) -> list[int]:
        return list(self._order)

    def row_texts(self, rank: int) -> RowCells:
        """What ``rank``'s row shows, column by column."""
        return row_cells(self._latest[rank], rank in self._stragglers)[0]

    def describe(self) -> str:
        """Summary for the table's border: rows shown, sort, filter."""
        arrow = "↓" if self.sort_descending else "↑"
        text = f"ranks {len(self._order)}/{self.total_ranks} · sort {_SPEC[self.sort_column].label} {arrow}"
        if self.filter.active:
            text += f" · filter {self.filter.text!r}"
        return text

    # -- order and cursor ----------------------------------------------------------------------

    def _reorder(self) -> None:
        f = self.filter
        strag = self._stragglers
        if f.active:
            visible = {n: r for n, r in self._latest.items() if f.matches(r, n in strag)}
        else:
            visible = self._latest
        if self.sort_column == "rank":
            order = sorted(visible, reverse=self.sort_descending)
        else:
            order = sort_ranks(visible.values(), self.sort_column, self.sort_descending, strag)
        if order == self._order:
            return
        old_row = self.cursor_row
        self._order = order
        self._index = {n: i for i, n in enumerate(order)}
        if self._cursor_rank not in self._index:
            # The selected rank left the view (filtered out): stay on the same line.
            self._select(order[min(old_row, len(order) - 1)] if order else None)
        self._update_virtual_size()
        self.refresh()

    def _select(self, rank: int | None) -> None:
        if rank != self._cursor_rank:
            self._cursor_rank = rank
            self.post_message(self.Selected(rank))

    def _row_of(self, rank: int | None) -> int:
        if rank is None or not self._order:
            return 0
        return self._index.get(rank, 0)

    def _update_virtual_size(self) -> None:
        size = Size(_FIXED_WIDTH + self._reason_width + 1, len(self._order) + 1)
        if size != self.virtual_size:
            self.virtual_size = size

    def _move_cursor_to(self, row: int) -> None:
        if not self._order:
            return
        row = max(0, min(row, len(self._order) - 1))
        self._select(self._order[row])
        # Keep the cursor between the header and the bottom edge.
        rows_visible = max(self.scrollable_content_region.height - 1, 1)
        top = round(self.scroll_y)
        if row < top:
            self.scroll_to(y=row, animate=False)
        elif row >= top + rows_visible:
            self.scroll_to(y=row - rows_visible + 1, animate=False)
        self.refresh()

    def action_cursor(self, delta: int) -> None:
        self._move_cursor_to(self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        page = max(self.scrollable_content_region.height - 2, 1)
        self._move_cursor_to(self.cursor_row + direction * page)

    def action_cursor_to(self, row: int) -> None:
        self._move_cursor_to(row if row >= 0 else len(self._order) - 1)

    # -- drawing -------------------------------------------------------------------------------

    def on_resize(self) -> None:
        width = max(COLUMNS[-1].width, self.scrollable_content_region.width - _FIXED_WIDTH - 1)
        if width != self._reason_width:
            self._reason_width = width
            self._lines.clear()
            self._update_virtual_size()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        # New CSS, theme or focus state: the cached styles and lines carry the old colours.
        self._styles = None
        self._lines.clear()

    def _get_styles(self) -> tuple[Style, Style, Style]:
        """(base, header, cursor) Rich styles; computing them per line would dominate a repaint."""
        if self._styles is None:
            base = self.rich_style
            cursor = self.get_component_rich_style("rank-table--cursor")
            # Only the cursor's background and weight: the row keeps its state colour.
            self._styles = (base, base + self.get_component_rich_style("rank-table--header"),
                            Style(bgcolor=cursor.bgcolor, bold=cursor.bold))
        return self._styles

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base, header, cursor = self._get_styles()
        if y == 0:
            strip = self._header_strip(header)
        else:
            row = scroll_y + y - 1
            if row >= len(self._order):
                return Strip.blank(width, base)
            rank = self._order[row]
            strip = self._lines.get(rank)
            if strip is None:
                strip = self._lines[rank] = self._row_strip(rank, base)
            if rank == self._cursor_rank:
                # On top of the row's styles (Strip.apply_style would put it underneath).
                strip = Strip(Segment.apply_style(strip, post_style=cursor), strip.cell_length)
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def _cells_to_strip(self, cells: Sequence[str], style: Style) -> Strip:
        segments = [Segment(" ", style)]
        for i, spec in enumerate(COLUMNS):
            width = self._reason_width if i == len(COLUMNS) - 1 else spec.width
            segments.append(Segment(_fit(cells[i], width, spec.right) + " ", style))
        return Strip(segments, _FIXED_WIDTH + self._reason_width + 1)

    def _header_strip(self, style: Style) -> Strip:
        labels = []
        for spec in COLUMNS:
            label = spec.label
            if spec.key == self.sort_column:
                label += "↓" if self.sort_descending else "↑"
            labels.append(label)
        return self._cells_to_strip(labels, style)

    def _row_strip(self, rank: int, base: Style) -> Strip:
        cells, state = row_cells(self._latest[rank], rank in self._stragglers)
        return self._cells_to_strip(cells, base + _state_style(state))

    # -- mouse ---------------------------------------------------------------------------------

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        self.focus()
        if offset.y == 0:
            column = _column_at(offset.x + round(self.scroll_x))
            if column is None or column not in SORTABLE:
                return
            if column == self.sort_column:
                self.reverse_sort()
            else:
                self.set_sort(column)
            self.post_message(self.SortChanged())
        else:
            row = round(self.scroll_y) + offset.y - 1
            if 0 <= row < len(self._order):
                self._select(self._order[row])
                self.refresh()


# Each column is drawn as its width plus one space, after one leading space.
_FIXED_WIDTH = 1 + sum(c.width + 1 for c in COLUMNS[:-1])


def _column_at(x: int) -> str | None:
    edge = 1
    for spec in COLUMNS[:-1]:
        edge += spec.width + 1
        if x < edge:
            return spec.key
    return COLUMNS[-1].key


def _fit(text: str, width: int, right: bool) -> str:
    """``text`` in exactly ``width`` cells: padded, or cut with an ellipsis."""
    length = cell_len(text)
    if length > width:
        return set_cell_size(text, width - 1) + "…"
    pad = " " * (width - length)
    return pad + text if right else text + pad


_STYLE_CACHE: dict[str, Style] = {}


def _state_style(state: str) -> Style:
    style = _STYLE_CACHE.get(state)
    if style is None:
        style = _STYLE_CACHE[state] = Style.parse(STATE_STYLE.get(state, "") or "none")
    return style


# --------------------------------------------------------------------------------------------------
# Header, alerts, filter input
# --------------------------------------------------------------------------------------------------

_CLUSTER_STYLE = {"failed": STATE_STYLE["failed"], "stalled": "bold " + STATE_STYLE["stalled"],
                  "finished": "bold " + STATE_STYLE["finished"], "running": "bold", "starting": "dim"}


def header_text(job: Mapping[str, Any], cluster: Mapping[str, Any], elapsed_s: float | None) -> Text:
    """Two lines: what the job is, then where it stands."""
    nodes = job.get("nodes", "?")
    devices = job.get("devices_per_node", "?")
    world = cluster.get("world_size") or job.get("world_size", "?")
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("job ", style="dim").append(str(job.get("id", "?")), style="bold")
    if job.get("name"):
        text.append(f"  {job['name']}")
    text.append("  model ", style="dim").append(str(job.get("model", "?")), style="bold")
    text.append("  ", style="dim").append(f"{nodes} nodes x {devices} devices", style="bold")
    text.append(f" = {world} ranks", style="dim")
    text.append("\n")

    state = str(cluster.get("state") or "starting")
    text.append(state.upper(), style=_CLUSTER_STYLE.get(state, "bold"))
    step, total = cluster.get("step"), cluster.get("total_steps")
    text.append("  step ", style="dim").append(fmt_step(step, total), style="bold")
    if _number(step) is not None and _number(total):
        text.append(f" ({100.0 * step / total:.1f}%)", style="dim")
    text.append("  ETA ", style="dim").append(fmt_duration(cluster.get("eta_s")), style="bold")
    text.append("  tokens/s ", style="dim").append(fmt_rate(cluster.get("tokens_per_s")), style="bold")
    text.append("  samples/s ", style="dim").append(fmt_rate(cluster.get("samples_per_s")), style="bold")
    text.append("  loss ", style="dim").append(fmt_loss(cluster.get("loss")), style="bold")
    text.append("  elapsed ", style="dim").append(fmt_clock(elapsed_s), style="bold")
    stragglers = len(cluster.get("stragglers") or ())
    failed = len(cluster.get("failed_ranks") or ())
    finished = len(cluster.get("finished_ranks") or ())
    if stragglers:
        text.append(f"  {stragglers} straggler{'s' if stragglers != 1 else ''}", style=STATE_STYLE[STRAGGLER])
    if failed:
        text.append(f"  {failed} failed", style=STATE_STYLE["failed"])
    if finished:
        text.append(f"  {finished} finished", style=STATE_STYLE["finished"])
    return text


ALERT_STYLE = {"failed": STATE_STYLE["failed"], "error": STATE_STYLE["failed"],
               "stalled": STATE_STYLE["stalled"], "straggler": STATE_STYLE[STRAGGLER],
               "overflow": STATE_STYLE["stalled"], "finished": STATE_STYLE["finished"]}


def _alert_time(a: Mapping[str, Any]) -> float:
    """When an alert last grew (a grouped alert gains ranks after it is raised)."""
    times = [t for t in (_number(a.get("time")), _number(a.get("last_time"))) if t is not None]
    return max(times) if times else 0.0


def _alert_ranks(a: Mapping[str, Any]) -> str:
    """``rank 5`` / ``ranks 0-1023 (1024)`` (the state's own label), or "" for a launcher alert."""
    ranks = a.get("ranks")
    if isinstance(ranks, (list, tuple)) and len(ranks) > 1:
        return rank_label(ranks)
    if a.get("rank") is not None:
        return f"rank {a['rank']}"
    if isinstance(ranks, (list, tuple)) and ranks:
        return f"rank {ranks[0]}"
    return ""


def alerts_text(alerts: Sequence[Mapping[str, Any]], now: float, limit: int) -> Text:
    """The newest ``limit`` alerts grouped by kind: kinds in the order of their newest alert, each
    kind's alerts newest first; ages relative to ``now`` (the app's clock).

    Each alert is a heading line (age, kind, its ranks, step) and its message on the next line
    (without the ranks, which the heading names), which the panel wraps: the panel is narrow and
    the message is the part worth reading whole. A grouped alert (one event on many ranks) is one
    entry: ``ranks 0-1023 (1024)``.
    """
    newest = sorted(alerts, key=_alert_time, reverse=True)[:limit]
    kind_order: dict[str, int] = {}
    for a in newest:
        kind_order.setdefault(str(a.get("kind") or "alert"), len(kind_order))
    newest.sort(key=lambda a: kind_order[str(a.get("kind") or "alert")])  # stable: newest first per kind
    text = Text()
    if not newest:
        return text.append("no alerts", style="dim")
    for i, a in enumerate(newest):
        t = _alert_time(a) if a.get("time") is not None or a.get("last_time") is not None else None
        age = fmt_duration(now - t) if t is not None else "-"
        kind = str(a.get("kind") or "alert")
        text.append(f"{age} ago ", style="dim")
        text.append(kind, style=ALERT_STYLE.get(kind) or "bold")
        ranks = _alert_ranks(a)
        if ranks:
            text.append(f"  {ranks}", style="bold")
        if a.get("step") is not None:
            text.append(f"  step {a['step']}", style="dim")
        text.append("\n")
        message = str(a.get("message") or "")
        if ranks and message.startswith(ranks + ": "):
            message = message[len(ranks) + 2:]
        text.append(f"  {message}")
        if i < len(newest) - 1:
            text.append("\n")
    return text


class HeaderBar(Static):
    """The job line and the cluster line."""


class AlertsPanel(Static):
    """Alerts, newest first (the app caps how many)."""


class FilterInput(Input):
    """The ``/`` filter box. Escape clears it and gives the focus back to the table."""

    BINDINGS = [Binding("escape", "cancel", "clear filter", show=False)]

    class Cancelled(Message):
        pass

    def action_cancel(self) -> None:
        self.value = ""
        self.post_message(self.Cancelled())
