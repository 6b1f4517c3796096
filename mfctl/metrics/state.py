"""Per-rank training state and the cluster view, fed with log lines. Pure: no I/O, clock injected.

``ClusterState`` (alias ``MetricsState``) is fed lines per rank (``rank=None``: the scheduler's or
msrun's own log of a node) and answers ``snapshot(now)``: a JSON-ready dict that a TUI, ``mfctl
status --json`` or a test can read without knowing anything about log formats. Values are the
numbers the logs printed, not recomputed ones (tokens/s is the one derived figure: MindFormers
prints samples/s per device only). The cluster view is ``mfctl.metrics.view``'s; the launcher's
lines (msrun, the scheduler) follow ``mfctl.metrics.launcher``'s rules.

Rules (each one a constructor argument)
---------------------------------------
- A rank is ``starting`` until its first step line, then ``running``. ``finished`` at
  ``Training Over`` or at the last step of the last epoch. ``failed`` on a traceback in its log
  or when msrun reports its process dead (``Worker process <pid> exit with exception``; the pid is
  matched to a rank through the pid MindSpore prints in the worker's own log), or when msrun kills
  it after another worker of its node died. A failure known only from a traceback is *soft*: if
  the rank goes on logging steps, the traceback was caught and the rank is running again. A
  finished rank stays finished; errors after that only raise alerts. A step that goes back (a
  restart inside one log) is the rank's current step.
- ``stalled``: a running rank with no step or progress line for ``stall_after_s``. By default that
  is ``max(min_stall_s, stall_factor x the median step time)`` (60 s and 10x: a checkpoint save or
  an evaluation may legitimately pause the log for a few steps' time, a hang does not end). The
  median is over running ranks' recent step times, so the compile-time first step does not count.
  Clock-driven transitions happen in ``tick(now)``, which ``snapshot(now)`` calls.
- Stragglers: in synchronous training every rank waits for the slowest at each all-reduce, so
  step times only diverge when a rank is really off. A rank is a straggler when the median of its
  last ``step_window`` step times exceeds ``straggler_ratio`` (1.5) x the median of all running
  ranks' medians. Needs ``straggler_min_ranks`` (4) ranks with at least 3 step times each: with
  two or three ranks "the median" is one of the suspects.
- Alerts are events, not lines (``mfctl.metrics.alerts``): the same kind at the same step (within
  ``alert_window_steps``) on several ranks is one alert naming them (``ranks 0-1023 (1024): ...``),
  as are the stragglers found together (the slowest named, with by how much). Bounded to
  ``max_alerts`` alerts (not ranks), newest last; each kind fires for a rank on entering a
  condition, not on every step while it lasts: ``nan_loss`` (nan/inf), ``loss_spike`` (loss > ``loss_spike_ratio`` x
  the exponential running mean of earlier finite losses, after ``spike_warmup`` steps),
  ``global_norm_spike`` (same with ``global_norm_spike_ratio``), ``nonfinite_global_norm``,
  ``overflow_streak`` (``overflow_streak`` overflowing steps in a row), ``stalled``, ``straggler``,
  ``worker_exit``, ``traceback`` (the rank moves to an alert with the exception line when it
  arrives), ``msrun_failure``, ``timeout`` (the scheduler's "node N is timed out" fails rank N,
  softly), ``error`` (ERROR/CRITICAL lines; an identical repeat from the same source is dropped;
  one naming a CANN failure is ``cann_error`` / ``device_oom``, ``mfctl.metrics.cann``).

Ingest
------
Readers turn text into what this applies, in order: ``mfctl.metrics.lines`` (lines),
``mfctl.metrics.chunk`` (a block of text: the fast path) yield runs of steps (``StepRun``),
events and pid lines; ``_steps`` applies each step's rules, once for every reader: an ordinary
step (running rank, nothing to alert about) only moves the running means, in a tight loop; any
other goes through ``_on_step``. ``feed``, ``feed_many`` and ``feed_chunk`` give the same state
(tests check it). With ``keep_steps`` set, ``take_steps`` hands out every step with its own step
time, loss, samples/s and the time its line printed (the collector's record and plots).

Size: about 600 lines, over the project's 400: one state machine whose rules all read and write
the same per-rank record; the readers, formats, launcher rules and the view are apart.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from mfctl.metrics.alerts import Alert, AlertLog
from mfctl.metrics.cann import error_alert
from mfctl.metrics.chunk import read_chunk
from mfctl.metrics.events import (
    CheckpointSavedEvent,
    ErrorLineEvent,
    Event,
    ExceptionEvent,
    GlobalBatchSizeEvent,
    KillAllWorkersEvent,
    PidLine,
    ProgressEvent,
    SchedulerExitEvent,
    StepEvent,
    StepRun,
    TimeoutEvent,
    TracebackEvent,
    TrainingOverEvent,
    UnreadableLine,
    WorkerExitEvent,
)
from mfctl.metrics.formats import log_times
from mfctl.metrics.launcher import LauncherRules
from mfctl.metrics.lines import read_lines
from mfctl.metrics.mfu import with_mfu
from mfctl.metrics.parser import parse_line, parse_pid
from mfctl.metrics.track import RankTrack, nums
from mfctl.metrics.types import RankState, Snapshot, StepPoint
from mfctl.metrics.view import cluster_view, rank_row

__all__ = ["FAILED", "FINISHED", "RUNNING", "STALLED", "STARTING", "Alert", "ClusterState", "MetricsState",
           "RankState", "RankTrack"]

# The states as the enum (str members: the snapshot and the job database keep the same strings).
STARTING, RUNNING, STALLED = RankState.STARTING, RankState.RUNNING, RankState.STALLED
FINISHED, FAILED = RankState.FINISHED, RankState.FAILED

_NEG_INF = float("-inf")
_POS_INF = float("inf")


def _ordinary(r: RankTrack) -> bool:
    """Whether the rank's next step may be ordinary (see ``ClusterState._steps``)."""
    return r.state == RUNNING and not (r.loss_spiking or r.loss_nonfinite or r.gn_spiking or r.gn_nonfinite
                                       or r.overflow_run)


