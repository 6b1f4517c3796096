"""Does the job fit in device memory: the estimate of the job's rendered config, the refusal when
it does not, and the layout predicate ``init``/``load_job`` choose with.

The I/O edge of ``mfctl.cluster.memory``: it renders the job's MindFormers YAML (the same text
``render`` writes) and hands the mapping to the pure estimator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import yaml

from mfctl.cluster.batch import GlobalBatch
from mfctl.cluster.fixes import refusal, remedies
from mfctl.cluster.layout import Layout
from mfctl.cluster.memory import GIB, MemoryEstimate, estimate, missing_keys, with_changes
from mfctl.errors import BadInput
from mfctl.jobspec.presets import Preset
from mfctl.jobspec.schema import JobSpec
from mfctl.render import render_model_config

NO_FIT_FLAG = "--no-fit-check"


class DoesNotFit(BadInput):
    """The largest pipeline stage needs more device memory than the limit (exit 2)."""

    def __init__(self, message: str, memory: MemoryEstimate) -> None:
        super().__init__(message)
        self.memory = memory


def config_of(spec: JobSpec, preset: Preset, layout: Layout, world: int, own_text: str | None,
              batch: GlobalBatch | None) -> dict[str, Any]:
    text = render_model_config(spec, preset, layout, world, own_text, batch=batch)
    # libyaml's loader where PyYAML has it: the pure-Python one takes ~60 ms for a rendered config.
    data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return data if isinstance(data, dict) else {}


def job_config(job: Any) -> dict[str, Any]:
    """The job's rendered MindFormers config as a mapping. ``job``: a loaded ``jobdir.Job`` (not
    imported: jobdir imports this module for the layout predicate)."""
    # load_job has read (and checked) this file already.
    own = (job.dir / job.spec.model_config_file).read_text(encoding="utf-8") \
        if job.spec.model_config_file else None
    return config_of(job.spec, job.preset, job.layout, job.world_size, own, job.batch)


def _on_cpu(config: dict[str, Any]) -> bool:
    return str((config.get("context") or {}).get("device_target", "Ascend")).upper() == "CPU"


def checkable(config: dict[str, Any]) -> bool:
    """A config the estimator can read: Ascend (the CPU path has no device pool) with dimensions."""
    return not _on_cpu(config) and not missing_keys(config)


def why_not_checked(config: dict[str, Any]) -> str:
    missing = missing_keys(config)
    if missing:
        return f"{', '.join(missing)} missing from the config"
    return "CPU training has no device memory limit"


def require_fit(config: dict[str, Any], where: str, device_hbm_gb: float | None = None) -> MemoryEstimate | None:
    """Refuse (``DoesNotFit``, exit 2) a config whose largest stage is over the limit."""
    if not checkable(config):
        return None
    est = estimate(config, device_hbm_gb)
    if not est.fits:
        raise DoesNotFit(f"{where}: {refusal(est, remedies(config, device_hbm_gb))}; or pass "
                         f"{NO_FIT_FLAG} to go ahead anyway", est)
    return est


def layout_predicate(spec: JobSpec, preset: Preset, world: int, own_text: str | None,
                     batch_for: Callable[[Layout], tuple[Layout, GlobalBatch]]) -> Callable[[Layout], bool]:
    """``fits(layout)`` for the layout chooser: the config rendered once, each candidate patched in."""
    cache: dict[str, Any] = {}

    def fits(layout: Layout) -> bool:
        layout, batch = batch_for(layout)
        if "base" not in cache:
            cache["base"] = config_of(spec, preset, layout, world, own_text, batch)
        base = cache["base"]
        if not checkable(base):
            return True
        config = with_changes(base, {
            "parallel_config.data_parallel": layout.data_parallel,
            "parallel_config.model_parallel": layout.model_parallel,
            "parallel_config.pipeline_stage": layout.pipeline_stage,
            "parallel_config.micro_batch_num": layout.micro_batch_num,
            "runner_config.gradient_accumulation_steps": batch.gradient_accumulation_steps,
        })
        return estimate(config).fits

    return fits


def memory_report(job: Any, device_hbm_gb: float | None = None) -> dict[str, Any] | None:
    """``plan``'s ``memory``: the estimate as JSON, with the refusal text when it does not fit."""
    config = job_config(job)
    if _on_cpu(config):
        return None
    missing = missing_keys(config)
    if missing:
        return {"limit_gb": None, "fits": None, "stages": [],
                "unaccounted": [f"{key} is not in the config: no estimate" for key in missing]}
    est = estimate(config, device_hbm_gb)
    data = est.to_json()
    if not est.fits:
        data["refusal"] = refusal(est, remedies(config, device_hbm_gb))
    return data


def launch_gate(job: Any, fit_check: bool, device_hbm_gb: float | None = None) -> str:
    """Before any node is touched: refuse a job that does not fit (unless ``fit_check`` is off);
    returns what the job record keeps about it. ``device_hbm_gb``: the limit when the config sets
    no ``max_device_memory`` (else 64 GB is assumed)."""
    config = job_config(job)
    if not checkable(config):
        return f"not checked: {why_not_checked(config)}"
    est = estimate(config, device_hbm_gb)
    peak = est.peak
    summary = (f"stage {peak.stage} ~{peak.total / GIB:.1f} GiB of {est.limit / GIB:g} GiB "
               f"({est.limit_source})")
    if est.fits:
        return f"fits: {summary}"
    if fit_check:
        raise DoesNotFit(f"{job.spec_path}: {refusal(est, remedies(config, device_hbm_gb))}; or pass "
                         f"{NO_FIT_FLAG} to go ahead anyway", est)
    return f"skipped ({NO_FIT_FLAG}): does not fit: {summary}"


def preflight_hbm_gb(checks: Sequence[Any]) -> float | None:
    """The smallest HBM any node's preflight found (``NodeCheck.npu["chips"][i]["hbm_total_mb"]``),
    in GiB; None when no node reported one (no npu-smi, or a preflight without NPU rows)."""
    sizes = [chip.get("hbm_total_mb") for c in checks
             for chip in ((getattr(c, "npu", None) or {}).get("chips") or [])]
    known = [mb for mb in sizes if isinstance(mb, int) and mb > 0]
    return min(known) / 1024 if known else None


def gate_after_preflight(job: Any, checks: Sequence[Any], fit: str, fit_check: bool) -> str:
    """A config without ``max_device_memory`` was held against 64 GB before any node was touched;
    once the preflight has read the devices' HBM, it is held against that (before anything is
    pushed or started). Returns the record's ``fit_check`` text."""
    hbm = preflight_hbm_gb(checks)
    if hbm is None:
        return fit
    config = job_config(job)
    if not checkable(config) or (config.get("context") or {}).get("max_device_memory"):
        return fit
    return launch_gate(job, fit_check and not fit.startswith("skipped"), hbm)
