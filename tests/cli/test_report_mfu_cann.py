"""mfctl report of a job on a known chip that died of a CANN failure: its MFU per rank against the
chip's peak, and the failure named by its code with what to check."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from tests.sample_job import make_sample_job

JOB = "npu-20261207-080000-cd34"
DATA = Path(__file__).resolve().parent.parent / "data"


def npu_job(job_dir: Path) -> None:
    """The sample job as if it ran on 910B3s: its step lines with an NPU's TFLOPS (156.5 T on rank
    0, 125.2 T on rank 1), rank 1's log ending with a real device out-of-memory block, the chip
    recorded the way launch records what preflight found."""
    from mfctl.records.store import JobStore

    record = make_sample_job(job_dir, JOB, feed=False)
    logs = job_dir / "output" / "msrun_log"
    for rank, tflops in ((0, "156.500"), (1, "125.200")):
        path = logs / f"worker_{rank}.log"
        text = re.sub(r"train_throughput_per_npu: [0-9.]+T", f"train_throughput_per_npu: {tflops}T",
                      path.read_text(encoding="utf-8"))
        if rank == 1:
            oom = (DATA / "ascend" / "mindspore_EE9999_halMemAlloc_device_oom.log").read_text(encoding="utf-8")
            text += oom.partition("\n")[2]
        path.write_text(text, encoding="utf-8")
    store = JobStore()
    store.update(JOB, spec=json.dumps({**record.spec, "npu_chip": "910B3"}))
    store.close()


def test_report_shows_mfu_per_rank_and_the_cann_failure_with_what_to_check(mfctl, tmp_path: Path) -> None:
    npu_job(tmp_path / "job")
    r = mfctl("report", JOB, "--json")
    assert r.exit_code == 0, r.stderr
    text = html.unescape((tmp_path / "job" / "report.html").read_text())
    assert "910B3: peak 313 TFLOPS dense BF16/FP16" in text
    assert "45.0%, mean of 2 ranks" in text
    table = text[text.index("<h2>Model FLOPs utilisation</h2>"):text.index("<h2>Alerts, restarts and exit</h2>")]
    assert "<td>0</td><td>156.5</td><td>50.0%</td>" in table
    assert "<td>1</td><td>125.2</td><td>40.0%</td>" in table
    assert "rank 1: EE9999 device out of memory" in text
    assert "EE9999: the device memory is full" in text  # the alert's "what to check" column


def test_report_without_a_chip_says_why_there_is_no_mfu(mfctl, tmp_path: Path) -> None:
    make_sample_job(tmp_path / "job", JOB)
    assert mfctl("report", JOB).exit_code == 0
    text = html.unescape((tmp_path / "job" / "report.html").read_text())
    assert "no MFU: the chip or the ranks' TFLOPS are unknown" in text


def test_status_and_jobs_name_the_cann_failure_as_the_cause(mfctl, tmp_path: Path) -> None:
    # The job record still says running; nothing of it runs any more and rank 1's log ends with a
    # device out-of-memory block: `status` judges it failed and names why.
    from mfctl.records.store import JobStore

    npu_job(tmp_path / "job")
    store = JobStore()
    store.update(JOB, state="running", exit_cause=None)
    store.close()
    r = mfctl("status", JOB, columns=200)
    assert r.exit_code == 0, r.stderr
    assert "failed (rank 1: EE9999 device out of memory (the device memory is full)" in r.stdout
    assert "  check: the device memory is full: either another process holds the chip" in r.stdout
    jobs = mfctl("jobs", "--json")
    assert jobs.exit_code == 0, jobs.stderr
    [job] = [j for j in json.loads(jobs.stdout) if j["id"] == JOB]
    assert job["state"] == "failed"
    assert job["exit_cause"].startswith("rank 1: EE9999 device out of memory (the device memory is full)")
