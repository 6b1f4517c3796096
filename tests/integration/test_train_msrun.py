"""Real training: the tiny Llama, 2 data-parallel workers under the real msrun, on this CPU.

The whole path a job takes on a node, minus SSH: pydoc corpus -> trained tokenizer -> MindRecord
-> tiny-llama.yaml.j2 rendered (dp 2) -> bundle/node/{train,cpu_compat,cpu_train}.py -> msrun --join True.
About a minute on 2 cores (two ~10 s graph compiles, then ~0.1 s per step).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
import yaml
from helpers_train import (
    TINY_MODEL,
    make_bundle,
    mindspore_missing,
    parse_steps,
    render_tiny_llama,
    run_msrun,
    template_context,
)

from mfctl.node import cpu_compat

SEQ = 64
VOCAB = 1000
WORKERS = 2

needs_mindspore = pytest.mark.skipif(mindspore_missing() is not None, reason=mindspore_missing() or "")

# Top-level keys of the published llama2-7b / llama3-70b pretrain configs (FIELD_NOTES).
PUBLISHED_KEYS = {
    "seed", "output_dir", "load_checkpoint", "src_strategy_path_or_dir", "auto_trans_ckpt",
    "only_save_strategy", "resume_training", "run_mode", "trainer", "runner_config", "optimizer",
    "lr_schedule", "train_dataset", "train_dataset_task", "do_eval", "use_parallel", "parallel",
    "parallel_config", "micro_batch_interleave_num", "recompute_config", "callbacks", "context",
    "model", "runner_wrapper", "profile", "eval_dataset", "eval_dataset_task", "processor", "metric",
}


# ---------------------------------------------------------------------------------------------
# The template and the entry script, without training (fast, no mindspore needed)


def test_template_renders_a_complete_cpu_config() -> None:
    cfg = yaml.safe_load(render_tiny_llama(data_parallel=2, use_parallel=True, name='it\'s "odd"',
                                           dataset_dir="/data/a b.mindrecord", resume_training=True))
    assert set(cfg) >= PUBLISHED_KEYS
    assert cfg["use_parallel"] is True and cfg["resume_training"] is True and cfg["use_legacy"] is True
    assert cfg["trainer"] == {"type": "CausalLanguageModelingTrainer", "model_name": 'it\'s "odd"'}
    assert cfg["train_dataset"]["data_loader"]["dataset_dir"] == "/data/a b.mindrecord"
    assert cfg["train_dataset_task"] == {"type": "CausalLanguageModelDataset", "dataset_config": cfg["train_dataset"]}
    mc = cfg["model"]["model_config"]
    assert cfg["model"]["arch"]["type"] == "LlamaForCausalLM" and mc["type"] == "LlamaConfig"
    assert {k: mc[k] for k in ("seq_length", "hidden_size", "num_layers", "num_heads", "vocab_size")} == {
        k: TINY_MODEL[k] for k in ("seq_length", "hidden_size", "num_layers", "num_heads", "vocab_size")}
    assert "n_kv_heads" not in mc  # equal to num_heads: plain multi-head attention
    # What CPU needs (FIELD_NOTES), and float32 throughout.
    assert (mc["use_rope_slice"], mc["fused_rms_norm"], mc["use_flash_attention"]) == (True, False, False)
    assert cfg["runner_config"]["sink_mode"] is False
    assert {mc[k] for k in ("compute_dtype", "param_init_type", "softmax_compute_type")} == {"float32"}
    assert cfg["context"]["device_target"] == "CPU" and cfg["context"]["mode"] == 0
    # Pure data parallelism: parallel_mode 0, each rank its shard, gradients averaged.
    assert cfg["parallel"]["parallel_mode"] == 0 and cfg["parallel"]["gradients_mean"] is True
    assert cfg["parallel_config"]["data_parallel"] == 2
    # mfctl's CPU train cell, and nothing left for the node's CPU rules to change.
    assert cfg["runner_wrapper"]["type"] == cpu_compat.CPU_WRAPPER == "MfctlCpuTrainOneStepCell"
    assert cpu_compat.fix_config(cfg) == [] and cpu_compat.cpu_parallel_problem(cfg) is None
    ckpt = next(c for c in cfg["callbacks"] if c["type"] == "CheckpointMonitor")
    assert ckpt["save_checkpoint_steps"] == template_context()["save_checkpoint_steps"]
    assert ckpt["prefix"] == 'it\'s "odd"'


def test_template_other_layouts_and_devices() -> None:
    gqa = yaml.safe_load(render_tiny_llama(model={**TINY_MODEL, "n_kv_heads": 2}))
    assert gqa["model"]["model_config"]["n_kv_heads"] == 2
    mp = yaml.safe_load(render_tiny_llama(model_parallel=2, use_parallel=True))
    assert mp["parallel"]["parallel_mode"] == 1 and mp["parallel_config"]["model_parallel"] == 2
    ascend = yaml.safe_load(render_tiny_llama(device_target="Ascend"))
    mc = ascend["model"]["model_config"]
    assert (mc["use_rope_slice"], mc["fused_rms_norm"], mc["use_flash_attention"]) == (False, True, True)
    assert ascend["runner_config"]["sink_mode"] is True
    assert ascend["runner_wrapper"]["type"] == "MFTrainOneStepCell"


def test_template_is_strict_about_its_variables() -> None:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(Path(__file__).parents[2] / "templates")),
                             undefined=jinja2.StrictUndefined)
    ctx = template_context()
    del ctx["save_checkpoint_steps"]
    with pytest.raises(jinja2.UndefinedError, match="save_checkpoint_steps"):
        env.get_template("tiny-llama.yaml.j2").render(**ctx)


def test_train_script_cli(tmp_path: Path) -> None:
    # Loaded from its file as the bundle runs it: a script, not part of the mfctl package.
    spec = importlib.util.spec_from_file_location("bundle_train", Path(__file__).parents[2] / "mfctl/node/train.py")
    assert spec is not None and spec.loader is not None
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    args, overrides = train.parse_args([
        "--config", "x.yaml", "--train_dataset_dir", "d", "--run_mode", "train", "--use_parallel", "True",
        "--load_checkpoint", "output/checkpoint", "--resume_training", "True", "--output_dir", "o",
        "--runner_config.epochs", "3", "--parallel.full_batch=false", "--model.model_config.theta", "5e5",
    ])
    assert (args.config, args.train_dataset_dir, args.use_parallel, args.resume_training) == ("x.yaml", "d", True, True)
    assert overrides == {"runner_config.epochs": 3, "parallel.full_batch": False, "model.model_config.theta": 5e5}
    assert train.parse_args(["--config", "x", "--resume_training", "llama_rank_0-1_10.ckpt"])[0].resume_training == (
        "llama_rank_0-1_10.ckpt")

    # As a script in a bundle: --help answers without importing mindspore; a bad path is one line.
    script = make_bundle(tmp_path)
    help_run = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert help_run.returncode == 0 and "--train_dataset_dir" in help_run.stdout
    missing = subprocess.run([sys.executable, str(script), "--config", "nope.yaml"], capture_output=True, text=True,
                             timeout=30, cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.strip() == "train.py: nope.yaml: config file not found"


def test_node_files_import_only_stdlib_mindspore_mindformers() -> None:
    """They are copied alone onto nodes: an import of mfctl (or anything else) would fail there."""
    allowed = set(sys.stdlib_module_names) | {"mindspore", "mindformers", "cpu_compat", "cpu_train"}
    for name in ("train.py", "cpu_compat.py", "cpu_train.py", "cpu_sitecustomize.py"):
        tree = ast.parse((Path(__file__).parents[2] / "mfctl" / "node" / name).read_text())
        roots = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
        roots |= {node.module.split(".")[0] for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
        assert roots <= allowed, (name, roots - allowed)


@needs_mindspore
def test_cpu_compat_fixes_a_semi_auto_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the node the rules work on MindFormers' own config object (the controller's are dicts)."""
    monkeypatch.chdir(tmp_path)  # importing mindformers creates ./output/log
    from mindformers import MindFormerConfig

    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(render_tiny_llama(data_parallel=2, use_parallel=True, device_target="Ascend"))
    config = MindFormerConfig(str(cfg_path))
    changes = cpu_compat.fix_config(config)
    assert config.runner_config.sink_mode is False
    assert config.model.model_config.use_rope_slice is True
    assert config.model.model_config.fused_rms_norm is False
    assert config.model.model_config.use_flash_attention is False
    assert config.runner_wrapper.type == "MfctlCpuTrainOneStepCell"
    assert any("sink_mode" in c for c in changes) and any("fused_rms_norm" in c for c in changes)
    assert "runner_wrapper.type: MFTrainOneStepCell -> MfctlCpuTrainOneStepCell (overflow check by IsFinite)" in changes

    config.parallel.parallel_mode = 1
    assert "parallel.parallel_mode: 1 -> 0 (data parallel)" in cpu_compat.fix_config(config)
    config.parallel_config.model_parallel = 2
    assert "model_parallel 2" in cpu_compat.cpu_parallel_problem(config)