def _median(values: Iterable[float]) -> float | None:
    vals = list(values)
    return statistics.median(vals) if vals else None


class ClusterState:
    """All ranks of one job. Not thread-safe: feed and snapshot from one thread (or hold a lock)."""

    def __init__(
        self,
        world_size: int | None = None,
        pipeline_stage: int = 1,
        seq_length: int | None = None,
        *,
        clock: Callable[[], float] = time.time,
        history_len: int = 2048,
        max_alerts: int = 256,
        stall_after_s: float | None = None,
        min_stall_s: float = 60.0,
        stall_factor: float = 10.0,
        step_window: int = 8,
        straggler_ratio: float = 1.5,
        straggler_min_ranks: int = 4,
        spike_warmup: int = 10,
        spike_alpha: float = 0.05,
        loss_spike_ratio: float = 1.25,
        global_norm_spike_ratio: float = 3.0,
        overflow_streak: int = 5,
        alert_window_steps: int = 2,
        alert_window_s: float = 30.0,
        chip: str | None = None,
    ) -> None:
        """``world_size``/``pipeline_stage``: the job's (for the cluster view and the pipeline loss);
        ``seq_length``: tokens per sample, for tokens/s (None: no tokens/s); ``clock``: seconds, the
        same clock the caller passes to ``snapshot(now)``; ``history_len``: points kept per rank;
        ``max_alerts``: alerts kept. The other arguments are the thresholds of the module docstring's
        rules: stall (``stall_after_s`` fixed, else ``max(min_stall_s, stall_factor x median step
        time)``), stragglers (``step_window``, ``straggler_ratio``, ``straggler_min_ranks``), spikes
        (``spike_warmup`` steps, running mean ``ema += spike_alpha x (x - ema)``, ``loss_spike_ratio``,
        ``global_norm_spike_ratio``) and ``overflow_streak``; ``alert_window_steps`` /
        ``alert_window_s``: how near (in steps, or seconds for alerts without a step) an alert of
        another rank must be to join it (``mfctl.metrics.alerts``).
        """
        self.chip = chip  # the chip the ranks run on, for MFU (mfctl.metrics.mfu); None: no MFU
        self.world_size = world_size
        self.pipeline_stage = max(1, int(pipeline_stage or 1))
        self._seq_length = seq_length
        self.clock = clock
        self.history_len = history_len
        self.stall_after_s = stall_after_s
        self.min_stall_s = min_stall_s
        self.stall_factor = stall_factor
        self.step_window = step_window
        self.straggler_ratio = straggler_ratio
        self.straggler_min_ranks = straggler_min_ranks
        self.spike_warmup = spike_warmup
        self.spike_alpha = spike_alpha
        self.loss_spike_ratio = loss_spike_ratio
        self.global_norm_spike_ratio = global_norm_spike_ratio
        self.overflow_streak = overflow_streak
        self.ranks: dict[int, RankTrack] = {}
        self.alerts = AlertLog(max_alerts, alert_window_steps, alert_window_s)
        self._straggler_ms: dict[int, float] = {}  # a straggler's median step time, for its alert
        self.global_batch_size: int | None = None
        # Lines the parser failed on (not text, or a parser bug): skipped, counted.
        self.unreadable_lines = 0
        # Whether take_steps gets every step (the collector's record and plots); off, a read
        # keeps only what the snapshot and the bounded history need.
        self.keep_steps = False
        self.launcher = LauncherRules(self.ranks, self.alerts, world_size)

    # -- configuration

    @property
    def seq_length(self) -> int | None:
        return self._seq_length

    @seq_length.setter
    def seq_length(self, value: int | None) -> None:
        self._seq_length = value
        for r in self.ranks.values():
            r.seq_length = value

    def rank(self, rank: int, node: str | None = None) -> RankTrack:
        """The state of ``rank`` (created in ``starting`` on first sight)."""
        r = self.ranks.get(rank)
        if r is None:
            r = RankTrack(rank=rank, node=node, seq_length=self._seq_length,
                          points=deque(maxlen=self.history_len),
                          recent_step_ms=deque(maxlen=self.step_window))
            self.ranks[rank] = r
        elif node is not None and r.node != node:
            r.node = node
        return r

    def history(self, rank: int) -> list[tuple[int, float | None, float | None]]:
        """The last ``history_len`` (step, loss, samples_per_s) points of ``rank``, oldest first."""
        r = self.ranks.get(rank)
        return list(r.history) if r is not None else []

    # -- feeding

    def feed(self, rank: int | None, line: str, node: str | None = None) -> None:
        """One log line of ``rank`` (``None``: the scheduler's / msrun's log of ``node``)."""
        now = self.clock()
        try:
            ev = parse_line(line)
        except Exception:  # a line never stops ingestion; it is counted
            self.unreadable_lines += 1
            return
        if rank is None:
            if ev is not None:
                self._launcher(node, ev, now)
        elif ev is not None:
            self._apply(self.rank(rank, node), ev, now)
        else:
            self._learn_pid(self.rank(rank, node), line)

    def apply(self, rank: int | None, event: Event, node: str | None = None) -> None:
        """An event parsed elsewhere (``parse_line``), as if its line had been fed."""
        now = self.clock()
        if rank is None:
            self._launcher(node, event, now)
        else:
            self._apply(self.rank(rank, node), event, now)

    def feed_text(self, rank: int | None, text: str, node: str | None = None) -> None:
        """Complete lines separated by newlines (a trailing partial line counts as a line)."""
        self.feed_many(rank, text.split("\n"), node)

    def feed_many(self, rank: int | None, lines: Iterable[str], node: str | None = None) -> None:
        """Many lines of one rank, in order (``mfctl.metrics.lines`` reads them)."""
        now = self.clock()
        if rank is None:
            for line in lines:
                try:
                    ev = parse_line(line)
                except Exception:  # a line never stops ingestion; it is counted
                    self.unreadable_lines += 1
                    continue
                if ev is not None:
                    self._launcher(node, ev, now)
            return
        r = self.rank(rank, node)
        self._ingest(r, read_lines(lines, lambda: r.pid is None), now)

    def feed_chunk(self, rank: int | None, data: str | bytes, node: str | None = None) -> None:
        """Complete lines as one block of text, ``bytes`` as read from a log file or ``str``: the
        fastest path (``mfctl.metrics.chunk``), same resulting state as ``feed_text``."""
        if rank is not None and isinstance(data, (bytes, str)):
            r = self.rank(rank, node)
            self._ingest(r, read_chunk(data, lambda: r.pid is None), self.clock())
        else:
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
            self.feed_many(rank, text.split("\n") if isinstance(text, str) else [text], node)

    def add_steps(self, rank: int, run: StepRun, node: str | None = None) -> None:
        """Consecutive steps of ``rank`` (the one way steps come in, whichever reader read them)."""
        self._steps(self.rank(rank, node), run, self.clock())

    def take_steps(self, rank: int) -> list[StepPoint]:  # plain tuples of StepPoint's fields: C-built
        """Every step of ``rank`` applied since the last call, oldest first, with its own step time,
        loss, samples/s and log time (while ``keep_steps``); a step awaiting its progress line waits."""
        r = self.ranks.get(rank)
        if r is None or not r.journal:
            return []
        out: list[Any] = []
        for steps, losses, mss, spss, times, lo, hi in r.journal:
            out.extend(zip(map(int, steps[lo:hi]), losses[lo:hi], map(int, mss[lo:hi]),  # StepPoint's fields
                           nums(spss[lo:hi]), log_times(times[lo:hi])))
        r.journal.clear()
        return out

    def _ingest(self, r: RankTrack, items: Iterable[Any], now: float) -> None:
        """What a reader found, in order: runs of steps, events, pid lines, unreadable lines."""
        for item in items:
            t = type(item)
            if t is StepRun:
                self._steps(r, item, now)
            elif t is PidLine:
                self._learn_pid(r, item.line)
            elif t is UnreadableLine:
                self.unreadable_lines += 1
            else:
                self._apply(r, item, now)

    @staticmethod
    def _learn_pid(r: RankTrack, line: str) -> None:
        """The pid MindSpore prints in its own lines (``[WARNING] ME(23277:...``), while unknown."""
        if r.pid is None and line.startswith("["):
            r.pid = parse_pid(line)

    def _steps(self, r: RankTrack, run: StepRun, now: float) -> None:
        """A step's rules for each step of ``run``. An ordinary step (running rank, finite loss and
        norm below their spike thresholds, no overflow, not the last step) only moves the running
        means, here, in locals; any other goes through ``_on_step``. Then the newest step's
        figures, the step times and every step's point (history, ``take_steps``)."""
        steps, losses, gns, mss = run.step, run.loss, run.global_norm, run.step_time_ms
        n = len(steps)
        if not n:
            return
        if r.pending is not None:  # the step before had no progress line after all
            self._record_pending(r, None)
        ovs, fins = run.overflow, run.final
        stops: set[int] = set()  # the steps that cannot be ordinary: an overflow, the last step
        for col in (ovs, fins):
            if col is not None and True in col:
                stops.update(k for k, v in enumerate(col) if v)
        alpha, lratio, gratio, warm = self.spike_alpha, self.loss_spike_ratio, self.global_norm_spike_ratio, \
            self.spike_warmup
        neg_inf, pos_inf = _NEG_INF, _POS_INF
        ema: Any  # a float wherever the ordinary branch reads it (checked there)
        gema: Any
        ema, seen, gema, gseen = r.loss_ema, r.loss_seen, r.gn_ema, r.gn_seen
        ordinary = _ordinary(r)
        for k, (loss, gn) in enumerate(zip(losses, gns)):
            # (Each test is ordered so that an ordinary step answers it in one comparison.)
            if (ordinary and loss is not None and ema is not None and neg_inf < loss < pos_inf
                    and not (loss > ema * lratio and seen >= warm and ema > 0.0)
                    and (gn is None or (gema is not None and neg_inf < gn < pos_inf
                                        and not (gn > gema * gratio and gseen >= warm and gema > 0.0)))
                    and not (stops and k in stops)):
                ema += alpha * (loss - ema)
                seen += 1
                if gn is not None:
                    gema += alpha * (gn - gema)
                    gseen += 1
            else:
                r.loss_ema, r.loss_seen, r.gn_ema, r.gn_seen = ema, seen, gema, gseen
                self._on_step(r, int(steps[k]), loss, ovs[k] if ovs is not None else False, gn,
                              bool(fins[k]) if fins is not None else False, now)
                ema, seen, gema, gseen = r.loss_ema, r.loss_seen, r.gn_ema, r.gn_seen
                ordinary = _ordinary(r)
        r.loss_ema, r.loss_seen, r.gn_ema, r.gn_seen = ema, seen, gema, gseen
        r.step, r.loss, r.global_norm = int(steps[-1]), losses[-1], gns[-1]
        r.step_time_ms = int(mss[-1])
        r.overflow = ovs[-1] if ovs is not None else False
        r.last_update = now
        keep = r.recent_step_ms.maxlen
        r.recent_step_ms.extend(map(int, mss[-keep:] if keep is not None else mss))
        spss = run.samples_per_s
        for v in spss[-1:-3:-1]:  # the newest samples/s (all but the last step have theirs)
            if v is not None:
                r.samples_per_s = float(v)
                break
        if run.last is not None:
            self._set_step_fields(r, run.last)
        if run.last_progress is not None:
            r.percent, r.eta_s = run.last_progress.percent, run.last_progress.eta_s
        end = n
        if run.progress_follows and spss[-1] is None:  # its point waits for its progress line
            end = n - 1
            r.pending = (steps[-1:], losses[-1:], mss[-1:], [None], run.time[-1:], 0, 1)
        if end:
            self._record(r, (steps, losses, mss, spss, run.time, 0, end))

    def _record(self, r: RankTrack, points: tuple) -> None:
        """Points of steps, as (steps, losses, step times, samples/s, times, lo, hi) columns: the
        newest that the history keeps, and all of them for ``take_steps``."""
        steps, losses, _mss, spss, _times, lo, hi = points
        r.add_points(steps, losses, spss, lo, hi)
        if self.keep_steps:
            r.journal.append(points)

    def _record_pending(self, r: RankTrack, sps: float | None) -> None:
        steps, losses, mss, _none, times, lo, hi = r.pending or ()
        r.pending = None
        self._record(r, (steps, losses, mss, [sps], times, lo, hi))

    # -- events of a rank

    # `ev`: an Event, dispatched on `t = type(ev)` (cheaper than isinstance; mypy cannot narrow it).
    def _apply(self, r: RankTrack, ev: Any, now: float) -> None:
        t = type(ev)
        if t is StepEvent:
            final = ev.step == ev.total_steps and ev.epoch == ev.total_epochs
            self._steps(r, StepRun([ev.step], [ev.loss], [ev.step_time_ms], [ev.global_norm], [None], [ev.time],
                                   [ev.overflow], [final], ev, None, ev.progress_follows), now)
        elif t is ProgressEvent:
            r.samples_per_s = ev.samples_per_s
            r.last_update = now
            if r.pending is not None:
                self._record_pending(r, ev.samples_per_s)
            r.percent, r.eta_s = ev.percent, ev.eta_s
        elif t is TrainingOverEvent:
            if r.state != FAILED or r.soft_failed:
                r.state, r.soft_failed = FINISHED, False
        elif t is CheckpointSavedEvent:
            r.ckpt_epoch, r.ckpt_step = ev.epoch, ev.step
        elif t is GlobalBatchSizeEvent:
            self.global_batch_size = ev.global_batch_size
        elif t is TracebackEvent:
            r.in_traceback = True
            if r.state == FINISHED or r.state == FAILED:
                return
            r.state, r.soft_failed, r.reason = FAILED, True, "traceback (exception not logged yet)"
            r.traceback_alert = self._alert("traceback", r.rank, "traceback in its log", r.step, now)
        elif t is ExceptionEvent:
            if not (r.in_traceback or ev.exc_type == "Fatal Python error"):
                return
            r.in_traceback = False
            text = f"{ev.exc_type}: {ev.message}" if ev.message else ev.exc_type
            if ev.exc_type == "Fatal Python error" and r.state not in (FINISHED, FAILED):
                r.state, r.soft_failed = FAILED, False
            if r.state == FAILED:
                r.reason = text
            old = r.traceback_alert
            if old is not None:  # the exception replaces "traceback in its log" for this rank
                self.alerts.withdraw(old, r.rank)
                r.traceback_alert = None
            self._alert(rank=r.rank, step=r.step, now=now, **error_alert(text, "traceback"))  # CANN: by code
        elif t is TimeoutEvent:
            self._alert("timeout", r.rank, ev.message, r.step, now, key=ev.message)
        elif t is ErrorLineEvent:
            if ev.message != r.last_error:
                r.last_error = ev.message
                self._alert(rank=r.rank, step=r.step, now=now, **error_alert(ev.message))  # CANN: by code
        elif t is WorkerExitEvent or t is KillAllWorkersEvent or t is SchedulerExitEvent:
            # msrun's lines in a worker log (--tail_worker_log echoes them): the launcher decides.
            self._launcher(r.node, ev, now)

    def _on_step(self, r: RankTrack, step: int, loss: float | None,
                 overflow: bool | None, gn: float | None, final: bool, now: float) -> None:
        """A step that is not ordinary (see ``_steps``): transitions, spikes, alerts.

        Reads only its arguments and the bookkeeping fields: the latest-only fields (epoch, lr,
        ...) are set once per run, so reading e.g. ``r.loss_scale`` here would differ between
        ways of reading the same log.
        """
        r.step, r.loss, r.overflow, r.global_norm = step, loss, overflow, gn
        state = r.state
        if state != RUNNING and (state in (STARTING, STALLED) or (state == FAILED and r.soft_failed)):
            r.state = RUNNING
            r.soft_failed = False
            r.in_traceback = False
            r.reason = None
        if final and r.state == RUNNING:
            r.state = FINISHED
        self._watch(r, "loss", loss, self.loss_spike_ratio, step, now)
        if overflow:
            r.overflow_run += 1
            if r.overflow_run == self.overflow_streak:
                self._alert("overflow_streak", r.rank,
                            f"{r.overflow_run} overflowing steps in a row up to step {step}",
                            step, now)
        else:
            r.overflow_run = 0
        self._watch(r, "gn", gn, self.global_norm_spike_ratio, step, now)

    # What _watch names each watched figure: (its name in alerts, the kind of a non-finite value).
    _WATCHED = {"loss": ("loss", "nan_loss"), "gn": ("global_norm", "nonfinite_global_norm")}

    def _watch(self, r: RankTrack, what: str, value: float | None, ratio: float, step: int, now: float) -> None:
        """The one rule for the loss and the global norm (``what``: the RankTrack fields' prefix):
        a non-finite value alerts once; a finite one moves the running mean, and alerts once on
        entering a spike (over ``ratio`` x that mean, after ``spike_warmup`` values)."""
        if value is None:
            return
        name, nonfinite_kind = self._WATCHED[what]
        if not _NEG_INF < value < _POS_INF:
            if not getattr(r, what + "_nonfinite"):
                setattr(r, what + "_nonfinite", True)
                self._alert(nonfinite_kind, r.rank, f"{name} is {value} at step {step}", step, now)
            return
        setattr(r, what + "_nonfinite", False)
        e = getattr(r, what + "_ema")
        if e is None:
            setattr(r, what + "_ema", value)
        else:
            if getattr(r, what + "_seen") >= self.spike_warmup and e > 0.0 and value > e * ratio:
                if not getattr(r, what + "_spiking"):
                    setattr(r, what + "_spiking", True)
                    self._alert(f"{name}_spike", r.rank, f"{name} {value:g} at step {step} is "
                                f"{value / e:.2f}x its running mean {e:.6g}", step, now)
            elif getattr(r, what + "_spiking"):
                setattr(r, what + "_spiking", False)
            setattr(r, what + "_ema", e + self.spike_alpha * (value - e))
        setattr(r, what + "_seen", getattr(r, what + "_seen") + 1)

    @staticmethod
    def _set_step_fields(r: RankTrack, ev: StepEvent) -> None:
        r.epoch, r.total_epochs = ev.epoch, ev.total_epochs
        r.step, r.total_steps = ev.step, ev.total_steps
        r.loss, r.loss_mean, r.separate_losses = ev.loss, ev.loss_mean, ev.separate_losses
        r.step_time_ms, r.lr, r.overflow = ev.step_time_ms, ev.lr, ev.overflow
        r.loss_scale, r.global_norm, r.tflops = ev.loss_scale, ev.global_norm, ev.tflops

    def _launcher(self, node: str | None, ev: Any, now: float) -> None:
        """An event of the launcher's log of ``node`` (``mfctl.metrics.launcher``'s rules)."""
        if type(ev) is GlobalBatchSizeEvent:
            self.global_batch_size = ev.global_batch_size
        else:
            self.launcher.apply(node, ev, now)

    # -- alerts

    def _alert(self, kind: str, rank: int | None, detail: str, step: int | None, now: float,
               key: Any = None) -> Alert:
        """``detail``: what happened, without the rank (the alert names its ranks itself)."""
        return self.alerts.raise_(kind, rank, detail, step, now, key)

    # -- the clock and the view

    def stall_threshold_s(self) -> float:
        """Seconds without a step after which a running rank counts as stalled."""
        if self.stall_after_s is not None:
            return self.stall_after_s
        med = _median(m for r in self.ranks.values() if r.state in (RUNNING, STALLED)
                      for m in (_median(r.recent_step_ms),) if m is not None)
        if med is None:
            return self.min_stall_s
        return max(self.min_stall_s, self.stall_factor * med / 1000.0)

    def tick(self, now: float) -> None:
        """Clock-driven transitions: stalled ranks, stragglers (with their alerts, once each)."""
        threshold = self.stall_threshold_s()
        for r in self.ranks.values():
            if r.state == RUNNING and r.last_update is not None and now - r.last_update > threshold:
                r.state = STALLED
                self._alert("stalled", r.rank, f"no step for {now - r.last_update:.0f} s "
                            f"(threshold {threshold:.0f} s) after step {r.step}", r.step, now)
        medians: dict[int, float] = {}
        for r in self.ranks.values():
            if r.state == RUNNING and len(r.recent_step_ms) >= 3:
                medians[r.rank] = statistics.median(r.recent_step_ms)
        if len(medians) < self.straggler_min_ranks:
            for r in self.ranks.values():
                r.straggler = False
            return
        mid = _median(medians.values())
        new: list[RankTrack] = []
        for r in self.ranks.values():
            m = medians.get(r.rank)
            slow = m is not None and mid is not None and m > self.straggler_ratio * mid
            if slow and m is not None:  # slow implies m is known: said again for the type checker
                self._straggler_ms[r.rank] = m
                if not r.straggler:
                    new.append(r)
            r.straggler = slow
        # One alert for the ranks found slow together, the slowest named with by how much (new
        # ranks imply a median: said again for the type checker).
        if new and mid is not None:
            a = self._alert("straggler", new[0].rank, "", new[0].step, now)
            for r in new[1:]:
                a.add(r.rank, "", now)
            slowest = sorted(a.ranks, key=lambda k: -self._straggler_ms.get(k, 0.0))
            worst = self._straggler_ms.get(slowest[0], 0.0)
            if len(slowest) == 1:
                a.set_detail(f"median step time {worst:g} ms is {worst / mid:.2f}x the cluster's {mid:g} ms")
            else:
                named = ", ".join(f"rank {k} {self._straggler_ms.get(k, 0.0) / mid:.2f}x" for k in slowest[:3])
                a.set_detail(f"median step time up to {worst:g} ms, {worst / mid:.2f}x the cluster's "
                             f"{mid:g} ms (slowest: {named})")

    def snapshot(self, now: float) -> Snapshot:
        """The JSON-ready view (``tick(now)`` first). Non-finite losses stay float nan/inf."""
        self.tick(now)
        ranks = [self.ranks[k] for k in sorted(self.ranks)]
        first = self.first_loss_rank(len(ranks))
        world = self.world_size if self.world_size is not None else len(ranks)
        loss_ranks = [r for r in ranks if r.rank >= first] if first else ranks
        return with_mfu({"ranks": [rank_row(r, now) for r in ranks],  # MFU: with the chip
                         "cluster": cluster_view(ranks, world, loss_ranks),
                         "alerts": [a.to_dict() for a in self.alerts]}, self.chip)

    def first_loss_rank(self, world: int | None = None) -> int:
        """The first rank whose loss is the model's: with pipeline parallelism only the last
        stage's ranks (``world - world / pipeline_stage`` and up) see it; else every rank (0).
        The one rule for the cluster's loss and the plots' loss band. ``world``: the ranks seen,
        when the job's world size is not known."""
        if self.world_size is not None:
            world = self.world_size
        elif world is None:
            world = len(self.ranks)
        p = self.pipeline_stage
        if p > 1 and world >= p and world % p == 0:
            return world - world // p
        return 0


MetricsState = ClusterState

