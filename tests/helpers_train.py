"""Shared helpers for the tests that prepare data and train for real (mindspore, msrun)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "mfctl" / "node"
NODE_FILES = ("train.py", "cpu_compat.py", "cpu_train.py")

def _tiny_context() -> dict[str, Any]:
    """What mfctl's renderer passes the tiny-llama template for a 1-worker job (``render.model_context``)."""
    from mfctl.cluster.layout import Layout
    from mfctl.jobspec.schema import parse_spec
    from mfctl.presets import PRESETS
    from mfctl.render import model_context

    spec = parse_spec("name: tiny-llama\nmodel: tiny-llama\ndataset: ./data/wiki.mindrecord\n")
    return model_context(spec, PRESETS["tiny-llama"], Layout(1, 1, 1, 1), 1)


# The tiny model of the CPU preset, as the renderer passes it.
TINY_MODEL = dict(_tiny_context()["model"])


# One MFLossMonitor step line: "step:[   12/  256], loss:[6.729661/6.863569], ..." (non-sink mode),
# or "loss: 6.729661, " (sink mode). We keep the current loss, not the running mean.
_STEP = re.compile(
    r"step:\[\s*(\d+)/\s*(\d+)\],\s*loss:\s*(?:\[\s*([-+\d.eE]+|nan|inf)\s*/[^\]]*\]|([-+\d.eE]+|nan|inf))"
)


def mindspore_missing() -> str | None:
    """Why real training cannot run here, or None when it can."""
    for module in ("mindspore", "mindformers", "sentencepiece"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not importable in {sys.executable} (pip install 'mfctl[train]')"
    if msrun_path() is None:
        return "msrun (shipped with mindspore) is not found beside the python or on PATH"
    return None


def msrun_path() -> Path | None:
    beside = Path(sys.executable).parent / "msrun"
    if beside.exists():
        return beside
    found = shutil.which("msrun")
    return Path(found) if found else None


def template_context(**overrides: Any) -> dict[str, Any]:
    """The variables mfctl's renderer passes for the tiny CPU preset, with overrides (layouts and
    devices the CPU preset itself refuses, to test the template's other branches)."""
    ctx = _tiny_context()
    ctx.update(overrides)
    return ctx


def render_tiny_llama(**overrides: Any) -> str:
    """templates/tiny-llama.yaml.j2 rendered by mfctl's renderer (StrictUndefined)."""
    from mfctl.render import render_template

    return render_template("tiny-llama.yaml.j2", template_context(**overrides))


def make_bundle(job_dir: Path) -> Path:
    """Copy the node files into ``<job>/bundle/node/`` as mfctl does; return the train.py path."""
    node = job_dir / "bundle" / "node"
    node.mkdir(parents=True, exist_ok=True)
    for name in NODE_FILES:
        shutil.copy2(NODE_DIR / name, node / name)
    return node / "train.py"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Step:
    step: int
    total: int
    loss: float


def parse_steps(log_text: str) -> list[Step]:
    """The MFLossMonitor step lines of a worker log, in order."""
    steps = []
    for m in _STEP.finditer(log_text):
        loss = m.group(3) if m.group(3) is not None else m.group(4)
        steps.append(Step(int(m.group(1)), int(m.group(2)), float(loss)))
    return steps


@dataclass(frozen=True)
class MsrunResult:
    returncode: int
    seconds: float
    output: str
    command: list[str]


def run_msrun(
    job_dir: Path,
    script: Path,
    script_args: list[str],
    worker_num: int = 2,
    timeout: float = 600,
) -> MsrunResult:
    """Run the real msrun (``--join True``) from ``job_dir`` with the workers on one machine."""
    msrun = msrun_path()
    assert msrun is not None
    cmd = [
        str(msrun),
        "--worker_num", str(worker_num),
        "--local_worker_num", str(worker_num),
        "--master_addr", "127.0.0.1",
        "--master_port", str(free_port()),
        "--node_rank", "0",
        "--log_dir", str(job_dir / "output" / "msrun_log"),
        "--join", "True",
        "--cluster_time_out", "300",
        str(script),
        *script_args,
    ]
    env = dict(os.environ)
    # msrun starts every worker as plain 'python SCRIPT': this interpreter must come first.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=job_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc.pid)
        out, _ = proc.communicate()
        out += f"\n[test] msrun killed after {timeout:.0f} s"
    return MsrunResult(proc.returncode, time.monotonic() - start, out, cmd)


def _kill_tree(pid: int) -> None:
    """Kill msrun and what it started: workers lead their own process groups (setsid)."""
    try:
        import psutil
    except ImportError:
        os.kill(pid, signal.SIGKILL)
        return
    try:
        parent = psutil.Process(pid)
        children = parent.children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for p in [*children, parent]:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
