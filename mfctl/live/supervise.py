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
from collections.abc import Callable
from dataclasses import dataclass, field

from mfctl.cluster.health import JobState, Memory, Verdict, judge
from mfctl.jobs.backend import Backend
from mfctl.jobs.backends import backend_for_record
from mfctl.metrics.types import Snapshot
from mfctl.records.record import JobRecord
from mfctl.records.store import JobStore


@dataclass
class Supervisor:
    record: JobRecord
    store: JobStore
    snapshot: Callable[[], Snapshot] | None = None  # the metrics pipeline's current snapshot
    unreachable_after_s: float = 15.0
    stall_after_s: float | None = None
    fail_fast: bool = True
    grace_s: float = 2.0
    #: One look at a node may take this long (a partitioned node must not stall the loop).
    poll_timeout_s: float = 5.0
    #: Nodes that could not be stopped (unreachable) are retried this long.
    stop_retry_s: float = 120.0
    clock: Callable[[], float] = time.monotonic
    #: A worker gone before its rank logged the end is a failure once this long has passed, so a
    #: worker that just finished is not mistaken for a dead one while its last lines are in flight.
    confirm_s: float = 1.5
    backend: Backend | None = None
    memory: Memory = field(init=False)

    def __post_init__(self) -> None:
        if self.backend is None:
            self.backend = backend_for_record(self.record)
        self.memory = Memory(unreachable_after_s=self.unreachable_after_s, confirm_s=self.confirm_s,
                             stall_after_s=self.stall_after_s)

    def close(self) -> None:
        assert self.backend is not None
        self.backend.close()

    # -- one look at the cluster
    def check(self) -> Verdict:
        assert self.backend is not None
        statuses = self.backend.statuses(self.record.id, self.poll_timeout_s)
        snap = self.snapshot() if self.snapshot else None
        verdict = judge(statuses, snap, self.memory, self.clock())
        self.memory = verdict.memory
        return verdict

    # -- the loop
    def run(self, poll_s: float = 1.0, on_poll: Callable[[Verdict], None] | None = None,
            halt: threading.Event | None = None) -> Verdict:
        """Poll until the job ends (or ``halt`` is set: then it returns "running", doing nothing)."""
        try:
            while True:
                verdict = self.check()
                if on_poll:
                    on_poll(verdict)
                if verdict.state != JobState.RUNNING:
                    return self.conclude(verdict)
                if halt is not None:
                    if halt.wait(poll_s):
                        return verdict
                else:
                    time.sleep(poll_s)
        finally:
            self.close()

    def conclude(self, verdict: Verdict) -> Verdict:
        if verdict.state == JobState.FAILED and self.fail_fast:
            # Record the cause first: if this process dies while stopping, the record still says why.
            self.store.set_state(self.record.id, JobState.FAILED, verdict.cause)
            dirty = self.stop_everywhere()
            cause = (verdict.cause or "failed") + ("; stopped on every node" if not dirty
                                                   else f"; could not verify the stop on {', '.join(dirty)}")
            self.store.update(self.record.id, exit_cause=cause)
            return Verdict(JobState.FAILED, cause, verdict.rule, verdict.host, verdict.rank,
                           verdict.exit_code, verdict.unseen, verdict.memory)
        self.store.set_state(self.record.id, verdict.state, verdict.cause)
        return verdict

    def stop_everywhere(self) -> list[str]:
        """Stop the job on every node; keep retrying unreachable ones for ``stop_retry_s``."""
        assert self.backend is not None
        pending = [n.host for n in self.record.plan.nodes]
        deadline = self.clock() + self.stop_retry_s
        while True:
            left = self.backend.stop(self.record.id, self.grace_s, hosts=pending)
            pending = [h for h, n in left.items() if n != 0]
            if not pending or self.clock() >= deadline:
                return sorted(pending)
            time.sleep(2.0)
