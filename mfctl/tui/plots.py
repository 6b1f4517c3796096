"""The dashboard's plots: braille line charts of one metric over steps.

Each plot draws the band of all ranks (min..max over ranks at each step, filled, with the median
as a lighter line inside) and the selected rank's line over it, so one rank can be read against the
others and a straggler shows as a line riding the edge of the step-time band. The data comes
bounded from the source (``mfctl.metrics.series``); drawing is a pure function of it
(``band_plot``), cheap enough for every refresh: a few hundred points per plot, whatever the
number of ranks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rich.text import Text
from textual.widget import Widget

from mfctl.tui.format import fmt_rate

# Braille dot bits: column 0 (left) and 1 (right), rows 0..3 top to bottom.
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))


def _line_dots(pts: Sequence[tuple[float, float]], x0: float, x1: float, y0: float, y1: float,
               cols: int, rows: int) -> set[tuple[int, int]]:
    """The (dot column, dot row) of a line through ``pts`` scaled into ``cols`` x ``rows`` dots.

    Points are binned by x onto the dot columns (the mean of each bin), and neighbouring columns
    are joined by a vertical run of dots so the line stays continuous.
    """
    sums = [0.0] * cols
    counts = [0] * cols
    span = x1 - x0
    for x, y in pts:
        c = 0 if span == 0 else min(cols - 1, max(0, int((x - x0) / span * (cols - 1) + 0.5)))
        sums[c] += y
        counts[c] += 1
    dots: set[tuple[int, int]] = set()
    prev: tuple[int, int] | None = None  # (column, row) of the last plotted point
    for c in range(cols):
        if not counts[c]:
            continue
        r = _row(sums[c] / counts[c], y0, y1, rows)
        if prev is None:
            dots.add((c, r))
        else:
            # Walk the columns from the previous point, joining each to the last by a vertical run.
            pc, pr = prev
            last = pr
            for cc in range(pc + 1, c + 1):
                target = round(pr + (r - pr) * (cc - pc) / (c - pc))
                for rr in range(min(last, target), max(last, target) + 1):
                    dots.add((cc, rr))
                last = target
        prev = (c, r)
    return dots


def _row(y: float, y0: float, y1: float, rows: int) -> int:
    if y1 == y0:
        return rows // 2
    return min(rows - 1, max(0, round((y1 - y) / (y1 - y0) * (rows - 1))))


def _finite(points: Iterable[tuple[Any, Any]]) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in points
            if isinstance(y, (int, float)) and math.isfinite(y) and isinstance(x, (int, float))]


def braille_plot(points: Sequence[tuple[float, float]], width: int, height: int) -> list[str]:
    """Draw ``(x, y)`` points as a line in ``width`` x ``height`` braille cells, scaled between the
    data's min and max."""
    width, height = max(width, 1), max(height, 1)
    grid = [[0] * width for _ in range(height)]
    pts = _finite(points)
    if pts:
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        for c, r in _line_dots(pts, min(xs), max(xs), min(ys), max(ys), width * 2, height * 4):
            grid[r // 4][c // 2] |= _DOTS[r % 4][c % 2]
    return ["".join(chr(0x2800 + bits) for bits in line) for line in grid]


# What a plot cell shows, lowest to highest: the band's layer under the median's under the rank's.
EMPTY, BAND, MEDIAN, LINE = 0, 1, 2, 3
Band = Sequence[tuple[float, float, float, float]]  # (step, min, median, max)


def band_plot(band: Band, line: Sequence[tuple[float, float]], width: int, height: int,
              log: bool = False) -> tuple[list[list[tuple[str, int]]], tuple[float, float] | None]:
    """The cluster's band (min..max over ranks, filled), its median, and one rank's line over them,
    in ``width`` x ``height`` braille cells. Returns rows of ``(character, layer)`` cells (the top
    layer with dots in that cell) and the plotted y range (None when there is nothing to draw).
    With ``log`` the y axis is logarithmic (values <= 0 are left out)."""
    width, height = max(width, 1), max(height, 1)
    cols, rows = width * 2, height * 4
    f = (lambda v: math.log10(v) if v > 0 else math.nan) if log else (lambda v: v)
    bnd = [(float(s), f(lo), f(md), f(hi)) for s, lo, md, hi in band]
    bnd = [b for b in bnd if all(math.isfinite(v) for v in b)]
    pts = [(x, f(y)) for x, y in _finite(line)]
    pts = [p for p in pts if math.isfinite(p[1])]
    blank = [[("\u2800", EMPTY)] * width for _ in range(height)]
    if not bnd and not pts:
        return blank, None
    xs = [b[0] for b in bnd] + [p[0] for p in pts]
    ys = [b[1] for b in bnd] + [b[3] for b in bnd] + [p[1] for p in pts]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    layers = [[[0] * width for _ in range(height)] for _ in range(3)]  # band, median, line bits

    def put(layer: int, c: int, r: int) -> None:
        layers[layer][r // 4][c // 2] |= _DOTS[r % 4][c % 2]

    if bnd:
        # Per dot column the widest range of the steps binned there, filled top to bottom.
        lo_col: dict[int, float] = {}
        hi_col: dict[int, float] = {}
        span = x1 - x0
        for s, lo, _, hi in bnd:
            c = 0 if span == 0 else min(cols - 1, int((s - x0) / span * (cols - 1) + 0.5))
            lo_col[c] = min(lo, lo_col.get(c, lo))
            hi_col[c] = max(hi, hi_col.get(c, hi))
        # Dot columns between two steps' columns take the range of the one before: a filled area.
        known = sorted(lo_col)
        for i, c in enumerate(known):
            top, bottom = _row(hi_col[c], y0, y1, rows), _row(lo_col[c], y0, y1, rows)
            for cc in range(c, known[i + 1] if i + 1 < len(known) else c + 1):
                for r in range(top, bottom + 1):
                    put(0, cc, r)
        for c, r in _line_dots([(b[0], b[2]) for b in bnd], x0, x1, y0, y1, cols, rows):
            put(1, c, r)
    if pts:
        for c, r in _line_dots(pts, x0, x1, y0, y1, cols, rows):
            put(2, c, r)
    out = []
    for y in range(height):
        row = []
        for x in range(width):
            band_bits, median_bits, line_bits = layers[0][y][x], layers[1][y][x], layers[2][y][x]
            if line_bits:
                row.append((chr(0x2800 + line_bits), LINE))
            elif median_bits:
                row.append((chr(0x2800 + (median_bits | band_bits)), MEDIAN))
            elif band_bits:
                row.append((chr(0x2800 + band_bits), BAND))
            else:
                row.append(("\u2800", EMPTY))
        out.append(row)
    return out, ((10 ** y0, 10 ** y1) if log else (y0, y1))


def _axis(value: float) -> str:
    a = abs(value)
    if a >= 1000:
        return fmt_rate(value)
    if a >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


# The band is the backdrop, the median a quiet line in it, the selected rank's line stands out.
_LAYER_STYLE = {EMPTY: "", BAND: "#4e5a78", MEDIAN: "#9aa7c7", LINE: "bold #ffd75f"}


class SeriesPlot(Widget):
    """One metric: the band of all ranks (min..max filled, median inside) and the selected rank's
    line over it, with the y range on the left. A source without bands gives one cluster line."""

    AXIS = 7

    def __init__(self, title: str, fmt: Callable[[Any], str] = fmt_rate, *, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.title = title
        self.fmt = fmt
        self.border_title = title
        self.log_scale = False
        self._band: tuple = ()
        self._line: tuple = ()
        self._rank: int | None = None

    def set_points(self, points: Sequence[tuple[float, float]]) -> None:
        """One cluster line, no band (a source without per-rank data)."""
        self.set_series((), points, None)

    def set_series(self, band: Band, line: Sequence[tuple[float, float]], rank: int | None) -> None:
        band, line = tuple(band), tuple((p[0], p[1]) for p in line)
        if (band, line, rank) == (self._band, self._line, self._rank):
            return
        self._band, self._line, self._rank = band, line, rank
        self._retitle()
        self.refresh()

    def set_log(self, log: bool) -> None:
        if log != self.log_scale:
            self.log_scale = log
            self._retitle()
            self.refresh()

    def _retitle(self) -> None:
        title = self.title + (" (log)" if self.log_scale else "")
        if self._line:
            step, value = self._line[-1]
            who = f"rank {self._rank} " if self._rank is not None else ""
            title = f"{title}  {who}{self.fmt(value)} @ {int(step)}"
        elif self._rank is not None and self._band:
            title = f"{title}  rank {self._rank}: no data"
        self.border_title = title
        if self._band:
            _, lo, mid, hi = self._band[-1]
            self.border_subtitle = f"ranks {self.fmt(lo)}..{self.fmt(hi)} median {self.fmt(mid)}"
        else:
            self.border_subtitle = ""

    def render(self) -> Text:
        width, height = self.content_size
        if not self._band and not self._line:
            return Text("waiting for data", style="dim")
        if width <= self.AXIS + 1 or height < 1:
            return Text("")
        rows, yrange = band_plot(self._band, self._line, width - self.AXIS, height, self.log_scale)
        top = _axis(yrange[1]) if yrange else ""
        bottom = _axis(yrange[0]) if yrange else ""
        text = Text(no_wrap=True, overflow="crop")
        for i, row in enumerate(rows):
            label = top if i == 0 else bottom if i == len(rows) - 1 else ""
            text.append(f"{label:>{self.AXIS - 1}} ", style="dim")
            # One span per run of cells of the same layer.
            start = 0
            for j in range(1, len(row) + 1):
                if j == len(row) or row[j][1] != row[start][1]:
                    text.append("".join(ch for ch, _ in row[start:j]), style=_LAYER_STYLE[row[start][1]])
                    start = j
            if i < len(rows) - 1:
                text.append("\n")
        return text
