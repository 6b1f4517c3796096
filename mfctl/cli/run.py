"""Run commands: ``check``, ``launch``, ``supervise``, ``jobs``, ``status``, ``stop``, ``logs``."""

from __future__ import annotations

from pathlib import Path

import typer

from mfctl.cli import views
from mfctl.cli.options import (
    AcceptNewOpt,
    DirOpt,
    FanoutOpt,
    JobArg,
    MasterAddrOpt,
    NodesOpt,
    SshConfigOpt,
    TimeoutOpt,
    json_opt,
    ssh_opts,
)
from mfctl.cli.root import app
from mfctl.errors import BadInput, OperationFailed


@app.command()
def check(
    directory: Path = DirOpt,
    nodes: str | None = NodesOpt,
    ssh_config: Path | None = SshConfigOpt,
    accept_new_hosts: bool = AcceptNewOpt,
    fanout: int = FanoutOpt,
    connect_timeout: float | None = TimeoutOpt,
    network: bool = typer.Option(
        False, "--network", help="Ascend: also ping each device's peer device on the next node "
        "(hccn_tool -ping); fail listing the pairs that lost packets."),
    as_json: bool = json_opt("Print the results as JSON."),
    no_fit_check: bool = typer.Option(
        False, "--no-fit-check", help="Check the nodes even if the layout does not fit in device "
        "memory (by default that is refused before any node is contacted)."),
) -> None:
    """Preflight every node in parallel: reachable, Python and framework versions (equal on every
    node), msrun, dataset, free disk, master port, leftovers of an earlier run. When the job's
    config targets Ascend, also the NPUs (npu-smi: count, health, processes holding them, chip
    model), the device network (hccn_tool: link, net health, IP) and the driver, firmware and
    CANN versions, equal on every node.
    First, before any node is contacted: the layout must fit in device memory (see 'mfctl plan').

    Example: mfctl check --nodes hosts.txt
    """
    from mfctl.jobs.backends import backend_for_job
    from mfctl.jobs.fit import gate_after_preflight, launch_gate
    from mfctl.jobs.launch import load, targets_ascend

    opts = ssh_opts(ssh_config, accept_new_hosts, fanout, connect_timeout)
    job, launch_plan = load(directory, nodes, opts, None, None)
    fit = launch_gate(job, not no_fit_check)
    ascend = targets_ascend(job, launch_plan)
    with backend_for_job(launch_plan, job.entries, str(job.dir), opts, job.spec) as backend:
        checks = backend.preflight(job.spec, ascend=ascend, network=network)
    views.print_checks(checks, as_json)
    gate_after_preflight(job, checks, fit, not no_fit_check)  # the devices' HBM, when the config has no limit
    bad = [c for c in checks if not c.ok]
    if bad:
        raise OperationFailed(f"{len(bad)} of {len(checks)} node(s) failed the checks; first: "
                              f"{bad[0].host}: {bad[0].problems[0]}")


@app.command()
def launch(
    directory: Path = DirOpt,
    nodes: str | None = NodesOpt,
    ssh_config: Path | None = SshConfigOpt,
    accept_new_hosts: bool = AcceptNewOpt,
    fanout: int = FanoutOpt,
    connect_timeout: float | None = TimeoutOpt,
    master_addr: str | None = MasterAddrOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would run where; touch nothing."),
    sync_dataset: bool = typer.Option(
        False, "--sync-dataset", help="Copy the dataset from this machine (the spec's dataset path) "
        "into every node's job dir (data/), only where it differs."),
    resume: str | None = typer.Option(None, "--resume", metavar="JOB",
                                         help="Start JOB again from its last checkpoint."),
    supervise: bool = typer.Option(False, "--supervise",
                                   help="Stay in the foreground until the job ends; stop it on every "
                                   "node at the first failure; exit 0 only if it finished."),
    max_restarts: int = typer.Option(0, "--max-restarts", min=0,
                                     help="With --supervise: after a failure, resume from the last "
                                     "checkpoint up to N times."),
    stall_timeout: float | None = typer.Option(
        None, "--stall-timeout", min=1, help="With --supervise: a rank with no step for this long "
        "fails the job (default: from the observed step time, at least 60 s)."),
    unreachable_timeout: float = typer.Option(
        15.0, "--unreachable-timeout", min=1, help="With --supervise: a node unreachable this long "
        "fails the job."),
    as_json: bool = json_opt("Print the launched job as JSON."),
    no_fit_check: bool = typer.Option(
        False, "--no-fit-check", help="Launch even if the largest pipeline stage does not fit in "
        "device memory (see 'mfctl plan'); the job record says so."),
) -> None:
    """Check every node, push the job bundle, start msrun on each with its NODE_RANK, detached.
    A layout that does not fit in device memory is refused first, before any node is touched.

    The job keeps running after mfctl exits; follow it with 'mfctl status', 'mfctl logs',
    'mfctl watch', and end it with 'mfctl stop'. If any node fails to start, the others are
    stopped again: there is no half-started job.

    Example: mfctl launch --nodes hosts.txt
    """
    from mfctl.jobs.launch import LaunchRefused
    from mfctl.jobs.launch import launch as do_launch
    from mfctl.records.store import JobStore

    opts = ssh_opts(ssh_config, accept_new_hosts, fanout, connect_timeout)
    previous = None
    store = None
    if resume:
        store = JobStore()
        previous = store.find(resume)
    try:
        result = do_launch(directory, nodes, opts, master_addr, dry_run=dry_run, sync_dataset=sync_dataset,
                           resume_from=previous,
                           progress=views.RichProgress(as_json), store=store,
                           fit_check=not no_fit_check)
    except LaunchRefused as exc:
        if not as_json:
            views.print_checks(exc.checks, False)
        raise
    if dry_run:
        if as_json:
            views.print_json({"dry_run": True, "plan": result.plan.to_json(), "fit_check": result.fit_check,
                              **({"batch_script": result.preview} if result.preview else {})})
            return
        views.print_dry_run(result.plan)
        if result.preview:
            views.out.print("\nWould submit (nothing was submitted):", highlight=False)
            views.out.print(result.preview, markup=False, highlight=False, soft_wrap=True)
        return
    rec = result.record
    if supervise:
        from mfctl.live.session import run_supervised

        rc = run_supervised(rec, directory, nodes, opts, master_addr, sync_dataset, max_restarts,
                            stall_timeout, unreachable_timeout, as_json, say=views.say)
        raise typer.Exit(rc)
    if as_json:
        views.print_json({**rec.to_json(), "fit_check": result.fit_check})
        return
    if result.fit_check.startswith("skipped"):
        views.note(f"memory fit check {result.fit_check}")
    views.print_launched(rec, result.plan)


