"""The node launch script of launcher 'mindformers': where it runs MindFormers' launcher from, and
the CPU sitecustomize it injects on CPU only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from mfctl.jobs.jobdir import load_job, make_plan, render_job
from mfctl.jobs.nodeops import bundle_files


def _job(tmp_path: Path, model: str, devices: int, home: str) -> Path:
    d = tmp_path / model
    d.mkdir()
    (d / "mfctl.yaml").write_text(yaml.safe_dump({
        "name": "mf", "model": model, "hosts": "localhost", "devices_per_node": devices,
        "dataset": "data/x.mindrecord", "launcher": "mindformers", "mindformers_home": home,
        "python": sys.executable, "master_port": 8118,
    }))
    return d


def _render(d: Path) -> tuple[str, Path]:
    job = load_job(d)
    plan = make_plan(job)
    render_job(job, plan, "mf-20260101-000000")
    return (d / "rendered" / "launch-node0.sh").read_text(), d / "rendered"


def test_cpu_job_gets_the_cpu_site_and_ascend_job_nothing(tmp_path: Path) -> None:
    cpu, _ = _render(_job(tmp_path, "tiny-llama", 2, "/opt/mindformers"))
    ascend, _ = _render(_job(tmp_path, "llama2-7b", 8, "/opt/mindformers"))
    assert 'PYTHONPATH="$JOB_DIR/bundle/cpu_site${PYTHONPATH:+:$PYTHONPATH}"' in cpu
    assert "PYTHONPATH" not in ascend and "bundle/cpu_site" not in ascend
    for script in (cpu, ascend):
        assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
        assert 'bash "$MF_HOME/scripts/msrun_launcher.sh"' in script


def test_launch_script_runs_the_checkout_from_the_job_dir(tmp_path: Path) -> None:
    """Run the rendered script against a checkout whose launcher reports what it was given."""
    home = tmp_path / "mindformers"
    (home / "scripts").mkdir(parents=True)
    (home / "scripts" / "msrun_launcher.sh").write_text(
        'echo "cwd $(pwd -P)"; echo "args $#"; echo "order $1"; echo "rest $2 $3 $7 $8"\n'
        'echo "pythonpath $PYTHONPATH"; echo "logmf $LOG_MF_PATH"; exit 3\n')
    d = _job(tmp_path, "tiny-llama", 2, str(home))
    _, rendered = _render(d)
    # Lay the bundle out as launch does.
    for rel, (content, _mode) in bundle_files(rendered, 0).items():
        path = d / "bundle" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run(["sh", str(d / "bundle" / "launch.sh")], env=env, capture_output=True, text=True)
    assert r.returncode == 3, r.stderr
    out = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    job_dir = str(d.resolve())
    assert out["cwd"] == job_dir and out["args"] == "9"
    assert out["order"].split()[:3] == [f"{home}/run_mindformer.py", "--config", f"{job_dir}/bundle/config.yaml"]
    assert out["rest"] == "2 2 output/msrun_log True"
    assert out["pythonpath"] == f"{job_dir}/bundle/cpu_site"
    assert out["logmf"] == f"{job_dir}/output/log"
    assert (d / "run" / "exit_code").read_text().strip() == "3"

    # The injected sitecustomize is the one Python loads there, and costs a process that never
    # imports MindFormers nothing (no mindspore import at start-up).
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, sitecustomize; print(sitecustomize.__file__); "
                               "print('mindspore' in sys.modules, 'mindformers' in sys.modules)"],
        env={**env, "PYTHONPATH": out["pythonpath"]}, capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split("\n")[:2] == [f"{job_dir}/bundle/cpu_site/sitecustomize.py", "False False"]


def test_launch_script_refuses_a_job_dir_the_launcher_would_split(tmp_path: Path) -> None:
    home = tmp_path / "mindformers"
    (home / "scripts").mkdir(parents=True)
    (home / "scripts" / "msrun_launcher.sh").write_text("echo ran; exit 0\n")
    d = _job(tmp_path, "tiny-llama", 2, str(home))
    _, rendered = _render(d)
    spaced = tmp_path / "my job"
    (spaced / "bundle").mkdir(parents=True)
    (spaced / "bundle" / "launch.sh").write_bytes((rendered / "launch-node0.sh").read_bytes())
    r = subprocess.run(["sh", str(spaced / "bundle" / "launch.sh")], capture_output=True, text=True)
    assert r.returncode == 2 and "ran" not in r.stdout
    assert "spaces or shell characters" in r.stderr and str(spaced) in r.stderr
