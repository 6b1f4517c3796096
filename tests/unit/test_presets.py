from __future__ import annotations

import pytest

from mfctl.cluster.batch import plan_batch, sequences_per_step
from mfctl.cluster.layout import Layout
from mfctl.errors import BadInput
from mfctl.jobspec.presets import parse_preset
from mfctl.presets import configs_dir

LLAMA2 = (configs_dir() / "presets" / "llama2-7b.yaml").read_text()


def test_every_preset_file_validates() -> None:
    names = sorted(p.stem for p in (configs_dir() / "presets").glob("*.yaml"))
    assert names == ["llama2-7b", "llama3-70b", "tiny-llama"]
    for name in names:
        preset = parse_preset((configs_dir() / "presets" / f"{name}.yaml").read_text(), name)
        assert preset.name == name


def line_of(text: str, line: str) -> int:
    return text.splitlines().index(line) + 1


@pytest.mark.parametrize("old, new, at, expected", [
    ("  data_parallel: 8\n", "  data_parallel: 4\n", "layout:",
     "layout: dp x mp x pp must equal nodes x devices_per_node (8)"),
    ("  gradient_accumulation_steps: 8\n", "  gradient_accumulation_steps: 0\n",
     "  gradient_accumulation_steps: 0",
     "train.gradient_accumulation_steps: Input should be greater than or equal to 1"),
    ("  type: MFTrainOneStepCell\n", "  kind: MFTrainOneStepCell\n", "runner_wrapper:",
     "runner_wrapper: needs a 'type' (the MindFormers class to build)"),
    ("    multiple_of: 256\n", "    multiple_of: 256\n    num_heads: 8\n", "  config:",
     "model.config: num_heads belong in model:, not model.config:"),
])
def test_bad_preset_names_file_and_line(old: str, new: str, at: str, expected: str) -> None:
    assert old in LLAMA2
    text = LLAMA2.replace(old, new, 1)
    line = line_of(text, at)
    with pytest.raises(BadInput) as exc:
        parse_preset(text, "configs/presets/x.yaml")
    assert str(exc.value) == f"configs/presets/x.yaml:{line}: {expected}"


@pytest.mark.parametrize("args, expected", [
    # batch, dp, grad_accum, micro_batch_num, pp, interleave, semi_auto
    ((1, 8, 8, 1, 1, 1, True), 64),       # llama2-7b as published
    ((1, 1, 1, 256, 8, 1, True), 256),    # llama3-70b: micro batches, not accumulation
    ((1, 1, 4, 256, 8, 1, True), 256),    # accumulation is ignored with pipeline stages
    ((4, 2, 8, 1, 1, 1, False), 8),       # data-parallel mode: no accumulation
    ((2, 4, 2, 1, 1, 2, True), 32),       # interleave multiplies too
])
def test_sequences_per_step(args: tuple, expected: int) -> None:
    assert sequences_per_step(*args) == expected


def test_user_fixed_accumulation_is_kept() -> None:
    ref = Layout(8, 1, 1, 1)
    _, batch, note = plan_batch(Layout(16, 1, 1, 1), ref, batch_size=1, grad_accum=8, interleave=1,
                                     semi_auto=True, seq_length=4096, grad_accum_fixed=True,
                                     micro_batch_num_fixed=False)
    assert (batch.gradient_accumulation_steps, batch.sequences, batch.tokens) == (8, 128, 128 * 4096)
    assert note and "global batch 128 sequences" in note and "the recipe's is 64" in note


def test_micro_batches_never_below_stages() -> None:
    layout, batch, note = plan_batch(Layout(64, 1, 8, 256), Layout(1, 8, 8, 256), batch_size=1, grad_accum=1,
                                     interleave=1, semi_auto=True, seq_length=8192,
                                     grad_accum_fixed=False, micro_batch_num_fixed=False)
    assert layout.micro_batch_num == 8 and batch.sequences == 512
    assert note and "the recipe's is 256" in note