@app.command("supervise")
def supervise_cmd(
    job: str | None = JobArg,
    directory: Path = DirOpt,
    stall_timeout: float | None = typer.Option(None, "--stall-timeout", min=1,
                                                  help="A rank with no step for this long fails the job."),
    unreachable_timeout: float = typer.Option(15.0, "--unreachable-timeout", min=1,
                                              help="A node unreachable this long fails the job."),
    fail_fast: bool = typer.Option(True, "--fail-fast/--no-fail-fast",
                                   help="Stop the job on every node at the first failure."),
    as_json: bool = json_opt("Print the outcome as JSON."),
) -> None:
    """Attach to a running job and supervise it until it ends (exit 0 only if it finished).

    Example: mfctl supervise my-job-20261128-101500
    """
    from mfctl.cluster.health import ACTIVE_STATES, JobState
    from mfctl.live.session import supervise
    from mfctl.records.store import JobStore

    store = JobStore()
    record = store.find(job, directory)
    if record.state not in ACTIVE_STATES:
        raise BadInput(f"job {record.id} is {record.state}, not running; 'mfctl launch --resume "
                       f"{record.id}' starts it again")
    verdict = supervise(record, store, unreachable_after_s=unreachable_timeout, stall_after_s=stall_timeout,
                        fail_fast=fail_fast, say=views.say)
    views.print_verdict(record.id, verdict, as_json)
    raise typer.Exit(0 if verdict.state == JobState.FINISHED else 1)


@app.command()
def jobs(as_json: bool = json_opt()) -> None:
    """List launched jobs, newest first, with state and exit cause.

    Example: mfctl jobs
    """
    from mfctl.jobs.status import scheduler_notes
    from mfctl.records.store import JobStore

    records = JobStore().all()
    notes = scheduler_notes(records)
    if as_json:
        views.print_json([{**r.to_json(), **({"scheduler": notes[r.id]} if r.id in notes else {})}
                          for r in records])
        return
    views.print_jobs(records, notes)


@app.command()
def status(
    job: str | None = JobArg,
    directory: Path = DirOpt,
    as_json: bool = json_opt(),
) -> None:
    """Per node: processes alive or exit code; per rank: the last step and loss in its log.

    Example: mfctl status my-job-20261128-101500 --json
    """
    from mfctl.jobs.status import collect_status

    report = collect_status(job, directory)
    if as_json:
        views.print_json(report.to_json())
        return
    views.print_status(report)


@app.command()
def stop(
    job: str | None = JobArg,
    directory: Path = DirOpt,
    grace: float = typer.Option(10.0, "--grace", min=0, help="Seconds between TERM and KILL."),
    as_json: bool = json_opt(),
) -> None:
    """Stop every process of the job on every node (TERM, then KILL after --grace), then verify
    that none is left. Safe to run twice.

    Example: mfctl stop my-job-20261128-101500
    """
    from mfctl.jobs.status import stop_job

    result = stop_job(job, directory, grace)
    if as_json:
        views.print_json(result)
    else:
        views.print_stopped(result)
    if not result["clean"]:
        raise OperationFailed("some nodes could not be verified clean; run 'mfctl stop' again")


@app.command()
def logs(
    job: str | None = JobArg,
    directory: Path = DirOpt,
    rank: int | None = typer.Option(None, "--rank", "-r", min=0,
                                       help="Global rank (default: the scheduler log of node 0)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    lines: int = typer.Option(50, "--lines", "-n", min=0, help="How many last lines to show."),
) -> None:
    """Print (or follow) one rank's worker log from whichever node runs it.

    Example: mfctl logs --rank 1 --follow
    """
    from mfctl.jobs.status import print_logs

    print_logs(job, directory, rank, follow, lines)

