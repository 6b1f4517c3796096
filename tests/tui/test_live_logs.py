"""The live path users run with ``mfctl watch --logs DIR``: the real MindFormers logs appended to a
tmp directory while the dashboard is open (follower thread -> collector -> poll worker -> screen)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mfctl.live.sources import LogDirSource
from mfctl.metrics.logdir import ranks_of_files
from mfctl.tui.app import make_app
from mfctl.tui.panels import AlertsPanel, HeaderBar
from mfctl.tui.plots import SeriesPlot
from mfctl.tui.rows import COLUMN_KEYS
from mfctl.tui.table import RankTable

STATE, REASON = COLUMN_KEYS.index("state"), COLUMN_KEYS.index("reason")  # columns of a row's texts

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

    from mfctl.tui import gcpace
    from tests.fakes.dashboard import StaticSource, synthetic_snapshot

    app = make_app(StaticSource([synthetic_snapshot(16, 1)]), job=JOB, clock=lambda: 0.0, refresh_s=0.02,
                   freeze_heap=True)
    before = gc.get_threshold()
    full: list[float] = []  # the full collections while the app runs, and when each started

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(time.monotonic())

    async def main() -> None:
        async with app.run_test(size=(200, 50)) as pilot:
            await until(pilot, lambda: gc.get_freeze_count() > 0)
            # From here the app decides when a full collection runs: never by the counts (however
            # much is allocated), once per FULL_GC_EVERY polls half an interval after a poll.
            assert gc.get_threshold()[2] > 10**6 and gc.get_threshold()[:2] == before[:2]
            gc.callbacks.append(on_gc)
            try:
                junk = [[i] for i in range(300_000)]  # ~430 young collections' worth
                del junk
                polls = app.gc_pacer.polls
                await until(pilot, lambda: app.gc_pacer.polls >= polls + 3 * gcpace.FULL_GC_EVERY)
            finally:
                gc.callbacks.remove(on_gc)
            assert 2 <= len(full) <= 4, full

    assert gc.get_freeze_count() == 0, "another test left the heap frozen"
    try:
        asyncio.run(main())
    finally:
        gc.unfreeze()
    assert gc.get_threshold() == before  # the process is left as it was


# --------------------------------------------------------------------------------------------------
# The sample logs as ``mfctl watch --logs DIR`` opens them
# --------------------------------------------------------------------------------------------------

STEP_LINE = re.compile(rb"step:\[\s*(\d+)/\s*(\d+)\], loss:\[?([-+0-9.eE]+)")
TIMEOUT_LINE = (b"[ERROR] DISTRIBUTED(23276,7f85d3fff6c0,python):2026-11-28-06:20:01.100.000 "
                b"[mindspore/ccsrc/cluster/topology/meta_server_node.cc:470] UpdateTopoState] The node: 1 is "
                b"timed out. It may exit with exception, please check this node's log.\n")


def last_step(log: bytes) -> tuple[str, str]:
    """The step and loss cells a user expects for a log: read off its last step line."""
    step, total, loss = STEP_LINE.findall(log)[-1]
    return f"{int(step)}/{int(total)}", f"{float(loss):.4f}"


def logs_app(directory: Path) -> tuple[LogDirSource, Any]:
    """The dashboard over ``directory`` built as ``mfctl watch --logs DIR`` builds it."""
    source = LogDirSource(directory, None, 1, follow=True, interval_s=0.05)
    devices = len(ranks_of_files(source.files)) or "?"
    job = {"id": str(directory), "name": directory.name, "model": "logs", "nodes": 1,
           "devices_per_node": devices, "world_size": None, "started_at": None}
    return source.start(), make_app(source, job=job, clock=lambda: 0.0, refresh_s=0.05)


def test_dashboard_on_the_sample_logs_shows_each_ranks_last_step_and_loss(tmp_path: Path) -> None:
    for log in SAMPLES.iterdir():
        (tmp_path / log.name).write_bytes(log.read_bytes())
    expected = {r: last_step((SAMPLES / f"worker_{r}.log").read_bytes()) for r in (0, 1)}
    assert expected[0] != expected[1]  # the two ranks report their own losses
    source, app = logs_app(tmp_path)

    async def main() -> None:
        async with app.run_test(size=(200, 50)) as pilot:
            table = app.query_one(RankTable)
            loss = app.query_one("#loss-plot", SeriesPlot)
            title = f"loss  rank 0 {expected[0][1]} @ 32"
            # Everything on screen comes from one poll, but a loaded machine may draw it a frame apart.
            await until(pilot, lambda: table.visible_ranks == [0, 1]
                        and all(table.row_texts(r)[2] == expected[r][0] for r in (0, 1))
                        and loss.border_title == title)
            for r in (0, 1):
                cells = table.row_texts(r)
                assert (cells[2], cells[3], cells[STATE]) == (*expected[r], "finished")
            text = str(app.query_one(HeaderBar).render())
            # scheduler.log is not a device.
            assert "1 nodes x 2 devices = 2 ranks" in text
            assert "FINISHED" in text and "step 32/32 (100.0%)" in text
            assert loss.border_title == title

    try:
        asyncio.run(main())
    finally:
        source.close()


def test_a_rank_the_scheduler_timed_out_is_failed_in_the_table_too(tmp_path: Path) -> None:
    """The alerts say rank 1 timed out: its row must not go on saying running."""
    worker1 = (SAMPLES / "worker_1.log").read_bytes()
    cut = worker1.rindex(b"\n", 0, worker1.index(b"step:[   11/")) + 1  # rank 1 at step 10
    (tmp_path / "worker_0.log").write_bytes((SAMPLES / "worker_0.log").read_bytes())
    (tmp_path / "worker_1.log").write_bytes(worker1[:cut])
    (tmp_path / "scheduler.log").write_bytes((SAMPLES / "scheduler.log").read_bytes())
    source, app = logs_app(tmp_path)

    async def main() -> None:
        async with app.run_test(size=(200, 50)) as pilot:
            table = app.query_one(RankTable)
            await until(pilot, lambda: table.visible_ranks == [0, 1] and table.row_texts(1)[2] == "10/32")
            assert table.row_texts(1)[STATE] == "running"
            append(tmp_path / "scheduler.log", TIMEOUT_LINE)
            await until(pilot, lambda: table.row_texts(1)[STATE] == "failed")
            assert table.row_texts(1)[REASON].startswith("timed out")
            assert table.row_texts(0)[STATE] == "finished"
            alerts = str(app.query_one(AlertsPanel).render())
            assert "timeout  rank 1  step 10" in alerts
            assert "FAILED" in str(app.query_one(HeaderBar).render())

    try:
        asyncio.run(main())
    finally:
        source.close()
