"""``judge``: one look at the nodes and the metrics -> the job's state and why, rule by rule."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mfctl.cluster.health import (
    RULES,
    JobState,
    Memory,
    NodeStatus,
    ProcInfo,
    Verdict,
    judge,
    parse_procs,
)

NOW = 1000.0


def proc(pid: int, role: str = "-", rank: int | None = None, pgid: int | None = None) -> ProcInfo:
    return ProcInfo(pid, pid if pgid is None else pgid, "S", 5, role, rank, "python train.py")


def node(host: str = "n0", ranks: tuple[int, ...] = (0, 1), workers: tuple[int, ...] | None = None,
         alive: bool = True, exit_code: int | None = None, **kw) -> NodeStatus:
    """A node; ``workers``: ranks whose worker runs (default: all of them while alive)."""
    if workers is None:
        workers = ranks if alive else ()
    procs = [proc(100, "-")] + [proc(200 + r, "MS_WORKER", r) for r in workers] if alive else []
    return NodeStatus(host, int(host[1:]) if host[1:].isdigit() else 0, procs=procs,
                      exit_code=exit_code, ranks=ranks, **kw)


def down(host: str = "n1", ranks: tuple[int, ...] = (2, 3)) -> NodeStatus:
    return NodeStatus(host, 1, reachable=False, error="unreachable: connection refused", ranks=ranks)


def snap(*states: str, reasons: dict[int, str] | None = None, ages: dict[int, float] | None = None,
         nodes: dict[int, str] | None = None) -> dict:
    return {"ranks": [{"rank": i, "state": s, "step": 7, "reason": (reasons or {}).get(i),
                       "node": (nodes or {}).get(i, "n0"), "last_update_age_s": (ages or {}).get(i)}
                      for i, s in enumerate(states)],
            "cluster": {}, "alerts": []}


SUP = Memory()  # the supervisor's defaults: 15 s unreachable, 1.5 s confirm
SEEN = replace(SUP, workers_seen=frozenset({0, 1}))

# (name, nodes, snapshot, memory, now) -> (state, rule, words in the cause, host, rank, exit code)
CASES = [
    ("healthy", [node()], snap("running", "running"), SUP,
     JobState.RUNNING, "still_running", None, None, None, None),
    ("look failed on a reachable node", [NodeStatus("n0", 0, error="OperationFailed: ps broke")], None, SUP,
     JobState.FAILED, "look_failed", "n0: OperationFailed: ps broke", "n0", None, None),
    ("unreachable, not for long", [node(), down()], snap("running", "running"),
     replace(SUP, unreachable_since={"n1": NOW - 5}),
     JobState.RUNNING, "still_running", None, None, None, None),
    ("unreachable past threshold", [node(), down()], snap("running", "running"),
     replace(SUP, unreachable_since={"n1": NOW - 16}),
     JobState.FAILED, "unreachable", "n1 unreachable for 16 s", "n1", None, None),
    ("unreachable at launch: at once", [node(), down()], None, Memory.launch(),
     JobState.FAILED, "unreachable", "n1 unreachable: unreachable: connection refused", "n1", None, None),
    ("failed rank", [node()], snap("running", "failed", reasons={1: "exit code 1: RuntimeError"}), SUP,
     JobState.FAILED, "rank_failed", "rank 1: exit code 1: RuntimeError", "n0", 1, None),
    ("stalled rank, any age", [node()], snap("stalled", "running", ages={0: 3.0}), SUP,
     JobState.FAILED, "rank_stalled", "rank 0 stalled: no step for 3 s after step 7", "n0", 0, None),
    ("stalled rank, not long enough", [node()], snap("stalled", "running", ages={0: 30.0}),
     replace(SUP, stall_after_s=60),
     JobState.RUNNING, "still_running", None, None, None, None),
    ("stalled rank past stall_after_s", [node()], snap("stalled", "running", ages={0: 61.0}),
     replace(SUP, stall_after_s=60),
     JobState.FAILED, "rank_stalled", "no step for 61 s", "n0", 0, None),
    ("msrun exit code while others run", [node(), node("n1", (2, 3), alive=False, exit_code=1)], None, SUP,
     JobState.FAILED, "msrun_exit", "n1: msrun exited with code 1", "n1", None, 1),
    ("a node's own reason for its exit", [node(), replace(node("n1", (2, 3), alive=False, exit_code=3),
                                                          failure="preflight failed: dataset missing")], None, SUP,
     JobState.FAILED, "msrun_exit", "n1: preflight failed: dataset missing (exit code 3)", "n1", None, 3),
    ("launch script gone without exit code", [node(), node("n1", (2, 3), alive=False)], None, SUP,
     JobState.FAILED, "launch_gone", "n1: the launch script is not running and left no exit code",
     "n1", None, None),
    ("worker gone before its rank finished, just now", [node(workers=(0,))], snap("running", "running"),
     SEEN, JobState.RUNNING, "still_running", None, None, None, None),
    ("worker gone before its rank finished, after confirm", [node(workers=(0,))], snap("running", "running"),
     replace(SEEN, gone_since={1: NOW - 2}),
     JobState.FAILED, "worker_gone", "rank 1's worker on n0 exited before training ended", "n0", 1, None),
    ("worker gone, no metrics: at once", [node(workers=(0,))], None, SEEN,
     JobState.FAILED, "worker_gone", "rank 1's worker", "n0", 1, None),
    ("worker gone after its rank finished", [node(workers=(0,))], snap("running", "finished"),
     replace(SEEN, gone_since={1: NOW - 9}),
     JobState.RUNNING, "still_running", None, None, None, None),
    ("worker never seen is not gone", [node(workers=(0,))], None, SUP,
     JobState.RUNNING, "still_running", None, None, None, None),
    ("all finished", [node(alive=False, exit_code=0)], snap("finished", "finished"), SUP,
     JobState.FINISHED, "all_finished", "training over", None, None, None),
    ("all finished, launch script stopped after", [node(alive=False)], snap("finished", "finished"), SUP,
     JobState.FINISHED, "all_finished", "training over", None, None, None),
    ("msrun exited 0 everywhere, no logs read", [node(alive=False, exit_code=0)], None, SUP,
     JobState.FINISHED, "msrun_ok", "msrun exited 0", None, None, None),
    ("status: msrun exit codes", [node(alive=False, exit_code=0), node("n1", (2, 3), alive=False, exit_code=137)],
     snap("finished", "finished", "running", "running"), Memory.one_look(),
     JobState.FAILED, "msrun_exit", "n1: msrun exited with code 137", "n1", None, 137),
    ("status: no process left", [node(alive=False)], snap("running", "running"), Memory.one_look(),
     JobState.FAILED, "no_process", "no process left", None, None, None),
    ("status: a failed rank while processes run is not judged", [node()], snap("failed", "running"),
     Memory.one_look(), JobState.RUNNING, "still_running", None, None, None, None),
    ("status: an unreachable node leaves it open", [node(alive=False, exit_code=0), down()],
     snap("finished", "finished"), Memory.one_look(),
     JobState.RUNNING, "still_running", None, None, None, None),
    ("launch: running", [node()], None, Memory.launch(),
     JobState.RUNNING, "still_running", None, None, None, None),
    ("launch: done already, cleanly", [node(alive=False, exit_code=0)], None, Memory.launch(),
     JobState.FINISHED, "msrun_ok", "msrun exited 0", None, None, None),
    ("launch: not running and no exit code", [node(alive=False)], None, Memory.launch(),
     JobState.FAILED, "launch_gone", "left no exit code", "n0", None, None),
    ("launch: msrun exited 2", [node(alive=False, exit_code=2)], None, Memory.launch(),
     JobState.FAILED, "msrun_exit", "n0: msrun exited with code 2", "n0", None, 2),
]


@pytest.mark.parametrize(("name", "nodes", "snapshot", "memory", "state", "rule", "cause", "host", "rank",
                          "code"), CASES, ids=[c[0] for c in CASES])
def test_judge_rules(name, nodes, snapshot, memory, state, rule, cause, host, rank, code) -> None:
    v = judge(nodes, snapshot, memory, NOW)
    assert (v.state, v.rule) == (state, rule), v
    if cause is None:
        assert v.cause is None
    else:
        assert cause in v.cause
    assert (v.host, v.rank, v.exit_code) == (host, rank, code)


def test_every_rule_has_a_case() -> None:
    assert {c[5] for c in CASES} == set(RULES)


def test_memory_carries_over_looks() -> None:
    """The supervisor's loop: a worker seen, then gone, is a failure once confirm_s has passed."""
    v = judge([node()], snap("running", "running"), Memory(), NOW)
    assert v.memory.workers_seen == {0, 1}
    v = judge([node(workers=(0,))], snap("running", "running"), v.memory, NOW + 1)
    assert v.state == JobState.RUNNING and v.memory.gone_since == {1: NOW + 1}
    v = judge([node(workers=(0,))], snap("running", "running"), v.memory, NOW + 2)
    assert v.state == JobState.RUNNING
    v = judge([node(workers=(0,))], snap("running", "running"), v.memory, NOW + 2.6)
    assert v.rule == "worker_gone" and v.rank == 1


