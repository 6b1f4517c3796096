"""Is this job ok? What the nodes and the logs say, judged by one set of rules (pure).

``status`` (one look), launch verification (a look just after the start) and the supervisor (a
look every second) all call ``judge``. What differs between them is what they remember between
looks and how patient they are, both in ``Memory``: the supervisor keeps the memory ``judge``
returns and passes it back with the next look; ``status`` and ``launch`` start from a fresh one.

The rules, first match wins (``RULES`` names them; the unit tests walk this table):

==================  ==========================================================  ========
rule                when                                                        verdict
==================  ==========================================================  ========
look_failed         a node answered, but the look itself failed          [early] failed
unreachable         a node unreachable for ``unreachable_after_s`` or longer    failed
rank_failed         a rank failed in the logs (traceback, worker exit)   [early] failed
rank_stalled        a rank stalled (past ``stall_after_s`` when set)     [early] failed
msrun_exit          msrun exited with a code other than 0 on a node      [early] failed
launch_gone         no process left on a node and no exit code written   [early] failed
worker_gone         a worker seen before is gone and its rank did not
                    finish, for ``confirm_s`` (at once without metrics)  [early] failed
still_running       some node still has a process of the job                    running
all_finished        no process left, every rank finished in the logs            finished
msrun_exit          no process left, msrun exited != 0 on a node                failed
msrun_ok            no process left, msrun exited 0 on every node               finished
no_process          no process left, nothing says training ended                failed
==================  ==========================================================  ========

Rules marked [early] judge a job whose processes still run; ``Memory.early`` is off for a single
look that stops nothing (``mfctl status``): it only records how a job ended. A node not seen in
this look (unreachable, not for long yet) is listed in ``Verdict.unseen``; while any node is
unseen no end rule applies (its processes may still run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mfctl.metrics.cann import cause_of
from mfctl.metrics.types import RankRow, RankState, Snapshot, StrEnum


class JobState(StrEnum):
    """A job record's state (the strings are the ones the job database and ``--json`` hold)."""

    LAUNCHING = "launching"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"


#: A job in these states may still have processes on its nodes.
ACTIVE_STATES = (JobState.LAUNCHING, JobState.RUNNING)


@dataclass
class ProcInfo:
    pid: int
    pgid: int
    stat: str
    etimes: int
    role: str  # msrun's MS_ROLE (MS_WORKER, MS_SCHED) or "-" (msrun itself, the launch script)
    rank: int | None  # RANK_ID of a worker
    args: str


@dataclass
class NodeStatus:
    """One node's answer to ``nodectl.sh status`` (or why there is none: ``error``).

    ``reachable=False``: the node could not be reached (the supervisor waits a while before it
    calls that a failure). ``reachable=True`` with an ``error``: the node answered but the look
    failed (a failure at once)."""

    host: str
    node_rank: int
    reachable: bool = True
    error: str | None = None
    procs: list[ProcInfo] = field(default_factory=list)
    exit_code: int | None = None
    started_at: float | None = None
    logs: dict[str, int] = field(default_factory=dict)
    lines: list[tuple[str, str]] = field(default_factory=list)  # (log file name, line)
    #: The global ranks this node runs (from the plan), for the worker rules.
    ranks: tuple[int, ...] = ()
    #: What the node's scheduler says about it (Slurm: "pending (Resources)"), shown beside it.
    note: str | None = None
    #: Why the node's launch ended, when the node says (Slurm: its preflight's reason); part of the cause.
    failure: str | None = None

    @property
    def alive(self) -> bool:
        return bool(self.procs)

    @property
    def seen(self) -> bool:
        return self.error is None

    def workers(self) -> set[int]:
        """Ranks whose worker process (the group leader msrun started) is alive."""
        return {p.rank for p in self.procs if p.role == "MS_WORKER" and p.pid == p.pgid
                and p.rank is not None}

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "node_rank": self.node_rank, "reachable": self.reachable,
                "error": self.error, "alive": self.alive, "exit_code": self.exit_code,
                "processes": [{"pid": p.pid, "pgid": p.pgid, "stat": p.stat, "elapsed_s": p.etimes,
                               "role": p.role, "rank": p.rank, "command": p.args} for p in self.procs],
                "logs": self.logs, **({"note": self.note} if self.note else {})}


