"""Per-rank training state and the cluster view, fed with log lines. Pure: no I/O, clock injected.

``ClusterState`` (alias ``MetricsState``) is fed lines per rank (``rank=None``: the scheduler's or
msrun's own log of a node) and answers ``snapshot(now)``: a JSON-ready dict that a TUI, ``mfctl
status --json`` or a test can read without knowing anything about log formats. Values are the
numbers the logs printed, not recomputed ones (tokens/s is the one derived figure: MindFormers
prints samples/s per device only).

Rules (each one a constructor argument)
---------------------------------------
- A rank is ``starting`` until its first step line, then ``running``. ``finished`` at
  ``Training Over`` or at the last step of the last epoch. ``failed`` on a traceback in its log
  or when msrun reports its process dead (``Worker process <pid> exit with exception``; the pid is
  matched to a rank through the pid MindSpore prints in the worker's own log), or when msrun kills
  it after another worker of its node died. A failure known only from a traceback is *soft*: if
  the rank goes on logging steps, the traceback was caught and the rank is running again. A
  finished rank stays finished; errors after that only raise alerts.
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
  softly), ``error`` (ERROR/CRITICAL lines; an identical repeat from the same
  source is dropped).

The cluster view
----------------
``world_size`` is the constructor's (missing ranks count as ``starting``) or the number of ranks
seen. ``step``/``total_steps``: the slowest rank's, by (epoch, step). ``samples_per_s`` and
``tokens_per_s``: sums over the ranks that have not failed (a finished run keeps its last figure).
``eta_s``: the longest time left among running and stalled ranks (0 once all finished). ``loss``:
the mean over ranks, or with ``pipeline_stage`` > 1 over the last stage's ranks only (ranks
``world_size - world_size / pipeline_stage`` and up): the other stages do not see the loss.
``state``: failed if any rank failed, else stalled if any stalled, else finished if all finished,
else running if any ran, else starting. Non-finite losses stay float nan/inf (``json.dumps``
writes them as ``NaN``/``Infinity``): a null would hide the one thing that matters.

Speed
-----
``feed_many`` is the fast path (the goal is >= 1M lines/s through parse + state on one core). It
recognises lines with the parser's own tests (``STEP_RE``, ``parse_progress``'s, ``parse_other``)
but converts only what the per-step logic needs (step, loss, step time, overflow, global norm,
samples/s): the other fields only ever matter for the newest line, so they are converted once per
batch from the last one. An ordinary step (running rank, nothing to alert about) is handled inline
with the rank's counters in local variables; anything else goes through ``_on_step`` / ``_apply``,
the code ``feed`` runs. ``feed`` (one line) and ``feed_many`` give the same state; tests check it.

Size: about 800 lines, over the project's 400: one state machine, whose rules (above) the per-line
path (``_apply``/``_on_step``) and the inlined fast path (``feed_many``) must apply identically,
so they stay side by side in one class; the line formats (``parser``, ``events``), the chunk path
(``chunk``), alert grouping (``alerts``) and the snapshot's types (``types``) are already apart.
"""

from __future__ import annotations

import math
import signal
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mfctl.metrics.alerts import Alert, AlertLog
from mfctl.metrics.cann import error_alert
from mfctl.metrics.chunk import feed_chunk as _feed_chunk
from mfctl.metrics.events import (
    CheckpointSavedEvent,
    ErrorLineEvent,
    Event,
    ExceptionEvent,
    GlobalBatchSizeEvent,
    KillAllWorkersEvent,
    ProgressEvent,
    SchedulerExitEvent,
    StepEvent,
    TimeoutEvent,
    TracebackEvent,
    TrainingOverEvent,
    WorkerExitEvent,
)
from mfctl.metrics.mfu import with_mfu
from mfctl.metrics.parser import (
    PROGRESS_MARK,
    STEP_MARK,
    STEP_RE,
    first_float,
    parse_line,
    parse_other,
    parse_pid,
    parse_progress,
    step_event_from_match,
    to_bool,
    to_float,
)
from mfctl.metrics.types import ClusterView, RankRow, RankState, Snapshot

