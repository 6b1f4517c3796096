"""One job, followed: ``LiveSession`` is the one follower and the one metrics state of a job.

``watch`` (the dashboard), ``watch --once``, ``supervise``, ``launch --supervise`` and ``demo`` all
open one session per job and read it; none starts a follower or a metrics state of its own. The
steps and alerts it sees are saved with the job record (``mfctl export``, ``mfctl report``).

    session = LiveSession(record, store).start()      # follow the logs
    session.snapshot() / session.history(rank)         # the metrics, any thread
    session.supervise(...)                             # judge until the job ends (blocking)
    session.start_supervisor()                         # ... or beside a dashboard
    make_app(session.source)                           # the dashboard's view of it (cli wires it)
    session.close()

``read_once()`` is ``watch --once``: every node's logs read once through the same collector,
without a follower. ``supervise()`` and ``run_supervised()`` (``mfctl supervise``, ``launch
--supervise``) open a session and judge the job through it until it ends.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mfctl.cluster.health import ACTIVE_STATES, JobState, Verdict
from mfctl.jobs.backend import Backend
from mfctl.jobs.backends import backend_for_record
from mfctl.jobs.checkpoints import has_checkpoint
from mfctl.jobs.status import new_state
from mfctl.live.collector import MetricsCollector
from mfctl.live.follow import JobFollower
from mfctl.live.supervise import Supervisor
from mfctl.metrics.types import AlertView, History, Snapshot
from mfctl.records.record import JobRecord
from mfctl.records.store import JobStore
from mfctl.remote.connect import SshOptions

StepRows = list[tuple]  # (rank, step, total_steps, loss, step_time_ms, samples_per_s, time)


class LiveSession:
    def __init__(self, record: JobRecord, store: JobStore | None = None,
                 clock: Callable[[], float] = time.time,
                 on_steps: Callable[[StepRows], None] | None = None, backend: Backend | None = None,
                 plots: bool = True) -> None:
        """``store``: where the steps and alerts are saved (None: nowhere); ``on_steps``: also
        told of every new step (the demo prints them); ``backend``: the job's (default: the one its
        record names); ``plots``: keep the plot series (``history()``), False for a reader that
        draws none (``report`` draws its page from the saved rows)."""
        self.record = record
        self.store = store
        self.backend: Backend = backend or backend_for_record(record)
        self._store_lock = threading.Lock()  # one sqlite connection, several threads
        self._on_steps_extra = on_steps
        self.collector = MetricsCollector(new_state(record), self._save_steps, clock, self._save_alerts,
                                          plots=plots, on_mfu=self._save_mfu)
        self.follower: JobFollower | None = None
        self.verdict: Verdict | None = None  # the supervisor's, once the job ended
        self._halt = threading.Event()
        self._supervisor_thread: threading.Thread | None = None

    # -- what the collector saw goes to the record

    def _save_steps(self, rows: StepRows) -> None:
        if self.store is not None:
            with self._store_lock:
                self.store.add_metrics(self.record.id, rows)
        if self._on_steps_extra is not None:
            self._on_steps_extra(rows)

    def _save_alerts(self, alerts: list[AlertView]) -> None:
        if self.store is not None:
            with self._store_lock:
                self.store.add_alerts(self.record.id, alerts)

    def _save_mfu(self, summary: dict) -> None:
        """The job's MFU now (chip, peak, per rank), an ``mfu`` event of the record (``report``)."""
        if self.store is not None:
            with self._store_lock:
                self.store.event(self.record.id, "mfu", json.dumps(summary))

    # -- following

    def start(self) -> LiveSession:
        """Follow every node's logs (one follower per job; calling it again does nothing)."""
        if self.follower is None:
            self.follower = JobFollower.for_sources(self.backend.log_sources(), self.collector.feed)
            self.follower.start()
        return self

    def read_once(self) -> Snapshot:
        """Every node's logs read once from the start (metric lines only), through the same
        collector; the steps seen are saved with the job record, each with its own step time and
        the time its log line printed (``mfctl report`` draws its curves from them)."""
        results = self.backend.read_logs()
        for lines in results.ok.values():
            self.collector.feed(lines)
        snap = self.collector.snapshot()
        snap["unreachable"] = {h: str(e) for h, e in results.failed.items()}
        return snap

    def snapshot(self) -> Snapshot:
        return self.collector.snapshot()

    def history(self, rank: int | None = None) -> History:
        return self.collector.history(rank)

    # -- supervision

    def supervisor(self, **kwargs):
        return Supervisor(self.record, JobStore(self.store.home) if self.store else JobStore(),
                          snapshot=self.collector.snapshot, **kwargs)

    def start_supervisor(self) -> None:
        """Supervise beside a dashboard (while the job runs): a failure stops the job everywhere;
        ``verdict`` says how it ended."""
        if self.record.state not in ACTIVE_STATES or self._supervisor_thread is not None:
            return
        sup = self.supervisor()

        def run() -> None:
            verdict = sup.run(halt=self._halt)
            if verdict.state != JobState.RUNNING:
                self.verdict = verdict

        self._supervisor_thread = threading.Thread(target=run, daemon=True, name="supervisor")
        self._supervisor_thread.start()

    def supervise(self, *, unreachable_after_s: float = 15.0, stall_after_s: float | None = None,
                  fail_fast: bool = True, say: Callable[[str], None] = lambda _: None,
                  poll_s: float = 1.0) -> Verdict:
        """Supervise in the foreground until the job ends; returns the (recorded) verdict, and
        says the progress every 10 s."""
        sup = self.supervisor(unreachable_after_s=unreachable_after_s, stall_after_s=stall_after_s,
                              fail_fast=fail_fast)
        last_report = [0.0]

        def report(_: Verdict) -> None:
            now = time.monotonic()
            if now - last_report[0] >= 10:
                last_report[0] = now
                c = self.snapshot().get("cluster", {})
                loss = c.get("loss")
                say(f"{self.record.id}: step {c.get('step')}/{c.get('total_steps')}"
                    + (f", loss {loss:.4f}" if isinstance(loss, float) else "")
                    + (f", {c['tokens_per_s']:,.0f} tokens/s" if c.get("tokens_per_s") else ""))

        self.verdict = sup.run(poll_s=poll_s, on_poll=report)
        return self.verdict

    # -- the dashboard's view

    @property
    def source(self):
        """This session as the dashboard's source (``mfctl.live.sources.LiveSource``)."""
        from mfctl.live.sources import LiveSource

        return LiveSource(self)

    def job_info(self) -> dict:
        from mfctl.live.sources import job_info

        return job_info(self.record)

    def close(self) -> None:
        self._halt.set()
        if self.follower is not None:
            self.follower.stop()
        self.backend.close()