def parse_procs(stdout: str) -> list[ProcInfo]:
    """The ``proc PID PGID STAT ETIMES ROLE RANK ARGS`` lines of ``nodectl.sh status``."""
    procs = []
    for line in stdout.splitlines():
        if not line.startswith("proc "):
            continue
        parts = line[5:].split(None, 6)
        if len(parts) >= 6 and parts[0].isdigit() and parts[1].isdigit() and parts[3].isdigit():
            procs.append(ProcInfo(int(parts[0]), int(parts[1]), parts[2], int(parts[3]), parts[4],
                                  int(parts[5]) if parts[5].isdigit() else None,
                                  parts[6] if len(parts) > 6 else ""))
    return procs


@dataclass(frozen=True)
class Memory:
    """What a caller remembers between looks, and how patient it is.

    ``early``: apply the rules for a job whose processes still run (off for ``mfctl status``).
    ``unreachable_after_s``: an unreachable node is a failure after this long (0: at once).
    ``confirm_s``: a worker gone before its rank logged the end is a failure after this long, so
    a worker that just finished is not mistaken for a dead one while its last lines are in flight.
    ``stall_after_s``: a stalled rank is a failure once it has been quiet this long (None: as
    soon as the metrics call it stalled)."""

    early: bool = True
    unreachable_after_s: float = 15.0
    confirm_s: float = 1.5
    stall_after_s: float | None = None
    workers_seen: frozenset[int] = frozenset()
    gone_since: Mapping[int, float] = field(default_factory=dict)
    unreachable_since: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def one_look(cls) -> Memory:
        """``mfctl status``: one look, nothing to stop; unreachable nodes leave the state as is."""
        return cls(early=False, unreachable_after_s=float("inf"))

    @classmethod
    def launch(cls) -> Memory:
        """Launch verification: every node must answer, and be running or done cleanly."""
        return cls(early=True, unreachable_after_s=0.0)


@dataclass(frozen=True)
class Verdict:
    state: JobState
    #: Why, naming the rank, node and exit code (None while running).
    cause: str | None = None
    #: The rule that decided (a name of ``RULES``).
    rule: str = "still_running"
    host: str | None = None
    rank: int | None = None
    exit_code: int | None = None
    #: Nodes not seen in this look (unreachable, not for long enough to be a failure yet).
    unseen: tuple[str, ...] = ()
    #: Pass this to the next ``judge`` call.
    memory: Memory = field(default_factory=Memory)


def exit_cause(st: NodeStatus) -> str:
    """A node whose launch ended with a code other than 0, in words."""
    if st.failure:
        return f"{st.host}: {st.failure} (exit code {st.exit_code})"
    return f"{st.host}: msrun exited with code {st.exit_code}"


RULES = ("look_failed", "unreachable", "rank_failed", "rank_stalled", "msrun_exit", "launch_gone",
         "worker_gone", "still_running", "all_finished", "msrun_ok", "no_process")


def judge(nodes: Sequence[NodeStatus], snapshot: Snapshot | None, memory: Memory,
          now: float) -> Verdict:
    """The job's state from one look at every node (``nodes``) and the metrics (``snapshot``;
    None when no logs are followed). ``now`` is the clock ``memory``'s times come from.

    A failed job whose logs name a CANN/HCCL failure by its code (``mfctl.metrics.cann``) has that
    failure first in its cause, with what to check, then what the rules saw: "rank 3: EE9999 device
    out of memory (...); rank 3: RuntimeError: ..." rather than only the exception or exit code."""
    verdict = _judge(nodes, snapshot, memory, now)
    if verdict.state == JobState.FAILED and snapshot is not None:
        named = cause_of(snapshot.get("alerts") or ())
        if named and not (verdict.cause or "").startswith(named):
            verdict = replace(verdict, cause=f"{named}; {verdict.cause}" if verdict.cause else named)
    return verdict


