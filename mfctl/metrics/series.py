"""Plot series for the dashboard: the cluster's band over ranks and each rank's own line, bounded.

A 1024-rank job reports ~1024 points per step. The dashboard draws, per metric, the band of the
ranks (min / median / max at each step) and the selected rank's line over it, and any rank may be
selected at any moment. So every point goes to two places:

- ``RankSeries``: each rank's own points, thinned so the whole run fits in ``limit`` points (when
  full, every other point goes and the spacing doubles; the newest point is always kept). Arrays of
  doubles, not tuples: 1024 ranks x 256 points x 4 columns is 8 MB.
- the band: the values of the last ``open_steps`` steps are kept per step; a step older than that
  is summarised once into (min, median, max) and only the summary stays, thinned like a rank's
  series. A rank that reports a step after its summary was made (more than ``open_steps`` behind
  the newest step) is left out of that step's band; its own line still has the point.

Everything here is pure: no clock, no I/O.
"""

from __future__ import annotations

import math
import operator
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import compress
from typing import Any

# The plotted metrics, in the order of every values tuple below.
METRICS = ("loss", "tokens_per_s", "step_time_ms")
_NAN = float("nan")
# One rank's new points for SeriesStore.extend: steps, then loss, throughput and step time (None: unknown).
Points = tuple[Sequence[int], Sequence[Any], Sequence[Any], Sequence[Any]]


class Thinned:
    """(step, v1..vn) rows with increasing steps, at most ``limit`` of them over the whole run.

    The rows kept are the first one, those whose step is a multiple of ``stride`` (a power of two,
    doubled whenever more than ``limit - 1`` of them would be kept) and the newest one. Which rows
    those are depends only on the steps seen, not on how they came in: ``extend`` (many rows at
    once, computing the values of the kept rows only) leaves exactly what as many ``add`` calls do.
    """

    __slots__ = ("columns", "limit", "steps", "stride")

    def __init__(self, width: int, limit: int) -> None:
        self.limit = max(limit, 4)
        self.stride = 1
        self.steps = array("q")
        self.columns = [array("d") for _ in range(width)]

    def __len__(self) -> int:
        return len(self.steps)

    def _placeholder(self) -> bool:
        """Is the last row kept only because it is the newest (neither the first nor on the grid)?"""
        steps = self.steps
        return len(steps) > 1 and steps[-1] % self.stride != 0

    def add(self, step: int, values: Sequence[float]) -> None:
        steps = self.steps
        if steps and step <= steps[-1]:
            if step == steps[-1]:
                self._set_last(values)
                return
            # The run went back (a resume from a checkpoint): what follows replaces the old tail.
            keep = next((i for i in range(len(steps) - 1, -1, -1) if steps[i] < step), -1) + 1
            self._truncate(keep)
        elif self._placeholder():
            self._truncate(len(steps) - 1)  # the newest row is newest no more
        steps = self.steps
        steps.append(step)
        for col, v in zip(self.columns, values):
            col.append(v)
        while len(steps) - self._placeholder() > self.limit - 1:
            self._thin()
            steps = self.steps

    def extend(self, steps: Sequence[int], values_at: Callable[[int], Sequence[float]]) -> None:
        """Rows of ``steps`` (increasing, after the last step held; ``range`` objects are cheap),
        ``values_at(i)`` giving the values of ``steps[i]``: called only for the rows kept."""
        n = len(steps)
        if not n:
            return
        if self.steps and steps[0] <= self.steps[-1]:
            for i in range(n):  # not after the last row: row by row
                self.add(steps[i], values_at(i))
            return
        if self._placeholder():
            self._truncate(len(self.steps) - 1)
        had = len(self.steps)
        stride = self.stride
        while True:
            held = had if stride == self.stride else _count_kept(self.steps, stride)
            if held + _multiples(steps, stride, not had) <= self.limit - 1:
                break
            stride *= 2
        if stride != self.stride:
            self._thin(stride, keep_last=False)  # newer rows follow
        picks = _on_grid(steps, stride)
        if not had and (not picks or picks[0] != 0):
            picks.insert(0, 0)
        if not picks or picks[-1] != n - 1:
            picks.append(n - 1)
        for i in picks:
            self.steps.append(steps[i])
            for col, v in zip(self.columns, values_at(i)):
                col.append(v)

    def _set_last(self, values: Sequence[float]) -> None:
        for col, v in zip(self.columns, values):
            col[-1] = v

    def _truncate(self, keep: int) -> None:
        del self.steps[keep:]
        for col in self.columns:
            del col[keep:]

    def _thin(self, stride: int | None = None, keep_last: bool = True) -> None:
        """To ``stride`` (default: twice the present one): the first row, the rows on the new grid
        and (``keep_last``) the newest row stay."""
        self.stride = stride = stride or self.stride * 2
        steps = self.steps
        last = len(steps) - 1 if keep_last else 0
        keep = [i for i in range(len(steps)) if i == 0 or i == last or steps[i] % stride == 0]
        self.steps = array("q", (steps[i] for i in keep))
        self.columns = [array("d", (col[i] for i in keep)) for col in self.columns]

    def points(self, column: int) -> list[tuple[int, float]]:
        """``(step, value)`` of one column, without the steps where it is unknown."""
        col = self.columns[column]
        return [(s, v) for s, v in zip(self.steps, col) if v == v]  # v == v: not NaN


