"""``mfctl watch``: the live metrics pipeline for a job, for the dashboard and for scripts.

``LiveSource`` is the adapter between the followers (one log stream per node) and the pure
metrics state: followers push batches from their threads, the dashboard pulls snapshots on its
timer. Every new step is also written to the job record, so the history outlives the session.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

from mfctl.jobs.follow import MSRUN_OUT, JobFollower, LogLine, logtail_command, resolve_log_dir
from mfctl.jobs.ops import close_all, log_path, on_all, tail_command
from mfctl.jobs.status import entries_of, new_state, stop_job, transports_of
from mfctl.jobs.store import JobRecord, JobStore
from mfctl.metrics.logdir import rank_of_path
from mfctl.metrics.series import SeriesStore
from mfctl.remote.connect import SshOptions, open_transport

class MetricsCollector:
    """Feeds log lines into a metrics state under a lock and notes each new step of each rank:
    to ``on_steps`` (the job record) and to the plot series (band over ranks, each rank's line).
    New alerts of each snapshot go to ``on_alerts`` (the job record, for ``mfctl report``)."""

    def __init__(self, state, on_steps: Callable[[list[tuple]], None] | None = None,
                 clock: Callable[[], float] = time.time,
                 on_alerts: Callable[[list[dict]], None] | None = None) -> None:
        self.state = state
        self.lock = threading.Lock()
        self.clock = clock
        self._on_steps = on_steps
        self._on_alerts = on_alerts
        self._last_step: dict[int, int] = {}
        self._saved_alerts: set[tuple] = set()
        self.series = SeriesStore()

    def _loss_from_rank(self) -> int:
        # With pipeline stages only the last stage's ranks print the model's loss.
        pp = self.state.pipeline_stage
        if pp <= 1:
            return 0
        world = self.state.world_size or max(self.state.ranks, default=-1) + 1
        return world - world // pp

    def feed(self, batch: list[LogLine]) -> None:
        with self.lock:
            # Consecutive lines of one rank go in together: the state's batch path is ~2x faster.
            start = 0
            for i in range(1, len(batch) + 1):
                if i == len(batch) or (batch[i].rank, batch[i].node) != (batch[start].rank, batch[start].node):
                    first = batch[start]
                    self.state.feed_many(first.rank, [line.text for line in batch[start:i]], first.node)
                    start = i
            rows = self._note_steps({line.rank for line in batch if line.rank is not None}, self.clock())
        if rows and self._on_steps is not None:
            self._on_steps(rows)

    def backfill(self) -> None:
        """Take the steps of a state that was fed before this collector saw it (a log directory
        read at once) into the plot series."""
        with self.lock:
            rows = self._note_steps(list(self.state.ranks), self.clock())
        if rows and self._on_steps is not None:
            self._on_steps(rows)

    def _note_steps(self, ranks, now: float) -> list[tuple]:
        """The steps of ``ranks`` not noted yet, as job-record rows; each also goes to the plot
        series. Called with the lock held."""
        rows: list[tuple] = []
        self.series.loss_from_rank = self._loss_from_rank()
        for rank in ranks:
            r = self.state.ranks.get(rank)
            if r is None:
                continue
            last = self._last_step.get(rank, -1)
            seq = self.state.seq_length
            # Only the points after the last one seen: walk the history back from its newest
            # end (it holds up to 2048 points per rank; reading all of them every batch was
            # 2M points a second at 1024 ranks).
            history = r.history
            new = 0
            while new < len(history) and history[-1 - new][0] > last:
                new += 1
            for i in range(len(history) - new, len(history)):
                step, loss, sps = history[i]
                ms = r.step_time_ms if step == r.step else None
                rows.append((rank, step, r.total_steps, loss, ms, sps, now))
                # Without a sequence length the throughput series holds samples/s (history() says so).
                self.series.add(rank, step, loss, sps * seq if sps is not None and seq else sps, ms)
            if history:
                self._last_step[rank] = max(last, history[-1][0])
        return rows

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            now = self.clock()
            self.state.tick(now)
            snap = self.state.snapshot(now)
            new: list[dict] = []
            if self._on_alerts is not None:
                keys = set()
                for a in snap.get("alerts") or ():
                    key = (a.get("kind"), a.get("rank"), a.get("step"), a.get("message"), a.get("time"))
                    keys.add(key)
                    if key not in self._saved_alerts:
                        new.append(a)
                # Only the alerts still shown are remembered: the set stays as small as the list.
                self._saved_alerts = keys
        if new:
            self._on_alerts(new)
        return snap

    def history(self, rank: int | None = None) -> dict[str, Any]:
        """The plots' data: ``bands`` (per metric, (step, min, median, max) over the ranks),
        ``rank`` (the given rank's own (step, value) points per metric) and ``throughput``, the
        unit of the ``tokens_per_s`` series ("samples/s" when the sequence length is unknown,
        rather than an empty plot). Both are bounded and kept
        up to date as lines arrive, so this costs the same at step 10 and at step 100000 (it used
        to sum every rank's whole history: 2M points a second at 1024 ranks)."""
        with self.lock:
            bands = self.series.bands()
            own = {"rank": rank, **self.series.rank(rank)} if rank is not None else None
            unit = "tokens/s" if self.state.seq_length else "samples/s"
        return {"bands": bands, "rank": own, "throughput": unit}


class LiveSource:
    """A running (or finished) job as the dashboard's ``DashboardSource``."""

    def __init__(self, record: JobRecord, store: JobStore | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.record = record
        self.store = store
        self._store_lock = threading.Lock()
        self.collector = MetricsCollector(new_state(record), self._save, clock, self._save_alerts)
        self.follower = JobFollower.for_record(record, self.collector.feed)

    def _save(self, rows: list[tuple]) -> None:
        if self.store is not None:
            with self._store_lock:
                self.store.add_metrics(self.record.id, rows)

    def _save_alerts(self, alerts: list[dict]) -> None:
        if self.store is not None:
            with self._store_lock:
                self.store.add_alerts(self.record.id, alerts)

    def start(self) -> "LiveSource":
        self.follower.start()
        return self

    def close(self) -> None:
        self.follower.stop()

    def snapshot(self) -> dict:
        return self.collector.snapshot()

    def history(self, rank: int | None = None) -> dict:
        return self.collector.history(rank)

    def rank_log(self, rank: int, lines: int) -> list[str]:
        node = next(n for n in self.record.plan["nodes"] if rank in n["ranks"])
        entry = next(e for e in entries_of(self.record) if e.label == node["host"])
        transport = open_transport(entry, self.record.job_dir, SshOptions.from_json(self.record.ssh))
        try:
            res = transport.run(tail_command(log_path(node, rank), lines, False), timeout=30)
        finally:
            transport.close()
        if not res.ok:
            return [f"(no log for rank {rank} on {node['host']} yet: {res.stderr.strip()})"]
        return res.stdout.splitlines()

    def stop_job(self) -> str:
        result = stop_job(self.record.id, Path(self.record.job_dir), cause="stopped from the dashboard")
        left = {h: n for h, n in result["nodes"].items() if n != 0}
        return ("job stopped: no process left on any node" if not left
                else f"stop incomplete on {', '.join(left)}")


def job_info(record: JobRecord) -> dict[str, Any]:
    nodes = record.plan.get("nodes", [])
    return {"id": record.id, "name": record.name, "model": record.spec.get("model", "?"),
            "nodes": len(nodes), "devices_per_node": nodes[0]["local_worker_num"] if nodes else 0,
            "world_size": record.plan.get("world_size"), "started_at": record.started_at or record.created_at}


def collect_once(record: JobRecord, store: JobStore | None = None, every_step_time: bool = False) -> dict[str, Any]:
    """Every node's logs read once from the start (metric lines only), through the same state;
    the steps seen are saved with the job record. The state keeps only each rank's latest step
    time, so a batch of many steps records the time of its last one; ``every_step_time`` feeds the
    lines one at a time instead (about half the speed) so every saved step has its time, as
    ``mfctl report`` wants for its step-time curves."""
    collector = MetricsCollector(new_state(record),
                                 (lambda rows: store.add_metrics(record.id, rows)) if store else None,
                                 on_alerts=(lambda alerts: store.add_alerts(record.id, alerts)) if store else None)
    python = record.spec.get("python", "python3")
    setup = record.spec.get("setup")
    nodes = {n["host"]: n for n in record.plan["nodes"]}

    def read(t) -> list[LogLine]:
        node = nodes[t.host]
        res = t.run(logtail_command(python, setup, resolve_log_dir(node), {}, once=True,
                                    job_dir=node["job_dir"]), timeout=120)
        out = []
        for raw in res.stdout.splitlines():
            name, _, rest = raw.partition("\t")
            _, _, text = rest.partition("\t")
            rank = rank_of_path(name)
            if rank is not None or name in ("scheduler.log", MSRUN_OUT):
                out.append(LogLine(t.host, rank, text))
        return out

    transports = transports_of(record)
    try:
        results = on_all(transports, read, record.ssh.get("fanout", 64))
    finally:
        close_all(transports)
    for lines in results.values():
        if not isinstance(lines, Exception):
            if every_step_time:
                for line in lines:
                    collector.feed([line])
            else:
                collector.feed(lines)
    snap = collector.snapshot()
    snap["unreachable"] = {h: str(v) for h, v in results.items() if isinstance(v, Exception)}
    return snap


class SupervisedSource(LiveSource):
    """A live job whose supervisor runs beside the dashboard: a failure stops the job everywhere
    and shows in the dashboard as the cluster's state and an alert."""

    def __init__(self, record: JobRecord, store: JobStore, supervise: bool = True, **kwargs: Any) -> None:
        super().__init__(record, store, **kwargs)
        self.verdict = None
        self._halt = threading.Event()
        self._thread = None
        if supervise and record.state in ("running", "launching"):
            from mfctl.jobs.supervise import Supervisor

            sup = Supervisor(record, JobStore(store.home), snapshot=self.collector.snapshot)
            self._thread = threading.Thread(target=self._supervise, args=(sup,), daemon=True,
                                            name="supervisor")

    def _supervise(self, sup) -> None:
        verdict = sup.run(halt=self._halt)
        if verdict.state != "running":
            self.verdict = verdict

    def start(self) -> "SupervisedSource":
        super().start()
        if self._thread is not None:
            self._thread.start()
        return self

    def close(self) -> None:
        self._halt.set()
        super().close()

    def snapshot(self) -> dict:
        snap = super().snapshot()
        verdict = self.verdict
        if verdict is not None and verdict.state == "failed":
            snap["cluster"]["state"] = "failed"
            snap["alerts"] = list(snap.get("alerts", [])) + [{
                "kind": "supervisor", "rank": None, "step": snap["cluster"].get("step"),
                "message": f"job stopped on every node: {verdict.cause}", "time": time.time()}]
        return snap


def run_dashboard(record: JobRecord, exit_when_done: bool = False, store: JobStore | None = None,
                  supervise: bool = True):
    """The Textual dashboard on a job (supervised while it runs); returns the final cluster state
    when it exits by itself."""
    from mfctl.tui.app import make_app

    source = SupervisedSource(record, store or JobStore(), supervise=supervise).start()
    try:
        return make_app(source, job=job_info(record), exit_when_done=exit_when_done, freeze_heap=True).run()
    finally:
        source.close()


class LogDirSource:
    """A directory of logs through the same pipeline, as a dashboard source.

    ``follow=False``: read once (logs copied off a cluster, ``--once``). ``follow=True``: a
    ``LogDirFollower`` keeps reading the files as they grow, new files too (a live job's log dir
    on a shared filesystem); ``start()`` begins following, ``close()`` ends it."""

    def __init__(self, directory: Path, seq_length: int | None, pipeline_stage: int,
                 follow: bool = False, interval_s: float = 0.2) -> None:
        from mfctl.metrics.logdir import load_log_dir
        from mfctl.metrics.state import MetricsState

        self.directory = directory
        state = MetricsState(world_size=None, pipeline_stage=pipeline_stage, seq_length=seq_length)
        self.collector = MetricsCollector(state)
        self.follower = None
        if follow:
            from mfctl.jobs.logdir_follow import LogDirFollower

            self.follower = LogDirFollower(directory, self.collector.feed, interval_s=interval_s)
            self.follower.scan()  # which files there are now; reading them is the thread's
        else:
            self._files = load_log_dir(directory, state)
            self.collector.backfill()

    @property
    def files(self) -> dict[str, int | None]:
        """{path: rank} of the logs read (or followed so far)."""
        return self.follower.files if self.follower is not None else self._files

    def start(self) -> "LogDirSource":
        if self.follower is not None:
            self.follower.start()
        return self

    def close(self) -> None:
        if self.follower is not None:
            self.follower.stop()

    def snapshot(self) -> dict:
        return self.collector.snapshot()

    def history(self, rank: int | None = None) -> dict:
        return self.collector.history(rank)

    def rank_log(self, rank: int, lines: int) -> list[str]:
        for path, r in self.files.items():
            if r == rank:
                with open(path, encoding="utf-8", errors="replace") as handle:
                    return handle.read().splitlines()[-lines:]
        return [f"(no log for rank {rank} in {self.directory})"]

    def stop_job(self) -> str:
        return ("mfctl only reads these logs: stop the job where it was started (scancel, kill)"
                if self.follower is not None else "these are copied logs: there is no job to stop")
