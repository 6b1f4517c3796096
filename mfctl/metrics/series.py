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
from array import array
from collections.abc import Iterable, Sequence

# The plotted metrics, in the order of every values tuple below.
METRICS = ("loss", "tokens_per_s", "step_time_ms")
_NAN = float("nan")


class Thinned:
    """(step, v1..vn) rows with increasing steps, at most ``limit`` of them over the whole run."""

    __slots__ = ("columns", "limit", "steps", "stride")

    def __init__(self, width: int, limit: int) -> None:
        self.limit = max(limit, 4)
        self.stride = 1
        self.steps = array("q")
        self.columns = [array("d") for _ in range(width)]

    def __len__(self) -> int:
        return len(self.steps)

    def add(self, step: int, values: Sequence[float]) -> None:
        steps = self.steps
        if steps and step <= steps[-1]:
            if step < steps[-1]:
                # The run went back (a resume from a checkpoint): what follows replaces the old tail.
                keep = next((i for i in range(len(steps) - 1, -1, -1) if steps[i] < step), -1) + 1
                del steps[keep:]
                for col in self.columns:
                    del col[keep:]
            else:
                self._set_last(values)
                return
        if len(steps) >= 2 and step - steps[-2] < self.stride:
            # Too close to the last kept point: the newest value replaces the previous newest.
            steps[-1] = step
            self._set_last(values)
            return
        steps.append(step)
        for col, v in zip(self.columns, values):
            col.append(v)
        if len(steps) > self.limit:
            self._thin()

    def _set_last(self, values: Sequence[float]) -> None:
        for col, v in zip(self.columns, values):
            col[-1] = v

    def _thin(self) -> None:
        last = len(self.steps) - 1
        keep = list(range(0, last, 2)) + [last]
        self.steps = array("q", (self.steps[i] for i in keep))
        self.columns = [array("d", (col[i] for i in keep)) for col in self.columns]
        self.stride *= 2

    def points(self, column: int) -> list[tuple[int, float]]:
        """``(step, value)`` of one column, without the steps where it is unknown."""
        col = self.columns[column]
        return [(s, v) for s, v in zip(self.steps, col) if v == v]  # v == v: not NaN


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
