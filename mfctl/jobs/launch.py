"""``mfctl launch``: render, check every node, push the bundle, start msrun everywhere, verify.

All or nothing: nothing starts unless every node passed its checks and received its bundle, and
if any node fails to start, the nodes that did start are stopped again before this returns.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mfctl.cluster.plan import LaunchPlan
from mfctl.errors import BadInput, OperationFailed
from mfctl.jobdir import Job, load_job, make_plan, render_job
from mfctl.jobs.ids import new_job_id
from mfctl.jobs.ops import (
    NodeCheck, bundle_files, close_all, describe_error, node_status, on_all, open_all, preflight,
    push_bundle, start_command, stop_all,
)
from mfctl.jobs.store import JobRecord, JobStore
from mfctl.remote.connect import SshOptions
from mfctl.remote.resolve import make_resolver


@dataclass
class LaunchResult:
    record: JobRecord | None
    plan: LaunchPlan
    checks: list[NodeCheck]
    dry_run: bool = False


class Progress:
    """What launch reports as it goes; the CLI draws bars, tests ignore it."""

    def stage(self, text: str) -> None: ...
    def start_push(self, total_files: int) -> None: ...
    def advance_push(self) -> None: ...


def redacted_spec(job: Job) -> dict:
    data = job.spec.model_dump(by_alias=True)
    data["env"] = {k: "***" for k in data.get("env", {})}
    return data


SYNCED_DATASET_DIR = "data"


def dataset_files(path: Path) -> list[Path]:
    """The local files of a MindRecord dataset: a file and its .db index, or a directory's files."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file())
    return [p for p in (path, path.with_name(path.name + ".db")) if p.is_file()]


def prepare(directory: Path, nodes: str | None, opts: SshOptions, master_addr: str | None,
            resume: str | None, sync_dataset: bool = False) -> tuple[Job, LaunchPlan]:
    job = load_job(directory, nodes)
    if sync_dataset:
        local = Path(job.spec.dataset)
        if not local.is_absolute():
            local = job.dir / local
        if not dataset_files(local):
            raise BadInput(f"{local}: --sync-dataset copies the dataset from this machine, but it is "
                           "not here; prepare it with 'mfctl data prepare' or give its local path")
        # Each node gets its own copy inside the job dir, readable by that node's user.
        synced = f"{SYNCED_DATASET_DIR}/{local.name}"
        job.spec = job.spec.model_copy(update={"dataset": synced})
        job.synced_dataset = local
    resolver = make_resolver(Path(opts.ssh_config) if opts.ssh_config else None, job.entries)
    plan = make_plan(job, master_addr, resolve=resolver, resume=resume)
    return job, plan


def launch(
    directory: Path,
    nodes: str | None = None,
    opts: SshOptions = SshOptions(),
    master_addr: str | None = None,
    dry_run: bool = False,
    sync_dataset: bool = False,
    resume_from: JobRecord | None = None,
    progress: Progress = Progress(),
    store: JobStore | None = None,
    start_timeout: float = 20.0,
) -> LaunchResult:
    resume = common_checkpoint(resume_from) if resume_from is not None else None
    job, plan = prepare(directory, nodes, opts, master_addr, resume, sync_dataset)
    job_id = new_job_id(job.spec.name)
    if dry_run:
        return LaunchResult(None, plan, [], dry_run=True)

    progress.stage(f"connecting to {len(plan.nodes)} node(s)")
    transports = open_all(job.entries, str(job.dir), opts)
    try:
        progress.stage("checking nodes")
        checks = preflight(plan, job.spec, transports, opts.fanout, check_dataset=not sync_dataset)
        bad = [c for c in checks if not c.ok]
        if bad:
            first = bad[0]
            more = f" (and {len(bad) - 1} more node(s))" if len(bad) > 1 else ""
            raise LaunchRefused(f"{first.host}: {first.problems[0]}{more}; nothing was started", checks)

        rendered = job.dir / "rendered"
        render_job(job, plan, job_id, rendered, resume=resume is not None)
        per_node = {n.host: bundle_files(rendered, n.node_rank) for n in plan.nodes}
        if sync_dataset:
            data = {f"../{SYNCED_DATASET_DIR}/{f.name}": (f.read_bytes(), 0o600)
                    for f in dataset_files(job.synced_dataset)}
            for files in per_node.values():
                files.update(data)
        progress.stage("pushing the job bundle")
        progress.start_push(sum(len(f) for f in per_node.values()))
        pushed = on_all(transports, lambda t: push_bundle(
            t, plan_node(plan, t.host).job_dir, per_node[t.host], progress.advance_push), opts.fanout)
        failed = {h: r for h, r in pushed.items() if isinstance(r, Exception)}
        if failed:
            host, exc = next(iter(failed.items()))
            raise LaunchRefused(f"{host}: push failed: {describe_error(exc)}; nothing was started", checks)

        store = store or JobStore()
        record = JobRecord(
            id=job_id, name=job.spec.name, job_dir=str(job.dir),
            transport="local" if plan.local else "ssh", spec=redacted_spec(job), plan=plan.to_json(),
            hosts=[{"host": e.host, "user": e.user, "port": e.port, "slots": e.slots, "line": e.line}
                   for e in job.entries],
            ssh=opts.to_json(), state="launching", created_at=time.time(),
            resumed_from=resume_from.id if resume_from else None,
            restarts=(resume_from.restarts + 1) if resume_from else 0,
        )
        record.plan["layout_note"] = plan.layout_note
        store.add(record)

        progress.stage(f"starting msrun on {len(plan.nodes)} node(s)")
        def start(t):
            node = plan_node(plan, t.host)
            return t.run(start_command(node.job_dir, node.log_dir, job_id), timeout=60)

        started = on_all(transports, start, opts.fanout)
        problems = {h: describe_error(r) if isinstance(r, Exception) else (r.stderr.strip() or "did not start")
                    for h, r in started.items()
                    if isinstance(r, Exception) or not r.ok or "started" not in r.stdout}
        if not problems:
            problems = _verify_started(plan, transports, job_id, start_timeout, opts.fanout)
        if problems:
            progress.stage("a node failed to start: stopping the others")
            left = stop_all(transports, job_id, grace=5, fanout=opts.fanout,
                            job_dirs={n.host: n.job_dir for n in plan.nodes})
            cause = "; ".join(f"{h}: {p}" for h, p in problems.items())
            store.set_state(job_id, "failed", f"start failed: {cause}")
            not_clean = [h for h, n in left.items() if isinstance(n, Exception) or n]
            extra = f"; could not verify the stop on {', '.join(not_clean)}" if not_clean else \
                "; every node was stopped again"
            raise OperationFailed(f"launch failed on {cause}{extra} (job {job_id})")
        store.update(job_id, state="running", started_at=time.time())
        store.event(job_id, "state", "running")
        record.state = "running"
        return LaunchResult(record, plan, checks)
    finally:
        close_all(transports)


