"""The preflight's table (mfctl/cluster/preflight.py) on facts gathered for real: the node script
(mfctl/node/preflight.sh) runs here with stand-ins of npu-smi and hccn_tool on its PATH that
replay real recorded outputs (tests/lab/ascend.py, tests/data/ascend), and the table judges what
it printed. What a user checks: a clean node passes; each failure names the NPU and what to do;
a warning does not fail; the Slurm judge, run from a bundle with no mfctl installed, says the same.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mfctl.cluster import preflight as table
from mfctl.cluster.facts import read_facts
from mfctl.cluster.preflight import NODE_ROWS, Context, judge
from mfctl.node import preflight_judge
from tests.lab import ascend

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = (ROOT / "mfctl" / "node" / "preflight.sh").read_text(encoding="utf-8")
EIGHT = ascend.recorded("npu-smi_info_910A_8card_npu-smi-24.1.0.txt")  # 8 x "910B" (910A boards), 24.1.0
WITH_PROCESS = ascend.recorded("npu-smi_info_910B2_npu-smi-23.0.6.2_with_process_trimmed.txt")  # NPU 0 and 7
P310 = ascend.recorded("npu-smi_info_310P3_npu-smi-24.1.rc2.txt")
ALL8 = tuple(range(8))


def gather(tmp_path: Path, files: dict[str, str] | None, devices: tuple[int, ...] = ALL8, hccn: bool = True,
           node: str = "n1", set_env: tuple[str, ...] | None = None) -> str:
    """Run the node preflight here (Ascend on) with the stand-ins answering ``files``."""
    bin_dir = tmp_path / node / "bin"
    bin_dir.mkdir(parents=True)
    data = tmp_path / node / "data"
    if files is not None:
        ascend.write_node(data, files)
        (bin_dir / "npu-smi").write_text(ascend.NPU_SMI_SCRIPT)
        (bin_dir / "npu-smi").chmod(0o755)
        if hccn:
            (bin_dir / "hccn_tool").write_text(ascend.HCCN_SCRIPT)
            (bin_dir / "hccn_tool").chmod(0o755)
    dataset = tmp_path / "data.mindrecord"
    dataset.write_text("x")
    env = {**os.environ, "MFCTL_FAKE_ASCEND_DIR": str(data), "PATH": f"{bin_dir}:/usr/bin:/bin"}
    args = [sys.executable, str(dataset), str(tmp_path), "8118", "0", "j", "", str(tmp_path / node / "job"), "",
            "1", ",".join(map(str, devices)), *(["0"] if set_env is None else ["1", *set_env])]
    out = subprocess.run(["sh", "-c", SCRIPT, "preflight", *args], capture_output=True, text=True, env=env,
                         timeout=60)
    assert "done 1" in out.stdout, out.stderr
    return out.stdout


def ctx(devices: tuple[int, ...] = ALL8, **kw) -> Context:
    return Context(python=sys.executable, dataset="d", job_name="j", ascend=True, devices=devices, **kw)


def verdict(text: str, c: Context | None = None, host: str = "n1"):
    return judge([read_facts(host, 0, text)], c or ctx())[0]


def test_a_clean_node_passes_and_its_npus_are_in_the_json(tmp_path: Path) -> None:
    text = gather(tmp_path, ascend.node_outputs(EIGHT))
    v = verdict(text)
    assert v.ok and v.warnings == (), (v.problems, v.warnings)
    npu = read_facts("n1", 0, text).npu_json(ALL8)
    assert npu is not None
    assert [c["id"] for c in npu["chips"]] == list(ALL8)
    assert npu["chips"][0] == {"id": 0, "npu": 0, "chip": 0, "name": "910B", "health": "OK", "hbm_used_mb": 1365,
                               "hbm_total_mb": 32768, "processes": []}
    assert npu["links"][3] == {"device": 3, "link": "UP", "net_health": "Success", "ip": "10.20.1.13"}
    assert npu["versions"] == {"npu_smi": "24.1.0"}


def test_a_foreign_process_on_a_used_npu_fails_with_its_pid_name_and_memory(tmp_path: Path) -> None:
    v = verdict(gather(tmp_path, ascend.node_outputs(WITH_PROCESS), devices=(0, 7)), ctx((0, 7)))
    assert v.problems == ("NPU 0 is held by process 218169 (ray_RayTrainW, 558 MB); stop it, or pick other devices",)


def test_a_process_on_a_chip_the_job_does_not_use_is_fine(tmp_path: Path) -> None:
    assert verdict(gather(tmp_path, ascend.node_outputs(WITH_PROCESS), devices=(7,)), ctx((7,))).ok


def test_a_chip_in_alarm_fails_with_its_error_code_and_information(tmp_path: Path) -> None:
    # Derived from the real outputs: NPU 3's health cell says Alarm, and its -t health detail
    # (the real layout) carries a code and its information.
    lines = EIGHT.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("| 3     910B"))
    lines[row] = lines[row].replace("| OK            |", "| Alarm         |")
    health = re.sub(r"(Error Information +): NA", r"\1: node type=SOC, sensor type=HBM",
                    re.sub(r"(Error Code +): NA", r"\1: 80E18402", ascend.HEALTH_OK.replace(": OK", ": Alarm")))
    assert "80E18402" in health and "sensor type=HBM" in health
    v = verdict(gather(tmp_path, ascend.node_outputs("\n".join(lines) + "\n", **{"health.3": health})))
    assert v.problems == ("NPU 3 (910B) health is Alarm (error code 80E18402: node type=SOC, sensor type=HBM); "
                          "see 'npu-smi info -t health -i N -c 0', reset or replace the chip, or pick other devices",)


def test_a_missing_chip_fails_naming_the_devices_not_found(tmp_path: Path) -> None:
    v = verdict(gather(tmp_path, ascend.node_outputs(WITH_PROCESS)), ctx())  # only NPU 0 and 7 exist
    assert v.problems[0].startswith("NPU 1, 2, 3, 4, 5, 6 not found: npu-smi shows 2 training chip(s) "
                                    "(device 0, 7), the job uses 8 per node (devices 0, 1, 2, 3, 4, 5, 6, 7); "
                                    "lower --devices-per-node")


@pytest.mark.parametrize(("over", "problem"), [
    ({"link.5": "link status: DOWN\n"}, "NPU 5: device NIC link is DOWN (hccn_tool -i 5 -link -g); check the cable"),
    ({"net_health.2": ascend.NET_FAULT}, "NPU 2: device network health is Fault (hccn_tool -i 2 -net_health -g)"),
    ({"net_health.2": "net health status: Socket failed\n"}, "NPU 2: device network health is Socket failed"),
    ({"ip.6": "\n"}, "NPU 6: the device NIC has no IP address (hccn_tool -i 6 -ip -g said 'nothing')"),
])
def test_device_network_failures(tmp_path: Path, over: dict[str, str], problem: str) -> None:
    v = verdict(gather(tmp_path, ascend.node_outputs(EIGHT, **over)))
    assert len(v.problems) == 1 and v.problems[0].startswith(problem), v.problems


def test_net_health_init_warns_naming_netdetect(tmp_path: Path) -> None:
    v = verdict(gather(tmp_path, ascend.node_outputs(EIGHT, **{"net_health.4": ascend.NET_INIT})))
    assert v.ok
    assert v.warnings == ("NPU 4: device network health is Init: no detection address is set, so the link is not "
                          "checked; set one with 'hccn_tool -i 4 -netdetect -s address <IP>'",)


def test_npu_smi_without_hccn_tool_warns(tmp_path: Path) -> None:
    if Path("/usr/local/Ascend/driver/tools/hccn_tool").exists():
        pytest.skip("a hccn_tool is installed on this machine (the lab's stand-in?)")
    v = verdict(gather(tmp_path, ascend.node_outputs(EIGHT), hccn=False))
    assert v.ok and any("npu-smi is here but hccn_tool is not" in w for w in v.warnings), v.warnings


def test_missing_npu_smi_fails(tmp_path: Path) -> None:
    if any(Path(p).exists() for p in ("/usr/local/sbin/npu-smi", "/usr/local/bin/npu-smi")):
        pytest.skip("an npu-smi is installed on this machine (the lab's stand-in?)")
    v = verdict(gather(tmp_path, None))
    assert v.problems == ("npu-smi not found (PATH, /usr/local/sbin, /usr/local/bin); install the Ascend driver, "
                          "or put npu-smi on PATH in 'setup'",)


def test_an_inference_chip_cannot_train(tmp_path: Path) -> None:
    v = verdict(gather(tmp_path, ascend.node_outputs(P310, devices=1), devices=(0,)), ctx((0,)))
    assert any("NPU 0 is 310P3, an inference chip that cannot train" in p for p in v.problems), v.problems


def test_unreadable_npu_smi_output_warns_naming_the_line(tmp_path: Path) -> None:
    text = EIGHT + "dcmi module initialize failed. ret is -8005\n"
    v = verdict(gather(tmp_path, ascend.node_outputs(text)))
    assert v.ok and v.warnings == ("npu-smi info printed what mfctl cannot read: 'dcmi module initialize failed. "
                                   "ret is -8005'; the NPU checks may be incomplete",)


def test_unreadable_hccn_tool_output_warns_naming_the_device_and_line(tmp_path: Path) -> None:
    v = verdict(gather(tmp_path, ascend.node_outputs(EIGHT, **{"link.1": "Unknown command, please check\n"})))
    assert v.ok and v.warnings == ("hccn_tool -i 1 -link -g printed what mfctl cannot read: 'Unknown command, "
                                   "please check'; the device network checks may be incomplete",)


def test_a_configured_set_env_that_is_missing_fails(tmp_path: Path) -> None:
    real = tmp_path / "set_env.sh"
    real.write_text(": \n")
    v = verdict(gather(tmp_path, ascend.node_outputs(EIGHT), set_env=(str(real), "/nonexistent/Ascend/set_env.sh")))
    assert v.problems == ("ascend.set_env /nonexistent/Ascend/set_env.sh is not there (or not readable); install "
                          "CANN there or fix ascend.set_env in mfctl.yaml",)


def test_cann_version_comes_from_the_sourced_environment(tmp_path: Path) -> None:
    toolkit = tmp_path / "toolkit"
    (toolkit / "aarch64-linux").mkdir(parents=True)
    (toolkit / "aarch64-linux" / "ascend_toolkit_install.info").write_text(ascend.section(
        "version_info_doc_driver24.1.rc1_cann8.5.0.txt", "## cat /usr/local/Ascend/cann/aarch64", "## cat"))
    script = tmp_path / "set_env.sh"
    script.write_text(f"export ASCEND_TOOLKIT_HOME={toolkit}\n")
    facts = read_facts("n1", 0, gather(tmp_path, ascend.node_outputs(EIGHT), set_env=(str(script),)))
    assert facts.versions() == {"npu_smi": "24.1.0", "cann": "8.5.0"}


def test_mixed_chip_models_on_different_drivers_fail_every_node(tmp_path: Path) -> None:
    b3 = ascend.recorded("npu-smi_info_910B2_npu-smi-23.0.6.2_with_process_trimmed.txt")
    # Derived: the same node's output from a 910B3 node on driver 24.1.0 (model and version changed).
    b3 = b3.replace("910B2", "910B3").replace("23.0.6.2", "24.1.0").replace("218169", "1")
    one = read_facts("n1", 0, gather(tmp_path, ascend.node_outputs(WITH_PROCESS.replace("218169", "1")),
                                     devices=(7,), node="n1"))
    two = read_facts("n2", 1, gather(tmp_path, ascend.node_outputs(b3), devices=(7,), node="n2"))
    verdicts = judge([one, two], ctx((7,)))
    for v in verdicts:
        assert "NPU chip models differ across nodes: 910B2 on n1, 910B3 on n2; use nodes of one chip model" \
            in v.problems
        assert "driver versions (npu-smi) differ across nodes: 23.0.6.2 on n1, 24.1.0 on n2; install the same " \
               "Ascend driver on every node" in v.problems


def test_the_npu_rows_apply_only_to_ascend_jobs(tmp_path: Path) -> None:
    text = gather(tmp_path, ascend.node_outputs(WITH_PROCESS), devices=(0, 7))
    assert not verdict(text, ctx((0, 7))).ok
    assert verdict(text, Context(python=sys.executable, dataset="d", ascend=False, devices=(0, 7))).ok


def test_every_row_says_what_to_do_or_is_a_warning() -> None:
    assert all(r.do or r.level == table.WARN or r.fact in ("mf_home",) for r in NODE_ROWS)


def test_the_slurm_judge_runs_from_a_bundle_without_mfctl(tmp_path: Path) -> None:
    """The batch script's judge: the shipped copies of the table, run by a python that has no mfctl
    (-I: no PYTHONPATH, no user site; run from elsewhere), writes the failing node's reason."""
    judge_dir = tmp_path / "bundle" / "judge"
    (judge_dir / "mfctl" / "cluster").mkdir(parents=True)
    (judge_dir / "mfctl" / "__init__.py").write_text("")
    (judge_dir / "mfctl" / "cluster" / "__init__.py").write_text("")
    for name in ("preflight.py", "facts.py", "npu.py"):
        (judge_dir / "mfctl" / "cluster" / name).write_text((ROOT / "mfctl" / "cluster" / name).read_text())
    context = tmp_path / "preflight.json"
    context.write_text(ctx((0, 7)).to_json())
    nodes = []
    for rank, (name, text) in enumerate([("node-a", ascend.node_outputs(EIGHT)),
                                         ("node-b", ascend.node_outputs(WITH_PROCESS))]):
        d = tmp_path / "nodes" / f"node{rank}"
        (d / "run").mkdir(parents=True)
        (d / "run" / "node_name").write_text(name + "\n")
        (d / "run" / "preflight.txt").write_text(gather(tmp_path, text, devices=(0, 7), node=name))
        nodes.append(str(d))
    r = subprocess.run([sys.executable, "-I", str(ROOT / "mfctl" / "node" / "preflight_judge.py"), str(judge_dir),
                        str(context), *nodes], capture_output=True, text=True, cwd="/", timeout=60)
    assert r.returncode == 3, r.stderr
    # Mixed models fail both; node-b also has a stranger's process on NPU 0.
    failed_b = (tmp_path / "nodes" / "node1" / "run" / "preflight_failed").read_text()
    assert "NPU 0 is held by process 218169 (ray_RayTrainW, 558 MB)" in failed_b
    assert "preflight failed on node-b: NPU 0 is held by process 218169" in r.stderr
    assert (tmp_path / "nodes" / "node1" / "run" / "exit_code").read_text() == "3\n"
    assert "NPU chip models differ across nodes: 910B on node-a, 910B2 on node-b" in \
        (tmp_path / "nodes" / "node0" / "run" / "preflight_failed").read_text()


def test_the_judge_passes_clean_nodes(tmp_path: Path) -> None:
    context = tmp_path / "preflight.json"
    context.write_text(ctx().to_json())
    d = tmp_path / "nodes" / "node0"
    (d / "run").mkdir(parents=True)
    (d / "run" / "preflight.txt").write_text(gather(tmp_path, ascend.node_outputs(EIGHT)))
    assert preflight_judge.main([str(ROOT), str(context), str(d)]) == 0
    assert not (d / "run" / "preflight_failed").exists()


def test_context_round_trips_through_json() -> None:
    c = ctx((0, 7), set_env=("/a/set_env.sh",))
    assert Context.from_json(c.to_json()) == c
    assert Context.from_json(ctx().to_json()).set_env is None  # unset stays unset (not [])
    assert json.loads(c.to_json())["devices"] == [0, 7]
