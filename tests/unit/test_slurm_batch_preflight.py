"""The Slurm batch script's preflight (templates/slurm-batch.sh.j2), as ``launch --dry-run`` shows
it: every task gathers its node's facts with the node preflight (the NPU part on, for an Ascend
config), the batch script judges them all with the shipped table, and only then runs msrun."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from mfctl.jobs.launch import load, submission_preview
from mfctl.remote.connect import SshOptions

ROOT = Path(__file__).resolve().parent.parent.parent


def _preview(tmp_path: Path) -> str:
    shutil.copy(ROOT / "configs" / "examples" / "slurm.mfctl.yaml", tmp_path / "mfctl.yaml")
    job, plan = load(tmp_path, None, SshOptions(), None, None)
    preview = submission_preview(job, plan)
    assert preview is not None
    return preview


def test_tasks_gather_then_the_table_judges_then_msrun_starts(tmp_path: Path) -> None:
    script = _preview(tmp_path)
    gather = script.index("sh bundle/node/preflight.sh")
    judge = script.index('"$b/node/preflight_judge.py" "$b/judge" "$b/preflight.json" $nodes')
    launch = script.index("exec sh bundle/launch.sh")
    assert gather < judge < launch
    # llama3-70b targets Ascend: the NPU facts are gathered for devices 0-7 of every node.
    assert " 1 0,1,2,3,4,5,6,7 0 > run/preflight.txt" in script  # ascend.set_env unset: the defaults
    for k in range(4):
        assert f'nodes="$nodes $MFCTL_SHARED_JOB_DIR/nodes/node{k}"' in script
    assert "run/preflight.txt | head -n 1" not in script  # no second judgement (in sed) any more
    body = script.split("\n", 1)[1]  # after the '# sbatch ...' line
    r = subprocess.run(["bash", "-n"], input=body, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
