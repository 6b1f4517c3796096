"""``LogDirSource``: a directory of logs as the dashboard's source, or read once (``watch --logs``).

Its own module, importing only the collector and the metrics core: ``mfctl watch --logs DIR --once``
starts without the job machinery (backends, plans, job specs) that ``sources.LiveSource`` needs.

Attaching to a long run. The follower reads every log from its start (the state's running means,
alerts and plots need every step in order), which takes about a second per 1.5M lines. So that
the dashboard shows where every rank is at once, the source first reads the end of each log
(``PREVIEW_BYTES``) into a state of its own, and its snapshots come from that one until the
follower has read every log to the end once; from then on (and for the plots, always) they come
from the whole read. Only when there is much to read (``PREVIEW_FROM`` bytes in all).
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import TYPE_CHECKING

from mfctl.live.collector import MetricsCollector
from mfctl.metrics.types import History, Snapshot

if TYPE_CHECKING:
    from mfctl.metrics.state import ClusterState

# The end of each log read first when attaching (a few dozen steps, a traceback), and how much
# there must be to read in all for it to be worth it.
PREVIEW_BYTES = 32 << 10
PREVIEW_FROM = 16 << 20


class LogDirSource:
    """A directory of logs through the same pipeline, as a dashboard source.

    ``follow=False``: read once (logs copied off a cluster, ``--once``). ``follow=True``: a
    ``LogDirFollower`` keeps reading the files as they grow, new files too (a live job's log dir
    on a shared filesystem); ``start()`` begins following, ``close()`` ends it. ``plots=False``:
    no plot series are built (``--once`` prints none)."""

    def __init__(self, directory: Path, seq_length: int | None, pipeline_stage: int,
                 follow: bool = False, interval_s: float = 0.2, plots: bool = True, chip: str | None = None) -> None:
        """``chip``: the chip the ranks ran on (``watch --chip``), for MFU."""
        from mfctl.metrics.logdir import load_log_dir
        from mfctl.metrics.state import MetricsState

        self.directory = directory
        state = MetricsState(world_size=None, pipeline_stage=pipeline_stage, seq_length=seq_length, chip=chip)
        self.collector = MetricsCollector(state, plots=plots)
        self.follower = None
        self._preview: MetricsCollector | None = None
        self._shown = False  # a snapshot was taken
        self._start_on_snapshot = False
        if follow:
            from mfctl.live.logdir_follow import LogDirFollower

            self.follower = LogDirFollower(directory, self.collector.feed, interval_s=interval_s,
                                           block_sink=self.collector.feed_block)
            self.follower.scan()  # which files there are now; reading them is the thread's
            self._preview = self._read_ends(MetricsState(world_size=None, pipeline_stage=pipeline_stage,
                                                         seq_length=seq_length, chip=chip))
        else:
            # Read once, on the caller's thread: the cyclic garbage collector stays off meanwhile.
            # The read allocates millions of objects and frees them again, none of them in a
            # cycle, and the collector's passes over them were 5-8% of `watch --once`.
            collecting = gc.isenabled()
            gc.disable()
            try:
                self._files = load_log_dir(directory, state)
            finally:
                if collecting:
                    gc.enable()
            self.collector.backfill()

    @property
    def files(self) -> dict[str, int | None]:
        """{path: rank} of the logs read (or followed so far)."""
        return self.follower.files if self.follower is not None else self._files

    def start(self) -> LogDirSource:
        """Begin following. With a preview and no snapshot taken yet, the whole read begins at
        the first snapshot (the dashboard's first frame): it holds the interpreter for most of a
        second, which would otherwise slow the dashboard's start-up several times over."""
        if self.follower is not None and not self.follower.is_alive():
            if self._preview is not None and not self._shown:
                self._start_on_snapshot = True
            else:
                self.follower.start()
        return self

    def close(self) -> None:
        if self.follower is not None:
            self.follower.stop()

    def _read_ends(self, state: ClusterState) -> MetricsCollector | None:
        """The end of every log (``PREVIEW_BYTES``, from a line start) in ``state``; None when
        the logs are short enough to be read whole at once."""
        files = self.files
        sizes = {}
        for path in files:
            try:
                sizes[path] = os.stat(path).st_size
            except OSError:
                continue
        if sum(sizes.values()) < PREVIEW_FROM:
            return None
        for path, size in sizes.items():
            try:
                with open(path, "rb") as handle:
                    start = max(0, size - PREVIEW_BYTES)
                    handle.seek(start)
                    data = handle.read(size - start)
            except OSError:
                continue
            if start:
                data = data[data.find(b"\n") + 1:]  # from the first whole line
            end = data.rfind(b"\n") + 1
            if end:
                state.feed_chunk(files[path], data[:end].replace(b"\r\n", b"\n").replace(b"\r", b"\n"))
        return MetricsCollector(state, plots=False)

    def snapshot(self) -> Snapshot:
        self._shown = True
        preview = self._preview
        if preview is not None:
            if self.follower is None or not self.follower.caught_up.is_set():
                snap = preview.snapshot()
                if self._start_on_snapshot and self.follower is not None:
                    self._start_on_snapshot = False
                    self.follower.start()
                return snap
            self._preview = None  # every log read once: the whole read from now on
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
