"""``RankTable``: the per-rank table of ``mfctl watch``, the one widget that must scale.

A 1024-rank job changes nearly every cell every second. Textual's ``DataTable`` cannot keep up
with that: any ``update_cell`` bumps a table-wide counter that keys its render cache, so one
changed cell re-renders every visible cell through Rich (``bench/dashboard.py``, 1024 ranks at
200x60 on a 2-core machine: ~230 ms of CPU per refresh with ``update_cell``, ~25 ms with this
widget). ``RankTable`` is a line-API widget: it keeps the values each rank's line was drawn from,
compares a new snapshot rank by rank, drops only the cached lines of ranks that changed, and
formats lines only for the rows on screen. Sorting and filtering produce a new list of rank
numbers (``mfctl.tui.rows``); nothing is rebuilt.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from mfctl.metrics.types import RankRow
from mfctl.tui.rows import (
    COLUMN_BY_KEY,
    COLUMNS,
    SORTABLE,
    STATE_STYLE,
    RankFilter,
    RowCells,
    row_cells,
    sort_ranks,
)


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
        self._latest: dict[int, RankRow] = {}
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

    def show(self, ranks: Sequence[RankRow], stragglers: Iterable[int] = ()) -> None:
        """Take a snapshot's ``ranks`` list; redraw what changed."""
        stragglers = frozenset(stragglers)
        latest: dict[int, RankRow] = {}
        raw: dict[int, tuple] = {}
        changed = 0
        lines = self._lines
        old_raw = self._raw
        for i, r in enumerate(ranks):
            n = r.get("rank", i)
            latest[n] = r
            values = (r.get("node"), r.get("step"), r.get("total_steps"), r.get("loss"),
                      r.get("step_time_ms"), r.get("samples_per_s"), r.get("tokens_per_s"), r.get("mfu"),
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
        self.sort_descending = COLUMN_BY_KEY[column].descending if descending is None else descending
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
        label = COLUMN_BY_KEY[self.sort_column].label
        text = f"ranks {len(self._order)}/{self.total_ranks} · sort {label} {arrow}"
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
            cached = self._lines.get(rank)
            if cached is None:
                cached = self._lines[rank] = self._row_strip(rank, base)
            strip = cached
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

