"""A finished 2-rank job on this machine built from real MindFormers logs, without training.

The logs in tests/data/samples/mindformers-1.9.0-cpu-msrun-dp2 are copied where a local job keeps
them, the job record goes into the store, and the log lines go through ``MetricsCollector`` the
way ``mfctl watch`` feeds them (one follower batch per line), saving steps and alerts with the
record: the same data a watched demo job leaves behind.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent / "data" / "samples" / "mindformers-1.9.0-cpu-msrun-dp2"
SEQ_LENGTH = 64  # what the sample run trained with


def make_sample_job(job_dir: Path, job_id: str, host: str = "localhost", feed: bool = True, name: str = "sample"):
    from mfctl.cluster.plan import LaunchPlan
    from mfctl.jobs.status import new_state
    from mfctl.live.collector import MetricsCollector
    from mfctl.metrics.types import LogLine
    from mfctl.records.record import JobRecord
    from mfctl.records.store import JobStore

    logs = job_dir / "output" / "msrun_log"
    logs.mkdir(parents=True)
    for f in SAMPLES.glob("*.log"):
        shutil.copy(f, logs / f.name)
    node = {"host": host, "node_rank": 0, "local_worker_num": 2, "ranks": [0, 1],
            "command": "msrun --worker_num 2 --local_worker_num 2 run_mindformer.py",
            "job_dir": str(job_dir), "log_dir": "output/msrun_log"}
    now = time.time()
    record = JobRecord(
        id=job_id, name=name, job_dir=str(job_dir), transport="local",
        spec={"name": "sample", "model": "tiny-llama", "env": {},
              "train": {"seq_length": SEQ_LENGTH, "steps": 32}},
        plan=LaunchPlan.from_json({
            "job_name": "sample", "world_size": 2, "master_addr": host, "master_port": 8118,
            "launcher": "msrun", "nodes": [node],
            "parallel": {"data_parallel": 2, "model_parallel": 1, "pipeline_stage": 1, "micro_batch_num": 1}}),
        hosts=[{"host": host, "user": None, "port": None, "slots": 2, "line": 1}],
        state="finished", exit_cause="all ranks finished (32 steps)", created_at=now - 120,
        started_at=now - 110, ended_at=now - 5)
    store = JobStore()
    store.add(record)
    store.event(job_id, "state", "running")
    store.event(job_id, "state", "finished: all ranks finished (32 steps)")
    if feed:
        collector = MetricsCollector(new_state(record), lambda rows: store.add_metrics(job_id, rows),
                                     on_alerts=lambda alerts: store.add_alerts(job_id, alerts))
        for rank in (0, 1):
            for text in (logs / f"worker_{rank}.log").read_text().splitlines():
                collector.feed([LogLine(host, rank, text)])
        collector.snapshot()
    store.close()
    return record