_CELL_PROBE = """
import sys
import numpy as np
import mindspore as ms
from mindspore import nn, Tensor
ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
from mindformers.wrapper import build_wrapper
import cpu_train

class Net(nn.Cell):
    def __init__(self):
        super().__init__()
        self.dense = nn.Dense(4, 1)
    def construct(self, x):
        return (self.dense(x) ** 2).mean()

name = sys.argv[1]
if name == "MfctlCpuTrainOneStepCell":
    cpu_train.register_wrapper()
net = Net()
cell = build_wrapper({"type": name, "scale_sense": 1024.0},
                     default_args={"network": net, "optimizer": nn.Adam(net.trainable_params(), 0.01)})
print("built", type(cell).__module__, type(cell).__name__, flush=True)
before = net.dense.weight.asnumpy().copy()
for x in (1.0, np.inf, 1.0, np.nan):
    out = cell(Tensor(np.full((2, 4), x, np.float32)))
    print("overflow", x, bool(out[1].asnumpy()), flush=True)
print("weights changed", bool((net.dense.weight.asnumpy() != before).any()))
"""


@needs_mindspore
@pytest.mark.timeout(300)
def test_cpu_train_cell_checks_overflow_in_graph_mode(tmp_path: Path) -> None:
    """Built by MindFormers' own build_wrapper from the registry name the CPU config gives, compiled
    in graph mode on CPU: finite steps update, inf/nan steps are flagged. MindFormers' cell fails
    to compile on CPU, which is why mfctl's exists."""
    probe = tmp_path / "probe.py"  # graph mode compiles from source files only
    probe.write_text(_CELL_PROBE)

    def run(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(probe), name], cwd=tmp_path, capture_output=True,
                              text=True, timeout=240,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "mfctl" / "node")})

    ours = run(cpu_compat.CPU_WRAPPER)
    assert ours.returncode == 0, ours.stderr[-3000:]
    assert [line for line in ours.stdout.splitlines() if " - WARNING - " not in line] == [
        "built cpu_train CpuTrainOneStepCell",
        "overflow 1.0 False", "overflow inf True", "overflow 1.0 False", "overflow nan True",
        "weights changed True"]
    theirs = run("MFTrainOneStepCell")
    assert theirs.returncode != 0 and "Unsupported op [NPUGetFloatStatusV2] on CPU" in theirs.stderr


