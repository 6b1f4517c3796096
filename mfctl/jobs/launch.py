"""``mfctl launch``: one straight pass, each step once.

    load the job (spec, hosts, plan) -> render -> connect -> preflight -> push -> start -> verify
    -> record

All or nothing: nothing starts unless every node passed its checks and received its bundle, and
if any node fails to start, the nodes that did start are stopped again before this returns. The
nodes are reached through a ``Backend``; nothing here asks which one it is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from mfctl.cluster.health import JobState, Memory, judge
from mfctl.cluster.plan import LaunchPlan
from mfctl.errors import BadInput, OperationFailed
from mfctl.jobs.backend import Backend, Files
from mfctl.jobs.backends import backend_for_job, backend_for_record
from mfctl.jobs.checkpoints import common_checkpoint
from mfctl.jobs.fit import gate_after_preflight, launch_gate
from mfctl.jobs.jobdir import RENDERED_DIR, Job, load_job, make_plan, read_text, render_job
from mfctl.jobs.nodeops import NodeCheck, describe_error, preflight_context
from mfctl.metrics.mfu import chip_from_preflight
from mfctl.records.ids import new_job_id
from mfctl.records.record import JobRecord, hosts_of
from mfctl.records.store import JobStore
from mfctl.remote.connect import SshOptions
from mfctl.remote.resolve import make_resolver
from mfctl.render import config_device_target, render_model_config

SYNCED_DATASET_DIR = "data"


@dataclass
class LaunchResult:
    record: JobRecord | None
    plan: LaunchPlan
    checks: list[NodeCheck]
    dry_run: bool = False
    #: What a dry run would submit (Slurm: the batch script and the sbatch line), if anything.
    preview: str | None = None
    #: The memory fit check's outcome, as the job record keeps it ("fits: ...", "skipped ...").
    fit_check: str = ""

    @property
    def launched(self) -> JobRecord:
        """The launched job's record (a dry run launches none)."""
        if self.record is None:
            raise OperationFailed("a dry run launches no job")
        return self.record


class Progress:
    """What launch reports as it goes; the CLI draws bars, tests ignore it."""

    def stage(self, text: str) -> None: ...
    def start_push(self, total_files: int) -> None: ...
    def advance_push(self) -> None: ...


class LaunchRefused(OperationFailed):
    def __init__(self, message: str, checks: list[NodeCheck]) -> None:
        super().__init__(message)
        self.checks = checks


def redacted_spec(job: Job) -> dict:
    data = job.spec.model_dump(by_alias=True)
    data["env"] = {k: "***" for k in data.get("env", {})}
    return data


def dataset_files(path: Path) -> list[Path]:
    """The local files of a MindRecord dataset: a file and its .db index, or a directory's files."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file())
    return [p for p in (path, path.with_name(path.name + ".db")) if p.is_file()]


# --------------------------------------------------------------------------- the steps

def load(directory: Path, nodes: str | None, opts: SshOptions, master_addr: str | None,
         resume: str | None, sync_dataset: bool = False) -> tuple[Job, LaunchPlan]:
    """The job (spec, hosts, layout) and its plan, each read and checked once."""
    job = load_job(directory, nodes)
    if sync_dataset:
        local = Path(job.spec.dataset)
        if not local.is_absolute():
            local = job.dir / local
        if not dataset_files(local):
            raise BadInput(f"{local}: --sync-dataset copies the dataset from this machine, but it is "
                           "not here; prepare it with 'mfctl data prepare' or give its local path")
        # Each node gets its own copy inside the job dir, readable by that node's user.
        job.spec = job.spec.model_copy(update={"dataset": f"{SYNCED_DATASET_DIR}/{local.name}"})
        job.synced_dataset = local
    if job.spec.slurm is not None:
        # Slurm names the nodes at run time: nothing to resolve (and no ssh needed here).
        return job, make_plan(job, master_addr, resume=resume)
    resolver = make_resolver(Path(opts.ssh_config) if opts.ssh_config else None, job.entries)
    return job, make_plan(job, master_addr, resolve=resolver, resume=resume)


def render(job: Job, plan: LaunchPlan, job_id: str, resume: bool) -> tuple[Path, Files]:
    """The MindFormers config and every node's launch script into ``<job>/rendered``; the extra
    files every node gets (the synced dataset)."""
    rendered = job.dir / RENDERED_DIR
    render_job(job, plan, job_id, rendered, resume=resume)
    extra: Files = {}
    if job.synced_dataset is not None:
        extra = {f"../{SYNCED_DATASET_DIR}/{f.name}": (f.read_bytes(), 0o600)
                 for f in dataset_files(job.synced_dataset)}
    return rendered, extra


def targets_ascend(job: Job, plan: LaunchPlan, rendered: Path | None = None) -> bool:
    """The job's rendered MindFormers config (``rendered/config.yaml``, or rendered here in memory)
    says ``device_target: Ascend``: the preflight's NPU rows apply."""
    if rendered is not None:
        text = (rendered / "config.yaml").read_text(encoding="utf-8")
    else:
        own = read_text(job.dir / job.spec.model_config_file, "model_config") if job.spec.model_config_file else None
        text = render_model_config(job.spec, job.preset, job.layout, plan.world_size, own, batch=job.batch)
    target = config_device_target(text)
    return isinstance(target, str) and target.strip().lower() == "ascend"


