"""A job under a scheduler: the header says what the scheduler says (a Slurm job still pending and why)."""

from __future__ import annotations

import asyncio

from mfctl.tui.app import make_app
from tests.fakes.dashboard import StaticSource, synthetic_snapshot

JOB = {"id": "j-1", "name": "n", "model": "tiny-llama", "nodes": 2, "devices_per_node": 1, "world_size": 2}


def header_of(snapshot: dict) -> str:
    app = make_app(StaticSource([snapshot]), job=JOB, clock=lambda: 0.0)

    async def main() -> str:
        async with app.run_test(size=(200, 40)) as pilot:
            await pilot.pause()
            return str(app.query_one("#header").render())

    return asyncio.run(main())


def test_pending_job_says_so_in_the_header() -> None:
    snap = synthetic_snapshot(2, 1)
    snap["scheduler"] = "slurm job 7: pending (Resources)"
    first_line = header_of(snap).splitlines()[0]
    assert "slurm job 7: pending (Resources)" in first_line


def test_no_scheduler_no_note() -> None:
    assert "slurm" not in header_of(synthetic_snapshot(2, 1))
