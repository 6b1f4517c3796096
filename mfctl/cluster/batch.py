"""The global batch: how many sequences one optimizer step sees, and keeping it on other layouts (pure).

MindFormers 1.9.0's rule (BaseTrainer._check_global_batch_size_for_auto_parallel and
_check_grad_accumulation_steps), with b = runner_config.batch_size:

- semi-auto parallel, pipeline_stage > 1: b x dp x micro_batch_num x micro_batch_interleave_num
  (gradient accumulation is reset to 1: micro batches are the pipeline's accumulation);
- semi-auto parallel, pipeline_stage 1: b x dp x micro_batch_interleave_num x gradient_accumulation_steps;
- data parallel (parallel_mode 0): b x devices (accumulation is reset to 1 outside semi-auto).

When a preset runs on a device count other than its published one, data parallelism changes; to
keep the published global batch we change the accumulation factor (micro_batch_num with pipeline
stages, gradient_accumulation_steps without) by the same ratio, unless the user fixed it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from mfctl.cluster.layout import Layout


@dataclass(frozen=True, slots=True)
class GlobalBatch:
    batch_size: int
    gradient_accumulation_steps: int
    micro_batch_num: int
    data_parallel: int
    pipeline_stage: int
    micro_batch_interleave_num: int
    semi_auto: bool
    seq_length: int
    #: The published recipe's global batch (sequences) with this batch size, for comparison.
    reference_sequences: int

    @property
    def sequences(self) -> int:
        return sequences_per_step(self.batch_size, self.data_parallel, self.gradient_accumulation_steps,
                                  self.micro_batch_num, self.pipeline_stage,
                                  self.micro_batch_interleave_num, self.semi_auto)

    @property
    def tokens(self) -> int:
        return self.sequences * self.seq_length

    def formula(self) -> str:
        inter = (f" x interleave {self.micro_batch_interleave_num}"
                 if self.micro_batch_interleave_num > 1 else "")
        if not self.semi_auto:
            return f"batch {self.batch_size} x dp {self.data_parallel}"
        if self.pipeline_stage > 1:
            return (f"batch {self.batch_size} x dp {self.data_parallel} x micro_batch_num "
                    f"{self.micro_batch_num}{inter}")
        return (f"batch {self.batch_size} x dp {self.data_parallel}{inter} x grad_accum "
                f"{self.gradient_accumulation_steps}")

    def to_json(self) -> dict[str, Any]:
        return {
            "sequences": self.sequences,
            "tokens": self.tokens,
            "seq_length": self.seq_length,
            "batch_size": self.batch_size,
            "data_parallel": self.data_parallel,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "micro_batch_num": self.micro_batch_num,
            "micro_batch_interleave_num": self.micro_batch_interleave_num,
            "pipeline_stage": self.pipeline_stage,
            "semi_auto": self.semi_auto,
            "reference_sequences": self.reference_sequences,
            "formula": self.formula(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], layout: Layout | None = None) -> GlobalBatch:
        """The batch ``to_json`` wrote (plans recorded before the last three keys existed take
        them from the ``layout``)."""
        pp = data.get("pipeline_stage", layout.pipeline_stage if layout else 1)
        return cls(
            batch_size=data["batch_size"], gradient_accumulation_steps=data["gradient_accumulation_steps"],
            micro_batch_num=data["micro_batch_num"], data_parallel=data["data_parallel"],
            pipeline_stage=pp, micro_batch_interleave_num=data["micro_batch_interleave_num"],
            semi_auto=data.get("semi_auto", pp > 1 or (layout is not None and layout.model_parallel > 1)),
            seq_length=data["seq_length"], reference_sequences=data.get("reference_sequences", data["sequences"]))


def sequences_per_step(batch: int, dp: int, grad_accum: int, micro_batch_num: int, pp: int,
                       interleave: int, semi_auto: bool) -> int:
    if not semi_auto:
        return batch * dp
    if pp > 1:
        return batch * dp * micro_batch_num * interleave
    return batch * dp * interleave * grad_accum


def plan_batch(layout: Layout, reference: Layout, *, batch_size: int, grad_accum: int,
               interleave: int, semi_auto: bool, seq_length: int,
               grad_accum_fixed: bool, micro_batch_num_fixed: bool) -> tuple[Layout, GlobalBatch, str | None]:
    """The layout (micro_batch_num possibly changed), the global batch, and a note when it was
    adjusted or could not be kept.

    ``grad_accum`` is the preset's (or the user's) accumulation on the reference layout; the
    target is the reference layout's global batch at ``batch_size``.
    """
    target = sequences_per_step(batch_size, reference.data_parallel, grad_accum, reference.micro_batch_num,
                                reference.pipeline_stage, interleave, semi_auto)
    gas, mbn = grad_accum, layout.micro_batch_num
    note = None
    if semi_auto and layout.pipeline_stage > 1 and not micro_batch_num_fixed:
        per = batch_size * layout.data_parallel * interleave
        want = target / per
        mbn = max(layout.pipeline_stage, round(want))
        if mbn != layout.micro_batch_num:
            note = (f"micro_batch_num {mbn} (was {layout.micro_batch_num}) for dp {layout.data_parallel}")
    elif semi_auto and layout.pipeline_stage == 1 and not grad_accum_fixed:
        per = batch_size * layout.data_parallel * interleave
        want = target / per
        gas = max(1, round(want))
        if gas != grad_accum:
            note = (f"gradient_accumulation_steps {gas} (was {grad_accum}) for dp {layout.data_parallel}"
                    + (" without pipeline stages" if reference.pipeline_stage > 1 else ""))
    if semi_auto and layout.pipeline_stage > 1:
        if grad_accum_fixed and grad_accum > 1:
            note = "; ".join(filter(None, [note, (
                f"gradient_accumulation_steps {grad_accum} does nothing with pipeline stages (MindFormers "
                "resets it to 1): micro_batch_num is the accumulation there")]))
        gas = 1  # MindFormers resets it with pipeline stages
    new_layout = replace(layout, micro_batch_num=mbn)
    batch = GlobalBatch(batch_size, gas, mbn, layout.data_parallel, layout.pipeline_stage, interleave,
                        semi_auto, seq_length, target)
    if batch.sequences == target:
        if note:
            note = f"{note}: keeps the recipe's global batch of {target} sequences ({batch.formula()})"
    else:
        why = note + "; " if note else ""
        note = (f"{why}global batch {batch.sequences} sequences ({batch.formula()}), the recipe's is "
                f"{target} on its layout" + ("" if semi_auto else
                                            ": data parallelism has no gradient accumulation"))
    return new_layout, batch, note
