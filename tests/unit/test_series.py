"""The dashboard's plot series: bounded per-rank lines and the band (min/median/max) over ranks."""

from __future__ import annotations

import bisect
import itertools
import random
import statistics

import pytest

from mfctl.metrics.series import SeriesStore, Thinned


def test_band_is_min_median_max_over_the_ranks_per_step() -> None:
    store = SeriesStore(open_steps=4)
    for step in range(1, 21):
        for rank in range(5):
            store.add(rank, step, 10.0 - step / 10 + rank, 1000.0 * (rank + 1), 400.0 + 10 * rank + step)
    bands = store.bands()
    assert [b[0] for b in bands["loss"]] == list(range(1, 21))  # summarised steps, then the open ones
    for name, values in (("loss", [10.0 - 1.2 + r for r in range(5)]),
                         ("tokens_per_s", [1000.0 * (r + 1) for r in range(5)]),
                         ("step_time_ms", [400.0 + 10 * r + 12 for r in range(5)])):
        step12 = next(b for b in bands[name] if b[0] == 12)
        assert step12[1:] == (min(values), statistics.median(values), max(values))
    assert store.rank(3)["loss"][-1] == (20, 10.0 - 2.0 + 3)
    assert store.rank(99) == {"loss": [], "tokens_per_s": [], "step_time_ms": []}


def test_loss_band_counts_only_the_ranks_that_report_the_loss() -> None:
    store = SeriesStore(loss_from_rank=2)  # pipeline: the last stage's ranks
    for rank, loss in enumerate([100.0, 100.0, 2.0, 4.0]):
        store.add(rank, 1, loss, 1.0, 1.0)
    assert store.bands()["loss"] == [(1, 2.0, 3.0, 4.0)]
    assert store.rank(0)["loss"] == [(1, 100.0)]  # the rank's own line still shows what it printed


def test_a_long_run_of_many_ranks_stays_bounded_and_keeps_its_newest_point() -> None:
    store = SeriesStore(rank_points=64, band_points=128, open_steps=8)
    steps = 3000
    for step in range(1, steps + 1):
        for rank in range(16):
            store.add(rank, step, 1.0 / step, None, float(step))
    for rank in range(16):
        series = store.ranks[rank]
        assert len(series) <= 64
        pts = series.points(0)
        assert pts[0][0] == 1 and pts[-1][0] == steps  # the whole run, up to the newest step
        assert store.rank(rank)["tokens_per_s"] == []  # unknown values are not points
    band = store.bands()["step_time_ms"]
    assert len(band) <= 128 + 8
    assert band[-1] == (steps, float(steps), float(steps), float(steps))
    assert [b[0] for b in band] == sorted({b[0] for b in band})


def test_thinned_series_keeps_even_spacing_and_a_resume_replaces_the_tail() -> None:
    t = Thinned(1, limit=8)
    for step in range(1, 101):
        t.add(step, [float(step)])
    steps = list(t.steps)
    assert len(steps) <= 8 and steps[-1] == 100
    gaps = [b - a for a, b in itertools.pairwise(steps[:-1])]  # the newest point aside
    assert max(gaps) <= 1.5 * min(gaps)  # spread over the whole run, not bunched at one end
    assert steps[-1] - steps[-2] <= max(gaps)
    # The job resumed from step 50: the points after it are the new run's.
    t.add(50, [-1.0])
    assert list(t.steps)[-1] == 50 and t.columns[0][-1] == -1.0
    assert all(s < 50 for s in list(t.steps)[:-1])


def _same(a: SeriesStore, b: SeriesStore) -> None:
    """The same plot points: every rank's line and the band, NaN for NaN."""
    assert sorted(a.ranks) == sorted(b.ranks)
    for rank in a.ranks:
        assert a.rank(rank) == b.rank(rank), rank
    assert a.bands() == b.bands()


def _step_by_step(points: dict, store: SeriesStore, scale: float | None = None) -> None:
    """``add`` in the order a live job prints: every rank's step k before any rank's step k + 1."""
    at = {rank: dict(zip(p[0], zip(*p[1:]))) for rank, p in points.items()}
    for step in sorted({s for p in points.values() for s in p[0]}):
        for rank in sorted(points):
            if step in at[rank]:
                loss, rate, ms = at[rank][step]
                store.add(rank, step, loss, rate * scale if scale and rate is not None else rate, ms)


