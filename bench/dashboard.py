"""Dashboard benchmark: what one refresh of ``mfctl watch`` costs with 1024 ranks, and its CPU at 1 Hz.

Every frame feeds a synthetic snapshot in which every rank's figures have changed (step, loss, step
time, throughput), runs the app's refresh handler and then lets Textual repaint (``pilot.pause()``),
headless at 200x60. Per frame it records (median and 95th percentile):

- tick: the refresh handler alone (``refresh_data``: pull the snapshot, patch the widgets);
- render: time inside the compositor refresh (widgets render their changed lines, the update is
  composed);
- painted: from the start of the tick until the update is handed to the terminal driver: the
  latency a user sees, including event-loop scheduling (and, on a busy machine, waiting for a CPU);
- frame CPU: process CPU time from the tick until the app is idle again: what a frame costs.

Baselines measured in the same run: the same frame with 16 ranks, and the same 1024 ranks in a
Textual ``DataTable`` updated with ``update_cell`` for changed cells only (the obvious design, which
the dashboard does not use: any cell update there invalidates the render cache of every visible
cell). Then the real app runs for ``--cpu-seconds`` at 1 Hz and the process CPU time / wall time is
reported (1024 ranks, and 16 ranks as the baseline).

    python bench/dashboard.py                    # ~1 minute
    python bench/dashboard.py --frames 10 --cpu-seconds 5

Goals: a frame <= 50 ms; <= 25% of one core at 1 Hz. The machine's load average is printed: on a
shared machine the figures move with it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script from a checkout: make `mfctl` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from textual.app import App, ComposeResult
from textual.widgets import DataTable

from mfctl.metrics.series import SeriesStore
from mfctl.tui.app import make_app
from mfctl.tui.rows import COLUMNS, row_cells
from mfctl.tui.table import RankTable
from tests.fakes.dashboard import synthetic_snapshot

SIZE = (200, 60)
PREFILL = 600  # steps already in the plots when measuring: band and rank lines at their bounds
GOAL_FRAME_MS = 50.0
GOAL_CPU = 0.25


def job(world: int) -> dict:
    return {"id": "bench", "name": "bench", "model": "llama2_7b", "nodes": max(world // 8, 1),
            "devices_per_node": min(world, 8), "world_size": world, "started_at": 0.0}


def snapshots(world: int, count: int) -> list[dict]:
    return [synthetic_snapshot(world, step, stragglers=[3], alerts=[
        {"kind": "straggler", "rank": 3, "message": "step time 1.6x the median", "step": step, "time": 10.0}])
        for step in range(1, count + 1)]


class CyclingSource:
    """Hands out the next prepared snapshot on every call, forever: every rank changes every call.

    Every call is a new step of every rank, fed into the same ``SeriesStore`` that ``mfctl watch``'s
    collector keeps (band over ranks, each rank's line). In the real dashboard that feeding happens
    on the followers' threads; here it is counted in the tick, so the tick is an upper bound.
    ``prefill`` steps are fed before the first frame, so the plots start as full as a long run's.
    """

    def __init__(self, snaps: list[dict], prefill: int = 0) -> None:
        self.snaps = snaps
        self.calls = 0
        self.step = 0
        self.series = SeriesStore()
        for _ in range(prefill):
            self._feed(self.snaps[self.step % len(self.snaps)])

    def _feed(self, snap: dict) -> None:
        self.step += 1  # keeps the plotted series growing like a live job's
        add = self.series.add
        for r in snap["ranks"]:
            add(r["rank"], self.step, r["loss"], r["tokens_per_s"], r["step_time_ms"])

    def snapshot(self) -> dict:
        snap = self.snaps[self.calls % len(self.snaps)]
        self.calls += 1
        if len(self.snaps) == 1 and self.step:
            return snap  # one snapshot: nothing changes, not even the plots
        self._feed(snap)
        return snap

    def history(self, rank: int | None = None) -> dict:
        own = {"rank": rank, **self.series.rank(rank)} if rank is not None else None
        return {"bands": self.series.bands(), "rank": own}

    def rank_log(self, rank: int, lines: int) -> list[str]:
        return []

    def stop_job(self) -> str:
        return "benchmark: nothing to stop"


@dataclass
class Frames:
    tick_ms: list[float]
    render_ms: list[float]
    painted_ms: list[float]
    cpu_ms: list[float]


def instrument(app: App) -> tuple[list[float], list[float]]:
    """Record when frames reach the (headless) terminal and how long the compositor takes.

    Textual has no public "frame painted" hook, so this wraps two private methods: the screen's
    compositor refresh (renders the dirty widgets' lines and composes the update) and
    ``App._display`` (hands the update to the driver). Benchmark-only; if a Textual release renames
    them the benchmark says so instead of reporting zeros.
    """
    painted: list[float] = []
    render: list[float] = []
    screen = app.screen
    if not hasattr(screen, "_compositor_refresh") or not hasattr(app, "_display"):
        raise SystemExit("this Textual has no Screen._compositor_refresh / App._display to time")
    refresh, display = screen._compositor_refresh, app._display

    def timed_refresh() -> None:
        start = time.perf_counter()
        refresh()
        render.append(time.perf_counter() - start)

    def timed_display(*args: Any, **kwargs: Any) -> None:
        display(*args, **kwargs)
        painted.append(time.perf_counter())

    screen._compositor_refresh = timed_refresh  # type: ignore[method-assign]
    app._display = timed_display  # type: ignore[method-assign]
    return painted, render


async def measure_frames(app: App, tick: Callable[[], None], frames: int) -> Frames:
    out = Frames([], [], [], [])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        painted, render = instrument(app)
        for _ in range(3):  # warm caches and the first layout
            tick()
            await pilot.pause()
        for _ in range(frames):
            painted.clear()
            render.clear()
            c0, t0 = time.process_time(), time.perf_counter()
            tick()
            t1 = time.perf_counter()
            await pilot.pause()  # returns once the app is idle again: the frame is painted
            c2 = time.process_time()
            out.tick_ms.append(1000 * (t1 - t0))
            out.render_ms.append(1000 * sum(render))
            out.painted_ms.append(1000 * ((painted[-1] if painted else t1) - t0))
            out.cpu_ms.append(1000 * (c2 - c0))
    return out


async def dashboard_frames(world: int, frames: int, *, change: bool = True) -> Frames:
    source = CyclingSource(snapshots(world, 8) if change else snapshots(world, 1), prefill=PREFILL)
    app = make_app(source, job=job(world), clock=lambda: 100.0, refresh_s=3600)  # ticks only when told
    return await measure_frames(app, lambda: app.refresh_data(), frames)


class DataTableBaseline(App):
    """The same rows in a DataTable, patched with update_cell where a cell's text changed."""

    def __init__(self, snaps: list[dict]) -> None:
        super().__init__()
        self.snaps = snaps
        self.calls = 0
        self.shown: dict[int, tuple[str, ...]] = {}

    def compose(self) -> ComposeResult:
        yield DataTable(cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for spec in COLUMNS:
            table.add_column(spec.label, width=spec.width, key=spec.key)
        for r in self.snaps[0]["ranks"]:
            cells = row_cells(r)[0]
            table.add_row(*cells, key=str(r["rank"]))
            self.shown[r["rank"]] = cells

    def tick(self) -> None:
        self.calls += 1
        table = self.query_one(DataTable)
        for r in self.snaps[self.calls % len(self.snaps)]["ranks"]:
            cells = row_cells(r)[0]
            old = self.shown[r["rank"]]
            for i, value in enumerate(cells):
                if value != old[i]:
                    table.update_cell(str(r["rank"]), COLUMNS[i].key, value)
            self.shown[r["rank"]] = cells


async def datatable_frames(world: int, frames: int) -> Frames:
    app = DataTableBaseline(snapshots(world, 8))
    return await measure_frames(app, app.tick, frames)


async def cpu_at_1hz(world: int, seconds: float) -> tuple[float, int]:
    """Process CPU time / wall time of the real app refreshing once a second, and its tick count."""
    source = CyclingSource(snapshots(world, 8), prefill=PREFILL)
    app = make_app(source, job=job(world), refresh_s=1.0)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        c0, t0 = time.process_time(), time.perf_counter()
        calls0 = source.calls
        await asyncio.sleep(seconds)
        c1, t1 = time.process_time(), time.perf_counter()
        ticks = source.calls - calls0
        assert len(app.query_one(RankTable).visible_ranks) == world
    return (c1 - c0) / (t1 - t0), ticks


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def row(label: str, f: Frames) -> str:
    def cell(v: list[float]) -> str:
        return f"{statistics.median(v):6.1f} /{pct(v, 0.95):6.1f}"
    return f"{label:<42} {cell(f.tick_ms)}  {cell(f.render_ms)}  {cell(f.painted_ms)}  {cell(f.cpu_ms)}"


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", type=int, default=1024)
    ap.add_argument("--baseline-ranks", type=int, default=16)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--baseline-frames", type=int, default=10, help="frames for the DataTable baseline (slow)")
    ap.add_argument("--cpu-seconds", type=float, default=15.0)
    args = ap.parse_args(argv)

    load = os.getloadavg()
    print(f"dashboard benchmark: {SIZE[0]}x{SIZE[1]} headless, {args.frames} frames, every rank changes "
          f"every frame; load average {load[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'ms, p50 / p95':<42} {'tick':>13}  {'render':>13}  {'painted':>13}  {'frame CPU':>13}")

    main_frames = await dashboard_frames(args.ranks, args.frames)
    print(row(f"mfctl dashboard, {args.ranks} ranks", main_frames))
    small = await dashboard_frames(args.baseline_ranks, args.frames)
    print(row(f"baseline: mfctl dashboard, {args.baseline_ranks} ranks", small))
    idle = await dashboard_frames(args.ranks, args.frames, change=False)
    print(row(f"baseline: idle frame, {args.ranks} ranks unchanged", idle))
    dt = await datatable_frames(args.ranks, args.baseline_frames)
    print(row(f"baseline: DataTable update_cell, {args.ranks} ranks", dt))

    cpu, ticks = await cpu_at_1hz(args.ranks, args.cpu_seconds)
    cpu_small, ticks_small = await cpu_at_1hz(args.baseline_ranks, args.cpu_seconds)
    print(f"CPU at 1 Hz over {args.cpu_seconds:.0f} s: {args.ranks} ranks {100 * cpu:.1f}% of one core "
          f"({ticks} refreshes); baseline {args.baseline_ranks} ranks {100 * cpu_small:.1f}% ({ticks_small})")

    frame = statistics.median(main_frames.painted_ms)
    ok_frame, ok_cpu = frame <= GOAL_FRAME_MS, cpu <= GOAL_CPU
    print(f"goals: frame painted p50 {frame:.1f} ms <= {GOAL_FRAME_MS:.0f} ms: {'met' if ok_frame else 'MISSED'}; "
          f"CPU {100 * cpu:.1f}% <= {100 * GOAL_CPU:.0f}%: {'met' if ok_cpu else 'MISSED'}")
    return 0 if ok_frame and ok_cpu else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