def supervise(record: JobRecord, store: JobStore, *, unreachable_after_s: float = 15.0,
              stall_after_s: float | None = None, fail_fast: bool = True,
              say: Callable[[str], None] = lambda _: None, poll_s: float = 1.0) -> Verdict:
    """Follow the job's logs (one ``LiveSession``) and supervise it until it ends; returns the
    verdict (recorded)."""
    session = LiveSession(record, store).start()
    try:
        return session.supervise(unreachable_after_s=unreachable_after_s, stall_after_s=stall_after_s,
                                 fail_fast=fail_fast, say=say, poll_s=poll_s)
    finally:
        session.close()


def run_supervised(record: JobRecord, directory: Path, nodes: str | None, opts: SshOptions,
                   master_addr: str | None, sync_dataset: bool,
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
        if verdict.state == JobState.FINISHED or restarts >= max_restarts:
            break
        with backend_for_record(record) as backend:
            resumable = has_checkpoint(record, backend)
        if not resumable:
            say(f"{record.id} saved no checkpoint yet: not resuming")
            break
        restarts += 1
        say(f"resuming from the last checkpoint (restart {restarts} of {max_restarts})")
        record = launch(directory, nodes, opts, master_addr, sync_dataset=sync_dataset,
                        resume_from=record, store=store).launched
    if as_json:
        print(json.dumps({"job": record.id, "state": verdict.state, "cause": verdict.cause,
                          "restarts": restarts}))
    return 0 if verdict.state == JobState.FINISHED else 1
