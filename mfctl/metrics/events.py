"""The events a log line can mean (``mfctl.metrics.parser`` makes them, ``state`` applies them).

Frozen, slotted dataclasses: one is made per interesting line, so they are small and cheap.
Numbers are exactly what the log printed (``None`` when unreadable).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CheckpointSavedEvent",
    "ErrorLineEvent",
    "Event",
    "ExceptionEvent",
    "GlobalBatchSizeEvent",
    "KillAllWorkersEvent",
    "PidLine",
    "ProgressEvent",
    "SchedulerExitEvent",
    "StepEvent",
    "StepRun",
    "TimeoutEvent",
    "TracebackEvent",
    "TrainingOverEvent",
    "UnreadableLine",
    "WorkerExitEvent",
]


@dataclass(frozen=True, slots=True)
class StepEvent:
    """The per-step line. Numbers are exactly what the log printed (``None`` when unreadable);
    ``epoch`` is None in formats without one (the PyNative trainer's)."""

    epoch: int | None
    total_epochs: int | None
    step: int
    total_steps: int
    loss: float | None
    loss_mean: float | None  # the running mean MindFormers prints in non-sink mode
    separate_losses: tuple[tuple[str, float | None], ...]
    step_time_ms: int
    lr: float | None
    overflow: bool | None
    loss_scale: float | None
    global_norm: float | None
    tflops: float | None  # train_throughput_per_npu (or the PyNative trainer's throughput), in TFLOPS
    time: float | None = None  # the time its logger prefix printed (seconds since the epoch), if any
    progress_follows: bool = False  # a progress line (samples/s) follows it (mfctl.metrics.formats)


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """The progress line that follows each step line."""

    percent: float | None  # can exceed 100
    samples_per_s: float | None  # samples/s per device ("samples/s/p")
    eta_s: int | None  # time left; negative when MindFormers prints "-1 day, 23:59:57"


@dataclass(frozen=True, slots=True)
class TrainingOverEvent:
    """``.........Training Over!.............``"""


@dataclass(frozen=True, slots=True)
class CheckpointSavedEvent:
    """``Finish saving ckpt of epoch 1 step 30 using 0.018 seconds``"""

    epoch: int
    step: int
    seconds: float | None


@dataclass(frozen=True, slots=True)
class GlobalBatchSizeEvent:
    """``global_batch_size = batch_size_per_card * device_num * gradient_accumulation_steps = 8 = 4 * 2 * 1``"""

    global_batch_size: int
    batch_size_per_card: int
    device_num: int
    gradient_accumulation_steps: int


@dataclass(frozen=True, slots=True)
class WorkerExitEvent:
    """msrun: ``Worker process <pid> exit with exception. Error code: -9.``"""

    pid: int
    code: int


@dataclass(frozen=True, slots=True)
class KillAllWorkersEvent:
    """msrun: ``There's worker exits with exception, kill all other workers.``"""


@dataclass(frozen=True, slots=True)
class SchedulerExitEvent:
    """msrun: ``Scheduler process <pid> exit with exception.``"""

    pid: int


@dataclass(frozen=True, slots=True)
class TimeoutEvent:
    """A warning or error about a timeout (cluster building, heartbeats, HCCL, receive...).

    ``node_id`` is set for the scheduler's ``The node: <id> is timed out`` (msrun's node ids are
    the global ranks).
    """

    message: str
    node_id: str | None = None


@dataclass(frozen=True, slots=True)
class TracebackEvent:
    """``Traceback (most recent call last):``"""


@dataclass(frozen=True, slots=True)
class ExceptionEvent:
    """The last line of a traceback (``RuntimeError: ...``), or ``Fatal Python error: ...``."""

    exc_type: str
    message: str


@dataclass(frozen=True, slots=True)
class ErrorLineEvent:
    """Any other line logged at ERROR or CRITICAL level."""

    message: str


Event = (
    StepEvent | ProgressEvent | TrainingOverEvent | CheckpointSavedEvent | GlobalBatchSizeEvent
    | WorkerExitEvent | KillAllWorkersEvent | SchedulerExitEvent | TimeoutEvent | TracebackEvent
    | ExceptionEvent | ErrorLineEvent
)


@dataclass(slots=True)
class StepRun:
    """Consecutive steps of one rank as columns, one entry per step: how the readers
    (``mfctl.metrics.lines``, ``pairs``, ``chunk``) hand steps to ``ClusterState.add_steps``.

    ``step``, ``step_time_ms`` and ``samples_per_s`` may hold the printed text (``str`` or
    ``bytes``, which ``int``/``float`` read): the state converts only what it keeps. ``time``
    holds the text before each step's mark (its logger prefix, or more text ending with it) or
    the time already read; ``samples_per_s`` None: no progress line followed (yet). ``overflow``
    and ``final`` None: no step of the run overflowed / is the last one. ``last`` and
    ``last_progress``: the newest step's and progress line's other fields (epoch, lr, percent...),
    which only the newest counts; None: a later run brings them."""

    step: Sequence[Any]
    loss: Sequence[float | None]
    step_time_ms: Sequence[Any]
    global_norm: Sequence[float | None]
    samples_per_s: Sequence[Any]
    time: Sequence[Any]
    overflow: Sequence[bool | None] | None = None
    final: Sequence[bool] | None = None
    last: StepEvent | None = None
    last_progress: ProgressEvent | None = None
    progress_follows: bool = True


@dataclass(frozen=True, slots=True)
class PidLine:
    """A line a reader passes on while the rank's pid is not known (MindSpore prints it in its own
    lines, ``[WARNING] ME(23277:...``): the state reads the pid from it."""

    line: str


@dataclass(frozen=True, slots=True)
class UnreadableLine:
    """A line the parser failed on (not text, or a parser bug): counted, and ingestion goes on."""

    line: Any
    error: str
