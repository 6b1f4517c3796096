"""The real 2-worker msrun run, read through load_log_dir: values exactly as the logs say."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from mfctl.metrics.logdir import load_log_dir, rank_of_path
from mfctl.metrics.state import ClusterState

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples" / "mindformers-1.9.0-cpu-msrun-dp2"


def last_line_with(path: Path, needle: str) -> str:
    return next(l for l in reversed(path.read_text(encoding="utf-8").split("\n")) if needle in l)


def expected(path: Path) -> dict:
    """What the last step and progress lines of a worker log say, read independently of mfctl."""
    step = last_line_with(path, "step:[")
    prog = last_line_with(path, "samples/s/p")
    return {
        "step": int(re.search(r"step:\[\s*(\d+)/", step).group(1)),
        "total_steps": int(re.search(r"step:\[\s*\d+/\s*(\d+)\]", step).group(1)),
        "loss": float(step.split("loss:[")[1].split("/")[0]),
        "loss_mean": float(step.split("loss:[")[1].split("/")[1].split("]")[0]),
        "step_time_ms": int(step.split("per_step_time: ")[1].split("ms")[0]),
        "samples_per_s": float(prog.split(" samples/s/p")[0].rsplit(" ", 1)[1]),
    }


@pytest.fixture(scope="module")
def snapshot():
    state = ClusterState(world_size=2, seq_length=64, clock=lambda: 0.0)
    read = load_log_dir(SAMPLES, state, node="vm")
    assert sorted(Path(p).name for p in read) == ["scheduler.log", "worker_0.log", "worker_1.log"]
    return state.snapshot(1.0)


@pytest.mark.parametrize("rank", [0, 1])
def test_each_rank_as_its_log_says(snapshot, rank):
    row = snapshot["ranks"][rank]
    want = expected(SAMPLES / f"worker_{rank}.log")
    assert {k: row[k] for k in want} == want
    assert row["state"] == "finished" and row["node"] == "vm"


def test_values_read_by_eye():
    # The last step of each worker, as printed:
    #   worker_0: loss:[6.641791/6.772396], per_step_time: 83ms ... 47.87513 samples/s/p
    #   worker_1: loss:[6.731889/6.786571], per_step_time: 85ms ... 46.81822 samples/s/p
    state = ClusterState(world_size=2, seq_length=64, clock=lambda: 0.0)
    load_log_dir(SAMPLES, state)
    r0, r1 = state.ranks[0], state.ranks[1]
    assert (r0.step, r0.total_steps, r0.loss, r0.step_time_ms, r0.samples_per_s) == (32, 32, 6.641791, 83, 47.87513)
    assert (r1.step, r1.total_steps, r1.loss, r1.step_time_ms, r1.samples_per_s) == (32, 32, 6.731889, 85, 46.81822)
    assert (r0.lr, r0.global_norm, r0.loss_scale, r0.overflow, r0.tflops) == (1.2901718e-05, 0.59495854, 1024.0,
                                                                              False, 0.002)
    assert (r0.percent, r0.eta_s, r0.ckpt_step, r0.pid) == (100.0, 0, 32, 23277)
    assert state.global_batch_size == 8
    assert r0.tokens_per_s == 47.87513 * 64
    assert len(state.history(0)) == 32 and state.history(0)[0] == (1, 6.910518, 0.41491)


def test_cluster_view(snapshot):
    c = snapshot["cluster"]
    assert (c["world_size"], c["step"], c["total_steps"], c["state"]) == (2, 32, 32, "finished")
    assert c["finished_ranks"] == [0, 1] and c["failed_ranks"] == [] and c["stragglers"] == []
    assert c["samples_per_s"] == 47.87513 + 46.81822
    assert c["loss"] == (6.641791 + 6.731889) / 2
    assert snapshot["alerts"] == []  # a clean run: no alert at all


@pytest.mark.parametrize("path,rank", [
    ("msrun_log/worker_0.log", 0), ("worker_17.log", 17), ("a/b/output/log/rank_3/info.log", 3),
    ("msrun_log/scheduler.log", None), ("output/log/rank_3/error.log", None), ("worker_x.log", None),
    ("info.log", None), ("worker_1.log.bak", None),
])
def test_rank_of_path(path, rank):
    assert rank_of_path(path) == rank


def to_file_format(line: str) -> str:
    """A stdout-format MindFormers line in the rank_N/info.log format."""
    m = re.match(r"(\S+ \S+) - \S+?\[(\S+)\] - (\w+) - (.*)", line)
    if m is None:
        return line
    return f"[{m.group(3)}] {m.group(1)} [{m.group(2)}] print_output_info: {m.group(4)}"


def test_info_logs_when_there_is_no_worker_log(tmp_path):
    lines = (SAMPLES / "worker_1.log").read_text(encoding="utf-8").split("\n")
    info = tmp_path / "output" / "log" / "rank_1" / "info.log"
    info.parent.mkdir(parents=True)
    info.write_text("\n".join(to_file_format(l) for l in lines), encoding="utf-8")
    assert "] print_output_info: { Epoch:[" in info.read_text(encoding="utf-8")
    (tmp_path / "msrun_log").mkdir()
    shutil.copy(SAMPLES / "worker_0.log", tmp_path / "msrun_log" / "worker_0.log")
    # rank 0's info.log must be ignored: its worker log is there
    other = tmp_path / "output" / "log" / "rank_0" / "info.log"
    other.parent.mkdir(parents=True)
    other.write_text(to_file_format(lines[-1]) + "\nTraceback (most recent call last):\nValueError: x\n",
                     encoding="utf-8")
    state = ClusterState(clock=lambda: 0.0)
    read = load_log_dir(tmp_path, state)
    assert sorted(read.values()) == [0, 1]
    want = expected(SAMPLES / "worker_1.log")
    r1 = state.ranks[1]
    assert (r1.step, r1.total_steps, r1.loss, r1.step_time_ms, r1.samples_per_s) == \
        (want["step"], want["total_steps"], want["loss"], want["step_time_ms"], want["samples_per_s"])
    assert state.ranks[0].state == "finished" and state.ranks[1].state == "finished"


def test_a_crashed_run(tmp_path):
    """A worker killed by the OOM killer: msrun's lines in its own log mark the rank failed."""
    (tmp_path / "msrun_log").mkdir()
    w0 = (SAMPLES / "worker_0.log").read_text(encoding="utf-8").split("\n")
    cut = next(i for i, l in enumerate(w0) if "step:[   12/" in l)
    (tmp_path / "msrun_log" / "worker_0.log").write_text("\n".join(w0[:cut + 2]), encoding="utf-8")
    (tmp_path / "msrun.log").write_text(
        "[ERROR] ME(23270:1,MainProcess):2026-11-28-06:14:52.000.000 [mindspore/parallel/cluster/process_entity/"
        "_api.py:364] Worker process 23277 exit with exception. Error code: -9.\n", encoding="utf-8")
    state = ClusterState(clock=lambda: 0.0)
    load_log_dir(tmp_path, state)
    assert state.ranks[0].state == "running"  # msrun.log is not a name load_log_dir reads...
    from mfctl.metrics.logdir import feed_file
    feed_file(tmp_path / "msrun.log", state, None)  # ...the caller feeds msrun's own log as rank None
    assert state.ranks[0].state == "failed" and "SIGKILL" in state.ranks[0].reason
    assert state.ranks[0].step == 12


def test_the_scheduler_log_is_not_a_device():
    # `watch --logs` on this 2-worker run said "1 nodes x 3 devices = 2 ranks".
    from mfctl.metrics.logdir import ranks_of_files

    state = ClusterState(clock=lambda: 0.0)
    files = load_log_dir(SAMPLES, state)
    assert len(files) == 3 and ranks_of_files(files) == [0, 1]