__all__ = [
    "FAILED",
    "FINISHED",
    "RUNNING",
    "STALLED",
    "STARTING",
    "Alert",
    "ClusterState",
    "MetricsState",
    "RankState",
    "RankTrack",
]

# The states as the enum (str members: the snapshot and the job database keep the same strings).
STARTING = RankState.STARTING
RUNNING = RankState.RUNNING
STALLED = RankState.STALLED
FINISHED = RankState.FINISHED
FAILED = RankState.FAILED

_NEG_INF = float("-inf")
_POS_INF = float("inf")


@dataclass(slots=True)
class RankTrack:
    """What one rank's log says now. ``history`` holds (step, loss, samples_per_s) points."""

    rank: int
    node: str | None = None
    step: int | None = None
    total_steps: int | None = None
    epoch: int | None = None
    total_epochs: int | None = None
    loss: float | None = None
    loss_mean: float | None = None
    separate_losses: tuple[tuple[str, float | None], ...] = ()
    step_time_ms: int | None = None
    samples_per_s: float | None = None
    tflops: float | None = None
    lr: float | None = None
    global_norm: float | None = None
    overflow: bool | None = None
    loss_scale: float | None = None
    last_update: float | None = None  # clock time of the last step or progress line
    percent: float | None = None
    eta_s: int | None = None
    state: RankState = STARTING
    reason: str | None = None
    history: deque = field(default_factory=lambda: deque(maxlen=2048), repr=False)
    seq_length: int | None = None
    pid: int | None = None
    ckpt_epoch: int | None = None
    ckpt_step: int | None = None
    straggler: bool = False
    # Bookkeeping for transitions and alerts.
    recent_step_ms: deque = field(default_factory=lambda: deque(maxlen=8), repr=False)
    loss_ema: float | None = field(default=None, repr=False)
    loss_seen: int = field(default=0, repr=False)
    loss_spiking: bool = field(default=False, repr=False)
    loss_nonfinite: bool = field(default=False, repr=False)
    gn_ema: float | None = field(default=None, repr=False)
    gn_seen: int = field(default=0, repr=False)
    gn_spiking: bool = field(default=False, repr=False)
    gn_nonfinite: bool = field(default=False, repr=False)
    overflow_run: int = field(default=0, repr=False)
    soft_failed: bool = field(default=False, repr=False)
    in_traceback: bool = field(default=False, repr=False)
    traceback_alert: Alert | None = field(default=None, repr=False)
    last_error: str | None = field(default=None, repr=False)

    @property
    def tokens_per_s(self) -> float | None:
        """samples/s per device x seq_length (MindFormers prints no tokens/s)."""
        if self.samples_per_s is None or not self.seq_length:
            return None
        return self.samples_per_s * self.seq_length


def _median(values: Iterable[float]) -> float | None:
    vals = list(values)
    return statistics.median(vals) if vals else None


