"""The metrics pipeline's one consumer: log lines in, one metrics state, snapshots and plot series out.

Followers (SSH or a local directory) push batches from their threads; the dashboard, the
supervisor and ``watch --once`` pull snapshots. Every new step of every rank goes to the plot
series as it arrives (so a plot costs the same at step 10 and step 100000) and to ``on_steps``
(the job record, so the history outlives the session).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from mfctl.metrics.mfu import mfu_summary
from mfctl.metrics.series import SeriesStore
from mfctl.metrics.state import ClusterState
from mfctl.metrics.types import AlertView, History, LogLine, RankHistory, Snapshot


class MetricsCollector:
    """Feeds log lines into a metrics state under a lock and notes each new step of each rank:
    to ``on_steps`` (the job record) and to the plot series (band over ranks, each rank's line).
    New alerts of each snapshot go to ``on_alerts`` (the job record, for ``mfctl report``)."""

    def __init__(self, state: ClusterState, on_steps: Callable[[list[tuple]], None] | None = None,
                 clock: Callable[[], float] = time.time,
                 on_alerts: Callable[[list[AlertView]], None] | None = None,
                 on_mfu: Callable[[dict], None] | None = None, mfu_every_s: float = 60.0) -> None:
        """``on_mfu``: gets the MFU summary (``mfctl.metrics.mfu.mfu_summary``) of a snapshot when it
        changed, at most every ``mfu_every_s`` seconds (the first one at once), for the job record."""
        self.state = state
        state.keep_steps = True  # every step, for the record and the plots (take_steps)
        self.lock = threading.Lock()
        self.clock = clock
        self._on_steps = on_steps
        self._on_alerts = on_alerts
        self._saved_alerts: set[tuple] = set()
        self._on_mfu = on_mfu
        self._mfu_every_s = mfu_every_s
        self._mfu_saved: tuple[float, Any] | None = None  # (when, what) was last given to on_mfu
        self._backfill_due = False
        self.series = SeriesStore()

    def feed(self, batch: Sequence[LogLine]) -> None:
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
        read at once) into the plot series: now when they are recorded (``on_steps``), else when
        the plots first ask (``history``), so a read that only prints the snapshot (``watch
        --once --json``) does not build them."""
        if self._on_steps is None:
            self._backfill_due = True
            return
        with self.lock:
            rows = self._note_steps(list(self.state.ranks), self.clock())
        if rows:
            self._on_steps(rows)

    def _note_steps(self, ranks: Iterable[int], now: float) -> list[tuple]:
        """The steps of ``ranks`` not noted yet, every one of them (``ClusterState.take_steps``),
        as job-record rows; each also goes to the plot series. A row's time is the one its log
        line printed, else ``now`` (the poll's). Called with the lock held."""
        rows: list[tuple] = []
        state = self.state
        # The state's own rule (with pipeline stages only the last stage's ranks print the
        # model's loss); without a world size, the ranks seen so far stand for it.
        self.series.loss_from_rank = state.first_loss_rank(max(state.ranks, default=-1) + 1)
        seq = state.seq_length
        for rank in ranks:
            points = state.take_steps(rank)
            if not points:
                continue
            total = state.ranks[rank].total_steps
            add = self.series.add
            if self._on_steps is not None:  # the job record's rows
                rows.extend((rank, step, total, loss, ms, sps, t if t is not None else now)
                            for step, loss, ms, sps, t in points)
            for step, loss, ms, sps, _t in points:
                # Without a sequence length the throughput series holds samples/s (history() says so).
                add(rank, step, loss, sps * seq if sps is not None and seq else sps, ms)
        return rows

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
            bands = self.series.bands()
            own: RankHistory | None = None
            if rank is not None:
                points = self.series.rank(rank)
                own = {"rank": rank, "loss": points["loss"], "tokens_per_s": points["tokens_per_s"],
                       "step_time_ms": points["step_time_ms"]}
            unit = "tokens/s" if self.state.seq_length else "samples/s"
        return {"bands": bands, "rank": own, "throughput": unit}
