"""Every preset's rendered config is one MindFormers 1.9.0 accepts: ``MindFormerConfig`` loads it,
``LlamaConfig`` builds from its model_config with its parallel and recompute config, and its
optimizer builds, all on CPU.

MindFormers is imported once, in one subprocess for all presets (the import takes seconds, and it
writes ./output: the subprocess runs in a temporary directory).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mfctl.presets import PRESETS

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mindformers") is None,
                                reason="mindformers is not installed (pip install -e '.[train]')")

PROBE = r"""
import json, sys
import numpy as np
from mindspore import Parameter, Tensor
from mindformers.core.optim import build_optim
from mindformers.models.llama import LlamaConfig
from mindformers.modules.transformer.transformer import (TransformerOpParallelConfig,
                                                          TransformerRecomputeConfig)
from mindformers.tools.register import MindFormerConfig, MindFormerModuleType, MindFormerRegister

for path in sys.argv[1:]:
    cfg = MindFormerConfig(path)
    model_config = dict(cfg.model.model_config)
    model_config.pop("type")
    recompute = TransformerRecomputeConfig(**dict(cfg.recompute_config))
    parallel = TransformerOpParallelConfig(recompute=recompute, **dict(cfg.parallel_config))
    llama = LlamaConfig(**model_config, parallel_config=parallel)
    opt_args = dict(cfg.optimizer)
    opt_args["params"] = [Parameter(Tensor(np.zeros((2, 2), np.float32)), name="w")]
    optimizer = build_optim(opt_args)
    print(json.dumps({
        "path": path,
        "model_config_type": cfg.model.model_config.type,
        "hidden_size": llama.hidden_size, "num_layers": llama.num_layers, "num_heads": llama.num_heads,
        "n_kv_heads": llama.n_kv_heads or llama.num_heads, "seq_length": llama.seq_length,
        "vocab_size": llama.vocab_size,
        "token_ids": [llama.bos_token_id, llama.eos_token_id, llama.pad_token_id],
        "compute_dtype": str(llama.compute_dtype), "param_init_type": str(llama.param_init_type),
        "select_recompute": recompute.select_recompute,
        "data_parallel": parallel.data_parallel, "model_parallel": parallel.model_parallel,
        "pipeline_stage": parallel.pipeline_stage,
        "optimizer": type(optimizer).__name__,
        "lr_schedule_registered": MindFormerRegister.is_exist(
            MindFormerModuleType.LR, cfg.lr_schedule.type) if cfg.lr_schedule else None,
        "fp32state_exists": MindFormerRegister.is_exist(MindFormerModuleType.OPTIMIZER,
                                                        "FP32StateAdamWeightDecay"),
    }))
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, dict[str, Any]]:
    from mfctl.jobs.create import create_job
    from mfctl.jobs.jobdir import load_job, make_plan, render_job

    base = tmp_path_factory.mktemp("presets")
    paths: dict[str, Path] = {}
    for name, preset in PRESETS.items():
        hosts = base / f"{name}.hosts"
        hosts.write_text("".join(f"node{i} slots={preset.devices_per_node}\n" for i in range(preset.nodes)))
        create_job(base / name, model=name, model_config=None, nodes=hosts, devices_per_node=None,
                   dataset="/data/x.mindrecord")
        job = load_job(base / name)
        render_job(job, make_plan(job), "preview")
        paths[name] = base / name / "rendered" / "config.yaml"
    work = base / "cwd"
    work.mkdir()
    proc = subprocess.run([sys.executable, "-c", PROBE, *map(str, paths.values())], cwd=work,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    by_path = {row["path"]: row for row in rows}
    return {name: by_path[str(path)] for name, path in paths.items()}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_rendered_config_builds_in_mindformers(built, name: str) -> None:
    row, preset = built[name], PRESETS[name]
    shape = preset.model
    assert row["model_config_type"] == "LlamaConfig"
    assert (row["hidden_size"], row["num_layers"], row["num_heads"], row["n_kv_heads"], row["seq_length"],
            row["vocab_size"]) == (shape.hidden_size, shape.num_layers, shape.num_heads, shape.n_kv_heads,
                                   shape.seq_length, shape.vocab_size)
    assert (row["data_parallel"], row["model_parallel"], row["pipeline_stage"]) == (
        preset.data_parallel, preset.model_parallel, preset.pipeline_stage)
    assert row["optimizer"] == "AdamW"


def test_published_precision_and_token_ids(built) -> None:
    assert built["llama2-7b"]["compute_dtype"] == "Float16"
    assert built["llama2-7b"]["param_init_type"] == "Float16"
    assert built["llama2-7b"]["token_ids"] == [1, 2, 0]
    assert built["llama3-70b"]["compute_dtype"] == "BFloat16"
    assert built["llama3-70b"]["param_init_type"] == "Float32"
    assert built["llama3-70b"]["token_ids"] == [128000, 128001, 128002]
    assert built["llama3-70b"]["select_recompute"] == [10, 8, 6, 4, 2, 0, 0, 0]
    assert built["llama3-70b"]["lr_schedule_registered"] is True


def test_the_renamed_optimizer_is_gone_in_1_9(built) -> None:
    # Why llama2-7b's preset says AdamW where the recipe says FP32StateAdamWeightDecay.
    assert built["llama2-7b"]["fp32state_exists"] is False
