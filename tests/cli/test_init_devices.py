"""``mfctl init --devices`` and the spec's ``devices`` / ``ascend.set_env`` as a user meets them:
what the plan and the rendered launch scripts say, and one-line refusals (exit 2) naming the flag
or the spec file's line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

INIT = ["--model", "llama2-7b", "--dataset", "/data/wiki4096.mindrecord", "--yes"]


def hosts(tmp: Path, n: int, extra: str = "") -> Path:
    path = tmp / "hosts.txt"
    path.write_text("".join(f"node{i + 1}{extra}\n" for i in range(n)))
    return path


def test_devices_flag_sets_the_workers_and_visible_devices(mfctl, tmp_path: Path) -> None:
    job = tmp_path / "j"
    r = mfctl("init", job, "--nodes", hosts(tmp_path, 2), "--devices", "7,6,5,4", *INIT)
    assert r.exit_code == 0, r.stderr
    spec = yaml.safe_load((job / "mfctl.yaml").read_text())
    assert spec["devices"] == [4, 5, 6, 7] and "devices_per_node" not in spec
    plan = json.loads(mfctl("plan", "--json", "--dir", job).stdout)
    assert plan["world_size"] == 8
    assert [(n["local_worker_num"], n["ranks"], n["devices"]) for n in plan["nodes"]] == [
        (4, [0, 1, 2, 3], [4, 5, 6, 7]), (4, [4, 5, 6, 7], [4, 5, 6, 7])]
    table = mfctl("plan", "--dir", job).stdout
    assert "devices on each node: 4,5,6,7 (ASCEND_RT_VISIBLE_DEVICES)" in table
    assert mfctl("render", "--dir", job).exit_code == 0
    for k in range(2):
        script = (job / "rendered" / f"launch-node{k}.sh").read_text()
        assert "\nexport ASCEND_RT_VISIBLE_DEVICES=4,5,6,7\n" in script
        assert "--local_worker_num 4" in script


@pytest.mark.parametrize("args, message", [
    (["--devices", "0,1,1"], "--devices lists device 1 twice; list each device once"),
    (["--devices", "0,-1"], "--devices has -1: device ids are 0 or more"),
    (["--devices", "0,one"], "--devices has 'one', which is not a device id"),
    (["--devices", "0,1.5"], "--devices has '1.5', which is not a device id"),
    (["--devices", ""], "--devices lists no device"),
    (["--devices", "0,1", "--devices-per-node", "8"],
     "--devices lists 2 device(s) but --devices-per-node is 8; give one of them"),
])
def test_init_bad_devices(mfctl, tmp_path: Path, args: list[str], message: str) -> None:
    r = mfctl("init", tmp_path / "j", *args, *INIT)
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "j").exists()


def test_init_devices_and_slots_must_agree(mfctl, tmp_path: Path) -> None:
    r = mfctl("init", tmp_path / "j", "--nodes", hosts(tmp_path, 2, " slots=8"), "--devices", "0,1", *INIT)
    assert r.exit_code == 2 and "hosts.txt:1: slots=8 but --devices lists 2 device(s)" in r.stderr
    assert not (tmp_path / "j").exists()


@pytest.mark.parametrize("lines, message", [
    ("devices: [0, 1, 1]\n", "mfctl.yaml:{end}: devices lists device 1 twice"),
    ("devices:\n- 0\n- -2\n", "mfctl.yaml:{end}: devices has -2: device ids are 0 or more"),
    ("devices: [0, a]\n", "mfctl.yaml:{end}: devices has 'a', which is not a device id"),
    ("ascend:\n  set_env:\n  - ''\n", "mfctl.yaml:{end2}: ascend.set_env has an empty path"),
    ("env:\n  HCCL_CONNECT_TIMEOUT: 30\n", "mfctl.yaml:{end}: env HCCL_CONNECT_TIMEOUT must be whole "
                                          "seconds, 120-7200, got '30'"),
])
def test_plan_names_the_spec_line(mfctl, tmp_path: Path, lines: str, message: str) -> None:
    job = tmp_path / "j"
    assert mfctl("init", job, "--devices-per-node", "2", *INIT).exit_code == 0
    spec = job / "mfctl.yaml"
    text = spec.read_text().replace("devices_per_node: 2\n", "")
    end = len(text.splitlines()) + 1
    spec.write_text(text + lines)
    r = mfctl("plan", "--dir", job)
    assert r.exit_code == 2, r.stdout
    assert message.format(end=end, end2=end + 1) in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_spec_devices_and_the_hosts_file_slots(mfctl, tmp_path: Path) -> None:
    job = tmp_path / "j"
    assert mfctl("init", job, "--nodes", hosts(tmp_path, 2, " slots=2"), *INIT).exit_code == 0
    spec = job / "mfctl.yaml"
    text = spec.read_text().replace("devices_per_node: 2\n", "")
    spec.write_text(text + "devices: [0, 1, 2, 3]\n")
    r = mfctl("plan", "--dir", job)
    assert r.exit_code == 2
    line = len(text.splitlines()) + 1
    assert f"hosts.txt:1: slots=2 but {spec}:{line} lists 4 device(s); make them agree" in r.stderr


def test_plan_names_the_cann_environment(mfctl, tmp_path: Path) -> None:
    job = tmp_path / "j"
    assert mfctl("init", job, "--devices-per-node", "8", *INIT).exit_code == 0
    assert "CANN environment" not in mfctl("plan", "--dir", job).stdout  # the default search
    spec = job / "mfctl.yaml"
    spec.write_text(spec.read_text() + "ascend:\n  set_env:\n  - /opt/cann/set_env.sh\n  - ~/atb [x]/set_env.sh\n")
    out = mfctl("plan", "--dir", job).stdout
    assert "CANN environment: /opt/cann/set_env.sh, ~/atb [x]/set_env.sh (ascend.set_env)" in out
