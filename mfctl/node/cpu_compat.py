"""The config values MindFormers' Llama training needs on a CPU-only machine (MindSpore 2.9,
MindFormers 1.9): pure rules on the config mapping, no MindSpore import.

Used in two places, so it imports only the standard library (never ``mfctl``, never mindspore):
- on the controller (``mfctl.render``), which applies them to a user's own CPU config when it
  renders the job, and refuses there a layout CPU cannot run: the YAML a node receives is the one
  that trains, whichever launcher runs it (MindFormers' own ``run_mindformer.py`` included);
- on the nodes, copied next to ``train.py`` in every bundle: mfctl's entry applies them again
  after the command-line overrides (``--section.key VALUE``), which may undo one.

Each value was a real error on CPU without it: ``use_rope_slice`` True (else BatchMatMul cannot
broadcast its inputs on CPU), ``fused_rms_norm`` False (no RmsNorm kernel on CPU),
``use_flash_attention`` False (Ascend only), ``runner_config.sink_mode`` False (with sink mode an
epoch ran steps x steps steps). Distributed, only plain data parallelism runs: semi-auto parallel
fails to compile on CPU (``RuntimeError: Invalid backend: CPU`` from GetWorldGroup, measured with
dp 2 and with mp 2). So a pure data-parallel layout written for semi-auto parallel (as the
published configs are) is switched to ``parallel_mode`` 0, which trains the same global batch; a
layout with model or pipeline parallelism cannot run on CPU at all (``cpu_parallel_problem``).

The loss-scale train cell: MindFormers' ``MFTrainOneStepCell`` checks gradients for overflow with
Ascend or GPU ops that CPU lacks. ``runner_wrapper.type`` is switched to ``CPU_WRAPPER``, mfctl's
subclass with an IsFinite check (``cpu_train.py``), which the node registers with MindFormers'
registry before the trainer builds the wrapper. The tiny-llama template already sets all this.
"""

from __future__ import annotations

from typing import Any

#: mfctl's loss-scale train cell for CPU (``cpu_train.CpuTrainOneStepCell``), by its registry name.
CPU_WRAPPER = "MfctlCpuTrainOneStepCell"
#: The wrapper names (class and registry alias) of MindFormers' cell that CPU cannot run.
_MF_WRAPPERS = ("MFTrainOneStepCell", "mf_wrapper")

# model.model_config values CPU training needs: (key, value).
_CPU_MODEL_CONFIG = (
    ("use_rope_slice", True),
    ("fused_rms_norm", False),
    ("use_flash_attention", False),
)
_LEGACY_LLAMA_CONFIGS = ("LlamaConfig",)


def is_cpu(device_target: Any) -> bool:
    """Whether a device target names the CPU (``"CPU"``, any case)."""
    return isinstance(device_target, str) and device_target.strip().upper() == "CPU"


def targets_cpu(config: Any) -> bool:
    """Whether a config's ``context.device_target`` is the CPU."""
    return is_cpu((config.get("context") or {}).get("device_target"))


def _is_data_parallel_mode(mode: Any) -> bool:
    return mode in (0, "0", "data_parallel", "DATA_PARALLEL", None)


def cpu_parallel_problem(config: Any) -> str | None:
    """Why this config's parallel layout cannot train on CPU, or None when it can."""
    if not config.get("use_parallel"):
        return None
    layout = config.get("parallel_config") or {}
    mp = layout.get("model_parallel", 1) or 1
    pp = layout.get("pipeline_stage", 1) or 1
    if mp > 1 or pp > 1:
        return (
            f"model_parallel {mp} and pipeline_stage {pp}: MindSpore cannot compile semi-auto "
            "parallel on CPU (Invalid backend: CPU); on CPU use data parallelism only "
            "(model_parallel 1, pipeline_stage 1)"
        )
    return None


def fix_config(config: Any) -> list[str]:
    """Set the config values that CPU training needs; return one message per value changed.

    ``config`` is a mapping: a ``MindFormerConfig`` on the node, the loaded YAML on the
    controller. Model values are only touched for the legacy Llama config types, whose options
    these are.
    """
    changes: list[str] = []
    runner = config.get("runner_config")
    if runner is not None and runner.get("sink_mode"):
        runner["sink_mode"] = False
        changes.append("runner_config.sink_mode: True -> False (sink mode repeats steps on CPU)")

    parallel = config.get("parallel")
    if (config.get("use_parallel") and parallel is not None and cpu_parallel_problem(config) is None
            and not _is_data_parallel_mode(parallel.get("parallel_mode"))):
        # The same global batch, without the semi-auto machinery CPU cannot compile.
        changes.append(f"parallel.parallel_mode: {parallel.get('parallel_mode')} -> 0 (data parallel)")
        parallel["parallel_mode"] = 0
        for key, value in (("full_batch", False), ("gradients_mean", True),
                           ("enable_parallel_optimizer", False)):
            if parallel.get(key) != value:
                changes.append(f"parallel.{key}: {parallel.get(key)} -> {value}")
                parallel[key] = value

    model_config = (config.get("model") or {}).get("model_config")
    if model_config is not None and model_config.get("type") in _LEGACY_LLAMA_CONFIGS:
        for key, value in _CPU_MODEL_CONFIG:
            if model_config.get(key) != value:
                old = model_config.get(key)
                model_config[key] = value
                changes.append(f"model.model_config.{key}: {old} -> {value}")

    wrapper = config.get("runner_wrapper")
    if wrapper is not None and wrapper.get("type") in _MF_WRAPPERS:
        changes.append(f"runner_wrapper.type: {wrapper['type']} -> {CPU_WRAPPER} (overflow check by IsFinite)")
        wrapper["type"] = CPU_WRAPPER
    return changes
