"""The dashboard's plots: the band of all ranks with the selected rank's line over it.

Scripted snapshots (``StaticSource`` derives the band and the per-rank lines from the ranks'
figures, as ``mfctl watch``'s collector does from the logs) and a frozen clock.
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

from mfctl.tui.app import make_app
from mfctl.tui.plots import BAND, LINE, MEDIAN, SeriesPlot, band_plot
from tests.fakes.dashboard import StaticSource, synthetic_snapshot

JOB = {"id": "j-0001", "name": "tiny", "model": "llama2_7b", "nodes": 2, "devices_per_node": 8,
       "world_size": 16, "started_at": 900.0}
STEPS = 30


def source() -> StaticSource:
    snaps = [synthetic_snapshot(16, s, stragglers=[3]) for s in range(1, STEPS + 1)]
    src = StaticSource(snaps)
    src.advance(STEPS - 1)
    return src


def plots(app: Any) -> dict[str, SeriesPlot]:
    return {name: app.query_one(f"#{name}-plot", SeriesPlot) for name in ("loss", "tokens", "steptime")}


def test_plots_follow_the_rank_selected_in_the_table_and_y_toggles_log_loss() -> None:
    last = synthetic_snapshot(16, STEPS, stragglers=[3])["ranks"]

    async def main() -> None:
        app = make_app(source(), job=JOB, clock=lambda: 1000.0, refresh_s=0.05)
        async with app.run_test(size=(200, 50)) as pilot:
            await pilot.pause()
            p = plots(app)
            # Rank 0 (the cursor's row) over the band of all 16 ranks.
            assert p["loss"].border_title == f"loss  rank 0 {last[0]['loss']:.4f} @ {STEPS}"
            times = [r["step_time_ms"] for r in last]
            assert p["steptime"].border_subtitle == (
                f"ranks {min(times):.0f}..{max(times):.0f} median {statistics.median(times):.0f}")
            # Down three rows: the straggler, whose step time is the top of the band.
            await pilot.press("down", "down", "down")
            await pilot.pause()
            assert p["steptime"].border_title == f"step ms  rank 3 {last[3]['step_time_ms']:.0f} @ {STEPS}"
            assert last[3]["step_time_ms"] == max(times)
            assert p["tokens"].border_title.startswith("tokens/s  rank 3 ")
            # A click on a row selects its rank too (row 1 of the table is rank 0, below the header).
            await pilot.click("#ranks", offset=(3, 1 + 8))
            await pilot.pause()
            assert "rank 8 " in p["loss"].border_title
            await pilot.press("y")
            await pilot.pause()
            assert p["loss"].log_scale and p["loss"].border_title.startswith("loss (log)")
            assert not p["tokens"].log_scale  # only the loss
            await pilot.press("y")
            await pilot.pause()
            assert not p["loss"].log_scale and p["loss"].border_title.startswith("loss  rank 8")
    asyncio.run(main())


def test_band_plot_fills_the_band_and_draws_the_line_over_it() -> None:
    band = [(s, 1.0, 2.0, 3.0) for s in range(10)]
    line = [(s, 3.0) for s in range(10)]  # the top edge of the band
    rows, yrange = band_plot(band, line, width=10, height=3)
    assert yrange == (1.0, 3.0)
    assert len(rows) == 3 and all(len(r) == 10 for r in rows)
    assert all(layer == LINE for _, layer in rows[0])  # the line on top, in every column
    assert any(layer == MEDIAN for _, layer in rows[1])
    assert all(layer in (BAND, MEDIAN) for _, layer in rows[2])  # below: the band, filled
    # Log scale leaves out what a log axis cannot show, and spans powers of ten evenly.
    rows, yrange = band_plot([(0, 1.0, 10.0, 100.0), (1, 0.0, 10.0, 100.0)], [(0, -1.0)], 4, 2, log=True)
    assert yrange is not None and abs(yrange[0] - 1.0) < 1e-9 and abs(yrange[1] - 100.0) < 1e-9
    assert band_plot([], [], 4, 2) == ([[("\u2800", 0)] * 4] * 2, None)
