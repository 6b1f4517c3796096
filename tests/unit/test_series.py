"""The dashboard's plot series: bounded per-rank lines and the band (min/median/max) over ranks."""

from __future__ import annotations

import itertools
import statistics

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
    gaps = [b - a for a, b in itertools.pairwise(steps)]
    assert max(gaps) <= 1.5 * min(gaps)  # spread over the whole run, not bunched at one end
    # The job resumed from step 50: the points after it are the new run's.
    t.add(50, [-1.0])
    assert list(t.steps)[-1] == 50 and t.columns[0][-1] == -1.0
    assert all(s < 50 for s in list(t.steps)[:-1])