def test_unreachable_clock_starts_at_first_miss_and_resets() -> None:
    v = judge([node(), down()], None, Memory(unreachable_after_s=10), NOW)
    assert v.state == JobState.RUNNING and v.unseen == ("n1",)
    assert v.memory.unreachable_since == {"n1": NOW}
    back = judge([node(), node("n1", (2, 3))], None, v.memory, NOW + 5)
    assert back.memory.unreachable_since == {} and back.unseen == ()
    v = judge([node(), down()], None, back.memory, NOW + 9)
    v = judge([node(), down()], None, v.memory, NOW + 19)
    assert v.rule == "unreachable" and "for 10 s" in v.cause


def test_state_strings_are_the_database_strings() -> None:
    assert [s.value for s in JobState] == ["launching", "running", "finished", "failed", "stopped"]
    assert JobState.FAILED == "failed" and f"{JobState.RUNNING}" == "running"
    assert isinstance(Verdict(JobState.RUNNING).memory, Memory)


@pytest.mark.parametrize(("line", "expected"), [
    ("proc 4242 4242 Sl 17 MS_WORKER 3 python -u bundle/node/train.py --config x",
     (4242, 4242, "Sl", 17, "MS_WORKER", 3, "python -u bundle/node/train.py --config x")),
    ("proc 4100 4100 S 20 - - sh bundle/launch.sh", (4100, 4100, "S", 20, "-", None, "sh bundle/launch.sh")),
    ("proc 4101 4100 S 20 MS_SCHED -", (4101, 4100, "S", 20, "MS_SCHED", None, "")),
    ("proc x 1 S 2 - - junk", None),
    ("exit_code 0", None),
    ("proc 1 2 S", None),
])
def test_parse_procs(line: str, expected) -> None:
    got = parse_procs(f"started_at 17\n{line}\nlog worker_0.log 12\n")
    if expected is None:
        assert got == []
    else:
        p = got[0]
        assert (p.pid, p.pgid, p.stat, p.etimes, p.role, p.rank, p.args) == expected


def test_workers_are_group_leaders_only() -> None:
    """A worker's own children (same RANK_ID, another pid than its group) are not the worker."""
    st = NodeStatus("n0", 0, procs=[proc(10, "MS_WORKER", 0), proc(11, "MS_WORKER", 0, pgid=10),
                                     proc(12, "MS_WORKER", 1, pgid=10)], ranks=(0, 1))
    assert st.workers() == {0}


def test_status_leaves_a_failed_look_open() -> None:
    """``mfctl status`` stops nothing: a look that failed is a node not seen, not a failed job."""
    v = judge([NodeStatus("n0", 0, error="OperationFailed: ps broke", ranks=(0, 1))], None, Memory.one_look(), NOW)
    assert v.state == JobState.RUNNING and v.unseen == ("n0",)
