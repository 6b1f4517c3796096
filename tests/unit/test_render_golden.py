"""Golden files of ``mfctl render``: each preset's MindFormers config, node launch scripts and plan.

A change to a template, a preset or the renderer shows up here as a diff of the files a node
really receives, to be read in review. When the change is meant, rewrite the golden files and
commit them with it:

    MFCTL_UPDATE_GOLDEN=1 python -m pytest tests/unit/test_render_golden.py
    git diff tests/data/golden/

The jobs are made the way a user makes them (``mfctl init`` then ``mfctl render``), so the id in
the scripts is the fixed preview id ``<name>-render``; a local job's directory (a temporary path)
is written as ``<job dir>``.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "golden"
UPDATE = os.environ.get("MFCTL_UPDATE_GOLDEN") == "1"
JOB_DIR = "<job dir>"

# A job on 4 of each node's 8 NPUs, with its own CANN environment scripts (one with a space and a
# quote in its path, one under the home) and HCCL settings.
ASCEND_SPEC = """\
ascend:
  set_env:
  - /opt/cann 8.5/it's/set_env.sh
  - ~/Ascend/nnal/atb/set_env.sh
env:
  HCCL_CONNECT_TIMEOUT: 1200
  HCCL_EXEC_TIMEOUT: 1800
  HCCL_SOCKET_IFNAME: enp189s0f0
"""

# (job name = golden folder, preset, hosts file lines or None for this machine, devices per node
# or a device list, lines added to mfctl.yaml)
CASES = [
    ("llama2-7b-1x8", "llama2-7b", ["node1"], 8, ""),
    ("llama3-70b-8x8", "llama3-70b", [f"node{i}" for i in range(1, 9)], 8, ""),
    ("tiny-llama-1x2-local", "tiny-llama", None, 2, ""),
    ("llama2-7b-2x4-devices", "llama2-7b", ["node1", "node2"], "4,5,6,7", ASCEND_SPEC),
]


def render(mfctl, tmp_path: Path, name: str, preset: str, hosts: list[str] | None,
           devices: int | str, spec_lines: str = "") -> dict[str, str]:
    job = tmp_path / name
    args = ["init", job, "--model", preset,
            *(["--devices", devices] if isinstance(devices, str) else ["--devices-per-node", devices]),
            "--dataset", "/data/wiki4096/wiki4096.mindrecord", "--yes"]
    if hosts is not None:
        hosts_file = tmp_path / "hosts.txt"
        hosts_file.write_text("".join(f"{h}\n" for h in hosts))
        args += ["--nodes", hosts_file]
    r = mfctl(*args)
    assert r.exit_code == 0, r.stderr
    if spec_lines:
        with (job / "mfctl.yaml").open("a", encoding="utf-8") as spec:
            spec.write(spec_lines)
    r = mfctl("render", "--dir", job)
    assert r.exit_code == 0, r.stderr
    rendered = job / "rendered"
    return {p.name: p.read_text(encoding="utf-8").replace(str(job.resolve()), JOB_DIR)
            for p in sorted(rendered.iterdir())}


@pytest.mark.parametrize("name, preset, hosts, devices, spec_lines", CASES, ids=[c[0] for c in CASES])
def test_rendered_files_match_golden(mfctl, tmp_path: Path, name: str, preset: str,
                                     hosts: list[str] | None, devices: int | str, spec_lines: str) -> None:
    files = render(mfctl, tmp_path, name, preset, hosts, devices, spec_lines)
    golden = GOLDEN / name
    if UPDATE:
        golden.mkdir(parents=True, exist_ok=True)
        for stale in set(p.name for p in golden.iterdir()) - set(files):
            (golden / stale).unlink()
        for file, text in files.items():
            (golden / file).write_text(text, encoding="utf-8")
        pytest.skip(f"golden files of {name} rewritten: review `git diff {golden}`")
    assert golden.is_dir(), f"{golden}: no golden files; make them with MFCTL_UPDATE_GOLDEN=1"
    expected = sorted(p.name for p in golden.iterdir())
    assert sorted(files) == expected, "mfctl render wrote other files than the golden ones"
    for file in expected:
        want = (golden / file).read_text(encoding="utf-8")
        diff = "".join(difflib.unified_diff(
            want.splitlines(keepends=True), files[file].splitlines(keepends=True),
            f"golden/{name}/{file}", f"rendered/{file}"))
        assert files[file] == want, (
            f"{name}/{file} differs from the golden file (if meant: MFCTL_UPDATE_GOLDEN=1, then "
            f"review git diff):\n{diff}")
