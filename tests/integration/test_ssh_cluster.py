"""mfctl over real SSH: sshd nodes in network namespaces, real msrun across them.

Each node is its own unix user, home and network namespace; the controller reaches them only
through the generated ssh_config and known_hosts, as a user would reach a real cluster.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_mfctl_process
from tests.helpers_train import mindspore_missing

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]
PY = sys.executable  # the test venv: made from the system python, runnable by node users


def small_dataset(tmp_path: Path, fraction: float = 0.2) -> Path:
    """A real MindRecord dataset, a fifth of the demo corpus: about 50 steps of 2 x 4 samples."""
    from mfctl.data.corpus import pydoc_wikitext
    from mfctl.data.prepare import prepare_dataset

    text = pydoc_wikitext()
    corpus = tmp_path / "small.train.tokens"
    corpus.write_text(text[: int(len(text) * fraction)])
    return prepare_dataset([str(corpus)], tmp_path / "small.mindrecord", 64,
                           train_tokenizer_vocab=1000).output


def make_job(tmp_path: Path, cluster, n: int, dataset: str, name: str = "it") -> Path:
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("".join(f"{node.name}\n" for node in cluster.nodes[:n]))
    job = tmp_path / name
    r = run_mfctl_process("init", job, "--model", "tiny-llama", "--nodes", hosts, "--devices-per-node", "1",
                          "--dataset", dataset, "--python", PY, "--yes")
    assert r.exit_code == 0, r.stderr
    return job


# A stand-in of CANN's set_env.sh (no CANN here), written the way the real ones are: for bash
# (BASH_SOURCE, arrays, [[ ]]), reading variables that may be unset, setting a default the job's env
# overrides. Each node's user gets it at ~/cann env/set_env.sh, which the spec names.
CANN_STAND_IN = """\
# stand-in for /usr/local/Ascend/ascend-toolkit/set_env.sh (written by tests/integration/test_ssh_cluster.py)
_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
_libs=(lib64 lib64/plugin/opskernel)
if [[ -n "${LD_LIBRARY_PATH}" ]]; then _sep=:; else _sep=; fi
export ASCEND_TOOLKIT_HOME="$_here/latest"
export LD_LIBRARY_PATH="$ASCEND_TOOLKIT_HOME/${_libs[0]}:$ASCEND_TOOLKIT_HOME/${_libs[1]}$_sep${LD_LIBRARY_PATH}"
export HCCL_CONNECT_TIMEOUT=120
export CANN_STAND_IN_SOURCED="${CANN_STAND_IN_SOURCED}1"
"""
CANN_SPEC = """\
devices: [1]
ascend:
  set_env: cann env/set_env.sh
env:
  HCCL_CONNECT_TIMEOUT: 1200
  HCCL_EXEC_TIMEOUT: 1800
  HCCL_SOCKET_IFNAME: eth0
