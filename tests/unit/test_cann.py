"""CANN / HCCL failures named by their code, over real log excerpts (tests/data/ascend: each file's
first line names its source).

What a user checks: the alert's kind, its code, and a hint that says what to look at; the job's
cause names the failure that started it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mfctl.metrics.cann import CANN_KINDS, CannError, cause_of, classify
from mfctl.metrics.cann_codes import ROWS
from mfctl.metrics.state import ClusterState

DATA = Path(__file__).resolve().parent.parent / "data" / "ascend"


def excerpt(name: str) -> str:
    text = (DATA / name).read_text(encoding="utf-8")
    first, _, body = text.partition("\n")
    assert first.startswith("# source: "), f"{name}: the first line must name the source"
    return body


def fed(name: str, how: str = "text") -> list[dict]:
    """The CANN alerts of rank 0 after its log is fed one way or another."""
    s = ClusterState(world_size=1, clock=lambda: 100.0)
    body = excerpt(name)
    if how == "text":
        s.feed_text(0, body)
    elif how == "lines":
        for line in body.split("\n"):
            s.feed(0, line)
    else:
        s.feed_chunk(0, body.encode("utf-8"))
    return [a for a in s.snapshot(100.0)["alerts"] if a["kind"] in CANN_KINDS]


# file, the alert it must raise (kind, code), words its hint must hold, the code the job's cause names
CASES = [
    ("mindspore_hccl_EI0002_notify_wait_timeout.log", "cann_error", "EI0002", ["stopped or hung", "collective"],
     "EI0002"),
    ("mindspore_hccp_init_fail_EJ0001.log", "cann_error", "EJ0001", ["device network", "hccn_tool"], "EJ0001"),
    ("mindspore_EE9999_task_execute_failed.log", "cann_error", "EE9999", ["runtime failed a task"], "EE9999"),
    ("mindspore_EE9999_halMemAlloc_device_oom.log", "device_oom", "EE9999",
     ["device memory is full", "another process holds the chip", "layout does not fit"], "EE9999"),
    ("mindspore_device_memory_less_than_half.log", "device_oom", "EE9999", ["npu-smi info"], "EE9999"),
    ("mindspore_faq_out_of_memory.log", "device_oom", None, ["device memory is full"], None),
    ("mindspore_2.1_out_of_memory_request_size.log", "device_oom", None, ["layout does not fit"], None),
    ("issue_ptoas_341_EL0004_memory_allocation.log", "device_oom", "EL0004", ["device memory is full"], "EL0004"),
    ("mindspore_EE1001_invalid_device_id.log", "cann_error", "EE1001",
     ["invalid", "ASCEND_RT_VISIBLE_DEVICES"], "EE1001"),
    ("mindspore_EI0006_socket_build_timeout.log", "cann_error", "EI0006",
     ["peer never connected", "another rank may have failed first", "HCCL_CONNECT_TIMEOUT"], "EI0006"),
    ("issue_llamafactory_5071_EI0006_910B3.log", "cann_error", "EI0006", ["HCCL_CONNECT_TIMEOUT"], "EI0006"),
    ("issue_vllm-ascend_486_EI0006_rank_prefix.log", "cann_error", "EI0006", ["link or IP"], "EI0006"),
    ("issue_vllm-ascend_9447_EI0006_named_code_A3.log", "cann_error", "EI0006", ["HCCL_CONNECT_TIMEOUT"], "EI0006"),
    ("issue_vllm-ascend_5461_EI0006_get_socket_timeout.log", "cann_error", "EI0006", ["peer"], "EI0006"),
    ("issue_vllm-ascend_1955_hccl_socket_establish_timeout.log", "cann_error", "EI0006", ["peer"], "EI0006"),
    ("mindspore_EI0004_invalid_ranktable.log", "cann_error", "EI0004", ["rank table"], "EI0004"),
    ("mindspore_EI0005_inconsistent_collective_args.log", "cann_error", "EI0005", ["different"], "EI0005"),
    ("issue_ascend-pytorch_54_EI9999_hccl_task_timeout.log", "cann_error", "EI9999", ["stuck rank"], "EI9999"),
    ("issue_ascend-pytorch_48_EE1002_stream_sync_timeout.log", "cann_error", "EE1002", ["HCCL_EXEC_TIMEOUT"],
     "EE1002"),
    ("mindspore_EZ9999_aicore_op_failed.log", "cann_error", "EZ9999", ["operator"], "EZ9999"),
    ("mindspore_E39999_aicpu_op_failed.log", "cann_error", "E39999", ["AICPU"], "E39999"),
    ("mindspore_EK0001_profiling_path.log", "cann_error", "EK0001", ["profiler"], "EK0001"),
]


@pytest.mark.parametrize(("name", "kind", "code", "words", "cause_code"), CASES, ids=[c[0] for c in CASES])
def test_each_failure_is_named_by_its_code_with_a_hint(name, kind, code, words, cause_code) -> None:
    alerts = fed(name)
    hit = [a for a in alerts if a["kind"] == kind and a["code"] == code]
    assert hit, f"{name}: no {kind} {code} alert in {[(a['kind'], a['code']) for a in alerts]}"
    a = hit[0]
    assert a["rank"] == 0 and a["ranks"] == [0]
    for w in words:
        assert w in a["hint"], f"{name}: hint lacks {w!r}: {a['hint']}"
    # The message says what happened in a line: the code and its summary first, then the log's words.
    assert a["message"].startswith(f"rank 0: {a['summary']}")
    if code is not None:
        assert a["summary"].startswith(code)
    cause = cause_of(alerts)  # what `mfctl jobs` says when this failure ends the job
    assert cause is not None and cause.startswith("rank 0: " + (cause_code or "device out of memory"))
    json.dumps(alerts)  # the snapshot stays JSON


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_the_per_line_the_batch_and_the_chunk_paths_name_the_same_failures(name) -> None:
    def key(alerts):
        return sorted((a["kind"], a["code"] or "", a["message"]) for a in alerts)

    assert key(fed(name, "lines")) == key(fed(name, "text")) == key(fed(name, "chunk"))


def test_device_oom_is_its_own_kind_and_the_cause_over_the_generic_inner_error() -> None:
    alerts = fed("mindspore_EE9999_halMemAlloc_device_oom.log")
    kinds = {(a["kind"], a["code"]) for a in alerts}
    # "EE9999: Inner Error!" alone is the generic runtime error; its halMemAlloc lines say why.
    assert kinds == {("cann_error", "EE9999"), ("device_oom", "EE9999")}
    cause = cause_of(alerts)
    assert cause is not None and cause.startswith("rank 0: EE9999 device out of memory")


def test_a_peer_timeout_on_many_ranks_is_not_the_cause_when_one_rank_failed_first() -> None:
    s = ClusterState(world_size=4, clock=lambda: 50.0)
    oom = excerpt("mindspore_EE9999_halMemAlloc_device_oom.log")
    timeout = excerpt("mindspore_EI0006_socket_build_timeout.log")
    for rank in (0, 1, 3):
        s.feed_text(rank, timeout)
    s.feed_text(2, oom)
    alerts = s.snapshot(50.0)["alerts"]
    ei = [a for a in alerts if a.get("code") == "EI0006"]
    assert len(ei) == 1 and ei[0]["ranks"] == [0, 1, 3]  # one event on three ranks, not three alerts
    cause = cause_of(alerts)
    assert cause is not None and cause.startswith("rank 2: EE9999 device out of memory")


@pytest.mark.parametrize(("line", "code", "kind"), [
    # CANN 8's "Name(CODE):" form, torch's "[rankN]: " prefix, MindSpore's inline block, the runtime's plog
    ("[PID: 749] 2025-12-29-03:16:15.787.356 Get_Socket_Timeout(EI0006): Getting socket times out.", "EI0006",
     "cann_error"),
    ("[rank1]: EI0006: [PID: 1292363] 2025-04-08-18:07:20.444.436 Getting socket times out.", "EI0006", "cann_error"),
    ("[ERROR] RUNTIME(160186,python):2023-01-10-09:25:45.324.711 [stream.cc:1044]163618 GetError:report error "
     "module_type=7, module_name=EE9999", "EE9999", "cann_error"),
    ("        [driver interface] halMemAlloc failed: device_id=6, size=32212254720, type=2, env_type=3, "
     "drvRetCode=6![FUNC:ReportError][FILE:npu_driver.cc][LINE:568]", "EE9999", "device_oom"),
    ("EE9999: Inner Error!", "EE9999", "cann_error"),
    ("TVMError: [EB0000] Check failed: need_nbits <= info->max_num_bits", "EB0000", "cann_error"),
    ("EH0001: some future error", "EH0001", "cann_error"),
])
def test_codes_are_found_where_cann_puts_them(line, code, kind) -> None:
    err = classify(line)
    assert isinstance(err, CannError) and err.code == code and err.kind == kind
    assert err.hint


@pytest.mark.parametrize("line", [
    "2026-11-28 06:14:50,171 - mindformers/output/log[mindformers/core/callback/callback.py:747] - INFO - "
    "{ Epoch:[  1/  1], step:[    2/   10], loss: 10.437, per_step_time: 710ms, lr: 0.0001, overflow cond: "
    "False, loss_scale: 1.0, global_norm: [0.77], train_throughput_per_npu: 25.92T",
    "[WARNING] ME(23277:1403,MainProcess):2026-11-28 [api.py:10] something about E12345 ids",
    "  checkpoint_name_or_path: LLAMA_E123456",
    "model_config: {'hidden_size': 4096, 'ENCODE12345': 1}",
    "Traceback (most recent call last):",
    "RuntimeError: Run task error!",
])
def test_ordinary_lines_name_nothing(line) -> None:
    assert classify(line) is None


def test_the_table_is_whole() -> None:
    # Every row says what to check; every alert kind is one the job's cause knows.
    for row in ROWS:
        assert row["kind"] in CANN_KINDS
        assert len(row["hint"]) > 40 and row["summary"]
    codes = {row["code"] for row in ROWS}
    assert {"EI0006", "EI0002", "EJ0001", "EE9999", "EE1001"} <= codes


def test_the_jobs_cause_names_the_cann_failure_that_started_it() -> None:
    # What `mfctl jobs` shows for a job that died: msrun exited 1 on both nodes; the logs say rank 2
    # ran out of device memory and the others then timed out building their links.
    from mfctl.cluster.health import JobState, Memory, NodeStatus, judge

    s = ClusterState(world_size=4, clock=lambda: 50.0)
    for rank in (0, 1, 3):
        s.feed_text(rank, excerpt("mindspore_EI0006_socket_build_timeout.log"), "n0" if rank < 2 else "n1")
    s.feed_text(2, excerpt("mindspore_EE9999_halMemAlloc_device_oom.log"), "n1")
    nodes = [NodeStatus("n0", 0, exit_code=1, ranks=(0, 1)), NodeStatus("n1", 1, exit_code=1, ranks=(2, 3))]
    snapshot = s.snapshot(50.0)
    v = judge(nodes, snapshot, Memory(), 60.0)
    assert v.state == JobState.FAILED
    assert v.cause is not None and v.cause.startswith("rank 2: EE9999 device out of memory (the device memory is full")
    # What the rules saw stays, after it; without a CANN failure in the logs the cause is theirs alone.
    plain = judge(nodes, {**snapshot, "alerts": []}, Memory(), 60.0)
    assert plain.cause and "EE9999" not in plain.cause and v.cause.endswith("; " + plain.cause)


def test_an_exception_that_says_the_device_is_full_is_a_device_oom_alert() -> None:
    # The traceback's last line of the real halMemAlloc excerpt, alone (its EE9999 block dropped).
    lines = excerpt("mindspore_EE9999_halMemAlloc_device_oom.log").split("\n")
    start = lines.index("Traceback (most recent call last):")
    s = ClusterState(world_size=1, clock=lambda: 5.0)
    s.feed_text(0, "\n".join(lines[start:]))
    snap = s.snapshot(5.0)
    assert snap["ranks"][0]["state"] == "failed"
    reason = snap["ranks"][0]["reason"]
    assert reason.startswith("RuntimeError: ") and "Malloc device memory failed" in reason
    [a] = snap["alerts"]
    assert (a["kind"], a["code"]) == ("device_oom", "EE9999") and "another process holds the chip" in a["hint"]