def _count_kept(steps: Sequence[int], stride: int) -> int:
    """Rows of ``steps`` a ``Thinned`` with ``stride`` keeps, the newest aside."""
    return sum(1 for i, s in enumerate(steps) if i == 0 or s % stride == 0)


def _multiples(steps: Sequence[int], stride: int, pin_first: bool) -> int:
    """How many of ``steps`` are multiples of ``stride``, and ``steps[0]`` besides when it is
    pinned (the first row of a ``Thinned``)."""
    extra = 1 if pin_first and steps[0] % stride else 0
    if _contiguous(steps):
        return steps[-1] // stride - (steps[0] - 1) // stride + extra
    return len(steps) - sum(map(bool, map(stride.__rmod__, steps))) + extra  # in C: s % stride per step


def _on_grid(steps: Sequence[int], stride: int) -> list[int]:
    """The indexes whose step is a multiple of ``stride``."""
    if _contiguous(steps):
        return list(range((-steps[0]) % stride, len(steps), stride))
    return list(compress(range(len(steps)), map(operator.not_, map(stride.__rmod__, steps))))


def _contiguous(steps: Sequence[int]) -> bool:
    """Consecutive steps (they are increasing: the first and last tell)."""
    return steps[-1] - steps[0] == len(steps) - 1


def _increasing(steps: Sequence[int]) -> bool:
    if _contiguous(steps):  # the usual case, checked in C
        return list(steps) == list(range(steps[0], steps[-1] + 1))
    return all(map(operator.lt, steps, steps[1:]))


def _index_of(steps: Sequence[int]) -> Callable[[int], int | None]:
    """step -> its index in ``steps`` (increasing), or None."""
    if _contiguous(steps):
        first, n = steps[0], len(steps)
        return lambda step: step - first if 0 <= step - first < n else None
    index = {s: i for i, s in enumerate(steps)}
    return index.get


def _value(v: object) -> float:
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
        return _NAN
    f = float(v)
    return f if math.isfinite(f) else _NAN


def _summary(values: list[float]) -> tuple[float, float, float]:
    if not values:
        return (_NAN, _NAN, _NAN)
    ordered = sorted(values)
    n = len(ordered)
    mid = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2.0
    return (ordered[0], mid, ordered[-1])