"""


def put_cann_stand_in(cluster, node) -> None:
    cluster.exec_in(node, ["sh", "-c", 'mkdir -p "cann env" && cat > "cann env/set_env.sh"'],
                    as_user=True, check=True, input=CANN_STAND_IN)


def environ(pid: int) -> dict[str, str]:
    try:
        items = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    except OSError:  # gone since it was listed
        return {}
    return dict(item.split("=", 1) for item in items if "=" in item)


def ssh_args(cluster) -> list[str]:
    return ["--ssh-config", str(cluster.ssh_config_path)]


def job_procs(cluster, node, job_id: str) -> list:
    """The node user's live processes that belong to the job (by the marker in their environment)."""
    out = []
    for p in cluster.processes_of(node):
        if p.stat.startswith("Z"):
            continue
        try:
            env = Path(f"/proc/{p.pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"MFCTL_JOB={job_id}".encode() in env:
            out.append(p)
    return out


def wait_status(job: Path, predicate, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = run_mfctl_process("status", "--json", cwd=job)
        assert r.exit_code == 0, r.stderr
        status = json.loads(r.stdout)
        if predicate(status) or time.monotonic() > deadline:
            return status
        time.sleep(2)


def test_check_reports_every_node(netns_cluster, tmp_path: Path) -> None:
    cluster = netns_cluster(4)
    job = make_job(tmp_path, cluster, 4, "/nonexistent/data.mindrecord")
    spec = job / "mfctl.yaml"
    spec.write_text(spec.read_text() + "ascend:\n  set_env: /opt/no such cann/set_env.sh\n")
    r = run_mfctl_process("check", "--json", *ssh_args(cluster), cwd=job)
    assert r.exit_code == 1  # the dataset is missing everywhere: each node says so
    report = json.loads(r.stdout)
    assert [n["host"] for n in report["nodes"]] == [node.name for node in cluster.nodes[:4]]
    for node in report["nodes"]:
        facts = node["facts"]
        assert facts["python"].startswith("3.") and facts["msrun"].endswith("msrun")
        assert facts["dataset"] == "missing"
        assert any("dataset /nonexistent/data.mindrecord not found" in p for p in node["problems"])
        assert facts["set_env_missing"] == "/opt/no such cann/set_env.sh"
        assert "ascend.set_env /opt/no such cann/set_env.sh is not there (or not readable); install " \
               "CANN there or fix ascend.set_env in mfctl.yaml" in node["problems"]
    assert report["nodes"][0]["facts"]["port"] == "free"
    assert "failed the checks" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.train
@pytest.mark.skipif(mindspore_missing() is not None, reason=str(mindspore_missing()))
def test_two_nodes_train_to_completion(netns_cluster, tmp_path: Path) -> None:
    cluster = netns_cluster(2)
    dataset = small_dataset(tmp_path)
    job = make_job(tmp_path, cluster, 2, str(dataset), name="two")
    plan = json.loads(run_mfctl_process("plan", "--json", *ssh_args(cluster), cwd=job).stdout)
    assert plan["master_addr"] == cluster.nodes[0].address  # the alias's HostName, not the alias
    r = run_mfctl_process("launch", "--sync-dataset", "--json", *ssh_args(cluster), cwd=job)
    assert r.exit_code == 0, r.stderr
    job_id = json.loads(r.stdout)["id"]
    status = wait_status(job, lambda s: s["job"]["state"] != "running", timeout=600)
    assert status["job"]["state"] == "finished", status
    for rank in status["ranks"]:
        assert rank["step"] == rank["total_steps"] and rank["step"] >= 30
    for k, node in enumerate(cluster.nodes[:2]):
        ckpt_dir = Path(node.home) / "mfctl-jobs" / "two" / "output" / "checkpoint" / f"rank_{k}"
        assert list(ckpt_dir.glob("*.ckpt")), f"no checkpoint on {node.name} for rank {k}"
        assert job_procs(cluster, node, job_id) == []
    logs = run_mfctl_process("logs", "--rank", "1", "--lines", "3", cwd=job)
    assert logs.exit_code == 0 and len(logs.stdout.splitlines()) == 3


@pytest.mark.train
@pytest.mark.skipif(mindspore_missing() is not None, reason=str(mindspore_missing()))
def test_follow_and_stop_mid_run(netns_cluster, tmp_path: Path) -> None:
    """Also: the workers run in the CANN environment the spec names (ascend.set_env), with the job's
    HCCL settings over it and its devices visible."""
    cluster = netns_cluster(2)
    job = make_job(tmp_path, cluster, 2, str(small_dataset(tmp_path, 1.0)), name="stopme")
    spec = job / "mfctl.yaml"
    spec.write_text(spec.read_text() + CANN_SPEC)
    for node in cluster.nodes[:2]:
        put_cann_stand_in(cluster, node)
    r = run_mfctl_process("launch", "--sync-dataset", "--json", *ssh_args(cluster), cwd=job)
    assert r.exit_code == 0, r.stderr
    job_id = json.loads(r.stdout)["id"]
    wait_status(job, lambda s: all((x.get("step") or 0) >= 2 for x in s["ranks"]) and len(s["ranks"]) == 2,
                timeout=300)
    for node in cluster.nodes[:2]:
        workers = [env for env in (environ(p.pid) for p in job_procs(cluster, node, job_id))
                   if env.get("MS_ROLE") == "MS_WORKER"]
        assert workers, f"no worker on {node.name}"
        cann = f"{node.home}/cann env/latest"
        for env in workers:
            assert env["CANN_STAND_IN_SOURCED"] == "1" and env["ASCEND_TOOLKIT_HOME"] == cann
            # MindSpore puts its own plugin dir in front when it starts.
            assert f"{cann}/lib64:{cann}/lib64/plugin/opskernel" in env["LD_LIBRARY_PATH"]
            assert (env["HCCL_CONNECT_TIMEOUT"], env["HCCL_EXEC_TIMEOUT"], env["HCCL_SOCKET_IFNAME"]) == (
                "1200", "1800", "eth0")
            assert env["ASCEND_RT_VISIBLE_DEVICES"] == "1"
    # logs --follow streams rank 1's log from node 2 as it grows.
    follow = subprocess.Popen([PY, "-m", "mfctl", "logs", "--rank", "1", "--follow", "--lines", "0"],
                              cwd=job, stdout=subprocess.PIPE, text=True)
    got = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len([x for x in got if "step:[" in x]) < 3:
        got.append(follow.stdout.readline())
    follow.terminate()
    follow.wait(10)
    assert len([x for x in got if "step:[" in x]) >= 3
    for node in cluster.nodes[:2]:
        assert job_procs(cluster, node, job_id), f"nothing running on {node.name}"
    stop = run_mfctl_process("stop", cwd=job)
    assert stop.exit_code == 0, stop.stderr
    for node in cluster.nodes[:2]:
        assert f"{node.name}: no process left" in stop.stdout
        assert job_procs(cluster, node, job_id) == []
    assert run_mfctl_process("stop", cwd=job).exit_code == 0  # safe twice
    jobs = json.loads(run_mfctl_process("jobs", "--json").stdout)
    assert jobs[0]["state"] == "stopped"


def test_unreachable_node_refuses_before_anything_starts(netns_cluster, tmp_path: Path) -> None:
    cluster = netns_cluster(2)
    job = make_job(tmp_path, cluster, 2, "/tmp")
    cluster.kill_sshd(cluster.nodes[1])
    r = run_mfctl_process("launch", *ssh_args(cluster), cwd=job)
    assert r.exit_code == 1
    assert f"{cluster.nodes[1].name}: unreachable" in r.stderr and "nothing was started" in r.stderr
    assert not (Path(cluster.nodes[0].home) / "mfctl-jobs" / "it").exists()
    assert json.loads(run_mfctl_process("jobs", "--json").stdout) == []


def test_unknown_host_key_is_refused_unless_accepted(netns_cluster, tmp_path: Path) -> None:
    cluster = netns_cluster(1)
    node = cluster.nodes[0]
    known = tmp_path / "known_hosts"
    known.write_text("")
    config = tmp_path / "ssh_config"
    config.write_text(f"Host {node.name}\n  HostName {node.address}\n  User {node.user}\n"
                      f"  IdentityFile {cluster.key_path}\n  UserKnownHostsFile {known}\n")
    job = make_job(tmp_path, cluster, 1, "/tmp")
    r = run_mfctl_process("check", "--ssh-config", config, cwd=job)
    assert r.exit_code == 1
    assert "host key" in r.stdout + r.stderr and "--accept-new-hosts" in r.stdout + r.stderr
    assert known.read_text() == ""
    r = run_mfctl_process("check", "--ssh-config", config, "--accept-new-hosts", cwd=job)
    assert r.exit_code == 0, r.stdout + r.stderr
    assert node.address in known.read_text() or known.read_text().startswith("|1|")


def test_node_that_fails_to_start_rolls_back_the_others(netns_cluster, tmp_path: Path) -> None:
    cluster = netns_cluster(2)
    job = make_job(tmp_path, cluster, 2, "/tmp", name="rollback")
    bad = cluster.nodes[1]
    # Node 2 cannot write its launch log: its launch dies at once, after node 1 started.
    cluster.exec_in(bad, ["mkdir", "-p", "mfctl-jobs/rollback/run/launch.out"], as_user=True, check=True)
    r = run_mfctl_process("launch", *ssh_args(cluster), cwd=job)
    assert r.exit_code == 1
    print(r.stderr)
    assert f"launch failed on {bad.name}" in r.stderr and "every node was stopped again" in r.stderr
    record = json.loads(run_mfctl_process("jobs", "--json").stdout)[0]
    assert record["state"] == "failed" and bad.name in record["exit_cause"]
    for node in cluster.nodes[:2]:
        assert job_procs(cluster, node, record["id"]) == []
