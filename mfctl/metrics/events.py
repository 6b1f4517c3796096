"""The events a log line can mean (``mfctl.metrics.parser`` makes them, ``state`` applies them).

Frozen, slotted dataclasses: one is made per interesting line, so they are small and cheap.
Numbers are exactly what the log printed (``None`` when unreadable).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CheckpointSavedEvent",
    "ErrorLineEvent",
    "Event",
    "ExceptionEvent",
    "GlobalBatchSizeEvent",
    "KillAllWorkersEvent",
    "ProgressEvent",
    "SchedulerExitEvent",
    "StepEvent",
    "TimeoutEvent",
    "TracebackEvent",
    "TrainingOverEvent",
    "WorkerExitEvent",
]


@dataclass(frozen=True, slots=True)
class StepEvent:
    """The per-step line. Numbers are exactly what the log printed (``None`` when unreadable)."""

    epoch: int
    total_epochs: int
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
    tflops: float | None  # train_throughput_per_npu, in TFLOPS


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
