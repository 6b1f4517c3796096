"""The metrics pipeline's one consumer: log lines in, one metrics state, snapshots and plot series out.

Followers (SSH or a local directory) push batches from their threads; the dashboard, the
supervisor and ``watch --once`` pull snapshots. Every step the state applies
(``ClusterState.take_steps``) goes to ``on_steps`` (the job record, so the history outlives the
session) and, when something draws plots (``plots=True``: the dashboard), to the plot series: held
until the plots are asked for (or many are waiting), then taken in one ``SeriesStore.extend``,
which converts and summarises only the points the thinned series keep (a long run's logs read at
once: 768k steps, ~25k kept). So a plot costs the same at step 10 and step 100000, and ``watch
--once`` builds none.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from itertools import groupby
from operator import attrgetter, itemgetter
from typing import Any

from mfctl.metrics.mfu import mfu_summary
from mfctl.metrics.series import SeriesStore
from mfctl.metrics.state import ClusterState
from mfctl.metrics.types import AlertView, History, LogLine, RankHistory, Snapshot

_RANK_NODE = attrgetter("rank", "node")
_TEXT = attrgetter("text")
_COLUMNS = tuple(itemgetter(i) for i in range(4))  # a step point's step, loss, step time, samples/s


class MetricsCollector:
    """Feeds log lines into a metrics state under a lock and notes each new step of each rank:
    to ``on_steps`` (the job record) and to the plot series (band over ranks, each rank's line).
    New alerts of each snapshot go to ``on_alerts`` (the job record, for ``mfctl report``)."""

    # How many steps may wait for the plots (a dashboard asks every second; a session that
    # nobody draws still keeps its series, and this, bounded).
    PLOT_POINTS_WAITING = 1 << 17

    def __init__(self, state: ClusterState, on_steps: Callable[[list[tuple]], None] | None = None,
                 clock: Callable[[], float] = time.time,
                 on_alerts: Callable[[list[AlertView]], None] | None = None, plots: bool = True,
                 on_mfu: Callable[[dict], None] | None = None, mfu_every_s: float = 60.0) -> None:
        """``plots``: keep the plot series (``history()``); False for a reader that draws none.
        ``on_mfu``: gets the MFU summary (``mfctl.metrics.mfu.mfu_summary``) of a snapshot when it
        changed, at most every ``mfu_every_s`` seconds (the first one at once), for the job record."""
        self.state = state
        self.plots = plots
        # Every step, for the record and the plots (take_steps); a reader with neither keeps none.
        state.keep_steps = plots or on_steps is not None
        self.lock = threading.Lock()
        self.clock = clock
        self._on_steps = on_steps
        self._on_alerts = on_alerts
        self._saved_alerts: set[tuple] = set()
        self._on_mfu = on_mfu
        self._mfu_every_s = mfu_every_s
        self._mfu_saved: tuple[float, Any] | None = None  # (when, what) was last given to on_mfu
        self._backfill_due = False
        self._plot_points: dict[int, list[tuple]] = {}  # rank -> steps not in the series yet
        self._waiting = 0
        self.series = SeriesStore()

    def feed(self, batch: Sequence[LogLine]) -> None:
        with self.lock:
            # Consecutive lines of one rank go in together, as one block (the state's fast path).
            ranks = set()
            for (rank, node), lines in groupby(batch, _RANK_NODE):
                self.state.feed_chunk(rank, "\n".join(map(_TEXT, lines)), node)
                if rank is not None:
                    ranks.add(rank)
            rows = self._noted(ranks)
        if rows and self._on_steps is not None:
            self._on_steps(rows)

    def feed_block(self, rank: int | None, data: bytes, node: str | None = None) -> None:
        """Complete lines of one rank's log as read from the file (``ClusterState.feed_chunk``:
        the fast path, for a follower catching up on a long log)."""
        with self.lock:
            self.state.feed_chunk(rank, data, node)
            rows = self._noted(() if rank is None else (rank,))
        if rows and self._on_steps is not None:
            self._on_steps(rows)

    def backfill(self) -> None:
        """Take the steps of a state that was fed before this collector saw it (a log directory
        read at once): now when they are recorded (``on_steps``), else when the plots first ask
        (``history``), so a read that only prints the snapshot (``watch --once --json``) takes
        none."""
        if self._on_steps is None:
            self._backfill_due = self.plots
            return
        with self.lock:
            rows = self._noted(list(self.state.ranks))
        if rows:
            self._on_steps(rows)

    def _noted(self, ranks: Iterable[int]) -> list[tuple]:
        """``_note_steps`` when someone wants the steps (the job record, the plots). Called with
        the lock held."""
        if self._on_steps is None and not self.plots:
            return []
        rows = self._note_steps(ranks, self.clock())
        if self._waiting >= self.PLOT_POINTS_WAITING:
            self._to_series()
        return rows

    def _note_steps(self, ranks: Iterable[int], now: float) -> list[tuple]:
        """The steps of ``ranks`` not noted yet, every one of them (``ClusterState.take_steps``),
        as job-record rows; with ``plots`` they also wait for the plot series. A row's time is the
        one its log line printed, else ``now`` (the poll's). Called with the lock held."""
        rows: list[tuple] = []
        state = self.state
        for rank in ranks:
            points = state.take_steps(rank)
            if not points:
                continue
            if self._on_steps is not None:  # the job record's rows
                total = state.ranks[rank].total_steps
                rows.extend((rank, step, total, loss, ms, sps, t if t is not None else now)
                            for step, loss, ms, sps, t in points)
            if self.plots:
                waiting = self._plot_points.get(rank)
                if waiting is None:
                    self._plot_points[rank] = list(points)
                else:
                    waiting.extend(points)
                self._waiting += len(points)
        return rows

    def _to_series(self) -> None:
        """The waiting steps into the plot series, in one ``extend``. Called with the lock held."""
        waiting, self._plot_points, self._waiting = self._plot_points, {}, 0
        # The state's own rule (with pipeline stages only the last stage's ranks print the
        # model's loss); without a world size, the ranks seen so far stand for it.
        self.series.loss_from_rank = self.state.first_loss_rank(max(self.state.ranks, default=-1) + 1)
        step_of, loss_of, ms_of, sps_of = _COLUMNS
        points = {rank: (list(map(step_of, pts)), list(map(loss_of, pts)), list(map(sps_of, pts)),
                         list(map(ms_of, pts))) for rank, pts in waiting.items()}
        # Without a sequence length the throughput series holds samples/s (history() says so).
        self.series.extend(points, rate_scale=self.state.seq_length)

    def snapshot(self) -> Snapshot:
        with self.lock:
            now = self.clock()
            self.state.tick(now)
            snap = self.state.snapshot(now)
            new: list[AlertView] = []
            if self._on_alerts is not None:
                keys = set()
                for a in snap.get("alerts") or ():
                    key = (a.get("kind"), a.get("rank"), a.get("step"), a.get("message"), a.get("time"))
                    keys.add(key)
                    if key not in self._saved_alerts:
                        new.append(a)
                # Only the alerts still shown are remembered: the set stays as small as the list.
                self._saved_alerts = keys
        if new and self._on_alerts is not None:
            self._on_alerts(new)
        if self._on_mfu is not None:
            self._note_mfu(snap, now)
        return snap

    def _note_mfu(self, snap: Snapshot, now: float) -> None:
        last, on_mfu = self._mfu_saved, self._on_mfu
        if on_mfu is None or (last is not None and now - last[0] < self._mfu_every_s):
            return
        summary = mfu_summary(snap)
        if summary is not None and (last is None or summary != last[1]):
            self._mfu_saved = (now, summary)
            on_mfu(summary)

    def history(self, rank: int | None = None) -> History:
        """The plots' data: ``bands`` (per metric, (step, min, median, max) over the ranks),
        ``rank`` (the given rank's own (step, value) points per metric) and ``throughput``, the
        unit of the ``tokens_per_s`` series ("samples/s" when the sequence length is unknown,
        rather than an empty plot). Both are bounded and kept
        up to date as lines arrive, so this costs the same at step 10 and at step 100000 (it used
        to sum every rank's whole history: 2M points a second at 1024 ranks)."""
        with self.lock:
            if self._backfill_due:
                self._backfill_due = False
                self._note_steps(list(self.state.ranks), self.clock())
            if self._waiting:
                self._to_series()
            bands = self.series.bands()
            own: RankHistory | None = None
            if rank is not None:
                points = self.series.rank(rank)
                own = {"rank": rank, "loss": points["loss"], "tokens_per_s": points["tokens_per_s"],
                       "step_time_ms": points["step_time_ms"]}
            unit = "tokens/s" if self.state.seq_length else "samples/s"
        return {"bands": bands, "rank": own, "throughput": unit}