def check_nodes(backend: Backend, job: Job, ascend: bool = False) -> list[NodeCheck]:
    checks = backend.preflight(job.spec, check_dataset=job.synced_dataset is None, ascend=ascend)
    bad = [c for c in checks if not c.ok]
    if bad:
        more = f" (and {len(bad) - 1} more node(s))" if len(bad) > 1 else ""
        raise LaunchRefused(f"{bad[0].host}: {bad[0].problems[0]}{more}; nothing was started", checks)
    return checks


def push(backend: Backend, rendered: Path, extra: Files, checks: list[NodeCheck], progress: Progress) -> None:
    progress.start_push(len(backend.plan.nodes) * backend.bundle_size(rendered, extra))
    pushed = backend.push(rendered, extra, progress.advance_push)
    for host, exc in pushed.failed.items():
        raise LaunchRefused(f"{host}: push failed: {describe_error(exc)}; nothing was started", checks)


def fit_skipped_before(store: JobStore | None, record: JobRecord | None) -> bool:
    """Was ``record`` launched with --no-fit-check (its restarts are too)?"""
    if record is None:
        return False
    events = (store or JobStore()).events(record.id)
    return any(kind == "fit_check" and message.startswith("skipped") for _, kind, message in events)


def npu_chip(checks: list[NodeCheck]) -> str | None:
    """The one chip every node's preflight found (``NodeCheck.npu["chips"]``), as the MFU table
    names it; None without NPU facts, or when the chips are mixed or unknown."""
    return chip_from_preflight(chip for c in checks for chip in ((c.npu or {}).get("chips") or ()))


def record_launch(store: JobStore, job: Job, plan: LaunchPlan, job_id: str, opts: SshOptions,
                  resume_from: JobRecord | None, fit_check: str = "", chip: str | None = None) -> JobRecord:
    """``chip``: the nodes' NPU (``npu_chip``), kept as the record spec's ``npu_chip`` so that
    watch, status and report compute MFU without ``--chip`` (``mfctl.jobs.status.chip_of``)."""
    spec = redacted_spec(job)
    if chip:
        spec["npu_chip"] = chip
    record = JobRecord(
        id=job_id, name=job.spec.name, job_dir=str(job.dir),
        transport="slurm" if job.spec.slurm else "local" if plan.local else "ssh",
        spec=spec, plan=plan, hosts=hosts_of(job.entries), ssh=opts.to_json(),
        state=JobState.LAUNCHING, created_at=time.time(),
        resumed_from=resume_from.id if resume_from else None,
        restarts=(resume_from.restarts + 1) if resume_from else 0,
    )
    store.add(record)
    if fit_check:
        store.event(record.id, "fit_check", fit_check)
    return record


