"""What MindFormers' Llama training needs to run on a CPU-only machine (MindSpore 2.9, MindFormers 1.9).

This file is copied next to ``train.py`` into every job bundle and imported from there, so it may
import only the standard library, mindspore and mindformers (never ``mfctl``).

Two kinds of measure, both applied by ``train.py`` only when the device target is CPU:

1. Config values (``fix_config``). Each was a real error on CPU without it:
   ``use_rope_slice`` True (else BatchMatMul cannot broadcast its inputs on CPU),
   ``fused_rms_norm`` False (no RmsNorm kernel on CPU), ``use_flash_attention`` False (Ascend
   only), ``runner_config.sink_mode`` False (with sink mode an epoch ran steps x steps steps).
   Distributed, only plain data parallelism runs: semi-auto parallel fails to compile on CPU
   (``RuntimeError: Invalid backend: CPU`` from GetWorldGroup, measured with dp 2 and with mp 2).
   So a pure data-parallel layout written for semi-auto parallel (as the published configs are)
   is switched to ``parallel_mode`` 0, which trains the same global batch; a layout with model or
   pipeline parallelism cannot run on CPU at all (``cpu_parallel_problem``).
   The tiny-llama template already sets all this; fixing it here lets any legacy Llama config run.

2. The loss-scale overflow check (``patch_overflow_check``). ``TrainOneStepWithLossScaleCell``
   (the base of MindFormers' ``MFTrainOneStepCell``) picks its check by device: GPU uses the
   FloatStatus op and everything that is not GPU falls through to the Ascend paths
   (NPUGetFloatStatusV2 or AllFinite); none of these ops exist on CPU. The portable check is the
   inf/nan-mode one built on IsFinite, which MindSpore itself uses on Ascend when AllFinite is
   disabled: sum a per-gradient "not all finite" flag, all-reduce the sum across ranks, and call
   it an overflow when the sum is >= 1.

   Why this lives in its own module and not in the script: in graph mode MindSpore compiles the
   replacement method from its source and resolves the names it uses (``_infnan_overflow``) in
   the globals of the module that defined it, found again by module name. A function defined in
   ``__main__`` is not reliably found that way; one defined in an importable module is.
"""

from __future__ import annotations

from typing import Any

# The per-gradient check MindSpore's own inf/nan mode uses: 1.0 when a gradient holds inf or nan.
# It must be a global of this module, where the graph compiler will look it up.
from mindspore.nn.wrap.loss_scale import _ascend_grad_overflow as _infnan_overflow

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

    ``config`` is a ``MindFormerConfig`` (attribute and item access). Model values are only
    touched for the legacy Llama config types, whose options these are.
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
    return changes


def _overflow_status_infnan(self, status, compute_output):
    """Replacement for ``TrainOneStepWithLossScaleCell.get_overflow_status`` on CPU.

    ``status`` is the NPU float-status buffer of the Ascend path, unused here. Returns a boolean
    tensor: whether any gradient on any rank is not finite.
    """
    return self._get_distributed_overflow_status_on_infnan_mode(_infnan_overflow, compute_output)


def patch_overflow_check() -> bool:
    """Route the loss-scale overflow check of every loss-scale train cell to the inf/nan mode.

    Patches the base class, so MindFormers' ``MFTrainOneStepCell`` and
    ``MFPipelineWithLossScaleCell`` inherit it. Must run before the train cell is compiled.
    Returns False when it was already patched.
    """
    from mindspore.nn import TrainOneStepWithLossScaleCell

    if TrainOneStepWithLossScaleCell.get_overflow_status is _overflow_status_infnan:
        return False
    TrainOneStepWithLossScaleCell.get_overflow_status = _overflow_status_infnan
    return True


# Modules that bind MindSpore's ``barrier`` by name at import time (``from ... import barrier``).
_BARRIER_USERS = (
    "mindspore.communication.comm_func",
    "mindformers.trainer.utils",
    "mindformers.version_control",
    "mindformers.core.callback.callback",
    "mindformers.utils.load_checkpoint_utils",
)


def _cpu_barrier(group=None):
    """The barrier on CPU: nothing to wait for here.

    MindSpore 2.9 has no ``Barrier`` kernel on CPU (nor a PyNative all-reduce, measured), yet
    MindFormers calls one when a distributed job loads a checkpoint (resume). Those barriers only
    line the ranks up before each loads its own files; the first gradient all-reduce of the
    compiled train step synchronises them anyway.
    """
    return None


def patch_barrier() -> list[str]:
    """Replace ``barrier`` in every already-imported module that bound it; returns their names."""
    import sys

    patched = []
    for name in _BARRIER_USERS:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "barrier", None) not in (None, _cpu_barrier):
            module.barrier = _cpu_barrier
            patched.append(name)
    return patched
