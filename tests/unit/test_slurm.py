"""The pure Slurm layer: what Slurm's tools print (22.05 formats seen on the lab), the sbatch line,
the partition check, and the plan of a Slurm job."""

from __future__ import annotations

import pytest

from mfctl.cluster.hostfile import HostEntry
from mfctl.cluster.layout import Layout
from mfctl.cluster.plan import build_plan
from mfctl.cluster.slurm import (
    Partition,
    job_from_scontrol,
    job_from_squeue,
    node_addr,
    node_label,
    parse_scontrol,
    partition_problem,
    sbatch_argv,
    unknown_job,
)
from mfctl.errors import BadInput
from mfctl.jobspec.schema import JobSpec, SlurmSpec, parse_spec

SHOW_JOB = ("JobId=12 JobName=j1 UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=1 JobState=FAILED "
            "Reason=NonZeroExitCode Dependency=(null) Requeue=0 Restarts=0 BatchFlag=1 ExitCode=143:0 "
            "RunTime=00:00:31 AllocNode:Sid=vm:4242 Partition=lab NodeList=node[1-2] BatchHost=node1 "
            "NumNodes=2 Socks/Node=* StdOut=/shared/j1/slurm/j1-12.out Power=")
SHOW_NODE = ("NodeName=node1 Arch=x86_64 CoresPerSocket=1 NodeAddr=10.77.10.2 NodeHostName=node1 "
             "OS=Linux 6.18.0 #1 SMP PREEMPT_DYNAMIC RealMemory=2000 State=IDLE Power=")


def test_scontrol_values_may_hold_spaces_and_keys_odd_characters() -> None:
    d = parse_scontrol(SHOW_NODE)
    assert d["OS"] == "Linux 6.18.0 #1 SMP PREEMPT_DYNAMIC"
    assert d["NodeAddr"] == "10.77.10.2" and d["Power"] == ""
    assert parse_scontrol(SHOW_JOB)["AllocNode:Sid"] == "vm:4242"
    assert node_addr(SHOW_NODE) == "10.77.10.2"


def test_job_from_scontrol() -> None:
    job = job_from_scontrol(SHOW_JOB)
    assert (job.job_id, job.state, job.reason, job.nodelist, job.exit_code, job.signal, job.batch_host) == \
        ("12", "FAILED", "NonZeroExitCode", "node[1-2]", 143, 0, "node1")
    assert not job.active
    assert job.describe() == "failed on node[1-2], exit code 143 (NonZeroExitCode)"


@pytest.mark.parametrize("row, state, active, phrase", [
    ("3|PENDING|Resources|", "PENDING", True, "pending (Resources)"),
    ("4|PENDING|None|", "PENDING", True, "pending (not scheduled yet)"),  # the first ~2.5 s
    ("2|RUNNING|None|node[1-2]", "RUNNING", True, "running on node[1-2]"),
    ("7|COMPLETING|None|node[1-2]", "COMPLETING", True, "completing on node[1-2]"),
    ("1|COMPLETED|None|node[1-2]", "COMPLETED", False, "completed on node[1-2]"),
    ("6|NODE_FAIL|NodeDown|node[1-2]", "NODE_FAIL", False, "node fail on node[1-2] (NodeDown)"),
    ("1|CANCELLED|PartitionNodeLimit|", "CANCELLED", False, "cancelled (PartitionNodeLimit)"),
])
def test_squeue_rows(row: str, state: str, active: bool, phrase: str) -> None:
    job = job_from_squeue(row)
    assert job is not None
    assert (job.state, job.active, job.describe()) == (state, active, phrase)


def test_squeue_noise_and_forgotten_jobs() -> None:
    assert job_from_squeue("") is None and job_from_squeue("garbage") is None
    assert unknown_job("slurm_load_jobs error: Invalid job id specified")


@pytest.mark.parametrize("part, nodes, problem", [
    (Partition("lab", 2, "UP", None), 2, None),
    (Partition("lab", 2, "UP", None), 3, "node_count 3 is more than partition lab has (2 nodes)"),
    (Partition("lab", 8, "UP", 4), 5, "node_count 5 is more than partition lab has (4 nodes)"),
    (Partition("lab", 2, "DOWN", None), 1, "partition lab is DOWN, not UP"),
])
def test_partition_problem(part: Partition, nodes: int, problem: str | None) -> None:
    assert partition_problem(part, nodes) == problem


def test_sbatch_line() -> None:
    slurm = SlurmSpec(partition="ascend", node_count=4, gres="npu:8", time="2-00:00:00",
                      sbatch_args=["--exclusive"])
    assert sbatch_argv(slurm, "j", "/s/j-%j.out", "/s/j.sh") == [
        "sbatch", "--parsable", "--job-name=j", "--partition=ascend", "--nodes=4", "--ntasks-per-node=1",
        "--no-requeue", "--output=/s/j-%j.out", "--gres=npu:8", "--time=2-00:00:00", "--exclusive", "/s/j.sh"]


@pytest.mark.parametrize("extra, message", [
    ("scheduler: slurm\n", "mfctl.yaml:4: scheduler 'slurm' needs a 'slurm:' section"),
    ("slurm:\n  partition: lab\n  node_count: 2\n", "mfctl.yaml:4: scheduler is 'hosts' but a 'slurm:' section"),
    ("scheduler: slurm\nslurm:\n  partition: lab\n  node_count: 2\n  sbatch_args: [--nodes=3]\n",
     "mfctl.yaml:8: slurm.sbatch_args sbatch argument '--nodes=3': mfctl sets this itself"),
    ("scheduler: slurm\nslurm:\n  partition: a b\n  node_count: 2\n",
     "mfctl.yaml:6: slurm.partition must be one word"),
])
def test_spec_errors_name_the_line(extra: str, message: str) -> None:
    with pytest.raises(BadInput) as err:
        parse_spec("name: j\nmodel: tiny-llama\ndataset: /d\n" + extra, "mfctl.yaml")
    assert str(err.value).startswith(message), str(err.value)


def test_plan_of_a_slurm_job() -> None:
    spec = JobSpec(name="j", model="tiny-llama", dataset="/shared/d", devices_per_node=2, scheduler="slurm",
                   slurm=SlurmSpec(partition="lab", node_count=2))
    entries = [HostEntry(node_label(i)) for i in range(2)]
    plan = build_plan(spec, entries, Layout(4, 1, 1, 1), "/shared/j")
    assert not plan.local and plan.master_addr == "$MASTER_ADDR"
    assert [n.job_dir for n in plan.nodes] == ["/shared/j/nodes/node0", "/shared/j/nodes/node1"]
    assert [n.ranks for n in plan.nodes] == [(0, 1), (2, 3)]
    # The node's shell expands MASTER_ADDR (the batch script exports node 0's NodeAddr).
    assert '--master_addr "$MASTER_ADDR"' in plan.nodes[1].command
    assert "--node_rank 1" in plan.nodes[1].command
