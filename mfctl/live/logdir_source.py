"""``LogDirSource``: a directory of logs as the dashboard's source, or read once (``watch --logs``).

Its own module, importing only the collector and the metrics core: ``mfctl watch --logs DIR --once``
starts without the job machinery (backends, plans, job specs) that ``sources.LiveSource`` needs.
"""

from __future__ import annotations

from pathlib import Path

from mfctl.live.collector import MetricsCollector
from mfctl.metrics.types import History, Snapshot


class LogDirSource:
    """A directory of logs through the same pipeline, as a dashboard source.

    ``follow=False``: read once (logs copied off a cluster, ``--once``). ``follow=True``: a
    ``LogDirFollower`` keeps reading the files as they grow, new files too (a live job's log dir
    on a shared filesystem); ``start()`` begins following, ``close()`` ends it. ``plots=False``:
    no plot series are built (``--once`` prints none)."""

    def __init__(self, directory: Path, seq_length: int | None, pipeline_stage: int,
                 follow: bool = False, interval_s: float = 0.2, plots: bool = True) -> None:
        from mfctl.metrics.logdir import load_log_dir
        from mfctl.metrics.state import MetricsState

        self.directory = directory
        state = MetricsState(world_size=None, pipeline_stage=pipeline_stage, seq_length=seq_length)
        self.collector = MetricsCollector(state, plots=plots)
        self.follower = None
        if follow:
            from mfctl.live.logdir_follow import LogDirFollower

            self.follower = LogDirFollower(directory, self.collector.feed, interval_s=interval_s,
                                           block_sink=self.collector.feed_block)
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