def _signal_name(code: int) -> str:
    if code < 0:
        try:
            return f" ({signal.Signals(-code).name})"
        except ValueError:
            return ""
    return ""


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
        self._launcher_traceback: dict[str | None, bool] = {}
        self._launcher_last_error: dict[str | None, str] = {}

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
                          history=deque(maxlen=self.history_len),
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
        if rank is None:
            self._launcher_line(node, line, now)
            return
        r = self.rank(rank, node)
        ev = parse_line(line)
        if ev is not None:
            self._apply(r, ev, now)
        elif r.pid is None and isinstance(line, str) and line.startswith("["):
            r.pid = parse_pid(line)

    def apply(self, rank: int | None, event: Event, node: str | None = None) -> None:
        """An event parsed elsewhere (``parse_line``), as if its line had been fed."""
        now = self.clock()
        if rank is None:
            self._launcher_event(node, event, now)
        else:
            self._apply(self.rank(rank, node), event, now)

    def feed_text(self, rank: int | None, text: str, node: str | None = None) -> None:
        """Complete lines separated by newlines (a trailing partial line counts as a line)."""
        self.feed_many(rank, text.split("\n"), node)

    def feed_chunk(self, rank: int | None, data: str | bytes, node: str | None = None) -> None:
        """Complete lines as one block of text, ``bytes`` as read from a log file or ``str``: the
        fastest path (``mfctl.metrics.chunk``), same resulting state as ``feed_text``."""
        if rank is not None and isinstance(data, (bytes, str)):
            _feed_chunk(self, rank, data, node)
        else:
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
            self.feed_many(rank, text.split("\n") if isinstance(text, str) else [text], node)

    def feed_many(self, rank: int | None, lines: Iterable[str], node: str | None = None) -> None:
        """Many lines of one rank, in order: the fast path (same resulting state as ``feed``).

        A step with nothing special about it (running rank, finite loss and norm below their spike
        thresholds, no overflow, not the last step) is handled inline with the rank's counters in
        local variables; anything else goes through ``_on_step`` / ``_apply`` like ``feed`` does,
        after the locals are written back. The inline branch is ``_on_step``'s ordinary case.
        """
        now = self.clock()
        if rank is None:
            for line in lines:
                self._launcher_line(node, line, now)
            return
        r = self.rank(rank, node)
        step_match = STEP_RE.match
        hist_append = r.history.append
        recent_append = r.recent_step_ms.append
        alpha = self.spike_alpha
        lratio = self.loss_spike_ratio
        gratio = self.global_norm_spike_ratio
        warm = self.spike_warmup
        neg_inf, pos_inf = _NEG_INF, _POS_INF
        last_step = last_progress = None
        last_k = 0
        total_s: str | None = None
        total_i = 0
        # The rank's counters as locals; `dirty` says they are ahead of `r`.
        loss: float | None
        gn: float | None
        sps: float | None
        gema: Any  # a float whenever the inline branch reads it (gn is not None there)
        ev: Any  # an Event, dispatched on `t = type(ev)`; mypy cannot narrow through t
        ema, seen, gema, gseen = r.loss_ema, r.loss_seen, r.gn_ema, r.gn_seen
        c_step, c_loss, c_ms, c_ov, c_gn, c_sps = (r.step, r.loss, r.step_time_ms, r.overflow,
                                                   r.global_norm, r.samples_per_s)
        ordinary = r.state == RUNNING and not (r.loss_spiking or r.loss_nonfinite or r.gn_spiking
                                               or r.gn_nonfinite or r.overflow_run)
        dirty = False
        for line in lines:
            try:
                if line[-1:] != "}":  # as parse_line: a line ending with "}" is not a step line
                    i = line.find(STEP_MARK)
                    if i >= 0:
                        m = step_match(line, i)
                        if m is not None:
                            g = m.groups()
                            step = int(g[2])
                            s = g[4]
                            if s is None:
                                s = g[6]
                            try:
                                loss = float(s)
                            except ValueError:
                                loss = to_float(s)
                            s = g[12]
                            if s is None:
                                gn = None
                            else:
                                try:
                                    gn = float(s)
                                except ValueError:
                                    gn = first_float(s)
                            s = g[10]
                            overflow = False if s == "False" else (True if s == "True" else to_bool(s))
                            s = g[3]
                            if s != total_s:
                                total_s, total_i = s, int(s)
                            final = step == total_i and int(g[0]) == int(g[1])
                            ms = int(g[8])
                            if (ordinary and not final and not overflow and ema is not None
                                    and loss is not None and neg_inf < loss < pos_inf
                                    and not (seen >= warm and ema > 0.0 and loss > ema * lratio)
                                    and (gn is None or (gema is not None and neg_inf < gn < pos_inf
                                         and not (gseen >= warm and gema > 0.0 and gn > gema * gratio)))):
                                ema = ema + alpha * (loss - ema)
                                seen += 1
                                if gn is not None:
                                    gema = gema + alpha * (gn - gema)
                                    gseen += 1
                                recent_append(ms)
                                c_step, c_loss, c_ms, c_ov, c_gn = step, loss, ms, overflow, gn
                                dirty = True
                            else:
                                if dirty:
                                    self._write_back(r, now, ema, seen, gema, gseen, c_step, c_loss, c_ms,
                                                     c_ov, c_gn, c_sps)
                                    dirty = False
                                self._on_step(r, step, loss, ms, overflow, gn, final, now)
                                ema, seen, gema, gseen = r.loss_ema, r.loss_seen, r.gn_ema, r.gn_seen
                                c_step, c_loss, c_ms, c_ov, c_gn = step, loss, ms, overflow, gn
                                ordinary = r.state == RUNNING and not (
                                    r.loss_spiking or r.loss_nonfinite or r.gn_spiking or r.gn_nonfinite
                                    or r.overflow_run)
                            last_step = m
                            continue
                k = line.find(PROGRESS_MARK)
                if k >= 0:
                    b = line.rfind("|", 0, k)  # parse_progress's test, without its other fields
                    if b >= 0:
                        s = line[b + 1:k]
                        try:
                            sps = float(s)
                        except ValueError:
                            sps = to_float(s)
                        if sps is not None:
                            c_sps = sps
                            if c_step is not None:
                                hist_append((c_step, c_loss, sps))
                            dirty = True
                            last_progress = line
                            last_k = k
                            continue
                ev = parse_other(line)
                if ev is not None:
                    t = type(ev)
                    if t is CheckpointSavedEvent:  # touches nothing the locals mirror
                        r.ckpt_epoch, r.ckpt_step = ev.epoch, ev.step
                        continue
                    if t is GlobalBatchSizeEvent:
                        self.global_batch_size = ev.global_batch_size
                        continue
                    if dirty:
                        self._write_back(r, now, ema, seen, gema, gseen, c_step, c_loss, c_ms, c_ov, c_gn, c_sps)
                        dirty = False
                    self._apply(r, ev, now)
                    ema, seen, gema, gseen = r.loss_ema, r.loss_seen, r.gn_ema, r.gn_seen
                    c_step, c_loss, c_ms, c_ov, c_gn, c_sps = (r.step, r.loss, r.step_time_ms, r.overflow,
                                                               r.global_norm, r.samples_per_s)
                    ordinary = r.state == RUNNING and not (r.loss_spiking or r.loss_nonfinite or r.gn_spiking
                                                           or r.gn_nonfinite or r.overflow_run)
                elif r.pid is None and line.startswith("["):
                    r.pid = parse_pid(line)
            except Exception:  # not a str, or worse: the careful path decides
                if dirty:
                    self._write_back(r, now, ema, seen, gema, gseen, c_step, c_loss, c_ms, c_ov, c_gn, c_sps)
                    dirty = False
                ev = self._feed_guarded(r, line, now)
                if type(ev) is StepEvent:
                    last_step = None  # r holds this line's fields already
                elif type(ev) is ProgressEvent:
                    last_progress = None
                ema, seen, gema, gseen = r.loss_ema, r.loss_seen, r.gn_ema, r.gn_seen
                c_step, c_loss, c_ms, c_ov, c_gn, c_sps = (r.step, r.loss, r.step_time_ms, r.overflow,
                                                           r.global_norm, r.samples_per_s)
                ordinary = r.state == RUNNING and not (r.loss_spiking or r.loss_nonfinite or r.gn_spiking
                                                       or r.gn_nonfinite or r.overflow_run)
        if dirty:
            self._write_back(r, now, ema, seen, gema, gseen, c_step, c_loss, c_ms, c_ov, c_gn, c_sps)
        if last_step is not None:
            self._set_step_fields(r, step_event_from_match(last_step))
        if last_progress is not None:
            ev = parse_progress(last_progress, last_k)
            if ev is not None:
                r.percent = ev.percent
                r.eta_s = ev.eta_s

    @staticmethod
    def _write_back(r: RankTrack, now: float, ema: float | None, seen: int, gema: float | None,
                    gseen: int, step: int | None, loss: float | None, ms: int | None,
                    overflow: bool | None, gn: float | None, sps: float | None) -> None:
        r.loss_ema, r.loss_seen, r.gn_ema, r.gn_seen = ema, seen, gema, gseen
        r.step, r.loss, r.step_time_ms, r.overflow, r.global_norm = step, loss, ms, overflow, gn
        r.samples_per_s = sps
        r.last_update = now

    def _feed_guarded(self, r: RankTrack, line: Any, now: float) -> Event | None:
        ev = parse_line(line)  # never raises
        if ev is not None:
            self._apply(r, ev, now)
        return ev

    # -- events of a rank

    # `ev` is an Event; typed Any because it is dispatched on `t = type(ev)` (cheaper than an
    # isinstance chain), which mypy cannot narrow through.
    def _apply(self, r: RankTrack, ev: Any, now: float) -> None:
        t = type(ev)
        if t is StepEvent:
            final = ev.step == ev.total_steps and ev.epoch == ev.total_epochs
            self._on_step(r, ev.step, ev.loss, ev.step_time_ms, ev.overflow, ev.global_norm, final, now)
            self._set_step_fields(r, ev)
        elif t is ProgressEvent:
            self._on_progress(r, ev.samples_per_s, now)
            r.percent = ev.percent
            r.eta_s = ev.eta_s
        elif t is TrainingOverEvent:
            if r.state != FAILED or r.soft_failed:
                r.state = FINISHED
                r.soft_failed = False
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
            self._launcher_event(r.node, ev, now)

    def _on_step(self, r: RankTrack, step: int, loss: float | None, ms: int,
                 overflow: bool | None, gn: float | None, final: bool, now: float) -> None:
        """Everything a step line changes besides its latest-only fields (epoch, lr, ...).

        Reads only its arguments and the bookkeeping fields: ``feed_many`` sets the latest-only
        fields once per batch, so reading e.g. ``r.loss_scale`` here would differ between paths.
        """
        r.step = step
        r.loss = loss
        r.step_time_ms = ms
        r.overflow = overflow
        r.global_norm = gn
        r.last_update = now
        r.recent_step_ms.append(ms)
        state = r.state
        if state != RUNNING and (state in (STARTING, STALLED) or (state == FAILED and r.soft_failed)):
            r.state = RUNNING
            r.soft_failed = False
            r.in_traceback = False
            r.reason = None
        if final and r.state == RUNNING:
            r.state = FINISHED
        if loss is not None:
            if _NEG_INF < loss < _POS_INF:
                r.loss_nonfinite = False
                e = r.loss_ema
                if e is None:
                    r.loss_ema = loss
                else:
                    if r.loss_seen >= self.spike_warmup and e > 0.0 and loss > e * self.loss_spike_ratio:
                        if not r.loss_spiking:
                            r.loss_spiking = True
                            self._alert("loss_spike", r.rank,
                                        f"loss {loss:g} at step {step} is "
                                        f"{loss / e:.2f}x its running mean {e:.6g}", step, now)
                    elif r.loss_spiking:
                        r.loss_spiking = False
                    r.loss_ema = e + self.spike_alpha * (loss - e)
                r.loss_seen += 1
            elif not r.loss_nonfinite:
                r.loss_nonfinite = True
                self._alert("nan_loss", r.rank, f"loss is {loss} at step {step}", step, now)
        if overflow:
            r.overflow_run += 1
            if r.overflow_run == self.overflow_streak:
                self._alert("overflow_streak", r.rank,
                            f"{r.overflow_run} overflowing steps in a row up to step {step}",
                            step, now)
        else:
            r.overflow_run = 0
        if gn is not None:
            if _NEG_INF < gn < _POS_INF:
                r.gn_nonfinite = False
                e = r.gn_ema
                if e is None:
                    r.gn_ema = gn
                else:
                    if r.gn_seen >= self.spike_warmup and e > 0.0 and gn > e * self.global_norm_spike_ratio:
                        if not r.gn_spiking:
                            r.gn_spiking = True
                            self._alert("global_norm_spike", r.rank,
                                        f"global_norm {gn:g} at step {step} is "
                                        f"{gn / e:.2f}x its running mean {e:.6g}", step, now)
                    elif r.gn_spiking:
                        r.gn_spiking = False
                    r.gn_ema = e + self.spike_alpha * (gn - e)
                r.gn_seen += 1
            elif not r.gn_nonfinite:
                r.gn_nonfinite = True
                self._alert("nonfinite_global_norm", r.rank,
                            f"global_norm is {gn} at step {step}", step, now)

    def _on_progress(self, r: RankTrack, sps: float | None, now: float) -> None:
        r.samples_per_s = sps
        r.last_update = now
        if r.step is not None:
            r.history.append((r.step, r.loss, sps))

    @staticmethod
    def _set_step_fields(r: RankTrack, ev: StepEvent) -> None:
        r.epoch, r.total_epochs = ev.epoch, ev.total_epochs
        r.step, r.total_steps = ev.step, ev.total_steps
        r.loss, r.loss_mean, r.separate_losses = ev.loss, ev.loss_mean, ev.separate_losses
        r.step_time_ms, r.lr, r.overflow = ev.step_time_ms, ev.lr, ev.overflow
        r.loss_scale, r.global_norm, r.tflops = ev.loss_scale, ev.global_norm, ev.tflops

    # -- the scheduler's and msrun's logs (rank None)

    def _launcher_line(self, node: str | None, line: str, now: float) -> None:
        ev = parse_line(line)
        if ev is not None:
            self._launcher_event(node, ev, now)

    def _launcher_event(self, node: str | None, ev: Any, now: float) -> None:  # ev: as _apply's
        where = f" on {node}" if node else ""
        t = type(ev)
        if t is WorkerExitEvent:
            r = self._rank_of_pid(ev.pid, node)
            what = f"worker process {ev.pid} exited with code {ev.code}{_signal_name(ev.code)}"
            if r is None:
                self._alert("worker_exit", None, f"{what}{where} (rank unknown)", None, now)
                return
            self._alert("worker_exit", r.rank, what, r.step, now, key=ev.code)
            if r.state != FINISHED:
                if r.state != FAILED or r.reason is None or r.reason.startswith("traceback ("):
                    r.reason = what
                r.state, r.soft_failed = FAILED, False
        elif t is KillAllWorkersEvent:
            self._alert("msrun_failure", None, f"msrun{where}: a worker exited with an error, "
                        "killing all other workers", None, now)
            for r in self.ranks.values():
                if (node is None or r.node is None or r.node == node) and r.state in (STARTING, RUNNING, STALLED):
                    r.state, r.soft_failed = FAILED, False
                    r.reason = f"killed by msrun{where}: another worker exited with an error"
        elif t is SchedulerExitEvent:
            self._alert("msrun_failure", None, f"scheduler process {ev.pid}{where} exited with an error", None, now)
        elif t is TimeoutEvent:
            rank = None
            if ev.node_id is not None and ev.node_id.isdigit():
                rank = int(ev.node_id)
                if self.world_size is not None and rank >= self.world_size:
                    rank = None
            r = self.ranks.get(rank) if rank is not None else None
            self._alert("timeout", rank, f"{node or 'launcher'}: {ev.message}", r.step if r else None, now)
            if r is not None and r.state in (STARTING, RUNNING, STALLED):
                # The scheduler gave up on it: not "running" in the table while the alerts say timed
                # out. Soft: should its log go on with steps, it is running again.
                r.state, r.soft_failed = FAILED, True
                r.reason = f"timed out ({node or 'launcher'}: {ev.message})"
        elif t is TracebackEvent:
            self._launcher_traceback[node] = True
        elif t is ExceptionEvent:
            if self._launcher_traceback.pop(node, False) or ev.exc_type == "Fatal Python error":
                text = f"{ev.exc_type}: {ev.message}" if ev.message else ev.exc_type
                self._alert("msrun_failure", None, f"{node or 'launcher'}: {text}", None, now)
        elif t is ErrorLineEvent:
            if self._launcher_last_error.get(node) != ev.message:
                self._launcher_last_error[node] = ev.message
                a = error_alert(ev.message)  # a CANN failure is named by its code
                self._alert(a["kind"], None, f"{node or 'launcher'}: {a['detail']}", None, now, key=a["key"])
        elif t is GlobalBatchSizeEvent:
            self.global_batch_size = ev.global_batch_size

    def _rank_of_pid(self, pid: int, node: str | None) -> RankTrack | None:
        found = [r for r in self.ranks.values()
                 if r.pid == pid and (node is None or r.node is None or r.node == node)]
        return found[0] if len(found) == 1 else None

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
        rank_rows: list[RankRow] = [{
            "rank": r.rank, "node": r.node, "step": r.step, "total_steps": r.total_steps,
            "epoch": r.epoch, "loss": r.loss, "loss_mean": r.loss_mean, "step_time_ms": r.step_time_ms,
            "samples_per_s": r.samples_per_s, "tokens_per_s": r.tokens_per_s, "tflops": r.tflops,
            "lr": r.lr, "global_norm": r.global_norm, "overflow": r.overflow, "loss_scale": r.loss_scale,
            "percent": r.percent, "eta_s": r.eta_s, "state": r.state, "reason": r.reason,
            "last_update_age_s": (now - r.last_update) if r.last_update is not None else None,
        } for r in ranks]
        return with_mfu({"ranks": rank_rows, "cluster": self._cluster(ranks),
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

    def _loss_ranks(self, ranks: list[RankTrack]) -> list[RankTrack]:
        """The ranks whose loss is the model's: with pipeline parallelism, the last stage only."""
        first = self.first_loss_rank(len(ranks))
        return [r for r in ranks if r.rank >= first] if first else ranks

    def _cluster(self, ranks: list[RankTrack]) -> ClusterView:
        world = self.world_size if self.world_size is not None else len(ranks)
        stepped = [r for r in ranks if r.step is not None]
        slowest = min(stepped, key=lambda r: (r.epoch or 0, r.step)) if stepped else None
        alive = [r for r in ranks if r.state != FAILED]
        sps = [r.samples_per_s for r in alive if r.samples_per_s is not None]
        tps = [t for t in (r.tokens_per_s for r in alive) if t is not None]
        etas = [r.eta_s for r in ranks if r.state in (RUNNING, STALLED) and r.eta_s is not None]
        losses = [r.loss for r in self._loss_ranks(ranks) if r.loss is not None]
        states = [r.state for r in ranks]
        states += [STARTING] * max(0, world - len(ranks))
        if FAILED in states:
            state = FAILED
        elif STALLED in states:
            state = STALLED
        elif states and all(s == FINISHED for s in states):
            state = FINISHED
        elif RUNNING in states or FINISHED in states:
            state = RUNNING
        else:
            state = STARTING
        return {
            "world_size": world,
            "step": slowest.step if slowest else None,
            "total_steps": slowest.total_steps if slowest else None,
            "samples_per_s": math.fsum(sps) if sps else None,
            "tokens_per_s": math.fsum(tps) if tps else None,
            "eta_s": max(etas) if etas else (0 if state == FINISHED else None),
            "loss": (sum(losses) / len(losses)) if losses else None,
            "state": state,
            "stragglers": [r.rank for r in ranks if r.straggler],
            "finished_ranks": [r.rank for r in ranks if r.state == FINISHED],
            "failed_ranks": [r.rank for r in ranks if r.state == FAILED],
        }


MetricsState = ClusterState

