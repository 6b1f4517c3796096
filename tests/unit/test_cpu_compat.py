"""The CPU config rules (mfctl/node/cpu_compat.py) as the controller applies them when it renders a
user's own MindFormers YAML: the config a node receives is already CPU-ready, and a layout CPU
cannot compile is refused before anything starts, whichever launcher will read it."""

from __future__ import annotations

import copy

import pytest
import yaml

from mfctl.cluster.layout import Layout
from mfctl.errors import BadInput
from mfctl.jobspec.schema import parse_spec
from mfctl.node import cpu_compat
from mfctl.presets import PRESETS
from mfctl.render import render_model_config

# A published-style legacy Llama config written for Ascend semi-auto parallel, but targeting CPU.
OWN = """\
run_mode: train
use_parallel: true
runner_config:
  epochs: 1
  batch_size: 2
  sink_mode: true
parallel:
  parallel_mode: 1
  full_batch: true
  gradients_mean: false
  enable_parallel_optimizer: true
parallel_config:
  data_parallel: 2
  model_parallel: 1
  pipeline_stage: 1
context:
  mode: 0
  device_target: CPU
model:
  model_config:
    type: LlamaConfig
    use_flash_attention: true
    fused_rms_norm: true
    use_rope_slice: false
  arch:
    type: LlamaForCausalLM
runner_wrapper:
  type: MFTrainOneStepCell
  scale_sense: 1024
train_dataset:
  data_loader:
    type: MindDataset
    dataset_dir: ''
"""


def _render(own: str, layout: Layout) -> dict:
    spec = parse_spec("name: own\nmodel: tiny-llama\ndataset: ./data/x.mindrecord\nmodel_config: my.yaml\n")
    world = layout.data_parallel * layout.model_parallel * layout.pipeline_stage
    return yaml.safe_load(render_model_config(spec, PRESETS["tiny-llama"], layout, world, own))


def test_an_own_cpu_config_is_rendered_cpu_ready() -> None:
    cfg = _render(OWN, Layout(2, 1, 1, 1))
    mc = cfg["model"]["model_config"]
    assert (mc["use_rope_slice"], mc["fused_rms_norm"], mc["use_flash_attention"]) == (True, False, False)
    assert cfg["runner_config"]["sink_mode"] is False
    assert cfg["parallel"] == {"parallel_mode": 0, "full_batch": False, "gradients_mean": True,
                               "enable_parallel_optimizer": False}
    assert cfg["runner_wrapper"] == {"type": "MfctlCpuTrainOneStepCell", "scale_sense": 1024}
    assert cfg["train_dataset"]["data_loader"]["dataset_dir"] == "./data/x.mindrecord"
    assert cpu_compat.fix_config(cfg) == []  # nothing left for the node to change


def test_an_own_cpu_config_with_model_parallelism_is_refused_at_render() -> None:
    with pytest.raises(BadInput) as err:
        _render(OWN, Layout(1, 2, 1, 1))
    assert str(err.value).startswith("my.yaml:18: context.device_target is CPU, but the job's layout has "
                                     "model_parallel 2 and pipeline_stage 1: MindSpore cannot compile")
    assert "\n" not in str(err.value)


def test_an_own_ascend_config_is_left_as_written() -> None:
    cfg = _render(OWN.replace("device_target: CPU", "device_target: Ascend"), Layout(2, 1, 1, 1))
    assert cfg["runner_wrapper"]["type"] == "MFTrainOneStepCell" and cfg["runner_config"]["sink_mode"] is True
    assert cfg["model"]["model_config"]["use_flash_attention"] is True


def test_fix_config_on_plain_mappings() -> None:
    cfg = yaml.safe_load(OWN)
    changes = cpu_compat.fix_config(cfg)
    assert changes == [
        "runner_config.sink_mode: True -> False (sink mode repeats steps on CPU)",
        "parallel.parallel_mode: 1 -> 0 (data parallel)",
        "parallel.full_batch: True -> False",
        "parallel.gradients_mean: False -> True",
        "parallel.enable_parallel_optimizer: True -> False",
        "model.model_config.use_rope_slice: False -> True",
        "model.model_config.fused_rms_norm: True -> False",
        "model.model_config.use_flash_attention: True -> False",
        "runner_wrapper.type: MFTrainOneStepCell -> MfctlCpuTrainOneStepCell (overflow check by IsFinite)",
    ]
    assert cpu_compat.fix_config(cfg) == []
    # MindFormers' registry alias is the same cell; other wrappers and other models are not touched.
    alias = yaml.safe_load(OWN)
    alias["runner_wrapper"]["type"] = "mf_wrapper"
    assert any(c.startswith("runner_wrapper.type: mf_wrapper -> ") for c in cpu_compat.fix_config(alias))
    other = yaml.safe_load(OWN)
    other["runner_wrapper"]["type"] = "TrainOneStepCell"
    other["model"]["model_config"]["type"] = "Qwen3Config"
    before = copy.deepcopy(other)
    cpu_compat.fix_config(other)
    assert other["runner_wrapper"] == before["runner_wrapper"]
    assert other["model"] == before["model"]
    assert cpu_compat.targets_cpu(other) and not cpu_compat.targets_cpu({"context": None})