@needs_mindspore
def test_the_barrier_call_sites_route_barrier_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one rebinding left (cpu_train.route_barrier) answers these MindFormers call sites; when
    a release changes them, this fails: re-check whether the rebinding is still needed."""
    monkeypatch.chdir(tmp_path)
    import inspect

    import mindformers.trainer.base_trainer as base_trainer
    import mindformers.trainer.utils as trainer_utils
    import mindformers.utils.parallel_utils as parallel_utils
    from mindspore.communication import comm_func
    from mindspore.ops import communication

    monkeypatch.syspath_prepend(str(Path(__file__).parents[2] / "mfctl" / "node"))
    import cpu_train

    assert set(cpu_train.BARRIER_CALLERS) == {trainer_utils.__name__, comm_func.__name__}
    # Bound by name from the deprecated function, called under use_parallel when a .ckpt is loaded.
    assert trainer_utils.barrier is comm_func.barrier
    preload = inspect.getsource(trainer_utils.preload_ckpt)
    assert "if config.use_parallel:\n        barrier()" in preload
    assert 'config.load_ckpt_format == "ckpt":\n            preload_ckpt(config)' in inspect.getsource(
        base_trainer.BaseTrainer.training_process)
    # Looked up on comm_func at call time.
    assert "comm_func.barrier()" in inspect.getsource(parallel_utils.barrier_world)
    # The successor it is routed to takes the group first, as the callers pass it.
    assert next(iter(inspect.signature(communication.barrier).parameters)) == "group"


# ---------------------------------------------------------------------------------------------
# Real training under msrun


@pytest.mark.train
@needs_mindspore
@pytest.mark.timeout(900)
def test_tiny_llama_trains_with_two_workers_under_msrun(tmp_path: Path) -> None:
    from mfctl.data.corpus import write_pydoc_corpus
    from mfctl.data.prepare import prepare_dataset

    job = tmp_path / "job"
    job.mkdir()
    corpus = job / "data" / "pydoc.train.tokens"
    write_pydoc_corpus(corpus)
    dataset = prepare_dataset(
        [str(corpus)], job / "data" / "pydoc.mindrecord", SEQ,
        train_tokenizer_vocab=VOCAB, max_vocab=VOCAB,
    )
    global_batch = 4 * WORKERS
    expected_steps = dataset.samples // global_batch
    assert expected_steps >= 32, dataset

    config = job / "tiny-llama.yaml"
    config.write_text(
        render_tiny_llama(
            name="tiny-msrun",
            data_parallel=WORKERS,
            use_parallel=True,
            dataset_dir=str(dataset.output),
            batch_size=4,
            save_checkpoint_steps=100,
        ),
        encoding="utf-8",
    )
    script = make_bundle(job)

    result = run_msrun(
        job, script,
        ["--config", str(config), "--train_dataset_dir", str(dataset.output),
         "--run_mode", "train", "--use_parallel", "True"],
        worker_num=WORKERS,
    )
    log_dir = job / "output" / "msrun_log"
    logs = {r: (log_dir / f"worker_{r}.log") for r in range(WORKERS)}
    tail = "\n".join(result.output.splitlines()[-30:])
    assert result.returncode == 0, f"msrun exited {result.returncode}:\n{tail}\n" + "\n".join(
        f"--- worker_{r}.log\n" + "\n".join(p.read_text(errors="replace").splitlines()[-40:])
        for r, p in logs.items() if p.exists()
    )

    figures = []
    for rank, path in logs.items():
        text = path.read_text(errors="replace")
        steps = parse_steps(text)
        assert len({s.step for s in steps}) >= 30, f"worker_{rank}.log: only {len(steps)} steps logged"
        assert steps[-1].step == steps[-1].total == expected_steps
        first, last = steps[0].loss, steps[-1].loss
        assert last < first, f"worker_{rank}.log: loss did not fall ({first} -> {last})"
        assert "Training Over" in text
        assert "runner_wrapper MfctlCpuTrainOneStepCell registered" in text  # the CPU train cell
        assert "overflow cond: True" not in text

        ckpt_dir = job / "output" / "checkpoint" / f"rank_{rank}"
        ckpts = sorted(ckpt_dir.glob(f"tiny-msrun_rank_{rank}-*.ckpt"))
        assert ckpts, f"no checkpoint in {ckpt_dir}"
        assert (ckpt_dir / "meta.json").exists()
        figures.append(f"rank {rank}: {len(steps)} steps, loss {first:.4f} -> {last:.4f}")

    assert (log_dir / "scheduler.log").exists()
    print(f"\nmsrun {WORKERS} workers: {result.seconds:.1f} s wall; " + "; ".join(figures))
