"""The live path users run with ``mfctl watch --logs DIR``: the real MindFormers logs appended to a
tmp directory while the dashboard is open (follower thread -> collector -> poll worker -> screen)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Callable

from mfctl.jobs.watch import LogDirSource
from mfctl.tui.app import make_app
from mfctl.tui.plots import SeriesPlot
from mfctl.tui.table import RankTable

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples" / "mindformers-1.9.0-cpu-msrun-dp2"
JOB = {"id": "logs", "name": "logs", "model": "logs", "nodes": 1, "devices_per_node": 2,
       "world_size": None, "started_at": None}


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


async def until(pilot: Any, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.02)


def step_cell(table: RankTable, rank: int) -> str:
    return table.row_texts(rank)[2]


def test_dashboard_follows_logs_growing_in_the_directory(tmp_path) -> None:
    logs = {r: (SAMPLES / f"worker_{r}.log").read_bytes() for r in (0, 1)}
    cut = logs[0].rindex(b"\n", 0, logs[0].index(b"step:[   11/")) + 1  # step 11's line starts here
    append(tmp_path / "worker_0.log", logs[0][:cut])  # rank 0 at step 10; rank 1 not started
    source = LogDirSource(tmp_path, None, 1, follow=True, interval_s=0.05).start()
    app = make_app(source, job=JOB, clock=lambda: 0.0, refresh_s=0.05)

    async def main() -> None:
        async with app.run_test(size=(200, 50)) as pilot:
            table = app.query_one(RankTable)
            await until(pilot, lambda: table.visible_ranks == [0] and step_cell(table, 0) == "10/32")
            append(tmp_path / "worker_1.log", logs[1])  # a new file
            append(tmp_path / "worker_0.log", logs[0][cut:cut + 150])  # half a line: not yet a step
            await until(pilot, lambda: table.visible_ranks == [0, 1] and step_cell(table, 1) == "32/32")
            assert step_cell(table, 0) == "10/32"
            append(tmp_path / "worker_0.log", logs[0][cut + 150:])
            await until(pilot, lambda: step_cell(table, 0) == "32/32")
            # No --seq-length: the throughput plot says what it draws.
            tokens = app.query_one("#tokens-plot", SeriesPlot)
            await until(pilot, lambda: tokens.border_title.startswith("samples/s  rank 0 "))
            assert app.last_snapshot["cluster"]["state"] == "finished"

    try:
        asyncio.run(main())
    finally:
        source.close()


def test_polls_run_off_the_ui_thread_one_at_a_time() -> None:
    """A slow source (200 ms a snapshot) must not hold the event loop, and polls never overlap."""
    import threading

    from tests.fakes.dashboard import StaticSource, synthetic_snapshot

    class Slow(StaticSource):
        def __init__(self) -> None:
            super().__init__([synthetic_snapshot(16, s) for s in range(1, 4)])
            self.threads: set[str] = set()
            self.busy = 0
            self.overlaps = 0
            self.calls = 0

        def snapshot(self) -> dict:
            self.calls += 1
            self.threads.add(threading.current_thread().name)
            self.busy += 1
            self.overlaps += self.busy > 1
            time.sleep(0.2)
            self.busy -= 1
            return super().snapshot()

    source = Slow()
    app = make_app(source, job=JOB, clock=lambda: 0.0, refresh_s=0.01)

    async def main() -> None:
        async with app.run_test(size=(200, 50)) as pilot:
            ui = threading.current_thread().name
            await pilot.pause()
            first = source.calls
            # The event loop keeps ticking every ~10 ms while snapshots take 200 ms each.
            late = 0.0
            for _ in range(60):
                t0 = time.perf_counter()
                await asyncio.sleep(0.01)
                late = max(late, time.perf_counter() - t0 - 0.01)
            assert late < 0.15, f"the event loop stalled {1000 * late:.0f} ms"
            assert source.calls - first >= 2  # polls go on
            assert source.threads - {ui}  # taken on a worker thread
            assert source.overlaps == 0

    asyncio.run(main())


def test_freeze_heap_freezes_once_the_first_ranks_are_on_screen() -> None:
    """``mfctl watch`` keeps the long-lived heap out of full collections (they stalled the loop)."""
    import gc

    from tests.fakes.dashboard import StaticSource, synthetic_snapshot

    app = make_app(StaticSource([synthetic_snapshot(16, 1)]), job=JOB, clock=lambda: 0.0, refresh_s=0.02,
                   freeze_heap=True)

    async def main() -> None:
        async with app.run_test(size=(200, 50)) as pilot:
            await until(pilot, lambda: gc.get_freeze_count() > 0)

    assert gc.get_freeze_count() == 0, "another test left the heap frozen"
    try:
        asyncio.run(main())
    finally:
        gc.unfreeze()