class SeriesStore:
    """Per-rank series and the cluster's band for ``METRICS``; feed it every new (rank, step) point.

    ``loss_from_rank``: the first rank whose loss belongs in the band (with pipeline parallelism
    only the last stage's ranks report the model's loss; the others print a partial one). The
    owner updates it when the world size becomes known.
    """

    def __init__(self, rank_points: int = 256, band_points: int = 512, open_steps: int = 32,
                 loss_from_rank: int = 0) -> None:
        self.rank_points = rank_points
        self.open_steps = open_steps
        self.loss_from_rank = loss_from_rank
        self.ranks: dict[int, Thinned] = {}
        self._band = Thinned(3 * len(METRICS), band_points)
        self._open: dict[int, list[list[float]]] = {}  # step -> values per metric, of every rank
        self._open_summary: dict[int, tuple[float, ...]] = {}  # cached summaries of open steps
        self._newest = -1

    def add(self, rank: int, step: int, loss: object, tokens_per_s: object, step_time_ms: object) -> None:
        values = (_value(loss), _value(tokens_per_s), _value(step_time_ms))
        series = self.ranks.get(rank)
        if series is None:
            series = self.ranks[rank] = Thinned(len(METRICS), self.rank_points)
        repeat = len(series) > 0 and series.steps[-1] == step
        series.add(step, values)
        if repeat or step <= self._newest - self.open_steps:
            return  # seen already (a rank that did not move), or its step's band is summarised
        bucket = self._open.get(step)
        if bucket is None:
            bucket = self._open[step] = [[] for _ in METRICS]
        loss, tps, ms = values
        if loss == loss and rank >= self.loss_from_rank:  # x == x: not NaN
            bucket[0].append(loss)
        if tps == tps:
            bucket[1].append(tps)
        if ms == ms:
            bucket[2].append(ms)
        self._open_summary.pop(step, None)
        if step > self._newest:
            self._newest = step
            self._close(step - self.open_steps)

    def add_many(self, rows: Iterable[tuple[int, int, object, object, object]]) -> None:
        for rank, step, loss, tps, ms in rows:
            self.add(rank, step, loss, tps, ms)

    def extend(self, points: Mapping[int, Points],
               rate_scale: float | None = None) -> None:
        """Many points at once: per rank, its new steps (increasing) and their loss, throughput and
        step time (``None`` where unknown; each throughput times ``rate_scale`` when given). The
        series and the band are exactly what ``add`` leaves when given the same points step by
        step (every rank's step k before any rank's step k + 1, as a live job prints them), but
        only the points the thinned series keep are converted and summarised: a long run read at
        once costs what its kept points cost."""
        for rank, (steps, *_cols) in points.items():
            series = self.ranks.get(rank)
            if len(steps) and ((series is not None and len(series) and steps[0] <= series.steps[-1])
                               or not _increasing(steps)):
                self._add_rank_by_rank(points, rate_scale)  # a resume or repeats: point by point
                return

        def value_of(rank: int) -> Callable[[int], tuple[float, float, float]]:
            _steps, loss, rate, ms = points[rank]
            if rate_scale:
                return lambda i: (_value(loss[i]), _value(rate[i] * rate_scale if rate[i] is not None else None),
                                  _value(ms[i]))
            return lambda i: (_value(loss[i]), _value(rate[i]), _value(ms[i]))

        values = {rank: value_of(rank) for rank in points}
        for rank, (steps, *_cols) in points.items():
            series = self.ranks.get(rank)
            if series is None:
                series = self.ranks[rank] = Thinned(len(METRICS), self.rank_points)
            series.extend(steps, values[rank])
        # The band: steps at or below `cut` are summarised already (left out, as add leaves them).
        cut = self._newest - self.open_steps
        fresh: dict[int, tuple[Sequence[int], int]] = {}  # rank -> (steps, first index past cut)
        seen: set[int] = set(self._open)
        for rank, (steps, *_cols) in points.items():
            lo = bisect_right(steps, cut) if len(steps) else 0
            if lo < len(steps):
                fresh[rank] = (steps, lo)
                seen.update(steps[lo:])
        if not seen:
            return
        union = sorted(seen)
        newest = max(self._newest, union[-1])
        upto = newest - self.open_steps
        closing = bisect_right(union, upto)
        where = {rank: _index_of(steps) for rank, (steps, _lo) in fresh.items()}
        loss_from = self.loss_from_rank

        def bucket(step: int) -> list[list[float]]:
            out = self._open.get(step) or [[] for _ in METRICS]
            for rank, (_steps, lo) in fresh.items():
                i = where[rank](step)
                if i is None or i < lo:
                    continue
                loss, tps, ms = values[rank](i)
                if loss == loss and rank >= loss_from:  # x == x: not NaN
                    out[0].append(loss)
                if tps == tps:
                    out[1].append(tps)
                if ms == ms:
                    out[2].append(ms)
            return out

        band = self._band
        last = band.steps[-1] if len(band) else -1
        done = union[bisect_right(union, last, 0, closing):closing]
        if done:
            band.extend(done, lambda i: [x for vals in bucket(done[i]) for x in _summary(vals)])
        self._open = {step: bucket(step) for step in union[closing:]}
        self._open_summary.clear()
        self._newest = newest

    def _add_rank_by_rank(self, points: Mapping[int, Points], rate_scale: float | None) -> None:
        for rank, (steps, loss, rate, ms) in points.items():
            for i in range(len(steps)):
                r = rate[i]
                self.add(rank, steps[i], loss[i], r * rate_scale if rate_scale and r is not None else r, ms[i])

    def _close(self, upto: int) -> None:
        done = sorted(s for s in self._open if s <= upto)
        for step in done:
            bucket = self._open.pop(step)
            self._open_summary.pop(step, None)
            if step <= (self._band.steps[-1] if len(self._band) else -1):
                continue
            self._band.add(step, [x for values in bucket for x in _summary(values)])

    def _open_rows(self) -> list[tuple[int, tuple[float, ...]]]:
        rows = []
        for step in sorted(self._open):
            summary = self._open_summary.get(step)
            if summary is None:
                summary = self._open_summary[step] = tuple(
                    x for values in self._open[step] for x in _summary(values))
            rows.append((step, summary))
        return rows

    def bands(self) -> dict[str, list[tuple[int, float, float, float]]]:
        """Per metric, ``(step, min, median, max)`` over the ranks, oldest first."""
        out: dict[str, list[tuple[int, float, float, float]]] = {}
        band = self._band
        open_rows = self._open_rows()
        for m, name in enumerate(METRICS):
            lo, mid, hi = band.columns[3 * m], band.columns[3 * m + 1], band.columns[3 * m + 2]
            rows = [(s, a, b, c) for s, a, b, c in zip(band.steps, lo, mid, hi) if b == b]
            rows.extend((s, v[3 * m], v[3 * m + 1], v[3 * m + 2]) for s, v in open_rows
                        if v[3 * m + 1] == v[3 * m + 1])
            out[name] = rows
        return out

    def rank(self, rank: int) -> dict[str, list[tuple[int, float]]]:
        """One rank's ``(step, value)`` points per metric (empty lists for a rank never seen)."""
        series = self.ranks.get(rank)
        if series is None:
            return {name: [] for name in METRICS}
        return {name: series.points(i) for i, name in enumerate(METRICS)}
