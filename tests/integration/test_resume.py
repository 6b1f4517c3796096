"""Resume for real on this machine: a job killed mid-run continues from its last checkpoint."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_mfctl_process
from tests.helpers_train import mindspore_missing

pytestmark = [pytest.mark.train, pytest.mark.timeout(900),
              pytest.mark.skipif(mindspore_missing() is not None, reason=str(mindspore_missing()))]
STEP = re.compile(r"step:\[\s*(\d+)/\s*(\d+)\]")


def make_job(tmp_path: Path) -> Path:
    from mfctl.data.corpus import pydoc_wikitext
    from mfctl.data.prepare import prepare_dataset

    text = pydoc_wikitext()
    (tmp_path / "c.tokens").write_text(text[: len(text) // 2])
    data = prepare_dataset([str(tmp_path / "c.tokens")], tmp_path / "c.mindrecord", 64,
                           train_tokenizer_vocab=1000).output
    job = tmp_path / "job"
    r = run_mfctl_process("init", job, "--model", "tiny-llama", "--dataset", data, "--python", sys.executable,
                          "--yes")
    assert r.exit_code == 0, r.stderr
    spec = job / "mfctl.yaml"
    spec.write_text(spec.read_text() + "train:\n  save_checkpoint_steps: 20\n  vocab_size: 1000\n  seq_length: 64\n")
    return job


def steps_of(log: Path) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in STEP.findall(log.read_text(errors="replace"))]


def wait_step(job: Path, rank_log: str, step: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    log = job / "output" / "msrun_log" / rank_log
    while time.monotonic() < deadline:
        if log.exists() and any(s >= step for s, _ in steps_of(log)):
            return
        time.sleep(0.5)
    raise AssertionError(f"no step {step} in {log}")


def last_checkpoint_step(job: Path) -> int:
    meta = json.loads((job / "output" / "checkpoint" / "rank_0" / "meta.json").read_text())
    return int(meta["last_step"])


def test_killed_job_resumes_past_its_checkpoint(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    r = run_mfctl_process("launch", "--json", cwd=job)
    assert r.exit_code == 0, r.stderr
    first_id = json.loads(r.stdout)["id"]
    wait_step(job, "worker_1.log", 45)
    assert run_mfctl_process("stop", "--grace", "0", cwd=job).exit_code == 0  # killed mid-run
    saved = last_checkpoint_step(job)
    assert saved >= 40

    r = run_mfctl_process("launch", "--resume", first_id, "--supervise", "--json", cwd=job)
    assert r.exit_code == 0, r.stderr
    verdict = json.loads(r.stdout.strip().splitlines()[-1])
    assert verdict["state"] == "finished"
    for rank in (0, 1):
        log = job / "output" / "msrun_log" / f"worker_{rank}.log"
        steps = steps_of(log)
        first, total = steps[0]
        assert first > saved, f"rank {rank} restarted at step {first}, checkpoint was {saved}"
        assert steps[-1] == (total, total)
        # MindFormers' distributed checkpoint load synchronises the ranks with a barrier CPU has
        # only through the routing of cpu_train.route_barrier (the ranks met there).
        text = log.read_text(errors="replace")
        assert "Start resume training from checkpoint" in text
        assert ("barrier of mindformers.trainer.utils, mindspore.communication.comm_func is "
                "mindspore.ops.communication.barrier") in text
    # The first run's logs are kept beside the new ones.
    assert list((job / "output").glob("msrun_log.*"))
    jobs = json.loads(run_mfctl_process("jobs", "--json").stdout)
    assert jobs[0]["resumed_from"] == first_id and jobs[0]["state"] == "finished"


def test_supervised_job_restarts_itself_after_a_worker_dies(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "mfctl", "launch", "--supervise", "--max-restarts", "1",
                             "--json"], cwd=job, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_step(job, "worker_1.log", 25)
    first = json.loads(run_mfctl_process("jobs", "--json").stdout)[0]["id"]
    status = json.loads(run_mfctl_process("status", first, "--json").stdout)
    worker = next(p["pid"] for p in status["nodes"][0]["processes"]
                  if p["role"] == "MS_WORKER" and p["rank"] == 1 and p["pid"] == p["pgid"])
    os.kill(worker, signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    verdict = json.loads(out.strip().splitlines()[-1])
    assert verdict["state"] == "finished" and verdict["restarts"] == 1
    jobs = json.loads(run_mfctl_process("jobs", "--json").stdout)
    assert jobs[1]["id"] == first and jobs[1]["state"] == "failed" and "rank 1" in jobs[1]["exit_cause"]
    assert jobs[0]["resumed_from"] == first and jobs[0]["state"] == "finished"
    steps = steps_of(job / "output" / "msrun_log" / "worker_0.log")
    assert steps[0][0] > 20 and steps[-1][0] == steps[-1][1]
