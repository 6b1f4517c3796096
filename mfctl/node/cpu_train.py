"""What a CPU worker needs at run time besides its config (MindSpore 2.9, MindFormers 1.9).

Copied into every job bundle (``bundle/node/`` beside ``train.py``, and ``bundle/cpu_site/`` for
MindFormers' own ``run_mindformer.py``) and imported from there: it imports only the standard
library, mindspore and mindformers (never ``mfctl``).

1. ``CpuTrainOneStepCell``, the loss-scale train cell for CPU. MindFormers' ``MFTrainOneStepCell``
   inherits MindSpore's ``TrainOneStepWithLossScaleCell.get_overflow_status``, which picks its check
   by device: GPU uses the FloatStatus op and everything else falls through to the Ascend paths
   (NPUGetFloatStatusV2 or AllFinite); none of these ops exist on CPU (``Unsupported op
   [NPUGetFloatStatusV2] on CPU``). This subclass overrides that public method with a check built on
   IsFinite, the one MindSpore's own inf/nan mode uses: one "not all finite" flag per gradient,
   summed, the sum all-reduced across ranks when the job is distributed, an overflow when it is
   >= 1. Nothing else of the cell changes. ``register_wrapper`` adds it to MindFormers' registry
   (the public ``MindFormerRegister.register_cls``) under ``cpu_compat.CPU_WRAPPER``, the name the
   rendered config gives ``runner_wrapper.type``; the trainer then builds it as it builds any
   wrapper. It lives in an importable module, not in a script's ``__main__``: graph mode compiles
   the method from its source and resolves the names it uses (``_not_all_finite``) in the globals
   of the module that defined it, found again by module name.

2. ``route_barrier``, the one place mfctl still rebinds a name inside a library (see its
   docstring for the call site and why no public setting avoids it).
"""

from __future__ import annotations

import sys

import mindspore as ms
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister
from mindformers.wrapper import MFTrainOneStepCell
from mindspore import ops
from mindspore.common import dtype as mstype

#: The registry name (``cpu_compat.CPU_WRAPPER``; a test keeps the two equal).
WRAPPER_NAME = "MfctlCpuTrainOneStepCell"

# One gradient -> [1.0] when it holds an inf or a nan, else [0.0]. A global of this module, where
# the graph compiler looks it up.
_not_all_finite = ops.MultitypeFuncGraph("mfctl_not_all_finite")


@_not_all_finite.register("Tensor")
def _tensor_not_all_finite(grad):
    finite = ops.cast(ops.isfinite(grad).all(), mstype.float32)
    return ops.reshape(1.0 - finite, (1,))


class CpuTrainOneStepCell(MFTrainOneStepCell):
    """``MFTrainOneStepCell`` whose overflow check runs on CPU (IsFinite instead of float-status ops)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.mfctl_distributed = ms.get_auto_parallel_context("parallel_mode") != ms.ParallelMode.STAND_ALONE
        self.mfctl_flags = ops.HyperMap()
        self.mfctl_add = ops.AddN()
        self.mfctl_sum_ranks = ops.AllReduce() if self.mfctl_distributed else None

    def get_overflow_status(self, status, compute_output):
        """Whether any gradient in ``compute_output`` is not finite, on any rank (a bool tensor).

        ``status`` is the float-status buffer of the Ascend path (``start_overflow_check``'s first
        output), unused here, as in MindSpore's own inf/nan mode.
        """
        flags = self.mfctl_flags(_not_all_finite, compute_output)
        count = ops.reshape(self.mfctl_add(flags), ())
        if self.mfctl_distributed:
            count = self.mfctl_sum_ranks(count)
        return count >= 1.0


def register_wrapper() -> None:
    """Make ``runner_wrapper.type: MfctlCpuTrainOneStepCell`` buildable (idempotent)."""
    MindFormerRegister.register_cls(CpuTrainOneStepCell, module_type=MindFormerModuleType.WRAPPER,
                                    alias=WRAPPER_NAME)


# Modules whose ``barrier`` the CPU paths of mfctl's jobs reach (see route_barrier).
BARRIER_CALLERS = (
    # preload_ckpt() calls ``barrier()`` (bound by name at import) whenever a distributed job
    # loads a .ckpt: every resume, every load_checkpoint.
    "mindformers.trainer.utils",
    # barrier_world() calls ``comm_func.barrier()`` (looked up on this module at call time): a
    # resume that lets MindFormers choose the checkpoint (resume_training True).
    "mindspore.communication.comm_func",
)


def cpu_barrier(group=None):
    """The barrier MindSpore itself names as the deprecated one's successor, which runs on CPU."""
    from mindspore.ops.communication import barrier

    barrier(group)


def route_barrier() -> list[str]:
    """Point the deprecated ``mindspore.communication.comm_func.barrier`` of ``BARRIER_CALLERS``
    at ``mindspore.ops.communication.barrier``; return the modules changed.

    Why a rebinding, the one left: MindFormers 1.9 synchronises ranks with the deprecated
    ``comm_func.barrier``, which issues the ``Barrier`` primitive, and MindSpore 2.9 has no CPU
    kernel for it (``Unsupported op [Barrier] on CPU``, measured under msrun). Its successor
    ``mindspore.ops.communication.barrier`` (DistCommBarrier) runs on CPU (measured: both ranks
    pass it). No setting avoids the call: ``BaseTrainer.training_process`` calls
    ``preload_ckpt(config)`` whenever ``config.checkpoint.load_path`` is set with the ckpt format,
    and ``preload_ckpt`` ends with ``if config.use_parallel: barrier()``
    (mindformers/trainer/utils.py); the safetensors format instead compiles and calls
    ``barrier()`` in ``load_checkpoint_with_safetensors``. mfctl names the checkpoint to resume
    from itself (so ``get_resume_checkpoint_by_meta``'s ``barrier_world`` is skipped), but not
    this one. The ranks still meet: the replacement is a real barrier, not a no-op.
    Only CPU workers of distributed jobs call this (``train.py``, the CPU sitecustomize).
    """
    changed = []
    for name in BARRIER_CALLERS:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "barrier", None) not in (None, cpu_barrier):
            module.barrier = cpu_barrier  # the declared exception (tests/unit/test_library_api.py)
            changed.append(name)
    return changed
