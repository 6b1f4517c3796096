"""The dashboard on a log directory with ``--chip``: each rank's MFU in the table, the cluster's in
the header, and a CANN failure in the alerts panel with what to check."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mfctl.live.sources import LogDirSource
from mfctl.tui.app import make_app
from mfctl.tui.panels import AlertsPanel, HeaderBar
from mfctl.tui.rows import COLUMN_KEYS
from mfctl.tui.table import RankTable

DATA = Path(__file__).resolve().parent.parent / "data"
SAMPLES = DATA / "samples" / "mindformers-1.9.0-cpu-msrun-dp2"
JOB = {"id": "logs", "name": "logs", "model": "logs", "nodes": 1, "devices_per_node": 2,
       "world_size": None, "started_at": None}
MFU = COLUMN_KEYS.index("mfu")


async def until(pilot: Any, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.02)


def write_logs(directory: Path) -> None:
    """The real CPU run's logs with an NPU's TFLOPS in their step lines (rank 0 156.5 T, rank 1
    125.2 T: 50% and 40% of a 910B3's 313 T); rank 1's log ends with a real device out-of-memory
    block (tests/data/ascend, its source line dropped)."""
    for rank, tflops in ((0, "156.500"), (1, "125.200")):
        text = (SAMPLES / f"worker_{rank}.log").read_text(encoding="utf-8")
        text = re.sub(r"train_throughput_per_npu: [0-9.]+T", f"train_throughput_per_npu: {tflops}T", text)
        if rank == 1:
            oom = (DATA / "ascend" / "mindspore_EE9999_halMemAlloc_device_oom.log").read_text(encoding="utf-8")
            text += oom.partition("\n")[2]
        (directory / f"worker_{rank}.log").write_text(text, encoding="utf-8")


def test_mfu_column_header_and_the_hint_of_a_cann_alert(tmp_path: Path) -> None:
    write_logs(tmp_path)
    source = LogDirSource(tmp_path, None, 1, follow=True, interval_s=0.05, chip="910B3").start()
    app = make_app(source, job=JOB, clock=lambda: 0.0, refresh_s=0.05)

    async def main() -> None:
        async with app.run_test(size=(200, 50)) as pilot:
            table = app.query_one(RankTable)
            await until(pilot, lambda: table.visible_ranks == [0, 1] and table.row_texts(1)[MFU] == "40.0%")
            assert table.row_texts(0)[MFU] == "50.0%"
            header = str(app.query_one(HeaderBar).render())
            assert "MFU 45.0% of 313 TFLOPS (910B3)" in header
            await until(pilot, lambda: "device_oom" in str(app.query_one(AlertsPanel).render()))
            alerts = str(app.query_one(AlertsPanel).render())
            assert "EE9999 device out of memory" in alerts
            assert "check: the device memory is full" in alerts
            # Sorting by MFU puts the rank holding the others back first.
            table.set_sort("mfu")
            await pilot.pause(0.05)
            assert table.visible_ranks == [1, 0]

    try:
        asyncio.run(main())
    finally:
        source.close()
