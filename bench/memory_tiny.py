"""The memory estimate beside a measured peak: the tiny CPU Llama, trained for real, one process.

On CPU there is no device pool to read, so the measured figure is the training process's peak
resident set (``ru_maxrss`` of the child, from ``os.wait4``). The baseline, measured in the same
run, is a process that only imports mindspore and mindformers: what the framework costs before
any model exists. The estimate (``mfctl.cluster.memory``) covers the model: parameters,
gradients, optimizer states, activations.

    python bench/memory_tiny.py [--work DIR]

It prepares a small dataset (pydoc corpus, the tiny preset's sequence length and vocabulary),
renders the tiny-llama config for one worker, and trains it once (about a minute on 2 cores).
A figure, not a gate: on a CPU the framework's own memory dominates.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make `mfctl` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from mfctl.cluster.memory import estimate

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 ** 2


def run_measured(argv: list[str], cwd: Path) -> tuple[float, int, str]:
    """Run ``argv`` as a child; (its peak RSS in MiB from wait4, exit code, last output lines)."""
    log = cwd / f"bench-{len(list(cwd.glob('bench-*.log')))}.log"
    with open(log, "w") as sink:
        child = subprocess.Popen(argv, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)
        # wait4, not Popen.wait: it also returns the child's own resource usage (peak RSS).
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    return usage.ru_maxrss / 1024, child.returncode, tail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="work dir (default: a temporary one, removed)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="mfctl-memory-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return measure(work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def measure(work: Path) -> int:
    from mfctl.cluster.layout import Layout
    from mfctl.data.corpus import write_pydoc_corpus
    from mfctl.data.prepare import prepare_dataset
    from mfctl.jobspec.schema import parse_spec
    from mfctl.presets import PRESETS
    from mfctl.render import render_model_config

    preset = PRESETS["tiny-llama"]
    shape = preset.model
    corpus = work / "data" / "pydoc.train.tokens"
    write_pydoc_corpus(corpus)
    dataset = prepare_dataset([str(corpus)], work / "data" / "pydoc.mindrecord", shape.seq_length,
                              train_tokenizer_vocab=shape.vocab_size, max_vocab=shape.vocab_size)
    spec = parse_spec(f"name: bench\nmodel: tiny-llama\ndataset: {dataset.output}\n", "bench")
    text = render_model_config(spec, preset, Layout(1, 1, 1, 1), 1)
    config = work / "config.yaml"
    config.write_text(text, encoding="utf-8")
    est = estimate(yaml.safe_load(text)).stages[0]

    node = work / "bundle" / "node"
    node.mkdir(parents=True, exist_ok=True)
    for name in ("train.py", "cpu_compat.py"):
        shutil.copy2(ROOT / "mfctl" / "node" / name, node / name)

    base, rc, tail = run_measured([sys.executable, "-c", "import mindspore, mindformers"], work)
    if rc != 0:
        print(f"baseline failed ({rc}):\n{tail}")
        return 1
    peak, rc, tail = run_measured(
        [sys.executable, str(node / "train.py"), "--config", str(config), "--train_dataset_dir",
         str(dataset.output), "--run_mode", "train", "--use_parallel", "False"], work)
    if rc != 0:
        print(f"training failed ({rc}):\n{tail}")
        return 1
    model = est.params + est.grads + est.optimizer + est.activations
    print(f"tiny-llama ({shape.num_layers} layers, hidden {shape.hidden_size}, seq {shape.seq_length}, "
          f"vocab {shape.vocab_size}, batch {preset.batch_size}, float32), one CPU process, "
          f"{dataset.samples} samples x {preset.epochs} epoch")
    print(f"  estimate (params {est.params / MIB:.2f} + grads {est.grads / MIB:.2f} + optimizer "
          f"{est.optimizer / MIB:.2f} + activations {est.activations / MIB:.2f}): {model / MIB:.1f} MiB")
    print(f"  measured peak RSS of the training process: {peak:.0f} MiB")
    print(f"  baseline, a process that only imports mindspore and mindformers: {base:.0f} MiB")
    print(f"  peak - baseline (model, graph compile, data pipeline): {peak - base:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
