"""The snapshot's rows: one rank's (``rank_row``) and the cluster's (``cluster_view``), composed
from the ranks' tracks as ``ClusterState.snapshot`` hands them out ("The cluster view"
below says what each figure is). Pure functions of their arguments.

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
"""

from __future__ import annotations

import math

from mfctl.metrics.track import RankTrack
from mfctl.metrics.types import ClusterView, RankRow, RankState

__all__ = ["cluster_view", "rank_row"]

STARTING, RUNNING, STALLED = RankState.STARTING, RankState.RUNNING, RankState.STALLED
FINISHED, FAILED = RankState.FINISHED, RankState.FAILED


def rank_row(r: RankTrack, now: float) -> RankRow:
    """One rank of the snapshot (``last_update_age_s`` against ``now``)."""
    return {
        "rank": r.rank, "node": r.node, "step": r.step, "total_steps": r.total_steps,
        "epoch": r.epoch, "loss": r.loss, "loss_mean": r.loss_mean, "step_time_ms": r.step_time_ms,
        "samples_per_s": r.samples_per_s, "tokens_per_s": r.tokens_per_s, "tflops": r.tflops,
        "lr": r.lr, "global_norm": r.global_norm, "overflow": r.overflow, "loss_scale": r.loss_scale,
        "percent": r.percent, "eta_s": r.eta_s, "state": r.state, "reason": r.reason,
        "last_update_age_s": (now - r.last_update) if r.last_update is not None else None,
    }


def cluster_view(ranks: list[RankTrack], world: int, loss_ranks: list[RankTrack]) -> ClusterView:
    """The job as a whole: ``ranks`` sorted, ``world`` ranks in all (the missing ones count as
    starting), ``loss_ranks`` those whose loss is the model's (``first_loss_rank``)."""
    stepped = [r for r in ranks if r.step is not None]
    slowest = min(stepped, key=lambda r: (r.epoch or 0, r.step)) if stepped else None
    alive = [r for r in ranks if r.state != FAILED]
    sps = [r.samples_per_s for r in alive if r.samples_per_s is not None]
    tps = [t for t in (r.tokens_per_s for r in alive) if t is not None]
    etas = [r.eta_s for r in ranks if r.state in (RUNNING, STALLED) and r.eta_s is not None]
    losses = [r.loss for r in loss_ranks if r.loss is not None]
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
