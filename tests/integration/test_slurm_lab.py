"""Smoke tests of the real Slurm lab (tests/lab/slurm_cluster.py) that the Slurm backend builds on.

They check what the backend will rely on: a 2-node batch job runs one task in each node's namespace
(node 0 on node1's address), squeue / scontrol output parses, a job behind a busy cluster is
PENDING with Slurm's reason, scancel ends it, a non-root user's tasks run as that user and write
to the shared filesystem, and ``down`` leaves nothing behind.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from tests.lab import NetnsCluster
from tests.lab.slurm_cluster import SlurmCluster, parse_scontrol_line

pytestmark = [pytest.mark.cluster, pytest.mark.slurm, pytest.mark.timeout(180)]

FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED")

# Each task writes its node id, Slurm node name, user and IPv4 addresses (as `ip addr` shows them).
TASK = r"""ip -o -4 addr show | awk '{print $4}' > "$OUT/task.$SLURM_NODEID"
printf '%s %s\n' "$SLURMD_NODENAME" "$(id -un)" >> "$OUT/task.$SLURM_NODEID"
"""


def _job_dir(lab: SlurmCluster) -> Path:
    d = lab.shared_dir / f"t-{uuid.uuid4().hex[:8]}"
    d.mkdir(mode=0o777)
    d.chmod(0o777)  # tasks may run as another user
    (d / "task.sh").write_text(TASK)
    (d / "job.sh").write_text(f'#!/bin/bash\nexport OUT={d}\nsrun --kill-on-bad-exit=1 bash {d}/task.sh\n')
    for f in ("task.sh", "job.sh"):
        (d / f).chmod(0o755)
    return d


def _tasks(d: Path) -> dict[int, tuple[set[str], str, str]]:
    """node id -> (addresses without loopback, Slurm node name, user)."""
    out = {}
    for f in d.glob("task.*"):
        if f.suffix == ".sh":
            continue
        lines = f.read_text().split("\n")
        addrs = {a.split("/")[0] for a in lines if "/" in a and not a.startswith("127.")}
        name, user = lines[-2].split()
        out[int(f.suffix[1:])] = (addrs, name, user)
    return out


def test_two_node_job_runs_node0_in_node1s_namespace_and_node1_in_node2s(slurm_cluster) -> None:
    lab = slurm_cluster()
    d = _job_dir(lab)
    job = lab.sbatch(["-N", "2", "--ntasks-per-node=1", "-J", "smoke", "-o", f"{d}/%j.out", str(d / "job.sh")])
    assert job.isdigit()
    info = lab.wait_job(job, FINAL, timeout=60)
    assert info["JobState"] == "COMPLETED", (info, (d / f"{job}.out").read_text())
    assert info["ExitCode"] == "0:0"
    node1, node2 = lab.nodes
    assert _tasks(d) == {0: ({node1.address}, node1.name, "root"), 1: ({node2.address}, node2.name, "root")}

    # The formats the backend parses: one squeue row per job, one scontrol line per job.
    rows = {r.job_id: r for r in lab.squeue()}
    assert rows[job].state == "COMPLETED" and rows[job].reason == "None"
    assert rows[job].nodes == "node[1-2]"  # Slurm's compressed host list
    assert info["NodeList"] == rows[job].nodes and info["BatchHost"] == node1.name
    assert info["JobName"] == "smoke" and info["Partition"] == lab.partition and info["NumNodes"] == "2"
    assert info["StdOut"] == f"{d}/{job}.out"  # %j expanded by scontrol, unlike squeue --json on 22.05
    # Node names do not resolve here: a task's peer address is the node's NodeAddr.
    hostnames = lab.run(["scontrol", "show", "hostnames", info["NodeList"]]).stdout.split()
    assert hostnames == [node1.name, node2.name]
    for node in lab.nodes:
        fields = parse_scontrol_line(lab.run(["scontrol", "-o", "show", "node", node.name]).stdout.strip())
        assert fields["NodeAddr"] == node.address and fields["State"] == "IDLE"


def test_job_behind_busy_nodes_is_pending_with_a_reason_and_scancel_ends_it(slurm_cluster) -> None:
    lab = slurm_cluster()
    busy = lab.busy()
    assert {r.job_id: r.state for r in lab.squeue()}[busy] == "RUNNING"
    job = lab.sbatch(["-N", "2", "--ntasks-per-node=1", "-o", "/dev/null", "--wrap", "true"])
    # Slurm sets the reason on its next scheduling pass (about 2 s here); until then it says None.
    deadline = time.monotonic() + 30
    while (row := {r.job_id: r for r in lab.squeue()}[job]).reason == "None" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert row.state == "PENDING" and row.reason in ("Resources", "Priority") and row.nodes == ""
    info = lab.job(job)
    assert info["JobState"] == "PENDING" and info["Reason"] == row.reason

    lab.run(["scancel", job])
    info = lab.wait_job(job, FINAL, timeout=10)
    assert info["JobState"] == "CANCELLED" and info["NodeList"] in ("", "(null)")  # it never ran
    lab.run(["scancel", busy])
    assert lab.wait_job(busy, FINAL, timeout=10)["JobState"] == "CANCELLED"
    lab.wait_idle(timeout=20)  # both nodes free again


def test_a_users_tasks_run_as_that_user_and_write_to_the_shared_dir(slurm_cluster) -> None:
    lab = slurm_cluster()
    user = lab.netns.nodes[0].user  # any account that exists on every node (one /etc/passwd here)
    d = _job_dir(lab)
    job = lab.sbatch(["-N", "2", "--ntasks-per-node=1", "-o", f"{d}/%j.out", str(d / "job.sh")], user=user)
    info = lab.wait_job(job, FINAL, timeout=60)
    assert info["JobState"] == "COMPLETED" and info["UserId"].startswith(f"{user}(")
    assert {k: v[2] for k, v in _tasks(d).items()} == {0: user, 1: user}
    assert (d / "task.0").stat().st_uid == (d / "task.1").stat().st_uid != 0


def test_a_parallel_sessions_lab_has_its_own_controller_port_and_nodes(slurm_cluster) -> None:
    lab = slurm_cluster()
    other_nodes = NetnsCluster.claim()  # what a second pytest session does
    other = SlurmCluster(other_nodes)
    try:
        other_nodes.up(1)
        other.up(1)
        assert other.ctld_port != lab.ctld_port and other.lab_dir != lab.lab_dir
        assert other.node_states() == {"node1": "idle"}
        assert lab.node_states() == {"node1": "idle", "node2": "idle"}
        # Same node name, different cluster: each lab's srun lands in its own namespace.
        mine = lab.run(["srun", "-N", "1", "-w", "node1", "hostname", "-I"]).stdout.split()
        theirs = other.run(["srun", "-N", "1", "-w", "node1", "hostname", "-I"]).stdout.split()
        assert mine == [lab.nodes[0].address] and theirs == [other_nodes.nodes[0].address]
    finally:
        other.down()
        other_nodes.down()


def test_down_removes_a_crashed_runs_daemons_jobs_and_files(slurm_cluster) -> None:
    lab = slurm_cluster()
    d = _job_dir(lab)
    # A task that ignores SIGTERM and leaves a detached child, as msrun's workers do (setsid).
    (d / "task.sh").write_text('trap "" TERM; setsid sleep 600 & echo $! > "$OUT/child.$SLURM_NODEID"; sleep 600\n')
    job = lab.sbatch(["-N", "2", "--ntasks-per-node=1", "-o", "/dev/null", str(d / "job.sh")])
    lab.wait_job(job, ("RUNNING",))
    deadline = time.monotonic() + 10
    while len(list(d.glob("child.*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    children = [int(f.read_text()) for f in d.glob("child.*")]
    assert len(children) == 2

    # What a new process knows after a crash: the prefix (hence the lab dir and the config path).
    fresh = SlurmCluster(lab.netns)
    daemons = fresh._daemon_pids("slurmctld") + fresh._daemon_pids("slurmd")
    assert len(daemons) == 3
    fresh.down()
    try:
        alive = [p for p in daemons + children if os.path.exists(f"/proc/{p}") and _state(p) not in ("Z", "X")]
        assert alive == []
        assert not lab.lab_dir.exists()
        fresh.down()  # idempotent
    finally:
        lab.up(2)  # the session's lab, for the tests after this one


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "X"
    return stat[stat.rfind(")") + 2]
