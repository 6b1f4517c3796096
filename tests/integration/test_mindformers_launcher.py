"""Launcher 'mindformers' for real: MindFormers' own msrun_launcher.sh and run_mindformer.py from a
checkout, run from the job dir, on this machine and on two SSH nodes.

The training test needs a MindFormers source checkout of the installed version (the wheel ships
neither file): ``MFCTL_MINDFORMERS_HOME=/path/to/mindformers`` (see the README). Without it the
test is skipped with that reason. The check refusals use a made-up checkout, and the CPU
sitecustomize is also tried on the installed MindFormers directly: both run without a checkout.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_mfctl_process
from tests.helpers_train import mindspore_missing
from tests.integration.test_local_jobs import job_processes

CHECKOUT_FILES = ("scripts/msrun_launcher.sh", "run_mindformer.py")


def checkout_missing() -> str | None:
    """Why the real launcher cannot run here, or None when it can."""
    home = os.environ.get("MFCTL_MINDFORMERS_HOME")
    if not home:
        return ("MFCTL_MINDFORMERS_HOME is not set: point it at a MindFormers source checkout of "
                "the installed version (README, 'Tests and benchmarks')")
    for rel in CHECKOUT_FILES:
        if not (Path(home) / rel).is_file():
            return f"MFCTL_MINDFORMERS_HOME={home} has no {rel}: it is not a MindFormers checkout"
    return None


def installed_mindformers() -> str | None:
    try:
        return importlib.metadata.version("mindformers")
    except importlib.metadata.PackageNotFoundError:
        return None


def _files(path: Path) -> set[Path]:
    return set(path.rglob("*")) if path.exists() else set()


def _watch(d: Path) -> dict:
    r = run_mfctl_process("watch", "--once", "--json", cwd=d)
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.train
@pytest.mark.skipif(mindspore_missing() is not None, reason=str(mindspore_missing()))
@pytest.mark.skipif(checkout_missing() is not None, reason=str(checkout_missing()))
def test_mindformers_launcher_trains_to_checkpoints_in_the_job_dir(tmp_path: Path) -> None:
    from mfctl.live.demo import prepare_demo_job

    home = Path(os.environ["MFCTL_MINDFORMERS_HOME"])
    d = tmp_path / "job"
    # Two epochs of the demo corpus (about 520 steps): still running when the test stops it.
    prepare_demo_job(d, lambda _: None, min_steps=500)
    spec = yaml.safe_load((d / "mfctl.yaml").read_text())
    spec.update(launcher="mindformers", mindformers_home=str(home))
    spec["train"]["save_checkpoint_steps"] = 20
    (d / "mfctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    checkout_before = _files(home / "output")

    check = run_mfctl_process("check", "--json", cwd=d)
    assert check.exit_code == 0, check.stdout + check.stderr
    facts = json.loads(check.stdout)["nodes"][0]["facts"]
    assert facts["mf_home_version"] == facts["mindformers"] == installed_mindformers()

    started = time.monotonic()
    r = run_mfctl_process("launch", "--json", cwd=d)
    assert r.exit_code == 0, r.stderr
    job_id = json.loads(r.stdout)["id"]
    try:
        ckpt = d / "output" / "checkpoint"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if all(list((ckpt / f"rank_{k}").glob("*.ckpt")) for k in (0, 1)):
                break
            time.sleep(2)
        saved = {k: sorted(p.name for p in (ckpt / f"rank_{k}").glob("*.ckpt")) for k in (0, 1)}
        assert saved[0] and saved[1], f"no checkpoints after {time.monotonic() - started:.0f} s: {saved}"
        print(f"checkpoints after {time.monotonic() - started:.0f} s: {saved}")

        # What watch shows: both ranks, each with steps and a loss, from the job dir's logs.
        watch = _watch(d)
        ranks = {r["rank"]: r for r in watch["ranks"]}
        assert set(ranks) == {0, 1}
        for k in (0, 1):
            assert ranks[k]["step"] >= 20 and math.isfinite(ranks[k]["loss"]), ranks[k]
        print("watch:", {k: (r["step"], r["total_steps"], r["loss"]) for k, r in ranks.items()})
        assert watch["job"]["state"] == "running"

        status = json.loads(run_mfctl_process("status", "--json", cwd=d).stdout)
        assert status["nodes"][0]["alive"] and len(status["nodes"][0]["processes"]) >= 3
        # Everything MindFormers writes is the job's; nothing lands in the shared checkout.
        logs = d / "output" / "msrun_log"
        assert (logs / "worker_0.log").is_file() and (logs / "worker_1.log").is_file()
        assert (d / "output" / "log" / "rank_1").is_dir() and (d / "output" / "strategy").is_dir()
        assert _files(home / "output") == checkout_before
        # Upstream's run_mindformer.py trained on CPU with mfctl's CPU train cell, from the
        # config rendered CPU-ready.
        worker_log = (logs / "worker_0.log").read_text()
        assert "mfctl CPU site: runner_wrapper MfctlCpuTrainOneStepCell registered" in worker_log
        assert "overflow cond: True" not in worker_log
    finally:
        stop = run_mfctl_process("stop", job_id, cwd=d)
    assert stop.exit_code == 0, stop.stderr
    assert "localhost: no process left" in stop.stdout
    assert job_processes(job_id) == []
    jobs = json.loads(run_mfctl_process("jobs", "--json").stdout)
    assert jobs[0]["state"] == "stopped"

    # --resume: the same launcher continues from the newest checkpoint both ranks saved.
    last = max(int(re.search(r"_(\d+)\.ckpt$", p.name).group(1)) for p in (ckpt / "rank_1").glob("*.ckpt"))
    r = run_mfctl_process("launch", "--resume", job_id, "--json", cwd=d)
    assert r.exit_code == 0, r.stderr
    resumed = json.loads(r.stdout)
    assert resumed["resumed_from"] == job_id
    try:
        deadline = time.monotonic() + 300
        first: list[int] = []
        while time.monotonic() < deadline and not first:
            log = d / "output" / "msrun_log" / "worker_0.log"
            first = [int(m) for m in re.findall(r"step:\[\s*(\d+)/", log.read_text())] if log.exists() else []
            time.sleep(2)
        assert first and first[0] <= last + 1 and first[0] > 1, (first[:3], last)
        ranks = {r["rank"]: r for r in _watch(d)["ranks"]}
        assert set(ranks) == {0, 1} and all(r["step"] >= first[0] for r in ranks.values())
        print(f"resumed {resumed['id']} at step {first[0]} (newest common checkpoint <= step {last})")
    finally:
        stop = run_mfctl_process("stop", resumed["id"], cwd=d)
    assert stop.exit_code == 0 and "no process left" in stop.stdout, stop.stdout + stop.stderr
    assert job_processes(resumed["id"]) == []


@pytest.mark.skipif(installed_mindformers() is None, reason="mindformers is not installed here")
def test_check_refuses_a_checkout_without_the_entry_or_of_another_version(tmp_path: Path) -> None:
    installed = installed_mindformers()
    fake = tmp_path / "mindformers-src"
    (fake / "scripts").mkdir(parents=True)
    (fake / "scripts" / "msrun_launcher.sh").write_text("exit 1\n")
    (fake / "mindformers").mkdir()
    version_file = fake / "mindformers" / "__init__.py"
    version_file.write_text(f'"""MindFormers."""\n__version__ = "{installed}"\n')
    dataset = tmp_path / "x.mindrecord"
    dataset.write_bytes(b"")
    d = tmp_path / "job"
    r = run_mfctl_process("init", d, "--model", "tiny-llama", "--dataset", dataset, "--devices-per-node", "2",
                          "--launcher", "mindformers", "--mindformers-home", fake, "--python", sys.executable,
                          "--yes")
    assert r.exit_code == 0, r.stderr

    def problems() -> tuple[int, list[str], str]:
        r = run_mfctl_process("check", "--json", cwd=d)
        return r.exit_code, json.loads(r.stdout)["nodes"][0]["problems"], r.stderr

    code, found, err = problems()
    assert code == 1 and found == [f"mindformers_home {fake} has no run_mindformer.py; it must be a "
                                   "MindFormers source checkout"], found
    assert len(err.splitlines()) == 1

    (fake / "run_mindformer.py").write_text("raise SystemExit(1)\n")
    version_file.write_text('__version__ = "1.5.0"\n')
    code, found, _ = problems()
    assert code == 1 and found == [f"mindformers_home {fake} is MindFormers 1.5.0 but {sys.executable} has "
                                   f"mindformers {installed}; check out v{installed} there or install "
                                   "mindformers==1.5.0"], found
    launch = run_mfctl_process("launch", cwd=d)
    assert launch.exit_code == 1
    assert "is MindFormers 1.5.0" in launch.stderr and "nothing was started" in launch.stderr
    assert json.loads(run_mfctl_process("jobs", "--json").stdout) == []

    version_file.write_text(f"__version__ = '{installed}'  # the installed one\n")
    code, found, _ = problems()
    assert code == 0 and found == []


_SITE_PROBE = """
import json, sys
import mindformers
from mindformers.core.context import build_context
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister
from mindformers.trainer import utils as trainer_utils
from mindspore.communication import comm_func
cell = MindFormerRegister.get_cls(MindFormerModuleType.WRAPPER, "MfctlCpuTrainOneStepCell")
print(json.dumps({
    "cell": f"{cell.__module__}.{cell.__name__}",
    "build_context": f"{build_context.__module__}.{build_context.__name__}",
    "same_build_context": mindformers.build_context is build_context,
    "preload_barrier": trainer_utils.barrier.__module__ + "." + trainer_utils.barrier.__name__,
    "comm_func_barrier": comm_func.barrier.__module__ + "." + comm_func.barrier.__name__,
}))
"""


@pytest.mark.train
@pytest.mark.skipif(mindspore_missing() is not None, reason=str(mindspore_missing()))
def test_cpu_site_registers_the_cpu_cell_when_mindformers_loads(tmp_path: Path) -> None:
    """The shipped cpu_site, as the launch script puts it on PYTHONPATH, with MindFormers itself
    (upstream's run_mindformer.py imports the same package; the checkout test runs it). It wraps
    nothing: build_context is MindFormers' own; the barrier is routed only in a distributed worker."""
    from mfctl.jobs.nodeops import CPU_SITE_FILES, bundle_files

    rendered = tmp_path / "rendered"
    rendered.mkdir()
    for name in ("config.yaml", "launch-node0.sh"):
        (rendered / name).write_text("")
    site = tmp_path / "bundle" / "cpu_site"
    site.mkdir(parents=True)
    for rel, (content, _) in bundle_files(rendered, 0).items():
        if rel.startswith("cpu_site/"):
            (site / rel.removeprefix("cpu_site/")).write_bytes(content)
    assert sorted(p.name for p in site.iterdir()) == sorted(CPU_SITE_FILES)
    env = {k: v for k, v in os.environ.items() if k not in ("MS_WORKER_NUM", "RANK_SIZE", "MS_ROLE")}

    def probe(**extra: str) -> dict:
        r = subprocess.run([sys.executable, "-c", _SITE_PROBE], cwd=tmp_path, capture_output=True, text=True,
                           env={**env, "PYTHONPATH": str(site), **extra}, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        return json.loads(r.stdout.strip().splitlines()[-1])

    alone = probe()
    assert alone["cell"] == "cpu_train.CpuTrainOneStepCell"
    assert alone["build_context"] == "mindformers.core.context.build_context.build_context"
    assert alone["same_build_context"] is True
    deprecated = "mindspore.communication.comm_func.barrier"
    assert alone["preload_barrier"] == alone["comm_func_barrier"] == deprecated
    worker = probe(MS_WORKER_NUM="2", MS_ROLE="MS_WORKER")
    assert worker["cell"] == "cpu_train.CpuTrainOneStepCell"
    assert worker["preload_barrier"] == worker["comm_func_barrier"] == "cpu_train.cpu_barrier"
    scheduler = probe(MS_WORKER_NUM="2", MS_ROLE="MS_SCHED")
    assert scheduler["preload_barrier"] == deprecated


@pytest.mark.train
@pytest.mark.cluster
@pytest.mark.timeout(900)
@pytest.mark.skipif(mindspore_missing() is not None, reason=str(mindspore_missing()))
@pytest.mark.skipif(checkout_missing() is not None, reason=str(checkout_missing()))
def test_mindformers_launcher_across_two_ssh_nodes(netns_cluster, tmp_path: Path) -> None:
    """Each node runs the checkout's launcher in its own job dir (node 1 with MASTER_ADDR = node 0)."""
    from tests.integration.test_ssh_cluster import make_job, small_dataset, ssh_args, wait_status

    cluster = netns_cluster(2)
    job = make_job(tmp_path, cluster, 2, str(small_dataset(tmp_path)), name="mf2")
    spec = yaml.safe_load((job / "mfctl.yaml").read_text())
    spec.update(launcher="mindformers", mindformers_home=os.environ["MFCTL_MINDFORMERS_HOME"])
    (job / "mfctl.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    check = run_mfctl_process("check", "--json", *ssh_args(cluster), cwd=job)
    assert check.exit_code == 1  # the dataset is only here: --sync-dataset copies it
    for node in json.loads(check.stdout)["nodes"]:
        assert node["facts"]["mf_home_version"] == installed_mindformers()
        assert not any("mindformers_home" in p for p in node["problems"]), node["problems"]
    r = run_mfctl_process("launch", "--sync-dataset", "--json", *ssh_args(cluster), cwd=job)
    assert r.exit_code == 0, r.stderr
    status = wait_status(job, lambda s: s["job"]["state"] != "running", timeout=600)
    assert status["job"]["state"] == "finished", status
    assert [n["exit_code"] for n in status["nodes"]] == [0, 0]
    for rank in status["ranks"]:
        assert rank["step"] == rank["total_steps"] and rank["step"] >= 30
    for k, node in enumerate(cluster.nodes[:2]):
        out = Path(node.home) / "mfctl-jobs" / "mf2" / "output"
        assert list((out / "checkpoint" / f"rank_{k}").glob("*.ckpt")), f"no checkpoint on {node.name}"
        assert (out / "msrun_log" / f"worker_{k}.log").is_file()
    print("two nodes:", [(r["rank"], r["step"], r["loss"]) for r in status["ranks"]])
