"""What one rank's log says now (``RankTrack``), as ``mfctl.metrics.state`` keeps it.

A record, not logic: the state's rules write it, the snapshot (``mfctl.metrics.view``) reads it.
Pure: standard library only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mfctl.metrics.alerts import Alert
from mfctl.metrics.types import RankState

__all__ = ["RankTrack", "num", "nums"]


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
    state: RankState = RankState.STARTING
    reason: str | None = None
    points: deque = field(default_factory=lambda: deque(maxlen=2048), repr=False)  # see `history`
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
    # The newest step while its progress line is awaited, and the points take_steps has not given.
    pending: tuple | None = field(default=None, repr=False)
    journal: list = field(default_factory=list, repr=False)

    @property
    def tokens_per_s(self) -> float | None:
        """samples/s per device x seq_length (MindFormers prints no tokens/s)."""
        if self.samples_per_s is None or not self.seq_length:
            return None
        return self.samples_per_s * self.seq_length
    # Runs of points not converted yet, as (steps, losses, samples/s, lo, hi) columns, and how many.
    unconverted: list = field(default_factory=list, repr=False)
    unconverted_n: int = field(default=0, repr=False)

    def add_points(self, steps: Any, losses: Any, spss: Any, lo: int, hi: int) -> None:
        """Steps lo..hi-1 of a run as history points; converted when read (most are pushed out of
        the bounded history by newer ones before anyone reads it)."""
        self.unconverted.append((steps, losses, spss, lo, hi))
        self.unconverted_n += hi - lo
        keep = self.points.maxlen
        if keep is not None and self.unconverted_n > 4 * keep:  # bounded: columns are not kept long
            _ = self.history

    @property
    def history(self) -> deque:
        """The newest (step, loss, samples_per_s) points, oldest first, as many as it keeps."""
        if self.unconverted:
            need = self.points.maxlen
            runs = []
            for steps, losses, spss, lo, hi in reversed(self.unconverted):
                if need is not None:
                    lo = max(lo, hi - need)
                    need -= hi - lo
                runs.append((steps, losses, spss, lo, hi))
                if need == 0:
                    break
            for steps, losses, spss, lo, hi in reversed(runs):
                self.points.extend(zip(map(int, steps[lo:hi]), losses[lo:hi], nums(spss[lo:hi])))
            self.unconverted.clear()
            self.unconverted_n = 0
        return self.points


def num(v: Any) -> float | None:
    """``float(v)``, None for None (a column of printed figures)."""
    return None if v is None else float(v)


def nums(col: list[Any]) -> Iterator[float | None]:
    """``num`` of each of ``col``: ``float`` itself (no Python call per value) where none is None."""
    return map(float, col) if None not in col else map(num, col)
