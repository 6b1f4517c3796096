"""``mfctl check`` on Ascend nodes, for real: sshd nodes in network namespaces (and the Slurm lab on
them) whose ``npu-smi`` (/usr/local/sbin) and ``hccn_tool`` (/usr/local/Ascend/driver/tools) answer
with real recorded outputs, per node (tests/lab/ascend.py).

The job is the llama2-7b preset (``device_target: Ascend``) on 2 nodes x 8 devices. What a user
checks: a clean pair passes; each failure fails naming the node and what is wrong (a stale process,
a chip in Alarm, a link DOWN, a Fault net health, a missing chip, mixed 910B2/910B3 chips on
different drivers); ``--network`` names the device pair that lost packets; on Slurm, the same
table stops the job before msrun with the node's reason.

Where a case needs an output nobody published (a chip in Alarm, a link DOWN), it is a real output
with the one value changed, said so beside it.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_mfctl_process
from tests.lab import ascend

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]
PY = sys.executable

EIGHT = ascend.recorded("npu-smi_info_910A_8card_npu-smi-24.1.0.txt")  # 8 x "910B" (910A boards), driver 24.1.0
PROCS = ascend.recorded("npu-smi_info_910B2_npu-smi-23.0.6.2_with_process_trimmed.txt")


def _process_table(text: str) -> str:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "Process id" in line) - 1
    return "\n".join(lines[start:]) + "\n"


def _devices_only(text: str) -> str:
    lines = text.splitlines()
    end = next((i for i, line in enumerate(lines) if "Process id" in line), len(lines) + 1) - 1
    return "\n".join(lines[:end]) + "\n"


# NPU 0 held by a stranger: the 8-card table, then the real process table of a 910B2 node
# (ray_RayTrainW, pid 218169, 558 MB on NPU 0).
WITH_STALE = _devices_only(EIGHT) + _process_table(PROCS)
# NPU 3 in Alarm: its health cell changed, and its health detail with a code (real layout).
_lines = EIGHT.splitlines()
_row = next(i for i, line in enumerate(_lines) if line.startswith("| 3     910B"))
_lines[_row] = _lines[_row].replace("| OK            |", "| Alarm         |")
IN_ALARM = "\n".join(_lines) + "\n"
HEALTH_ALARM = re.sub(r"(Error Code +): NA", r"\1: 80E18402", ascend.HEALTH_OK.replace(": OK", ": Alarm"))
# NPU 7 gone: its two rows (and their border) removed.
_cut = next(i for i, line in enumerate(_lines) if line.startswith("| 7     910B"))
MISSING_7 = "\n".join(EIGHT.splitlines()[:_cut] + EIGHT.splitlines()[_cut + 3:]) + "\n"
# 910B2 on driver 23.0.6.2 and 910B3 on 24.1.0: the 8-card table, its model and version changed.
B2 = EIGHT.replace("910B ", "910B2").replace("24.1.0", "23.0.6.2")
B3 = EIGHT.replace("910B ", "910B3")


@pytest.fixture(scope="module")
def stand_ins() -> Iterator[None]:
    created = ascend.install_scripts()
    try:
        yield
    finally:
        ascend.remove(created)


@pytest.fixture
def pair(netns_cluster, stand_ins, tmp_path: Path):
    cluster = netns_cluster(2)
    nodes = cluster.nodes[:2]
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("".join(f"{n.name}\n" for n in nodes))
    shared = Path(tempfile.mkdtemp(prefix="mfctl-ascend-"))  # the node users read the dataset here
    shared.chmod(0o755)
    dataset = shared / "wiki.mindrecord"
    dataset.write_text("x")
    dataset.chmod(0o644)
    job = tmp_path / "npu"
    r = run_mfctl_process("init", job, "--model", "llama2-7b", "--nodes", hosts, "--devices-per-node", "8",
                          "--dataset", dataset, "--python", PY, "--yes")
    assert r.exit_code == 0, r.stderr

    def answer(first: dict[str, str], second: dict[str, str]) -> None:
        for n, files in zip(nodes, (first, second)):
            ascend.write_node(ascend.DATA_ROOT / n.address, files)

    def check(*args: str, command: str = "check"):
        return run_mfctl_process(command, "--json", "--ssh-config", str(cluster.ssh_config_path), *args, cwd=job)

    yield nodes, answer, check
    shutil.rmtree(shared, ignore_errors=True)


def _node(n: int, npu_smi_info: str, **over: str) -> dict[str, str]:
    return ascend.node_outputs(npu_smi_info, node=n, **over)


def test_a_clean_pair_passes_and_shows_every_npu(pair) -> None:
    nodes, answer, check = pair
    answer(_node(1, EIGHT), _node(2, EIGHT))
    r = check()
    assert r.exit_code == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    for n, node in zip(nodes, out["nodes"]):
        assert node["host"] == n.name and node["ok"] and node["warnings"] == []
        assert [c["name"] for c in node["npu"]["chips"]] == ["910B"] * 8
        assert {x["link"] for x in node["npu"]["links"]} == {"UP"} and len(node["npu"]["links"]) == 8
        assert node["npu"]["versions"]["npu_smi"] == "24.1.0"


@pytest.mark.parametrize(("second", "problem"), [
    (_node(2, WITH_STALE), "NPU 0 is held by process 218169 (ray_RayTrainW, 558 MB); stop it, or pick other devices"),
    (_node(2, IN_ALARM, **{"health.3": HEALTH_ALARM}), "NPU 3 (910B) health is Alarm (error code 80E18402: NA)"),
    (_node(2, EIGHT, **{"link.5": ascend.LINK_UP.replace("UP", "DOWN")}), "NPU 5: device NIC link is DOWN"),
    (_node(2, EIGHT, **{"net_health.2": ascend.NET_FAULT}), "NPU 2: device network health is Fault"),
    (_node(2, MISSING_7), "NPU 7 not found: npu-smi shows 7 training chip(s)"),
], ids=["stale-process", "alarm", "link-down", "net-fault", "missing-chip"])
def test_each_failure_names_the_node_and_what_is_wrong(pair, second: dict[str, str], problem: str) -> None:
    nodes, answer, check = pair
    answer(_node(1, EIGHT), second)
    r = check()
    assert r.exit_code == 1, r.stdout + r.stderr
    first, bad = json.loads(r.stdout)["nodes"]
    assert first["ok"], first["problems"]
    assert any(p.startswith(problem) for p in bad["problems"]), bad["problems"]
    assert f"{nodes[1].name}: {problem}" in r.stderr  # the one-line error names the node


def test_mixed_chip_models_on_different_drivers_fail(pair) -> None:
    nodes, answer, check = pair
    answer(_node(1, B2), _node(2, B3))
    r = check()
    assert r.exit_code == 1
    for node in json.loads(r.stdout)["nodes"]:
        assert f"NPU chip models differ across nodes: 910B2 on {nodes[0].name}, 910B3 on {nodes[1].name}; " \
               "use nodes of one chip model" in node["problems"]
        assert f"driver versions (npu-smi) differ across nodes: 23.0.6.2 on {nodes[0].name}, 24.1.0 on " \
               f"{nodes[1].name}; install the same Ascend driver on every node" in node["problems"]


def test_net_health_init_is_a_warning_naming_netdetect(pair) -> None:
    _, answer, check = pair
    answer(_node(1, EIGHT), _node(2, EIGHT, **{"net_health.4": ascend.NET_INIT}))
    r = check()
    assert r.exit_code == 0, r.stdout + r.stderr
    assert any("hccn_tool -i 4 -netdetect -s address" in w for w in json.loads(r.stdout)["nodes"][1]["warnings"])


def test_network_pings_each_device_peer_on_the_next_node(pair) -> None:
    nodes, answer, check = pair
    # node 2's device 6 loses two of its three packets to node 1's device 6 (the real ping output,
    # its counts changed).
    lossy = ascend.PING_OK.replace("3 received, 0.00%", "1 received, 66.67%")
    answer(_node(1, EIGHT), _node(2, EIGHT, **{"ping.6": lossy}))
    assert check().exit_code == 0  # without --network: no ping
    r = check("--network")
    assert r.exit_code == 1, r.stdout + r.stderr
    want = f"NPU 6 -> {nodes[0].name} NPU 6 (10.20.1.16): 2 of 3 packets lost"
    for node in json.loads(r.stdout)["nodes"]:
        assert [p for p in node["problems"] if p.startswith(want)], node["problems"]
    answer(_node(1, EIGHT), _node(2, EIGHT))
    assert check("--network").exit_code == 0


def test_launch_runs_the_same_checks_and_starts_nothing(pair) -> None:
    nodes, answer, check = pair
    answer(_node(1, EIGHT), _node(2, EIGHT, **{"net_health.2": ascend.NET_FAULT}))
    r = check(command="launch")
    assert r.exit_code == 1, r.stdout + r.stderr
    assert f"{nodes[1].name}: NPU 2: device network health is Fault" in r.stderr and "nothing was started" in r.stderr


# --------------------------------------------------------------------------- Slurm


@pytest.mark.slurm
def test_slurm_judges_the_tasks_facts_with_the_same_table(slurm_cluster, stand_ins, tmp_path_factory) -> None:
    """A clean pair passes the preflight (msrun starts: its output is there); a stale process on
    node 2 stops the job before msrun, naming that node and NPU."""
    slurm = slurm_cluster()
    root = slurm.shared_dir / f"mfctl-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    home = tmp_path_factory.mktemp("mfctl-home")
    env = {**slurm.env, "MFCTL_HOME": str(home)}
    try:
        dataset = root / "wiki.mindrecord"
        dataset.write_text("x")
        dataset.chmod(0o644)

        def job(name: str) -> Path:
            d = root / name
            r = run_mfctl_process("init", d, "--scheduler", "slurm", "--partition", "lab", "--node-count", "2",
                                  "--devices-per-node", "8", "--model", "llama2-7b", "--dataset", str(dataset),
                                  "--python", PY, "--shared-root", str(root), "--yes", env=env)
            assert r.exit_code == 0, r.stderr
            return d

        def status(d: Path) -> dict:
            r = run_mfctl_process("status", "--json", cwd=d, env=env)
            assert r.exit_code == 0, r.stderr
            return json.loads(r.stdout)

        def ended(d: Path) -> dict:
            deadline = time.monotonic() + 120
            while True:
                s = status(d)
                if s["job"]["state"] != "running" or time.monotonic() > deadline:
                    return s
                time.sleep(1)

        n1, n2 = slurm.nodes[:2]
        for n, files in ((n1, _node(1, EIGHT)), (n2, _node(2, WITH_STALE))):
            ascend.write_node(ascend.DATA_ROOT / n.address, files)
        bad = job("stale")
        r = run_mfctl_process("launch", cwd=bad, env=env)
        assert r.exit_code in (0, 1), r.stderr
        s = ended(bad)
        assert s["job"]["state"] == "failed", s
        assert f"{n2.name}" in s["job"]["exit_cause"] and \
            "preflight failed: NPU 0 is held by process 218169 (ray_RayTrainW, 558 MB)" in s["job"]["exit_cause"], s
        assert not list(bad.glob("nodes/node*/run/launch.out"))  # msrun never started

        ascend.write_node(ascend.DATA_ROOT / n2.address, _node(2, EIGHT))
        good = job("clean")
        r = run_mfctl_process("launch", cwd=good, env=env)
        # Past the preflight msrun starts (and fails: there is no NPU to run on): both nodes ran the
        # launch script, and neither wrote a preflight failure.
        deadline = time.monotonic() + 120
        while len(list(good.glob("nodes/node*/run/launch.out"))) < 2 and time.monotonic() < deadline:
            time.sleep(1)
        assert len(list(good.glob("nodes/node*/run/launch.out"))) == 2, r.stderr
        assert not list(good.glob("nodes/node*/run/preflight_failed"))
        run_mfctl_process("stop", cwd=good, env=env)
    finally:
        shutil.rmtree(root, ignore_errors=True)
