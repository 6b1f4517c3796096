"""Parallel layout validation and choice (pure).

MindFormers needs ``dp * mp * pp == world size``, attention heads (and KV heads) divisible by
``mp``, at least one layer per pipeline stage and at least ``pp`` micro batches. When a preset is
used on another device count we keep the preset's mp and pp if they still fit and scale dp; if
not, we pick the valid layout nearest to the preset's and say so. Given a ``fits`` predicate (the
memory estimate, see ``mfctl.cluster.memory``), the nearest layout that fits in device memory wins
over a nearer one that does not; when none fits, the nearest is returned and the caller refuses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from mfctl.jobspec.presets import ModelShape


@dataclass(frozen=True, slots=True)
class Layout:
    data_parallel: int
    model_parallel: int
    pipeline_stage: int
    micro_batch_num: int

    @property
    def product(self) -> int:
        return self.data_parallel * self.model_parallel * self.pipeline_stage

    def as_dict(self) -> dict[str, int]:
        return {
            "data_parallel": self.data_parallel,
            "model_parallel": self.model_parallel,
            "pipeline_stage": self.pipeline_stage,
            "micro_batch_num": self.micro_batch_num,
        }

    def flags(self) -> str:
        return (f"--dp {self.data_parallel} --mp {self.model_parallel} --pp {self.pipeline_stage}"
                + (f" --micro-batch-num {self.micro_batch_num}" if self.pipeline_stage > 1 else ""))


class LayoutError(ValueError):
    """Why a layout cannot run; the caller adds where it came from."""


def problems(layout: Layout, world_size: int, model: ModelShape) -> list[str]:
    """Every reason ``layout`` cannot run on ``world_size`` devices; empty when it can."""
    out: list[str] = []
    if layout.product != world_size:
        out.append(
            f"dp {layout.data_parallel} x mp {layout.model_parallel} x pp {layout.pipeline_stage} = "
            f"{layout.product}, but the cluster has {world_size} devices")
    if model.num_heads % layout.model_parallel:
        out.append(f"num_heads {model.num_heads} is not divisible by mp {layout.model_parallel}")
    if model.n_kv_heads % layout.model_parallel:
        out.append(f"n_kv_heads {model.n_kv_heads} is not divisible by mp {layout.model_parallel}")
    if layout.pipeline_stage > model.num_layers:
        out.append(f"pp {layout.pipeline_stage} exceeds num_layers {model.num_layers}")
    if layout.pipeline_stage > 1 and layout.micro_batch_num < layout.pipeline_stage:
        out.append(
            f"micro_batch_num {layout.micro_batch_num} is below pp {layout.pipeline_stage}")
    return out


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def choose_layout(
    world_size: int,
    model: ModelShape,
    reference: Layout,
    data_parallel: int | None = None,
    model_parallel: int | None = None,
    pipeline_stage: int | None = None,
    micro_batch_num: int | None = None,
    fits: Callable[[Layout], bool] | None = None,
) -> tuple[Layout, str | None]:
    """A valid layout for ``world_size`` devices, and a note when it differs from the reference.

    Values the user fixed are kept; the rest are filled in. Raises ``LayoutError`` with the reasons
    and a suggestion when nothing valid exists.
    """
    fixed = {"dp": data_parallel, "mp": model_parallel, "pp": pipeline_stage}
    best: tuple[float, Layout] | None = None
    fitting: tuple[float, Layout] | None = None
    for mp in _divisors(world_size):
        if model_parallel is not None and mp != model_parallel:
            continue
        for pp in _divisors(world_size // mp):
            if pipeline_stage is not None and pp != pipeline_stage:
                continue
            dp = world_size // (mp * pp)
            if data_parallel is not None and dp != data_parallel:
                continue
            mbn = micro_batch_num if micro_batch_num is not None else (
                max(reference.micro_batch_num, pp) if pp > 1 else 1)
            candidate = Layout(dp, mp, pp, mbn)
            if problems(candidate, world_size, model):
                continue
            # Nearest to the reference in mp and pp (log scale), preferring more model parallelism
            # over less when equally near: big models rarely fit with less.
            cost = (abs(math.log2(mp / reference.model_parallel))
                    + abs(math.log2(pp / reference.pipeline_stage))
                    - 0.01 * mp - 0.001 * pp)
            if best is None or cost < best[0]:
                best = (cost, candidate)
            if fits is not None and (fitting is None or cost < fitting[0]) and fits(candidate):
                fitting = (cost, candidate)
    if best is None:
        given = Layout(data_parallel or reference.data_parallel, model_parallel or reference.model_parallel,
                       pipeline_stage or reference.pipeline_stage,
                       micro_batch_num or reference.micro_batch_num)
        reasons = problems(given, world_size, model) or ["no dp x mp x pp fits those fixed values"]
        hint = _suggest(world_size, model, reference)
        raise LayoutError("; ".join(reasons) + (f"; try {hint.flags()}" if hint else
                                                 "; change the number of devices"))
    layout = best[1]
    memory_note = ""
    if fitting is not None and fitting[1] != layout:
        memory_note = (f"; dp {layout.data_parallel}, mp {layout.model_parallel}, pp "
                       f"{layout.pipeline_stage} would not fit in device memory")
        layout = fitting[1]
    note = None
    if (layout.data_parallel, layout.model_parallel, layout.pipeline_stage) != (
            reference.data_parallel, reference.model_parallel, reference.pipeline_stage) and not all(
            v is not None for v in fixed.values()):
        note = (f"layout for {world_size} devices: dp {layout.data_parallel}, mp {layout.model_parallel}, "
                f"pp {layout.pipeline_stage}, micro_batch_num {layout.micro_batch_num} (the preset's is "
                f"dp {reference.data_parallel}, mp {reference.model_parallel}, pp {reference.pipeline_stage})"
                + memory_note)
    return layout, note


def _suggest(world_size: int, model: ModelShape, reference: Layout) -> Layout | None:
    try:
        return choose_layout(world_size, model, reference)[0]
    except LayoutError:
        return None