def _judge(nodes: Sequence[NodeStatus], snapshot: Snapshot | None, memory: Memory,
           now: float) -> Verdict:
    unreachable = dict(memory.unreachable_since)
    unseen: list[str] = []

    def verdict(state: JobState, rule: str, cause: str | None = None, **where: Any) -> Verdict:
        return Verdict(state, cause, rule, unseen=tuple(unseen), memory=mem, **where)

    for st in nodes:
        if st.seen:
            unreachable.pop(st.host, None)
    mem = replace(memory, unreachable_since=unreachable)
    for st in nodes:
        if st.seen:
            continue
        if st.reachable and memory.early:
            return verdict(JobState.FAILED, "look_failed", f"{st.host}: {st.error}", host=st.host)
        since = unreachable.setdefault(st.host, now)
        if now - since >= memory.unreachable_after_s:
            took = f" for {now - since:.0f} s" if now > since else ""
            return verdict(JobState.FAILED, "unreachable", f"{st.host} unreachable{took}: {st.error}",
                           host=st.host)
        unseen.append(st.host)
    seen = [st for st in nodes if st.seen]
    ranks: list[RankRow] = snapshot["ranks"] if snapshot is not None else []
    finished = {r["rank"] for r in ranks if r.get("state") == RankState.FINISHED}

    if memory.early:
        for r in ranks:
            if r.get("state") == RankState.FAILED:
                return verdict(JobState.FAILED, "rank_failed", f"rank {r['rank']}: {r.get('reason') or 'failed'}",
                               rank=r["rank"], host=r.get("node"))
            if r.get("state") == RankState.STALLED:
                age = r.get("last_update_age_s") or 0
                if memory.stall_after_s is None or age >= memory.stall_after_s:
                    return verdict(JobState.FAILED, "rank_stalled",
                                   f"rank {r['rank']} stalled: no step for {age:.0f} s after step {r.get('step')}",
                                   rank=r["rank"], host=r.get("node"))
        seen_workers = set(memory.workers_seen)
        gone = dict(memory.gone_since)
        failure: Verdict | None = None
        for st in seen:
            if st.exit_code not in (None, 0):
                failure = failure or verdict(JobState.FAILED, "msrun_exit",
                                             exit_cause(st),
                                             host=st.host, exit_code=st.exit_code)
                continue
            # A node whose ranks all finished may have been stopped after the end: not a failure.
            if not st.alive and st.exit_code is None and not (st.ranks and set(st.ranks) <= finished):
                failure = failure or verdict(JobState.FAILED, "launch_gone",
                                             f"{st.host}: the launch script is not running and left no exit code",
                                             host=st.host)
                continue
            alive = st.workers()
            for rank in st.ranks:
                if rank in alive:
                    seen_workers.add(rank)
                    gone.pop(rank, None)
                elif rank in seen_workers and rank not in finished:
                    since = gone.setdefault(rank, now)
                    if failure is None and (now - since >= memory.confirm_s or (st.alive and snapshot is None)):
                        failure = verdict(JobState.FAILED, "worker_gone",
                                          f"rank {rank}'s worker on {st.host} exited before training ended",
                                          rank=rank, host=st.host)
        mem = replace(mem, workers_seen=frozenset(seen_workers), gone_since=gone)
        if failure is not None:
            return replace(failure, memory=mem)

    if unseen or any(st.alive for st in seen) or not seen:
        return verdict(JobState.RUNNING, "still_running")
    if ranks and all(r.get("state") == RankState.FINISHED for r in ranks) and \
            all(st.exit_code in (0, None) for st in seen):
        return verdict(JobState.FINISHED, "all_finished", "training over")
    bad = [st for st in seen if st.exit_code not in (0, None)]
    if bad:
        return verdict(JobState.FAILED, "msrun_exit",
                       "; ".join(exit_cause(st) for st in bad),
                       host=bad[0].host, exit_code=bad[0].exit_code)
    if all(st.exit_code == 0 for st in seen):
        return verdict(JobState.FINISHED, "msrun_ok", "msrun exited 0")
    return verdict(JobState.FAILED, "no_process", "no process left")
