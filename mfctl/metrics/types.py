"""The shapes of what the metrics state hands out: the snapshot and the plots' history.

``ClusterState.snapshot(now)`` returns a JSON-ready dict (``mfctl watch --once --json`` prints it
as is, the job record stores its alerts); the dashboard, the CLI and the supervisor read it. These
``TypedDict``s name its keys once so those readers are checked against the producer instead of
each guessing at string keys. They describe plain dicts: nothing is converted at runtime.

Pure: typing only.
"""

from __future__ import annotations

import sys
from enum import Enum
from typing import NamedTuple, TypedDict

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - Python 3.10
    class StrEnum(str, Enum):
        """``enum.StrEnum`` of 3.11: members print and format as their value."""

        def __str__(self) -> str:
            return str.__str__(self)

        def __format__(self, spec: str) -> str:
            return str.__format__(str.__str__(self), spec)

__all__ = ["AlertView", "ClusterView", "History", "LogLine", "RankHistory", "RankRow", "RankState", "Snapshot",
           "StepPoint",
           "StrEnum"]


class RankState(StrEnum):
    """A rank's state, and the cluster's (``mfctl.metrics.state`` says when each applies). Members
    are ``str``s: they compare equal to, and serialise as, the plain strings."""

    STARTING = "starting"
    RUNNING = "running"
    STALLED = "stalled"
    FINISHED = "finished"
    FAILED = "failed"


class _RankRowBase(TypedDict):

    rank: int
    node: str | None
    step: int | None
    total_steps: int | None
    epoch: int | None
    loss: float | None
    loss_mean: float | None
    step_time_ms: float | None
    samples_per_s: float | None
    tokens_per_s: float | None
    tflops: float | None
    lr: float | None
    global_norm: float | None
    overflow: bool | None
    loss_scale: float | None
    percent: float | None
    eta_s: float | None
    state: RankState
    reason: str | None  # why the rank is stalled or failed
    last_update_age_s: float | None


class RankRow(_RankRowBase, total=False):
    """One rank in ``Snapshot["ranks"]`` (sorted by rank). Figures are None until the rank logs
    them; ``loss`` keeps float nan/inf (a null would hide the one thing that matters). ``mfu``
    (``mfctl.metrics.mfu``): tflops over the chip's peak, 0..1, None when either is unknown."""

    mfu: float | None


class _ClusterViewBase(TypedDict):

    world_size: int
    step: int | None  # the slowest rank's
    total_steps: int | None
    samples_per_s: float | None
    tokens_per_s: float | None
    eta_s: float | None
    loss: float | None
    state: RankState
    stragglers: list[int]
    finished_ranks: list[int]
    failed_ranks: list[int]


class ClusterView(_ClusterViewBase, total=False):
    """``Snapshot["cluster"]``: the job as a whole (see ``mfctl.metrics.state``, "The cluster view").
    ``chip`` / ``peak_tflops``: the chip MFU is computed against and its peak (``mfctl.metrics.mfu``);
    ``mfu``: the mean of the ranks' MFU."""

    chip: str | None
    peak_tflops: float | None
    mfu: float | None


class _AlertBase(TypedDict):
    kind: str
    rank: int | None  # the rank when exactly one
    message: str
    step: int | None
    time: float | None  # when it was raised


class AlertView(_AlertBase, total=False):
    """One entry of ``Snapshot["alerts"]`` (``Alert.to_dict()``), oldest first. An alert added by
    the supervisor or an older job record may lack the grouping keys."""

    ranks: list[int]  # every rank it concerns, sorted; empty for a launcher alert
    count: int
    last_time: float | None  # when its latest rank joined
    code: str | None  # cann_error / device_oom alerts: the CANN code (mfctl.metrics.cann)
    summary: str  # cann_error / device_oom alerts: "EI0006 socket build timeout"
    hint: str  # cann_error / device_oom alerts: what it usually means and what to check


class _SnapshotBase(TypedDict):
    ranks: list[RankRow]
    cluster: ClusterView
    alerts: list[AlertView]


class Snapshot(_SnapshotBase, total=False):
    """What ``ClusterState.snapshot(now)`` returns; ``mfctl watch --once`` adds ``unreachable``
    (``{host: why}``) for nodes whose logs could not be read; a job under a scheduler adds
    ``scheduler``, what the scheduler says of it now (``slurm job 12: pending (Resources)``)."""

    unreachable: dict[str, str]
    scheduler: str


# A band point: (step, min, median, max) over the ranks; a line point: (step, value).
BandPoint = tuple[int, float, float, float]
Point = tuple[int, float]


class RankHistory(TypedDict, total=False):
    """One rank's own lines: ``rank`` and a list of points per metric (``loss``,
    ``tokens_per_s``, ``step_time_ms``)."""

    rank: int
    loss: list[Point]
    tokens_per_s: list[Point]
    step_time_ms: list[Point]


class History(TypedDict, total=False):
    """The plots' data. Either ``bands`` (per metric, over all ranks) with ``rank`` (the selected
    rank's lines, or None), or, from a source without per-rank data, cluster lines per metric
    (``loss``, ``tokens_per_s``). ``throughput`` is ``"samples/s"`` when the ``tokens_per_s``
    series holds samples/s because the sequence length is unknown (else ``"tokens/s"``)."""

    bands: dict[str, list[BandPoint]]
    rank: RankHistory | None
    throughput: str
    loss: list[Point]
    tokens_per_s: list[Point]
    step_time_ms: list[Point]


class LogLine(NamedTuple):
    """One log line on its way into the metrics state: which node and rank it is from (rank None:
    the scheduler's log or msrun's own output; node None: a log directory that is no one node's)."""

    node: str | None
    rank: int | None
    text: str


class StepPoint(NamedTuple):
    """One step of one rank as its log printed it (``ClusterState.take_steps``, which hands out
    plain tuples of these fields, in this order: building a named tuple per step costs): the step time,
    loss and samples/s of that step (None where its line had none) and the time its logger
    prefix printed (seconds since the epoch; None: the line had no timestamp)."""

    step: int
    loss: float | None
    step_time_ms: int
    samples_per_s: float | None
    time: float | None
