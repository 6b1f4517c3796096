"""The supervisor: notice a failure anywhere in a running job and stop it everywhere, in seconds.

msrun alone takes ~30 s to tear down one node after a worker dies, and across nodes the survivors
wait for the cluster and HCCL timeouts (up to hours). The supervisor polls every node's processes
(one cheap command each, at most ``fanout`` at once) and reads the metrics pipeline; with
fail-fast on it stops the job on every node at the first of:

* a worker process gone before its rank finished (or msrun exiting with an error);
* a node unreachable for longer than ``unreachable_after_s``;
* a rank stalled: no step for longer than ``stall_after_s`` (default: from the observed step
  time, see ``ClusterState.stall_threshold_s``) or a traceback in its log.

The cause is recorded in the job record. The job's end (all ranks finished, msrun exited 0 on
every node) is recorded too.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from mfctl.jobs.ops import NodeStatus, close_all, describe_error, node_status, on_all, stop_all
from mfctl.jobs.status import transports_of
from mfctl.jobs.store import JobRecord, JobStore
from mfctl.remote.base import NodeUnreachable


@dataclass
class Verdict:
    state: str  # running | finished | failed
    cause: str | None = None


@dataclass
class Supervisor:
    record: JobRecord
    store: JobStore
    snapshot: Callable[[], dict] | None = None  # the metrics pipeline's current snapshot
    unreachable_after_s: float = 15.0
    stall_after_s: float | None = None
    fail_fast: bool = True
    grace_s: float = 2.0
    #: One look at a node may take this long (a partitioned node must not stall the loop).
    poll_timeout_s: float = 5.0
    #: Nodes that could not be stopped (unreachable) are retried this long.
    stop_retry_s: float = 120.0
    clock: Callable[[], float] = time.monotonic
    _transports: dict = field(default_factory=dict)
    _unreachable_since: dict[str, float] = field(default_factory=dict)
    _workers_seen: dict[int, bool] = field(default_factory=dict)
    _nodes: dict[str, dict] = field(default_factory=dict)
    _gone_since: dict[int, float] = field(default_factory=dict)
    #: A worker gone before its rank logged the end is a failure once this long has passed, so a
    #: worker that just finished is not mistaken for a dead one while its last lines are in flight.
    confirm_s: float = 1.5

    def __post_init__(self) -> None:
        self._transports = transports_of(self.record)
        self._nodes = {n["host"]: n for n in self.record.plan["nodes"]}

    def close(self) -> None:
        close_all(self._transports)

    # -- one look at the cluster
    def check(self) -> Verdict:
        results = on_all(self._transports,
                         lambda t: node_status(t, self.record.id, self._nodes[t.host], self.poll_timeout_s),
                         self.record.ssh.get("fanout", 64))
        now = self.clock()
        statuses: dict[str, NodeStatus] = {}
        for host, got in results.items():
            if isinstance(got, Exception):
                since = self._unreachable_since.setdefault(host, now)
                if now - since >= self.unreachable_after_s:
                    return Verdict("failed", f"{host} unreachable for {now - since:.0f} s: {describe_error(got)}")
                if not isinstance(got, NodeUnreachable):
                    return Verdict("failed", f"{host}: {describe_error(got)}")
                continue
            self._unreachable_since.pop(host, None)
            statuses[host] = got
        snap = self.snapshot() if self.snapshot else {"ranks": []}
        finished = {r["rank"] for r in snap.get("ranks", []) if r.get("state") == "finished"}
        for r in snap.get("ranks", []):
            if r.get("state") == "failed":
                return Verdict("failed", f"rank {r['rank']}: {r.get('reason') or 'failed'}")
            if r.get("state") == "stalled" and (self.stall_after_s is None or
                                                (r.get("last_update_age_s") or 0) >= self.stall_after_s):
                return Verdict("failed", f"rank {r['rank']} stalled: no step for "
                               f"{r.get('last_update_age_s') or 0:.0f} s after step {r.get('step')}")
        for host, st in statuses.items():
            if st.exit_code not in (None, 0):
                return Verdict("failed", f"msrun on {host} exited with code {st.exit_code}")
            node = self._nodes[host]
            alive = {p.rank for p in st.procs if p.role == "MS_WORKER" and p.pid == p.pgid}
            for rank in node["ranks"]:
                if rank in alive:
                    self._workers_seen[rank] = True
                    self._gone_since.pop(rank, None)
                elif self._workers_seen.get(rank) and rank not in finished:
                    since = self._gone_since.setdefault(rank, now)
                    if now - since >= self.confirm_s or (st.alive and not self.snapshot):
                        return Verdict("failed", f"rank {rank}'s worker on {host} exited before training ended")
        if statuses and len(statuses) == len(self._nodes) and not any(s.alive for s in statuses.values()):
            if all(s.exit_code in (0, None) for s in statuses.values()):
                return Verdict("finished", "training over")
            return Verdict("failed", "no process left")
        return Verdict("running")

    # -- the loop
    def run(self, poll_s: float = 1.0, on_poll: Callable[[Verdict], None] | None = None,
            halt: "threading.Event | None" = None) -> Verdict:
        """Poll until the job ends (or ``halt`` is set: then it returns "running", doing nothing)."""
        try:
            while True:
                verdict = self.check()
                if on_poll:
                    on_poll(verdict)
                if verdict.state != "running":
                    return self.conclude(verdict)
                if halt is not None:
                    if halt.wait(poll_s):
                        return verdict
                else:
                    time.sleep(poll_s)
        finally:
            self.close()

    def conclude(self, verdict: Verdict) -> Verdict:
        if verdict.state == "failed" and self.fail_fast:
            # Record the cause first: if this process dies while stopping, the record still says why.
            self.store.set_state(self.record.id, "failed", verdict.cause)
            dirty = self.stop_everywhere()
            cause = verdict.cause + ("; stopped on every node" if not dirty
                                     else f"; could not verify the stop on {', '.join(dirty)}")
            verdict = Verdict("failed", cause)
            self.store.update(self.record.id, exit_cause=cause)
            return verdict
        self.store.set_state(self.record.id, verdict.state, verdict.cause)
        return verdict

    def stop_everywhere(self) -> list[str]:
        """Stop the job on every node; keep retrying unreachable ones for ``stop_retry_s``."""
        pending = dict(self._transports)
        deadline = self.clock() + self.stop_retry_s
        while True:
            left = stop_all(pending, self.record.id, self.grace_s, self.record.ssh.get("fanout", 64),
                            job_dirs={h: n["job_dir"] for h, n in self._nodes.items()})
            pending = {h: pending[h] for h, n in left.items() if n != 0}
            if not pending or self.clock() >= deadline:
                return sorted(pending)
            time.sleep(2.0)


def supervise(record: JobRecord, store: JobStore, *, unreachable_after_s: float = 15.0,
              stall_after_s: float | None = None, fail_fast: bool = True,
              say: Callable[[str], None] = lambda _: None, poll_s: float = 1.0) -> Verdict:
    """Follow the job's logs and supervise it until it ends; returns the verdict (recorded)."""
    from mfctl.jobs.watch import LiveSource

    source = LiveSource(record, store).start()
    sup = Supervisor(record, store, snapshot=source.snapshot, unreachable_after_s=unreachable_after_s,
                     stall_after_s=stall_after_s, fail_fast=fail_fast)
    last_report = [0.0]

    def report(verdict: Verdict) -> None:
        now = time.monotonic()
        if now - last_report[0] >= 10:
            last_report[0] = now
            c = source.snapshot().get("cluster", {})
            loss = c.get("loss")
            say(f"{record.id}: step {c.get('step')}/{c.get('total_steps')}"
                + (f", loss {loss:.4f}" if isinstance(loss, float) else "")
                + (f", {c['tokens_per_s']:,.0f} tokens/s" if c.get("tokens_per_s") else ""))

    try:
        return sup.run(poll_s=poll_s, on_poll=report)
    finally:
        source.close()


