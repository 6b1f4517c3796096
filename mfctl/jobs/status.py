"""``status``, ``stop`` and ``logs`` for a recorded job, on whichever transport it runs."""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mfctl.cluster.hostfile import HostEntry
from mfctl.errors import BadInput
from mfctl.jobs.ops import (
    NodeStatus, close_all, describe_error, log_path, node_status, on_all, open_transport,
    stop_all, tail_command,
)
from mfctl.jobs.store import ACTIVE_STATES, JobRecord, JobStore
from mfctl.remote.base import Transport
from mfctl.remote.connect import SshOptions

_RANK_RE = re.compile(r"worker_(\d+)\.log$")


def entries_of(record: JobRecord) -> list[HostEntry]:
    return [HostEntry(h["host"], h.get("user"), h.get("port"), h.get("slots"), h.get("line", 0))
            for h in record.hosts]


def transports_of(record: JobRecord) -> dict[str, Transport]:
    opts = SshOptions.from_json(record.ssh)
    return {e.label: open_transport(e, record.job_dir, opts) for e in entries_of(record)}


def new_state(record: JobRecord):
    """The metrics state for a job's ranks (seq_length gives tokens/s)."""
    from mfctl.metrics.state import MetricsState

    plan = record.plan
    seq = (record.spec.get("train") or {}).get("seq_length")
    if seq is None:
        from mfctl.presets import PRESETS

        preset = PRESETS.get(record.spec.get("model", ""))
        seq = preset.model.seq_length if preset else None
    return MetricsState(world_size=plan["world_size"],
                        pipeline_stage=plan["parallel"]["pipeline_stage"], seq_length=seq)


@dataclass
class StatusReport:
    record: JobRecord
    nodes: list[NodeStatus]
    snapshot: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"job": self.record.to_json(), "nodes": [n.to_json() for n in self.nodes],
                **self.snapshot}


def _judge(record: JobRecord, nodes: list[NodeStatus], snapshot: dict[str, Any]) -> tuple[str, str | None]:
    """The job's state from what the nodes say."""
    if any(not n.reachable for n in nodes):
        return record.state, None
    if any(n.alive for n in nodes):
        return "running", None
    codes = [n.exit_code for n in nodes]
    ranks = snapshot.get("ranks", [])
    all_done = bool(ranks) and all(r.get("state") == "finished" for r in ranks)
    if all_done and all(c in (0, None) for c in codes):
        return "finished", record.exit_cause or "training over"
    bad = [f"{n.host} exit code {n.exit_code}" for n in nodes if n.exit_code not in (0, None)]
    if bad:
        return "failed", record.exit_cause or "msrun failed: " + ", ".join(bad)
    if all(c == 0 for c in codes):
        return "finished", record.exit_cause or "msrun exited 0"
    return ("stopped" if record.state == "stopped" else "failed"), record.exit_cause or "no process left"


def collect_status(ref: str | None, directory: Path, store: JobStore | None = None) -> StatusReport:
    store = store or JobStore()
    record = store.find(ref, directory)
    transports = transports_of(record)
    nodes_by_host = {n["host"]: n for n in record.plan["nodes"]}
    try:
        results = on_all(transports, lambda t: node_status(t, record.id, nodes_by_host[t.host]),
                         record.ssh.get("fanout", 64))
    finally:
        close_all(transports)
    statuses = []
    state = new_state(record)
    for host, node in nodes_by_host.items():
        got = results[host]
        if isinstance(got, Exception):
            statuses.append(NodeStatus(host, node["node_rank"], reachable=False, error=describe_error(got)))
            continue
        statuses.append(got)
        for name, line in got.lines:
            m = _RANK_RE.search(name)
            state.feed(int(m.group(1)) if m else None, line, host)
    snapshot = state.snapshot(time.time())
    # A rank whose node has no process left and that never finished did not end well.
    if record.state in ACTIVE_STATES or record.state == "launching":
        new, cause = _judge(record, statuses, snapshot)
        if new != record.state:
            store.set_state(record.id, new, cause)
            record.state, record.exit_cause = new, cause
    return StatusReport(record, statuses, snapshot)


def stop_job(ref: str | None, directory: Path, grace: float = 10.0,
             store: JobStore | None = None, cause: str = "stopped by user") -> dict[str, Any]:
    store = store or JobStore()
    record = store.find(ref, directory)
    transports = transports_of(record)
    try:
        results = stop_all(transports, record.id, grace, record.ssh.get("fanout", 64),
                           job_dirs={n["host"]: n["job_dir"] for n in record.plan["nodes"]})
    finally:
        close_all(transports)
    nodes = {h: (r if isinstance(r, int) else describe_error(r)) for h, r in results.items()}
    clean = all(v == 0 for v in nodes.values())
    if record.state in ACTIVE_STATES:
        store.set_state(record.id, "stopped", cause)
        record.state = "stopped"
    return {"job": record.id, "state": record.state, "clean": clean, "nodes": nodes}


def print_logs(ref: str | None, directory: Path, rank: int | None, follow: bool, lines: int,
               store: JobStore | None = None) -> None:
    store = store or JobStore()
    record = store.find(ref, directory)
    world = record.plan["world_size"]
    if rank is not None and rank >= world:
        raise BadInput(f"--rank {rank}: job {record.id} has ranks 0..{world - 1}")
    if rank is None:
        node = record.plan["nodes"][0]
    else:
        node = next(n for n in record.plan["nodes"] if rank in n["ranks"])
    entry = next(e for e in entries_of(record) if e.label == node["host"])
    transport = open_transport(entry, record.job_dir, SshOptions.from_json(record.ssh))
    path = log_path(node, rank)
    try:
        if follow:
            for line in transport.stream(tail_command(path, lines, True)):
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
        else:
            res = transport.run(tail_command(path, lines, False), timeout=60)
            if not res.ok:
                raise BadInput(f"{node['host']}: {path}: no such log yet "
                               f"({res.stderr.strip() or 'tail failed'}); has the job started?")
            sys.stdout.write(res.stdout)
    finally:
        transport.close()
