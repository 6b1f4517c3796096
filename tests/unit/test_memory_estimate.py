"""The memory estimate against what MindFormers publishes, and the parts a user reads off it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mfctl.cluster.dryrun import parse_dryrun, stage_ranks
from mfctl.cluster.fixes import refusal, remedies
from mfctl.cluster.layout import Layout, choose_layout
from mfctl.cluster.memory import GIB, estimate, parse_size, with_changes
from mfctl.presets import PRESETS

DATA = Path(__file__).resolve().parents[1] / "data"
PUBLISHED = {c["name"]: c for c in yaml.safe_load((DATA / "memory" / "published.yaml").read_text())}


def config(name: str, **changes) -> dict:
    return with_changes(PUBLISHED[name], {k.replace("__", "."): v for k, v in changes.items()})


def parts_add_up(est) -> None:
    for stage in est.to_json()["stages"]:
        parts = sum(stage[k] for k in ("params_gb", "grads_gb", "optimizer_gb", "activations_gb",
                                       "other_gb"))
        assert abs(parts - stage["total_gb"]) < 1e-9, stage


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_layouts_fit_and_use_more_than_half(name: str) -> None:
    est = estimate(PUBLISHED[name])
    assert est.limit == parse_size(PUBLISHED[name]["context"]["max_device_memory"])
    assert est.fits, (name, est.peak.total / GIB)
    assert est.peak.total > 0.5 * est.limit, (name, est.peak.total / GIB)
    assert est.unaccounted == ()
    parts_add_up(est)


@pytest.mark.parametrize("name, changes, why", [
    ("llama3-70b-dp1-mp8-pp8", {"parallel_config__pipeline_stage": 1}, "70B on 8 devices"),
    ("llama3-70b-dp1-mp8-pp8", {"parallel_config__pipeline_stage": 2}, "70B on 16 devices"),
    ("llama2-7b-dp8", {"parallel_config__data_parallel": 1}, "7B on one device"),
    ("llama2-7b-dp8", {"model__model_config__seq_length": 32768}, "7B at seq 32768, no recompute"),
    ("llama2-13b-dp8-full-recompute", {"recompute_config__recompute": False},
     "13B dp8 without the full recompute its docs require"),
])
def test_known_non_fitting_layouts_do_not_fit(name: str, changes: dict, why: str) -> None:
    est = estimate(config(name, **changes))
    assert not est.fits, why
    parts_add_up(est)


@pytest.mark.parametrize("name, billions", [
    ("llama2-7b-dp8", 6.74), ("llama2-13b-dp8-full-recompute", 13.02),
    ("llama3-8b-dp8-full-recompute", 8.03), ("llama2-70b-64p-dp2-mp4-pp8", 68.98),
    ("llama3-70b-dp1-mp8-pp8", 70.55),
])
def test_parameter_count_is_the_models(name: str, billions: float) -> None:
    # One device, float32 weights, no optimizer sharding: params bytes / 4 is the parameter count.
    est = estimate(config(name, parallel_config__data_parallel=1, parallel_config__model_parallel=1,
                          parallel_config__pipeline_stage=1, model__model_config__param_init_type="float32",
                          model__model_config__compute_dtype="float32",
                          parallel__enable_parallel_optimizer=False))
    assert est.stages[0].params / 4 / 1e9 == pytest.approx(billions, rel=0.005)
    # Two float32 moments: 8 bytes a parameter.
    assert est.stages[0].optimizer == pytest.approx(2 * est.stages[0].params)


def test_optimizer_parallel_shards_states_across_dp_and_nothing_with_dp_1() -> None:
    dp8 = estimate(PUBLISHED["llama2-7b-dp8"]).stages[0]
    dp1 = estimate(config("llama2-7b-dp8", parallel_config__data_parallel=1)).stages[0]
    assert dp1.optimizer == pytest.approx(8 * dp8.optimizer)
    off = estimate(config("llama2-7b-dp8", parallel__enable_parallel_optimizer=False)).stages[0]
    assert off.optimizer == pytest.approx(dp1.optimizer)


def test_1f1b_stage_s_keeps_pp_minus_s_micro_batches() -> None:
    est = estimate(config("llama2-70b-64p-fp16-dp2-mp4-pp8"))  # no recompute: every stage alike
    assert [s.in_flight for s in est.stages] == [8, 7, 6, 5, 4, 3, 2, 1]
    middle = est.stages[1:-1]
    per_mb = [s.activations / s.in_flight for s in middle]
    assert max(per_mb) == pytest.approx(min(per_mb))
    assert est.stages[0].layers == est.stages[-1].layers == 10


def test_recompute_options_lower_activations_in_order() -> None:
    def acts(**changes) -> float:
        return estimate(config("llama2-7b-dp8", **changes)).stages[0].activations
    none = acts()
    select = acts(recompute_config__select_recompute=True)
    both = acts(recompute_config__select_recompute=True, recompute_config__select_comm_recompute=True)
    full = acts(recompute_config__recompute=True)
    assert none > select > both > full
    # Per-stage lists: [n] recomputes n layers of stage 0.
    assert acts(recompute_config__recompute=[32]) == pytest.approx(full)
    assert full < acts(recompute_config__recompute=[16]) < none


def test_sequence_parallel_divides_the_norm_activations_by_mp() -> None:
    base = config("llama3-70b-dp1-mp8-pp8", recompute_config__select_recompute=False,
                  recompute_config__select_comm_recompute=False)
    with_sp = estimate(base).stages[3].activations
    without = estimate(with_changes(base, {"parallel_config.use_seq_parallel": False})).stages[3].activations
    assert without > with_sp * 1.5


def test_refusal_names_stage_estimate_limit_and_the_change_that_fits() -> None:
    cfg = config("llama2-7b-dp8", model__model_config__seq_length=32768)
    est = estimate(cfg)
    text = refusal(est, remedies(cfg))
    assert text.startswith(f"stage 0 needs ~{est.peak.total / GIB:.1f} GiB per device, the devices "
                           "give 58 GiB (context.max_device_memory); with full recompute ~")
    assert "(set recompute_config.recompute: true)" in text
    fixed = estimate(with_changes(cfg, {"recompute_config.recompute": True}))
    assert fixed.fits and f"with full recompute ~{fixed.peak.total / GIB:.1f} GiB" in text


def test_refusal_when_nothing_fits_says_more_devices() -> None:
    cfg = config("llama3-70b-dp1-mp8-pp8", parallel_config__pipeline_stage=1)
    text = refusal(estimate(cfg), remedies(cfg))
    assert "nothing mfctl tried fits" in text and text.endswith("use more devices")


def test_remedies_try_each_kind_of_change() -> None:
    cfg = config("llama2-13b-dp8-full-recompute", recompute_config__recompute=False,
                 parallel__enable_parallel_optimizer=False)
    labels = " | ".join(r.label for r in remedies(cfg))
    for kind in ("full recompute", "select_recompute", "pp 2", "batch size 1", "optimizer sharding"):
        assert kind in labels


def test_unknown_settings_are_named_never_silent() -> None:
    cfg = config("llama2-7b-dp8", optimizer__type="Sophia", moe_config={"expert_num": 8},
                 model__model_config__param_init_type="float8")
    est = estimate(cfg)
    text = " ".join(est.unaccounted)
    assert "optimizer Sophia" in text and "moe_config" in text and "float8" in text
    assert est.stages[0].optimizer > 0


def test_limit_without_max_device_memory() -> None:
    cfg = config("llama2-7b-dp8")
    del cfg["context"]["max_device_memory"]
    assumed = estimate(cfg)
    assert assumed.limit == 64 * GIB and assumed.limit_source == "assumed"
    assert any("assumed 64 GB" in a for a in assumed.assumptions)
    known = estimate(cfg, device_hbm_gb=32)
    assert known.limit == 32 * GIB and not known.fits


@pytest.mark.parametrize("text, gib", [("58GB", 58), ("52.5GB", 52.5), ("1024MB", 1), (" 59 GB ", 59)])
def test_parse_size(text: str, gib: float) -> None:
    assert parse_size(text) == gib * GIB


# --------------------------------------------------------------------------- the layout chooser

def test_chooser_prefers_the_nearest_layout_that_fits() -> None:
    l70 = PRESETS["llama3-70b"]
    reference = Layout(1, 8, 8, 256)
    layout, note = choose_layout(16, l70.model, reference, fits=lambda lay: lay.pipeline_stage >= 4)
    assert layout.pipeline_stage >= 4 and layout.product == 16
    assert "would not fit in device memory" in note
    # None fits: the nearest valid layout comes back (the caller refuses it).
    layout, _ = choose_layout(16, l70.model, reference, fits=lambda lay: False)
    assert (layout.data_parallel, layout.model_parallel, layout.pipeline_stage) == (1, 8, 2)


# --------------------------------------------------------------------------- DryRun output

def test_dryrun_parser_reads_the_o0_o1_statistic() -> None:
    text = (DATA / "dryrun" / "mindformers-v1.5.0-pipeline-balance-readme.txt").read_text()
    mem = parse_dryrun(text)
    assert mem is not None
    assert (mem.used_peak, mem.actual_peak, mem.device) == (48874, 48874, 62432)
    assert mem.to_json()["peak_gb"] == pytest.approx(47.73, abs=0.01)


def test_dryrun_parser_reads_the_o2_statistic() -> None:
    text = (DATA / "dryrun" / "mindspore-r2.1-memory-offload-O2-statistic.txt").read_text()
    mem = parse_dryrun(text)
    assert mem is not None and (mem.static, mem.dynamic) == (496, 0) and mem.peak_mib == 496


def test_dryrun_parser_without_statistic() -> None:
    assert parse_dryrun("ERROR libge_runner.so: cannot open shared object file\n") is None


def test_one_rank_per_stage() -> None:
    assert stage_ranks(64, 8) == [(s, 8 * s) for s in range(8)]
    assert stage_ranks(8, 1) == [(0, 0)]


def test_offset_moves_layers_between_stages() -> None:
    est = estimate(config("llama2-70b-64p-fp16-dp2-mp4-pp8",
                          model__model_config__offset=[1, 0, 0, 0, 0, 0, 0, -1]))
    assert [s.layers for s in est.stages] == [11, 10, 10, 10, 10, 10, 10, 9]
    odd = estimate(config("llama2-70b-64p-fp16-dp2-mp4-pp8", model__model_config__offset=[[1, -1]]))
    assert [s.layers for s in odd.stages] == [10] * 8
    assert any("offset" in a for a in odd.assumptions)
