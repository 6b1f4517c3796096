"""A launched Ascend job's MFU needs no --chip: launch records the chip its nodes' preflight found
(``NodeCheck.npu["chips"]``, what ``check --json`` shows), and ``status`` / ``watch`` of the job
compute MFU against that chip's peak."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from mfctl.jobs.nodeops import NodeCheck

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples" / "mindformers-1.9.0-cpu-msrun-dp2"


def npu_node(host: str, rank: int, name: str, count: int = 8, hbm_mb: int = 65536) -> NodeCheck:
    """A node whose preflight read ``count`` chips named ``name`` from npu-smi (check --json's shape)."""
    chips = [{"id": i, "name": name, "health": "OK", "hbm_used_mb": 3300, "hbm_total_mb": hbm_mb,
              "processes": []} for i in range(count)]
    return NodeCheck(host, rank, npu={"chips": chips, "links": [], "versions": {}})


def test_the_chip_a_launch_records_is_the_one_every_node_has() -> None:
    from mfctl.jobs.launch import npu_chip

    assert npu_chip([npu_node("n1", 0, "910B3"), npu_node("n2", 1, "910B3")]) == "910B3"
    # npu-smi names an A3 die "Ascend910": told from the first generation's 32 GB by its HBM.
    assert npu_chip([npu_node("n1", 0, "Ascend910", 16)]) == "A3 (910_93)"
    assert npu_chip([npu_node("n1", 0, "910B2"), npu_node("n2", 1, "910B3")]) is None  # mixed
    assert npu_chip([NodeCheck("cpu1", 0), NodeCheck("cpu2", 1)]) is None  # no NPU facts: a CPU job
    assert npu_chip([npu_node("n1", 0, "H100")]) is None  # a chip whose peak is not known


def launched_job(tmp: Path, checks: list[NodeCheck]) -> str:
    """A job launched on this machine after ``checks``, as launch records it; its ranks' logs are
    the real 2-rank run's, with an NPU's TFLOPS (156.5 T on rank 0, 125.2 T on rank 1)."""
    from mfctl.jobs.create import create_job
    from mfctl.jobs.launch import load, npu_chip, record_launch
    from mfctl.records.store import JobStore
    from mfctl.remote.connect import SshOptions

    (tmp / "hosts.txt").write_text("localhost slots=2\n")
    create_job(tmp / "j", model="llama2-7b", model_config=None, nodes=tmp / "hosts.txt", devices_per_node=2,
               dataset="/d", fit_check=False)
    job, plan = load(tmp / "j", None, SshOptions(), None, None)
    store = JobStore()
    record = record_launch(store, job, plan, "j-20261207-081500-ab12", SshOptions(), None, chip=npu_chip(checks))
    store.update(record.id, state="finished", exit_cause="all ranks finished (32 steps)")
    store.close()
    logs = tmp / "j" / plan.nodes[0].log_dir
    logs.mkdir(parents=True)
    for rank, tflops in ((0, "156.500"), (1, "125.200")):
        text = (SAMPLES / f"worker_{rank}.log").read_text(encoding="utf-8")
        (logs / f"worker_{rank}.log").write_text(
            re.sub(r"train_throughput_per_npu: [0-9.]+T", f"train_throughput_per_npu: {tflops}T", text),
            encoding="utf-8")
    shutil.copy(SAMPLES / "scheduler.log", logs / "scheduler.log")
    return record.id


@pytest.mark.parametrize("command", [("status", "--json"), ("watch", "--once", "--json")])
def test_a_launched_npu_jobs_mfu_comes_from_its_preflight(mfctl, tmp_path: Path, command: tuple[str, ...]) -> None:
    job = launched_job(tmp_path, [npu_node("n1", 0, "Ascend910B3", 2)])
    from mfctl.records.store import JobStore

    record = JobStore().get(job)
    assert record is not None and record.spec["npu_chip"] == "910B3"
    r = mfctl(command[0], job, *command[1:])
    assert r.exit_code == 0, r.stderr
    snap = json.loads(r.stdout)  # status adds the job and its nodes to the snapshot's keys
    assert snap["cluster"]["chip"] == "910B3" and snap["cluster"]["peak_tflops"] == 313.0
    assert {row["rank"]: row["mfu"] for row in snap["ranks"]} == {0: pytest.approx(0.5), 1: pytest.approx(0.4)}


def test_a_job_launched_without_npu_facts_has_no_chip(mfctl, tmp_path: Path) -> None:
    job = launched_job(tmp_path, [NodeCheck("localhost", 0)])
    from mfctl.records.store import JobStore

    record = JobStore().get(job)
    assert record is not None and "npu_chip" not in record.spec
    snap = json.loads(mfctl("status", job, "--json").stdout)
    assert snap["cluster"]["chip"] is None and all(row["mfu"] is None for row in snap["ranks"])
