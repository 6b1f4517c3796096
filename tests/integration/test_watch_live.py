"""mfctl watch on a real 2-node SSH job: every rank live; a killed worker turns its row failed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import run_mfctl_process
from tests.helpers_train import mindspore_missing
from tests.integration.test_faults import wait_clean, worker_pid
from tests.integration.test_ssh_cluster import make_job, small_dataset, ssh_args

pytestmark = [pytest.mark.cluster, pytest.mark.train, pytest.mark.timeout(900),
              pytest.mark.skipif(mindspore_missing() is not None, reason=str(mindspore_missing()))]


def test_dashboard_shows_ranks_live_and_a_killed_worker_fails_its_row(netns_cluster, tmp_path: Path) -> None:
    from mfctl.live.session import LiveSession
    from mfctl.records.store import JobStore
    from mfctl.tui.app import make_app
    from mfctl.tui.table import RankTable

    cluster = netns_cluster(2)
    job = make_job(tmp_path, cluster, 2, str(small_dataset(tmp_path, 0.6)), name="watched")
    r = run_mfctl_process("launch", "--sync-dataset", "--json", *ssh_args(cluster), cwd=job)
    assert r.exit_code == 0, r.stderr
    job_id = json.loads(r.stdout)["id"]
    store = JobStore()
    record = store.get(job_id)
    session = LiveSession(record, store).start()
    session.start_supervisor()
    source = session.source
    app = make_app(source, job=session.job_info(), refresh_s=0.2)
    outcome: dict = {}

    async def body() -> None:
        async with app.run_test(size=(180, 40)) as pilot:
            table = pilot.app.query_one(RankTable)

            async def until(cond, timeout: float) -> float:
                start = time.monotonic()
                while time.monotonic() - start < timeout:
                    await pilot.pause(0.2)
                    if cond():
                        return time.monotonic() - start
                raise AssertionError("timed out; rows: " + repr([table.row_texts(r) for r in (0, 1)]))

            def step(rank: int) -> int:
                if rank not in table._latest:  # no row for the rank yet
                    return 0
                text = table.row_texts(rank)[2]
                return int(text.split("/")[0]) if "/" in text else 0

            await until(lambda: step(0) >= 3 and step(1) >= 3, 300)
            first = (step(0), step(1))
            await until(lambda: step(0) > first[0] and step(1) > first[1], 60)  # live, not a replay
            assert {table.row_texts(0)[1], table.row_texts(1)[1]} == {n.name for n in cluster.nodes[:2]}
            os.kill(worker_pid(cluster, cluster.nodes[1], job_id, 1), signal.SIGKILL)
            outcome["failed_after"] = await until(lambda: "failed" in table.row_texts(1), 30)
            outcome["row"] = table.row_texts(1)
            # The supervisor beside the dashboard stops the job everywhere and says so.
            await until(lambda: source.verdict is not None, 30)
            assert "job stopped on every node" in str(source.snapshot()["alerts"][-1]["message"])

    try:
        asyncio.run(body())
    finally:
        session.close()
    assert outcome["failed_after"] <= 10, outcome
    assert outcome["row"][-1], f"the failed row gives no reason: {outcome['row']}"
    wait_clean(cluster, job_id, timeout=30)  # and the supervisor stopped the job on both nodes
    record = json.loads(run_mfctl_process("jobs", "--json").stdout)[0]
    assert record["state"] == "failed" and record["exit_cause"]