def has_checkpoint(record: JobRecord) -> bool:
    """Whether any node of the job saved a checkpoint to resume from."""
    import posixpath
    import shlex

    transports = transports_of(record)
    out = record.spec.get("output_dir", "output")
    dirs = {n["host"]: posixpath.join(n["job_dir"], out, "checkpoint") for n in record.plan["nodes"]}
    try:
        results = on_all(transports, lambda t: t.run(
            f"ls {shlex.quote(dirs[t.host])}/rank_*/*.ckpt 2>/dev/null | head -n 1", timeout=30))
    finally:
        close_all(transports)
    return any(not isinstance(r, Exception) and r.stdout.strip() for r in results.values())


def run_supervised(record: JobRecord, directory, nodes, opts, master_addr, sync_dataset: bool,
                   max_restarts: int, stall_after_s: float | None, unreachable_after_s: float,
                   as_json: bool, say: Callable[[str], None]) -> int:
    """``launch --supervise``: supervise, and resume from the last checkpoint after a failure."""
    import json

    from mfctl.jobs.launch import launch

    store = JobStore()
    restarts = 0
    while True:
        say(f"supervising {record.id} (fail-fast: any failure stops every node)")
        verdict = supervise(record, store, unreachable_after_s=unreachable_after_s,
                            stall_after_s=stall_after_s, say=say)
        say(f"{record.id}: {verdict.state} ({verdict.cause})")
        if verdict.state == "finished" or restarts >= max_restarts:
            break
        if not has_checkpoint(record):
            say(f"{record.id} saved no checkpoint yet: not resuming")
            break
        restarts += 1
        say(f"resuming from the last checkpoint (restart {restarts} of {max_restarts})")
        record = launch(directory, nodes, opts, master_addr, sync_dataset=sync_dataset,
                        resume_from=record, store=store).record
    if as_json:
        print(json.dumps({"job": record.id, "state": verdict.state, "cause": verdict.cause,
                          "restarts": restarts}))
    return 0 if verdict.state == "finished" else 1
