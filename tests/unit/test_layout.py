from __future__ import annotations

import pytest

from mfctl.cluster.layout import Layout, LayoutError, choose_layout, problems
from mfctl.presets import PRESETS

L70 = PRESETS["llama3-70b"]
L7 = PRESETS["llama2-7b"]


def ref(p) -> Layout:
    return Layout(p.data_parallel, p.model_parallel, p.pipeline_stage, p.micro_batch_num)


def test_published_layouts_are_valid() -> None:
    for p in PRESETS.values():
        assert problems(ref(p), p.world_size, p.model) == [], p.name


@pytest.mark.parametrize(
    "layout, world, expected",
    [
        (Layout(2, 8, 8, 256), 64, "dp 2 x mp 8 x pp 8 = 128, but the cluster has 64 devices"),
        (Layout(1, 64, 1, 1), 64, "n_kv_heads 8 is not divisible by mp 64"),
        (Layout(1, 1, 64, 4), 64, "micro_batch_num 4 is below pp 64"),
    ],
)
def test_problems(layout: Layout, world: int, expected: str) -> None:
    assert expected in problems(layout, world, L70.model)


def test_pp_larger_than_layers() -> None:
    assert "pp 4 exceeds num_layers 2" in problems(Layout(1, 1, 4, 4), 4, PRESETS["tiny-llama"].model)


@pytest.mark.parametrize("world, expected", [
    (64, (1, 8, 8)),    # the published layout
    (128, (2, 8, 8)),   # more nodes: more data parallelism
    (16, (1, 8, 2)),    # fewer: keep mp, fewer stages
    (8, (1, 8, 1)),
])
def test_llama70b_scales(world: int, expected: tuple[int, int, int]) -> None:
    layout, note = choose_layout(world, L70.model, ref(L70))
    assert (layout.data_parallel, layout.model_parallel, layout.pipeline_stage) == expected
    assert (note is None) == (world == 64)
    if world != 64:
        assert f"layout for {world} devices" in note


@pytest.mark.parametrize("world, dp", [(8, 8), (16, 16), (1, 1), (64, 64)])
def test_llama7b_data_parallel(world: int, dp: int) -> None:
    layout, _ = choose_layout(world, L7.model, ref(L7))
    assert (layout.data_parallel, layout.model_parallel, layout.pipeline_stage) == (dp, 1, 1)


def test_fixed_values_are_kept() -> None:
    layout, _ = choose_layout(64, L70.model, ref(L70), model_parallel=4)
    assert layout.model_parallel == 4 and layout.product == 64


def test_impossible_fixed_layout_says_why_and_suggests() -> None:
    with pytest.raises(LayoutError) as exc:
        choose_layout(64, L70.model, ref(L70), data_parallel=2, model_parallel=8, pipeline_stage=8)
    assert "= 128, but the cluster has 64 devices" in str(exc.value)
    assert "try --dp 1 --mp 8 --pp 8" in str(exc.value)


def test_world_with_no_valid_layout() -> None:
    # 7 devices: mp must divide 64 heads and 8 KV heads, pp <= 80: only mp 1 works, dp 7 / pp 7.
    layout, _ = choose_layout(7, L70.model, ref(L70))
    assert layout.product == 7 and layout.model_parallel == 1