def verify(backend: Backend, job_id: str, timeout: float) -> dict[str, str]:
    """Every node's launch is alive (or already finished cleanly) a moment after the start."""
    time.sleep(min(2.0, timeout))
    verdict = judge(backend.statuses(job_id), None, Memory.launch(), time.monotonic())
    if verdict.state != JobState.FAILED:
        return {}
    hint = " (see run/launch.out on the node)" if verdict.rule in ("msrun_exit", "launch_gone") else ""
    return {verdict.host or "?": (verdict.cause or "failed").removeprefix(f"{verdict.host}: ") + hint}


def start(backend: Backend, store: JobStore, record: JobRecord, timeout: float, progress: Progress) -> None:
    """Start everywhere and verify; on any problem stop what started and record why."""
    problems = backend.start(record.id) or verify(backend, record.id, timeout)
    if problems:
        progress.stage("a node failed to start: stopping the others")
        left = backend.stop(record.id, grace=5)
        cause = "; ".join(f"{h}: {p}" for h, p in problems.items())
        store.set_state(record.id, JobState.FAILED, f"start failed: {cause}")
        not_clean = [h for h, n in left.items() if n != 0]
        extra = f"; could not verify the stop on {', '.join(not_clean)}" if not_clean else \
            "; every node was stopped again"
        raise OperationFailed(f"launch failed on {cause}{extra} (job {record.id})")
    store.update(record.id, state=JobState.RUNNING, started_at=time.time())
    store.event(record.id, "state", JobState.RUNNING)
    record.state = JobState.RUNNING


def submission_preview(job: Job, plan: LaunchPlan) -> str | None:
    """What a Slurm launch would submit: the sbatch line and the batch script (None: no scheduler)."""
    if job.spec.slurm is None:
        return None
    from mfctl.cluster.slurm import sbatch_command
    from mfctl.jobs.slurm_backend import batch_script, output_path, script_path
    from mfctl.records.ids import preview_job_id

    job_id = preview_job_id(job.spec.name)
    line = sbatch_command(job.spec.slurm, job.spec.name, output_path(str(job.dir), job_id),
                          script_path(str(job.dir), job_id))
    ctx = preflight_context(plan, job.spec, targets_ascend(job, plan))
    return f"# {line}\n" + batch_script(job.spec, plan, job_id, str(job.dir), ctx)


# --------------------------------------------------------------------------- the pass

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
    fit_check: bool = True,
) -> LaunchResult:
    """``fit_check``: refuse, before any node is touched, a job whose largest pipeline stage does
    not fit in device memory (a restart of a job launched without the check skips it too)."""
    resume = None
    if resume_from is not None:
        with backend_for_record(resume_from) as old:
            resume = common_checkpoint(resume_from, old)
    job, plan = load(directory, nodes, opts, master_addr, resume, sync_dataset)
    fit = launch_gate(job, fit_check and not fit_skipped_before(store, resume_from))
    if dry_run:
        return LaunchResult(None, plan, [], dry_run=True, preview=submission_preview(job, plan),
                            fit_check=fit)
    job_id = new_job_id(job.spec.name)
    rendered, extra = render(job, plan, job_id, resume is not None)
    progress.stage(f"connecting to {len(plan.nodes)} node(s)")
    with backend_for_job(plan, job.entries, str(job.dir), opts, job.spec) as backend:
        progress.stage("checking nodes")
        checks = check_nodes(backend, job, ascend=targets_ascend(job, plan, rendered))
        fit = gate_after_preflight(job, checks, fit, fit_check)
        progress.stage("pushing the job bundle")
        push(backend, rendered, extra, checks, progress)
        store = store or JobStore()
        record = record_launch(store, job, plan, job_id, opts, resume_from, fit, chip=npu_chip(checks))
        progress.stage(f"starting msrun on {len(plan.nodes)} node(s)")
        start(backend, store, record, start_timeout, progress)
    return LaunchResult(record, plan, checks, fit_check=fit)