def _run(rng, ranks: int, first: int, steps: int, gaps: bool, holes: bool) -> dict:
    points = {}
    for rank in range(ranks):
        lag = rng.randrange(0, 3) if rank else 0  # some ranks a step or two behind
        s = list(range(first, first + steps - lag))
        if gaps:  # a log that prints every few steps
            s = sorted(rng.sample(s, max(1, len(s) // 3)))
        n = len(s)
        loss = [10.0 / (1 + i) + rng.random() for i in range(n)]
        rate = [None if holes and rng.random() < 0.1 else 100.0 + rng.random() for _ in range(n)]
        ms = [float("nan") if holes and rng.random() < 0.05 else 400.0 + rng.random() for _ in range(n)]
        points[rank] = (s, loss, rate, ms)
    return points


@pytest.mark.parametrize("seed", range(40))
def test_extend_gives_the_plot_points_that_adding_step_by_step_gives(seed) -> None:
    rng = random.Random(seed)
    sizes = {"rank_points": rng.choice([4, 8, 64]), "band_points": rng.choice([4, 16, 128]),
             "open_steps": rng.choice([1, 4, 32]), "loss_from_rank": rng.choice([0, 2])}
    whole = _run(rng, rng.randrange(1, 9), rng.randrange(0, 5), rng.randrange(1, 700), rng.random() < 0.4,
                 rng.random() < 0.5)
    bulk, eager = SeriesStore(**sizes), SeriesStore(**sizes)
    # In a few batches, as a follower hands them on: each rank up to its own point (a rank read
    # later than the others, its early steps' band already summarised), each batch at once or
    # one by one.
    cuts = {rank: [*sorted(rng.sample(range(1, 800), 3)), 10**9] for rank in whole}
    lo = dict.fromkeys(whole, 0)
    for k in range(4):
        batch = {}
        for rank, (s, *cols) in whole.items():
            hi = cuts[rank][k]
            i, j = bisect.bisect_left(s, lo[rank]), bisect.bisect_left(s, hi)
            if i < j:
                batch[rank] = (s[i:j], *(c[i:j] for c in cols))
            lo[rank] = hi
        bulk.extend(batch, rate_scale=4.0)
        _step_by_step(batch, eager, scale=4.0)
        _same(bulk, eager)
    assert any(len(t) for t in bulk.ranks.values())


def test_a_long_run_read_at_once_has_the_band_of_every_rank() -> None:
    """64 ranks x 12,000 steps in one go (a finished run's logs): bounded series, and each band
    point summarises all 64 ranks, not only the rank read first."""
    n = 12000
    points = {rank: (range(1, n + 1), [1.0 + rank] * n, [10.0] * n, [100.0 + rank] * n) for rank in range(64)}
    store = SeriesStore()
    store.extend(points)
    assert all(len(t) <= 256 for t in store.ranks.values())
    assert store.rank(5)["loss"][0] == (1, 6.0) and store.rank(5)["loss"][-1] == (n, 6.0)
    band = store.bands()["step_time_ms"]
    assert len(band) <= 512 + 32 and band[-1][0] == n
    assert all(b[1:] == (100.0, 131.5, 163.0) for b in band)


def test_a_resume_in_a_batch_goes_point_by_point() -> None:
    steps = [1, 2, 3, 4, 5, 3, 4, 5, 6]
    points = {0: (steps, [float(s) for s in steps], [None] * 9, [1.0] * 9)}
    bulk, eager = SeriesStore(), SeriesStore()
    bulk.extend(points)
    for s in steps:
        eager.add(0, s, float(s), None, 1.0)
    _same(bulk, eager)
    assert [p[0] for p in bulk.rank(0)["loss"]] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("limit", [4, 5, 8, 33])
def test_thinned_extend_equals_adds(limit) -> None:
    rng = random.Random(limit)
    for _ in range(30):
        a, b = Thinned(1, limit), Thinned(1, limit)
        step = rng.randrange(0, 4)
        for _batch in range(rng.randrange(1, 6)):
            steps = []
            for _i in range(rng.randrange(1, 300)):
                step += rng.choice([1, 1, 1, 2, 7])
                steps.append(step)
            if rng.random() < 0.5 and steps[-1] - steps[0] == len(steps) - 1:
                steps = range(steps[0], steps[-1] + 1)
            a.extend(steps, lambda i, steps=steps: [float(steps[i])])
            for s in steps:
                b.add(s, [float(s)])
            assert list(a.steps) == list(b.steps) and list(a.columns[0]) == list(b.columns[0])
            assert a.stride == b.stride and len(a) <= limit
