"""``status``, ``stop`` and ``logs`` for a recorded job, through its backend."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mfctl.cluster.health import ACTIVE_STATES, JobState, Memory, NodeStatus, judge
from mfctl.errors import BadInput, MfctlError
from mfctl.jobs.backends import backend_for_record
from mfctl.metrics.logdir import rank_of_path
from mfctl.metrics.state import MetricsState
from mfctl.metrics.types import Snapshot
from mfctl.records.record import JobRecord
from mfctl.records.store import JobStore


def seq_length_of(record: JobRecord) -> int | None:
    """The job's sequence length (tokens/s needs it): the spec's, else its preset's."""
    seq = (record.spec.get("train") or {}).get("seq_length")
    if seq is None:
        from mfctl.presets import PRESETS

        preset = PRESETS.get(record.spec.get("model", ""))
        seq = preset.model.seq_length if preset else None
    return seq


def chip_of(record: JobRecord) -> str | None:
    """The NPU chip the job's nodes have, for MFU: what their preflight found (``npu-smi info``'s
    Name, recorded at launch as the spec's ``npu_chip``), None when unknown."""
    chip = record.spec.get("npu_chip")
    return str(chip) if chip else None


def new_state(record: JobRecord) -> MetricsState:
    """The metrics state for a job's ranks (seq_length gives tokens/s, the chip MFU)."""
    return MetricsState(world_size=record.plan.world_size, pipeline_stage=record.plan.pipeline_stage,
                        seq_length=seq_length_of(record), chip=chip_of(record))


@dataclass
class StatusReport:
    record: JobRecord
    nodes: list[NodeStatus]
    snapshot: Snapshot

    def to_json(self) -> dict[str, Any]:
        return {"job": self.record.to_json(), "nodes": [n.to_json() for n in self.nodes],
                **self.snapshot}


def collect_status(ref: str | None, directory: Path, store: JobStore | None = None) -> StatusReport:
    """One look at every node (processes, exit code, the tail of the logs), judged, recorded."""
    store = store or JobStore()
    record = store.find(ref, directory)
    with backend_for_record(record) as backend:
        statuses = backend.statuses(record.id)
    state = new_state(record)
    for st in statuses:
        for name, line in st.lines:
            state.feed(rank_of_path(name), line, st.host)
    snapshot = state.snapshot(time.time())
    if record.state in ACTIVE_STATES:
        verdict = judge(statuses, snapshot, Memory.one_look(), time.time())
        # An unseen node may still run: the record keeps its state until it is seen again.
        if not verdict.unseen and verdict.state != record.state:
            cause = record.exit_cause or verdict.cause
            store.set_state(record.id, verdict.state, cause)
            record.state, record.exit_cause = verdict.state, cause
    return StatusReport(record, statuses, snapshot)


def stop_job(ref: str | None, directory: Path, grace: float = 10.0,
             store: JobStore | None = None, cause: str = "stopped by user") -> dict[str, Any]:
    store = store or JobStore()
    record = store.find(ref, directory)
    with backend_for_record(record) as backend:
        nodes = backend.stop(record.id, grace)
        note = backend.describe(record.id)  # what the scheduler says now (Slurm: cancelled)
    clean = all(v == 0 for v in nodes.values())
    if record.state in ACTIVE_STATES:
        store.set_state(record.id, JobState.STOPPED, cause)
        record.state = JobState.STOPPED
    return {"job": record.id, "state": record.state, "clean": clean, "nodes": nodes,
            **({"scheduler": note} if note else {})}


def print_logs(ref: str | None, directory: Path, rank: int | None, follow: bool, lines: int,
               store: JobStore | None = None) -> None:
    store = store or JobStore()
    record = store.find(ref, directory)
    world = record.plan.world_size
    if rank is not None and rank >= world:
        raise BadInput(f"--rank {rank}: job {record.id} has ranks 0..{world - 1}")
    backend = backend_for_record(record)
    if follow:
        for line in backend.follow_log(rank, lines):
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        return
    node, path, ok, text = backend.rank_log(rank, lines)
    if not ok:
        raise BadInput(f"{node.host}: {path}: no such log yet ({text or 'tail failed'}); has the job started?")
    sys.stdout.write(text)


def scheduler_notes(records: list[JobRecord]) -> dict[str, str]:
    """What the scheduler says about each active job (``mfctl jobs``); jobs no scheduler runs have
    no note (and cost nothing: the hosts backend connects to nothing for it)."""
    notes: dict[str, str] = {}
    for record in records:
        if record.state in ACTIVE_STATES:
            try:
                with backend_for_record(record) as backend:
                    note = backend.describe(record.id)
            except MfctlError as exc:
                note = str(exc)
            if note:
                notes[record.id] = note
    return notes
