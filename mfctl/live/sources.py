"""Dashboard sources: what ``mfctl watch`` hands the dashboard (``tui.source.DashboardSource``).

``LiveSource`` is a live job's ``LiveSession`` seen by the dashboard (its supervisor's verdict
shown as the cluster state and an alert); ``LogDirSource`` is a directory of logs through the same
collector, read once or followed as it grows. Neither imports the dashboard: the CLI wires them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mfctl.cluster.health import JobState
from mfctl.jobs.backend import Backend
from mfctl.jobs.backends import backend_for_record
from mfctl.jobs.status import stop_job
from mfctl.live.collector import MetricsCollector
from mfctl.metrics.types import History, RankState, Snapshot
from mfctl.records.record import JobRecord

if TYPE_CHECKING:
    from mfctl.live.session import LiveSession


def job_info(record: JobRecord) -> dict[str, Any]:
    """The dashboard header's facts about a job."""
    nodes = record.plan.nodes
    return {"id": record.id, "name": record.name, "model": record.spec.get("model", "?"),
            "nodes": len(nodes), "devices_per_node": nodes[0].local_worker_num if nodes else 0,
            "world_size": record.plan.world_size, "started_at": record.started_at or record.created_at}


class LiveSource:
    """A running (or finished) job's session as the dashboard's source."""

    #: How often the scheduler is asked about the job (one ``scontrol`` call; Slurm only).
    SCHEDULER_EVERY_S = 5.0

    def __init__(self, session: LiveSession) -> None:
        self.session = session
        self.record = session.record
        self._scheduler_note: str | None = None
        self._scheduler_at = float("-inf")
        self._scheduler_backend: Backend | None = None  # its own: a backend is not shared between threads

    @property
    def verdict(self):
        return self.session.verdict

    def snapshot(self) -> Snapshot:
        snap = self.session.snapshot()
        verdict = self.session.verdict
        if verdict is not None and verdict.state == JobState.FAILED:
            snap["cluster"]["state"] = RankState.FAILED
            snap["alerts"] = list(snap.get("alerts", [])) + [{
                "kind": "supervisor", "rank": None, "step": snap["cluster"].get("step"),
                "message": f"job stopped on every node: {verdict.cause}", "time": time.time()}]
        note = self._scheduler()
        if note:
            snap["scheduler"] = note
        return snap

    def _scheduler(self) -> str | None:
        """What the scheduler says of the job (a pending Slurm job and its reason), asked at most
        every ``SCHEDULER_EVERY_S``; None for hosts, which have no scheduler. Called from the
        dashboard's poll worker, never the UI thread."""
        now = time.monotonic()
        if now - self._scheduler_at >= self.SCHEDULER_EVERY_S:
            self._scheduler_at = now
            if self._scheduler_backend is None:
                self._scheduler_backend = backend_for_record(self.record)
            try:
                self._scheduler_note = self._scheduler_backend.describe(self.record.id)
            except Exception as exc:  # a failed look is shown; the dashboard goes on
                self._scheduler_note = f"scheduler not reachable: {exc}"
        return self._scheduler_note

    def history(self, rank: int | None = None) -> History:
        return self.session.history(rank)

    def rank_log(self, rank: int, lines: int) -> list[str]:
        node, _path, ok, text = self.session.backend.rank_log(rank, lines)
        if not ok:
            return [f"(no log for rank {rank} on {node.host} yet: {text})"]
        return text.splitlines()

    def stop_job(self) -> str:
        result = stop_job(self.record.id, Path(self.record.job_dir), cause="stopped from the dashboard")
        left = {h: n for h, n in result["nodes"].items() if n != 0}
        return ("job stopped: no process left on any node" if not left
                else f"stop incomplete on {', '.join(left)}")


class LogDirSource:
    """A directory of logs through the same pipeline, as a dashboard source.

    ``follow=False``: read once (logs copied off a cluster, ``--once``). ``follow=True``: a
    ``LogDirFollower`` keeps reading the files as they grow, new files too (a live job's log dir
    on a shared filesystem); ``start()`` begins following, ``close()`` ends it."""

    def __init__(self, directory: Path, seq_length: int | None, pipeline_stage: int,
                 follow: bool = False, interval_s: float = 0.2, chip: str | None = None) -> None:
        """``chip``: the chip the ranks ran on (``watch --chip``), for MFU."""
        from mfctl.metrics.logdir import load_log_dir
        from mfctl.metrics.state import MetricsState

        self.directory = directory
        state = MetricsState(world_size=None, pipeline_stage=pipeline_stage, seq_length=seq_length, chip=chip)
        self.collector = MetricsCollector(state)
        self.follower = None
        if follow:
            from mfctl.live.logdir_follow import LogDirFollower

            self.follower = LogDirFollower(directory, self.collector.feed, interval_s=interval_s)
            self.follower.scan()  # which files there are now; reading them is the thread's
        else:
            self._files = load_log_dir(directory, state)
            self.collector.backfill()

    @property
    def files(self) -> dict[str, int | None]:
        """{path: rank} of the logs read (or followed so far)."""
        return self.follower.files if self.follower is not None else self._files

    def start(self) -> LogDirSource:
        if self.follower is not None:
            self.follower.start()
        return self

    def close(self) -> None:
        if self.follower is not None:
            self.follower.stop()

    def snapshot(self) -> Snapshot:
        return self.collector.snapshot()

    def history(self, rank: int | None = None) -> History:
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
