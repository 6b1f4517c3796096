"""The Ascend presets are the published recipes: key by key against MindFormers 1.5.0's values.

``tests/data/recipes/<preset>.v1.5.0.json`` holds the published training-shaping values (read from
the tag once, values only). Each preset is rendered with ``mfctl init`` + ``mfctl render`` on its
published layout and compared with them. Every difference must be listed below with its reason:
``RENAMES`` (an option MindFormers 1.9.0 renamed or removed, and what the preset uses instead) and
``ADDITIONS`` (keys the rendered config has and the recipe does not). A change to a preset that is
not reviewed here fails.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from recipes_compare import flatten, lookup, same, training_keys

DATA = Path(__file__).resolve().parent.parent / "data" / "recipes"
SAME = object()  # the rename keeps the published value

#: upstream key -> (our key, our value or SAME, why)
RENAMES: dict[str, dict[str, tuple[str, Any, str]]] = {
    "llama2-7b": {
        "optimizer.type": ("optimizer.type", "AdamW",
                           "MindFormers 1.9.0 has no FP32StateAdamWeightDecay; its AdamW keeps float32 "
                           "moment states, which is what the recipe chose FP32State for"),
        "optimizer.beta1": ("optimizer.betas[0]", SAME, "AdamW takes betas: [beta1, beta2]"),
        "optimizer.beta2": ("optimizer.betas[1]", SAME, "AdamW takes betas: [beta1, beta2]"),
    },
    "llama3-70b": {},
}

#: our key -> (value, why the recipe does not have it)
ADDITIONS: dict[str, dict[str, tuple[Any, str]]] = {
    "llama2-7b": {
        "use_legacy": (True, "1.9.0 needs it to run the Llama code 1.5.0 had (LlamaForCausalLM)"),
    },
    "llama3-70b": {
        "use_legacy": (True, "1.9.0 needs it to run the Llama code 1.5.0 had (LlamaForCausalLM)"),
        "runner_config.gradient_accumulation_steps": (1, "MindFormers' default, written out; ignored "
                                                      "with pipeline stages"),
    },
}

PUBLISHED = {"llama2-7b": (1, 8), "llama3-70b": (8, 8)}


def published(preset: str) -> dict[str, Any]:
    return json.loads((DATA / f"{preset}.v1.5.0.json").read_text())


def render_preset(mfctl, tmp: Path, preset: str, nodes: int, devices: int, *extra: str) -> dict[str, Any]:
    hosts = tmp / "hosts.txt"
    hosts.write_text("".join(f"node{i + 1} slots={devices}\n" for i in range(nodes)))
    job = tmp / preset
    r = mfctl("init", job, "--model", preset, "--nodes", hosts, "--dataset", "/data/wiki.mindrecord",
              "--yes", *extra)
    assert r.exit_code == 0, r.stderr
    r = mfctl("render", cwd=job)
    assert r.exit_code == 0, r.stderr
    return yaml.safe_load((job / "rendered" / "config.yaml").read_text())


def differences(preset: str, upstream: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """Every training-shaping difference not reviewed in RENAMES / ADDITIONS."""
    renames, additions = RENAMES[preset], ADDITIONS[preset]
    out: list[str] = []
    for key, value in upstream.items():
        our_key, our_value, _ = renames.get(key, (key, SAME, ""))
        expected = value if our_value is SAME else our_value
        try:
            got = lookup(ours, our_key)
        except KeyError:
            out.append(f"{key}: published {value!r}, missing from the rendered config")
            continue
        if not same(got, expected):
            out.append(f"{key}: published {value!r}, rendered {our_key} = {got!r}")
    renamed_to = {k.split("[")[0] for k, _, _ in renames.values()}
    for key, value in ours.items():
        if key in upstream or key in renamed_to:
            continue
        if key not in additions:
            out.append(f"{key} = {value!r} is not in the recipe and not reviewed in ADDITIONS")
        elif not same(value, additions[key][0]):
            out.append(f"{key} = {value!r}, reviewed as {additions[key][0]!r}")
    return out


@pytest.mark.parametrize("preset", sorted(PUBLISHED))
def test_preset_renders_the_published_recipe(mfctl, tmp_path: Path, preset: str) -> None:
    golden = published(preset)
    ours = training_keys(flatten(render_preset(mfctl, tmp_path, preset, *PUBLISHED[preset])))
    assert differences(preset, golden["values"], ours) == []


@pytest.mark.parametrize("preset", sorted(PUBLISHED))
def test_preset_names_its_source(preset: str) -> None:
    from mfctl.presets import PRESETS

    source = PRESETS[preset].source
    assert source is not None
    golden = published(preset)["source"]
    assert (source.tag, source.path) == (golden["tag"], golden["path"])


def test_a_changed_value_is_caught(mfctl, tmp_path: Path) -> None:
    """The comparison fails on what a user would change: batch size, accumulation, layout."""
    ours = training_keys(flatten(render_preset(mfctl, tmp_path, "llama2-7b", 1, 8, "--batch-size", "2",
                                               "--grad-accum", "3")))
    found = differences("llama2-7b", published("llama2-7b")["values"], ours)
    assert any(d.startswith("runner_config.batch_size: published 1, rendered") for d in found)
    assert any(d.startswith("runner_config.gradient_accumulation_steps: published 8") for d in found)


MF15 = os.environ.get("MFCTL_MINDFORMERS_15")


@pytest.mark.skipif(not MF15, reason="set MFCTL_MINDFORMERS_15 to a MindFormers v1.5.0 checkout to "
                    "compare with the upstream files themselves")
@pytest.mark.parametrize("preset", sorted(PUBLISHED))
def test_against_upstream_checkout(mfctl, tmp_path: Path, preset: str) -> None:
    golden = published(preset)
    upstream = yaml.safe_load((Path(MF15) / golden["source"]["path"]).read_text())
    values = training_keys(flatten(upstream))
    assert values == golden["values"], "tests/data/recipes differs from the upstream file"
    ours = training_keys(flatten(render_preset(mfctl, tmp_path, preset, *PUBLISHED[preset])))
    assert differences(preset, values, ours) == []


# --------------------------------------------------------------------------- global batch

@pytest.mark.parametrize("preset, nodes, devices, sequences, formula, note", [
    ("llama2-7b", 1, 8, 64, "batch 1 x dp 8 x grad_accum 8", None),
    ("llama3-70b", 8, 8, 256, "batch 1 x dp 1 x micro_batch_num 256", None),
    # Another device count: the accumulation is scaled so the global batch stays.
    ("llama2-7b", 2, 8, 64, "batch 1 x dp 16 x grad_accum 4",
     "gradient_accumulation_steps 4 (was 8) for dp 16: keeps the recipe's global batch of 64"),
    # 4 devices: dp 4 would not fit in device memory (optimizer parallel shards less); dp 2 mp 2 does.
    ("llama2-7b", 1, 4, 64, "batch 1 x dp 2 x grad_accum 32", "keeps the recipe's global batch of 64"),
    ("llama3-70b", 16, 8, 256, "batch 1 x dp 2 x micro_batch_num 128",
     "micro_batch_num 128 (was 256) for dp 2: keeps the recipe's global batch of 256"),
    # (does not fit in device memory: created with --no-fit-check)
    ("llama3-70b", 1, 8, 256, "batch 1 x dp 1 x grad_accum 256",
     "gradient_accumulation_steps 256 (was 1) for dp 1 without pipeline stages"),
    # Not a divisor: the nearest, and the plan says the new global batch.
    ("llama2-7b", 1, 6, 63, "batch 1 x dp 3 x grad_accum 21",
     "global batch 63 sequences (batch 1 x dp 3 x grad_accum 21), the recipe's is 64"),
])
def test_plan_shows_global_batch(mfctl, tmp_path: Path, preset: str, nodes: int, devices: int,
                                 sequences: int, formula: str, note: str | None) -> None:
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("".join(f"n{i} slots={devices}\n" for i in range(nodes)))
    r = mfctl("init", tmp_path / "j", "--model", preset, "--nodes", hosts, "--dataset", "/d", "--yes",
              "--no-fit-check")
    assert r.exit_code == 0, r.stderr
    plan = json.loads(mfctl("plan", "--json", cwd=tmp_path / "j").stdout)
    seq_length = {"llama2-7b": 4096, "llama3-70b": 8192}[preset]
    assert plan["global_batch"]["sequences"] == sequences
    assert plan["global_batch"]["tokens"] == sequences * seq_length
    assert plan["global_batch"]["formula"] == formula
    if note is None:
        assert "note" not in plan
    else:
        assert note in plan["note"]
    r = mfctl("plan", cwd=tmp_path / "j")
    tokens = sequences * seq_length
    assert f"global batch: {sequences:,} sequences x {seq_length:,} tokens = {tokens:,}" in r.stdout
    assert mfctl("render", cwd=tmp_path / "j").exit_code == 0
    config = yaml.safe_load((tmp_path / "j" / "rendered" / "config.yaml").read_text())
    assert config["parallel_config"]["micro_batch_num"] == plan["global_batch"]["micro_batch_num"]
    if plan["parallel"]["pipeline_stage"] == 1:
        assert config["runner_config"]["gradient_accumulation_steps"] == \
            plan["global_batch"]["gradient_accumulation_steps"]
    # MindFormers refuses a per-stage recompute list longer than pipeline_stage.
    for key in ("select_recompute", "select_comm_recompute"):
        value = config["recompute_config"].get(key)
        if isinstance(value, list):
            assert len(value) <= plan["parallel"]["pipeline_stage"]


def test_flags_override_the_preset(mfctl, tmp_path: Path) -> None:
    config = render_preset(mfctl, tmp_path, "llama2-7b", 1, 8, "--batch-size", "2", "--grad-accum", "2",
                           "--dp", "4", "--mp", "2")
    assert config["runner_config"]["batch_size"] == 2
    assert config["train_dataset"]["batch_size"] == 2
    assert config["runner_config"]["gradient_accumulation_steps"] == 2
    assert (config["parallel_config"]["data_parallel"], config["parallel_config"]["model_parallel"]) == (4, 2)
    plan = json.loads(mfctl("plan", "--json", cwd=tmp_path / "llama2-7b").stdout)
    assert plan["global_batch"]["sequences"] == 2 * 4 * 2


def test_accumulation_with_pipeline_stages_is_called_out(mfctl, tmp_path: Path) -> None:
    config = render_preset(mfctl, tmp_path, "llama3-70b", 8, 8, "--grad-accum", "4")
    assert config["runner_config"]["gradient_accumulation_steps"] == 1
    plan = json.loads(mfctl("plan", "--json", cwd=tmp_path / "llama3-70b").stdout)
    assert plan["global_batch"]["sequences"] == 256
    assert "gradient_accumulation_steps 4 does nothing with pipeline stages" in plan["note"]


def test_bad_batch_flag(mfctl, tmp_path: Path) -> None:
    r = mfctl("init", tmp_path / "j", "--model", "llama2-7b", "--dataset", "/d", "--yes",
              "--grad-accum", "0")
    assert r.exit_code == 2
    assert "--grad-accum must be a positive integer, got 0" in r.stderr
    assert not (tmp_path / "j").exists()
