"""The embedded default cluster for real: mfctl demo, and launch/status/logs/stop on this machine."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from tests.browser import check_rendered_report, chromium, outside_references
from tests.conftest import run_mfctl_process
from tests.helpers_train import mindspore_missing

pytestmark = [pytest.mark.train,
              pytest.mark.skipif(mindspore_missing() is not None, reason=str(mindspore_missing()))]


def job_processes(job_id: str) -> list[int]:
    """Every live process on this machine whose environment carries the job's marker."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"MFCTL_JOB={job_id}".encode() in env:
            found.append(int(entry))
    return found


def test_demo_headless_trains_for_real(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    started = time.monotonic()
    r = run_mfctl_process("demo", "--headless", "--dir", d, timeout=900)
    wall = time.monotonic() - started
    assert r.exit_code == 0, r.stdout + r.stderr
    # What the user reads: each rank's steps and its loss falling.
    ranks = re.findall(r"rank (\d): (\d+) steps, loss ([\d.]+) -> ([\d.]+)", r.stdout)
    assert [x[0] for x in ranks] == ["0", "1"], r.stdout
    for _, steps, first, last in ranks:
        assert int(steps) >= 30
        assert float(last) < float(first)
    assert "finished" in r.stdout
    # And what the user finds on disk, where the summary says.
    logs = d / "output" / "msrun_log"
    assert str(logs) in r.stdout
    assert (logs / "worker_0.log").is_file() and (logs / "worker_1.log").is_file()
    for rank in (0, 1):
        ckpts = list((d / "output" / "checkpoint" / f"rank_{rank}").glob("*.ckpt"))
        assert ckpts, f"no checkpoint for rank {rank}"
        assert str(sorted(ckpts)[-1]) in r.stdout
    job_id = re.search(r"(\S+-\d{8}-\d{6}): finished", r.stdout).group(1)
    assert job_processes(job_id) == []
    jobs = json.loads(run_mfctl_process("jobs", "--json").stdout)
    assert jobs[0]["id"] == job_id and jobs[0]["state"] == "finished"
    print(f"demo wall time {wall:.0f} s")
    # What the user shares afterwards: one self-contained page with both ranks' curves.
    rep = run_mfctl_process("report", job_id, "--json")
    assert rep.exit_code == 0, rep.stderr
    result = json.loads(rep.stdout)
    page = Path(result["path"])
    assert page.resolve() == (d / "report.html").resolve()
    assert result["ranks"] == [0, 1] and result["points"] >= 60 and result["notes"] == []
    assert outside_references(page.read_text()) == []
    if chromium():
        check_rendered_report(page, tmp_path / "browser", ranks=(0, 1))


def test_local_launch_status_logs_stop_leaves_nothing(tmp_path: Path) -> None:
    from mfctl.live.demo import prepare_demo_job

    d = tmp_path / "job"
    prepare_demo_job(d, lambda _: None)
    r = run_mfctl_process("launch", "--json", cwd=d)
    assert r.exit_code == 0, r.stderr
    job_id = json.loads(r.stdout)["id"]
    # msrun survives mfctl exiting: the job is running on its own.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = json.loads(run_mfctl_process("status", "--json", cwd=d).stdout)
        if any((rank.get("step") or 0) >= 1 for rank in status["ranks"]):
            break
        time.sleep(2)
    assert status["job"]["state"] == "running"
    assert status["nodes"][0]["alive"] and len(status["nodes"][0]["processes"]) >= 3
    assert {rank["rank"] for rank in status["ranks"]} == {0, 1}

    logs = run_mfctl_process("logs", "--rank", "1", "--lines", "5", cwd=d)
    assert logs.exit_code == 0 and len(logs.stdout.splitlines()) == 5

    pids = job_processes(job_id)
    assert len(pids) >= 3  # msrun, the scheduler and two workers (each in its own group)
    stop = run_mfctl_process("stop", cwd=d)
    assert stop.exit_code == 0, stop.stderr
    assert "localhost: no process left" in stop.stdout
    assert job_processes(job_id) == []
    # A killed worker (~1 GB of memory) can still be in the kernel's exit path (state R, its
    # environment already gone) a moment after it stopped counting as the job's: give it that moment.
    deadline = time.monotonic() + 10
    for pid in pids:
        while True:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
            except OSError:
                break
            if stat == "Z":
                break
            assert time.monotonic() < deadline, f"process {pid} still alive ({stat})"
            time.sleep(0.2)
    again = run_mfctl_process("stop", job_id)
    assert again.exit_code == 0 and "no process left" in again.stdout
    jobs = json.loads(run_mfctl_process("jobs", "--json").stdout)
    assert jobs[0]["state"] == "stopped" and jobs[0]["exit_cause"] == "stopped by user"


def test_logs_bad_rank(tmp_path: Path) -> None:
    from mfctl.cluster.plan import LaunchPlan
    from mfctl.records.record import JobRecord
    from mfctl.records.store import JobStore

    plan = LaunchPlan.from_json({
        "job_name": "x", "world_size": 2, "master_addr": "127.0.0.1", "master_port": 8118, "launcher": "msrun",
        "parallel": {"data_parallel": 2, "model_parallel": 1, "pipeline_stage": 1, "micro_batch_num": 1},
        "nodes": [{"host": "localhost", "node_rank": 0, "local_worker_num": 2, "ranks": [0, 1],
                   "command": "msrun ...", "job_dir": str(tmp_path), "log_dir": "output/msrun_log"}]})
    JobStore().add(JobRecord(id="x-20260101-000000", name="x", job_dir=str(tmp_path), transport="local",
                             spec={}, plan=plan, hosts=[{"host": "localhost"}]))
    r = run_mfctl_process("logs", "x-20260101-000000", "--rank", "7")
    assert r.exit_code == 2 and "--rank 7: job x-20260101-000000 has ranks 0..1" in r.stderr
