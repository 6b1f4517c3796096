"""Log streaming over SSH survives an sshd restart mid-run: no line lost, none counted twice."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import run_mfctl_process
from tests.helpers_train import mindspore_missing
from tests.integration.test_ssh_cluster import make_job, small_dataset, ssh_args

pytestmark = [pytest.mark.cluster, pytest.mark.train, pytest.mark.timeout(900),
              pytest.mark.skipif(mindspore_missing() is not None, reason=str(mindspore_missing()))]
KEEP = re.compile(r"step:\[|samples/s/p")


def test_sshd_restart_mid_run_loses_and_duplicates_no_line(netns_cluster, tmp_path: Path) -> None:
    from mfctl.jobs.backends import backend_for_record
    from mfctl.live.follow import JobFollower
    from mfctl.records.store import JobStore

    cluster = netns_cluster(2)
    job = make_job(tmp_path, cluster, 2, str(small_dataset(tmp_path, 0.6)), name="follow")
    r = run_mfctl_process("launch", "--sync-dataset", "--json", *ssh_args(cluster), cwd=job)
    assert r.exit_code == 0, r.stderr
    job_id = json.loads(r.stdout)["id"]
    record = JobStore().get(job_id)

    got: dict[int, list[str]] = {0: [], 1: []}
    lock = threading.Lock()

    def sink(batch) -> None:
        with lock:
            for line in batch:
                if line.rank is not None:
                    got[line.rank].append(line.text)

    follower = JobFollower.for_sources(backend_for_record(record).log_sources(), sink, retry_s=0.5)
    follower.start()
    try:
        def steps(rank: int) -> int:
            with lock:
                return sum("step:[" in t for t in got[rank])

        deadline = time.monotonic() + 300
        while steps(1) < 5 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert steps(1) >= 5
        node2 = cluster.nodes[1]
        cluster.kill_sshd(node2)  # the listener and the streaming session
        time.sleep(3)  # the job goes on writing while nobody reads
        cluster.restart_sshd(node2)
        status = {}
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            status = json.loads(run_mfctl_process("status", "--json", cwd=job).stdout)
            if status["job"]["state"] != "running":
                break
            time.sleep(2)
        assert status["job"]["state"] == "finished", status["job"]
        time.sleep(2)  # the last lines are in flight
    finally:
        follower.stop()
    node2_follower = follower.followers[1]
    assert node2_follower.stats.reconnects >= 1
    for rank, node in ((0, cluster.nodes[0]), (1, cluster.nodes[1])):
        log = Path(node.home) / "mfctl-jobs" / "follow" / "output" / "msrun_log" / f"worker_{rank}.log"
        expected = [line for line in log.read_text(errors="replace").splitlines() if KEEP.search(line)]
        seen = [t for t in got[rank] if KEEP.search(t)]
        assert seen == expected, f"rank {rank}: {len(seen)} lines streamed, {len(expected)} in the log"
        last = [t for t in seen if "step:[" in t][-1]
        step, total = re.search(r"step:\[\s*(\d+)/\s*(\d+)\]", last).groups()
        assert step == total  # followed to the last step
