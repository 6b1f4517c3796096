"""What would make a layout fit: each change the estimator knows, tried on the config (pure).

Recompute (full, then select_recompute with select_comm_recompute), more pipeline stages (taken
from dp or mp), a smaller batch, and optimizer sharding (optimizer parallel, then sharded
``accu_grads``); full recompute is also tried together with each layout change. ``refusal`` words
the answer: the stage, its estimate, the limit, and the changes that fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mfctl.cluster.memory import GIB, MemoryEstimate, estimate, get_path, with_changes


@dataclass(frozen=True, slots=True)
class Remedy:
    """One change tried on a layout that does not fit, and the peak it would give."""

    label: str
    how: str
    peak: float
    fits: bool


def _remedy_changes(config: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    pc = get_path(config, "parallel_config", default={})
    rc = get_path(config, "recompute_config", default={})
    par = get_path(config, "parallel", default={})
    dp, mp, pp = (int(get_path(pc, k, default=1)) for k in ("data_parallel", "model_parallel", "pipeline_stage"))
    mbn = int(get_path(pc, "micro_batch_num", default=1))
    layers = int(get_path(config, "model", "model_config", "num_layers", default=1))
    b = int(get_path(config, "runner_config", "batch_size", default=1))
    gas = int(get_path(config, "runner_config", "gradient_accumulation_steps", default=1))
    full = {"recompute_config.recompute": True, "recompute_config.select_recompute": False,
            "recompute_config.select_comm_recompute": False}
    tries: list[tuple[str, str, dict[str, Any]]] = []
    if get_path(rc, "recompute") is not True:
        tries.append(("full recompute", "set recompute_config.recompute: true", full))
        if get_path(rc, "select_recompute") is not True:
            tries.append(("select_recompute", "set recompute_config.select_recompute: true and "
                          "select_comm_recompute: true",
                          {"recompute_config.select_recompute": True,
                           "recompute_config.select_comm_recompute": True}))
    layouts = []
    if dp % 2 == 0:
        layouts.append((dp // 2, mp, pp * 2))
    if mp % 2 == 0:
        layouts.append((dp, mp // 2, pp * 2))
    for ndp, nmp, npp in layouts:
        if npp > layers:
            continue
        nmbn = max(mbn, npp)
        change = {"parallel_config.data_parallel": ndp, "parallel_config.model_parallel": nmp,
                  "parallel_config.pipeline_stage": npp, "parallel_config.micro_batch_num": nmbn}
        flags = f"--dp {ndp} --mp {nmp} --pp {npp} --micro-batch-num {nmbn}"
        tries.append((f"pp {npp} (dp {ndp}, mp {nmp})", flags, change))
        if get_path(rc, "recompute") is not True:
            tries.append((f"pp {npp} (dp {ndp}, mp {nmp}) and full recompute",
                          f"{flags}, and set recompute_config.recompute: true", {**change, **full}))
    if b > 1:
        tries.append((f"batch size {b // 2}", f"--batch-size {b // 2}", {"runner_config.batch_size": b // 2}))
    if dp > 1 and not get_path(par, "enable_parallel_optimizer", default=False):
        tries.append(("optimizer sharding", "set parallel.enable_parallel_optimizer: true",
                      {"parallel.enable_parallel_optimizer": True}))
    elif dp > 1 and (pp > 1 or gas > 1) and not get_path(par, "parallel_optimizer_config",
                                                       "gradient_accumulation_shard", default=False):
        tries.append(("sharded accu_grads", "set parallel.parallel_optimizer_config."
                      "gradient_accumulation_shard: true",
                      {"parallel.parallel_optimizer_config.gradient_accumulation_shard": True}))
    return tries


def remedies(config: Mapping[str, Any], device_hbm_gb: float | None = None) -> list[Remedy]:
    """Each change the estimator knows (recompute, select_recompute, more pp, a smaller batch,
    optimizer sharding) tried on ``config``: fitting ones first, one change before two, then by
    peak."""
    out = []
    for label, how, change in _remedy_changes(config):
        est = estimate(with_changes(config, change), device_hbm_gb)
        out.append(Remedy(label, how, est.peak.total, est.fits))
    # Fitting ones first, single changes before combined ones, then the smaller peak.
    return sorted(out, key=lambda r: (not r.fits, " and " in r.label, r.peak))


def refusal(est: MemoryEstimate, fixes: list[Remedy]) -> str:
    """``stage 0 needs ~71.3 GiB per device, the devices give 58 GiB; with full recompute ~44.0
    GiB (set recompute_config.recompute: true); ...``"""
    peak = est.peak
    head = (f"stage {peak.stage} needs ~{peak.total / GIB:.1f} GiB per device, the devices give "
            f"{est.limit / GIB:g} GiB ({est.limit_source})")
    good = [r for r in fixes if r.fits][:4]
    if good:
        return head + "; " + "; ".join(f"with {r.label} ~{r.peak / GIB:.1f} GiB ({r.how})" for r in good)
    best = fixes[:2]
    tried = ", ".join(f"{r.label} ~{r.peak / GIB:.1f} GiB" for r in best)
    return head + (f"; nothing mfctl tried fits ({tried}): use more devices" if best
                   else "; use more devices")