_CKPT = re.compile(r"^(?P<prefix>.+)_rank_(?P<rank>\d+)-(?P<epoch>\d+)_(?P<step>\d+)\.ckpt$")


def common_checkpoint(record: JobRecord) -> str:
    """The newest checkpoint every rank of ``record`` saved, named as rank 0's file.

    Chosen here, from all nodes, so that every rank resumes from the same step (MindFormers'
    own choice synchronises the ranks with a barrier, which the CPU backend lacks).
    """
    from mfctl.jobs.status import transports_of

    out = record.spec.get("output_dir", "output")
    dirs = {n["host"]: posixpath.join(n["job_dir"], out, "checkpoint") for n in record.plan["nodes"]}
    transports = transports_of(record)
    try:
        listed = on_all(transports, lambda t: t.run(
            f"cd {shlex.quote(dirs[t.host])} 2>/dev/null && ls rank_*/ 2>/dev/null", timeout=30))
    finally:
        close_all(transports)
    steps: dict[int, set[tuple[int, int, str]]] = {}
    for host, res in listed.items():
        if isinstance(res, Exception):
            raise OperationFailed(f"{host}: cannot list the checkpoints of {record.id}: {describe_error(res)}")
        for name in res.stdout.split():
            m = _CKPT.match(name)
            if m:
                steps.setdefault(int(m["rank"]), set()).add(
                    (int(m["epoch"]), int(m["step"]), f"{m['prefix']}_rank_0-{m['epoch']}_{m['step']}.ckpt"))
    world = record.plan["world_size"]
    missing = [r for r in range(world) if r not in steps]
    if missing:
        raise OperationFailed(f"job {record.id} has no checkpoint for rank(s) "
                              f"{', '.join(map(str, missing[:8]))}; it cannot be resumed")
    common = set.intersection(*(steps[r] for r in range(world)))
    if not common:
        raise OperationFailed(f"job {record.id}: its ranks saved no checkpoint at the same step; "
                              "it cannot be resumed")
    return max(common)[2]


class LaunchRefused(OperationFailed):
    def __init__(self, message: str, checks: list[NodeCheck]) -> None:
        super().__init__(message)
        self.checks = checks


def plan_node(plan: LaunchPlan, host: str):
    return next(n for n in plan.nodes if n.host == host)


def _verify_started(plan: LaunchPlan, transports, job_id: str, timeout: float,
                    fanout: int) -> dict[str, str]:
    """Every node's launch is alive (or already finished cleanly) a moment after the start."""
    time.sleep(min(2.0, timeout))
    nodes = {n.host: n.to_json() for n in plan.nodes}
    statuses = on_all(transports, lambda t: node_status(t, job_id, nodes[t.host]), fanout)
    problems = {}
    for host, st in statuses.items():
        if isinstance(st, Exception):
            problems[host] = describe_error(st)
        elif not st.alive and st.exit_code not in (0, None):
            problems[host] = f"msrun exited with code {st.exit_code} (see run/launch.out on the node)"
        elif not st.alive and st.exit_code is None:
            problems[host] = "the launch script is not running and left no exit code"
    return problems
