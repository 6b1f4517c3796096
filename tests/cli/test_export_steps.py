"""Every step kept: ``mfctl export`` holds each step of each rank with that step's own step time,
loss, samples/s and the time its log line printed, however many steps one read brings.

The logs are the real MindFormers 1.9.0 sample run (tests/data/samples); the expected rows are
read straight from the log files, line by line, independently of mfctl's parser.
"""

from __future__ import annotations

import datetime
import json
import random
import re
from pathlib import Path

import pytest

from tests.sample_job import SAMPLES, make_sample_job

JOB = "demo-export-20261129-040000-cd34"

_STEP = re.compile(r"^(\S+ \S+) .*step:\[ *(\d+)/ *(\d+)\], loss:\[([\d.]+)/[\d.]+\], per_step_time: (\d+)ms")
_SPS = re.compile(r"\| ([\d.]+) samples/s/p")


def rows_of_log(rank: int) -> list[dict]:
    """What the log of ``rank`` prints per step, as export rows."""
    rows: list[dict] = []
    for line in (SAMPLES / f"worker_{rank}.log").read_text().splitlines():
        m = _STEP.match(line)
        if m:
            stamp = datetime.datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            rows.append({"rank": rank, "step": int(m[2]), "total_steps": int(m[3]), "loss": float(m[4]),
                         "step_time_ms": float(m[5]), "samples_per_s": None, "time": stamp})
            continue
        s = _SPS.search(line)
        if s and rows and rows[-1]["samples_per_s"] is None:
            rows[-1]["samples_per_s"] = float(s[1])
    return rows


def exported(mfctl) -> list[dict]:
    r = mfctl("export", JOB, "--format", "jsonl")
    assert r.exit_code == 0, r.stderr
    return sorted((json.loads(line) for line in r.stdout.splitlines()), key=lambda row: (row["rank"], row["step"]))


def expected() -> list[dict]:
    return [row for rank in (0, 1) for row in rows_of_log(rank)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multi_step_batches_export_every_step_as_the_log_prints_it(mfctl, tmp_path: Path, seed: int) -> None:
    from mfctl.jobs.status import new_state
    from mfctl.live.collector import MetricsCollector
    from mfctl.metrics.types import LogLine
    from mfctl.records.store import JobStore

    record = make_sample_job(tmp_path / "job", JOB, feed=False)
    store = JobStore()
    collector = MetricsCollector(new_state(record), lambda rows: store.add_metrics(JOB, rows))
    rng = random.Random(seed)
    for rank in (0, 1):
        lines = [LogLine("localhost", rank, text) for text in (SAMPLES / f"worker_{rank}.log").read_text().splitlines()]
        i = 0
        while i < len(lines):  # batches of many steps, as a follower catching up reads them
            n = rng.choice([1, 2, 3, 40, 97, 5000])
            collector.feed(lines[i:i + n])
            i += n
    store.close()
    want = expected()
    assert len(want) == 64
    assert exported(mfctl) == want  # row by row: step, loss, step time, samples/s, the line's time


def test_the_first_read_of_report_exports_every_step_as_the_log_prints_it(mfctl, tmp_path: Path) -> None:
    # A job nobody watched: report reads every node's logs at once (whole batches), then export.
    make_sample_job(tmp_path / "job", JOB, feed=False)
    assert mfctl("report", JOB, "--json").exit_code == 0
    assert exported(mfctl) == expected()
