"""Watch commands: ``watch`` (dashboard or one snapshot), ``export`` (metrics) and ``report`` (HTML)."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path

import typer

from mfctl.cli import views
from mfctl.cli.options import DirOpt, JobArg, json_opt
from mfctl.cli.root import app
from mfctl.errors import BadInput


@app.command()
def watch(
    job: str | None = JobArg,
    directory: Path = DirOpt,
    once: bool = typer.Option(False, "--once", help="Print the current state once and exit (no dashboard)."),
    as_json: bool = json_opt("With --once: print the state as JSON."),
    logs: Path | None = typer.Option(None, "--logs",
                                        help="A directory of logs instead of a job (any depth; "
                                        "worker_N.log gives the rank): followed as the files grow "
                                        "(a live job's log dir on a shared filesystem), or read once "
                                        "with --once."),
    seq_length: int | None = typer.Option(None, "--seq-length", min=1,
                                             help="With --logs: sequence length, for tokens/s."),
    pipeline_stage: int = typer.Option(1, "--pipeline-stage", min=1,
                                       help="With --logs: pipeline stages (loss of the last stage)."),
    chip: str | None = typer.Option(None, "--chip", metavar="NAME",
                                    help="The NPU the ranks ran on, as npu-smi info names it (910B3, "
                                    "Ascend910B2, 910B for a first-generation board, Ascend910 on an A3): "
                                    "MFU is TFLOPS over its dense BF16/FP16 peak. A job's comes from its "
                                    "nodes' preflight; this overrides it."),
    supervise: bool = typer.Option(True, "--fail-fast/--no-fail-fast",
                                   help="While the dashboard runs, stop the job on every node at the "
                                   "first failure (a worker or msrun exiting with an error, a node "
                                   "unreachable, a rank stalled) and record why."),
) -> None:
    """Live per-rank loss and throughput: the Textual dashboard (or --once for scripts).

    Keys: / filter, o sort, arrows select a rank (the plots follow it), y log loss axis, l the selected
    rank's log, s stop the job, ? help, q quit.

    Example: mfctl watch   |   mfctl watch --once --json   |   mfctl watch --logs copied/ --chip 910B3 --once --json
    """
    if chip is not None:
        from mfctl.metrics.mfu import chip_names, find_chip

        if find_chip(chip) is None:
            raise BadInput(f"--chip {chip}: not a chip whose peak mfctl knows; give one of "
                           f"{', '.join(chip_names())} (npu-smi info shows the Name)")
    if logs is not None:
        from mfctl.live.logdir_source import LogDirSource

        if not logs.is_dir():
            raise BadInput(f"{logs}: not a directory of logs; give the folder that holds worker_N.log files")
        source = LogDirSource(logs, seq_length, pipeline_stage, follow=not once, plots=not once, chip=chip)
        if once and not source.files:
            raise BadInput(f"{logs}: no worker_N.log, scheduler.log or rank_N/info.log found under it")
        if once:
            views.print_state(source.snapshot(), as_json)
            return
        # Followed: the files appear and grow while the dashboard is open (an empty dir is a job
        # whose workers have not written yet). Started before the dashboard is imported, so the
        # logs are being read while it loads.
        source.start()
        from mfctl.metrics.logdir import ranks_of_files
        from mfctl.tui.app import make_app

        devices = len(ranks_of_files(source.files)) or "?"  # scheduler.log is not a device
        try:
            make_app(source, job={"id": str(logs), "name": logs.name, "model": "logs", "nodes": 1,
                                  "devices_per_node": devices, "world_size": None,
                                  "started_at": None}, freeze_heap=True).run()
        finally:
            source.close()
        return
    from mfctl.live.session import LiveSession
    from mfctl.records.store import JobStore

    store = JobStore()
    record = store.find(job, directory)
    session = LiveSession(record, store)
    if chip is not None:
        session.collector.state.chip = chip
    try:
        if once or as_json:
            from mfctl.jobs.status import scheduler_notes

            # A job a scheduler still holds back (Slurm: pending) has no logs yet: say why.
            note = scheduler_notes([record]).get(record.id)
            snap = {"job": record.to_json(), **({"scheduler": note} if note else {}), **session.read_once()}
            views.print_state(snap, as_json)
            return
        session.start()
        if supervise:
            session.start_supervisor()
        show_dashboard(session)
    finally:
        session.close()


def show_dashboard(session, exit_when_done: bool = False) -> None:
    """The dashboard on a live session (the one place that hands a session to the TUI)."""
    from mfctl.tui.app import make_app

    make_app(session.source, job=session.job_info(), exit_when_done=exit_when_done, freeze_heap=True).run()


def dashboard_or_none(exit_when_done: bool = False):
    """``show_dashboard`` for the demo, or None when the dashboard cannot load (no textual)."""
    try:
        import mfctl.tui.app  # noqa: F401
    except ImportError:
        return None
    return lambda session: show_dashboard(session, exit_when_done)


@app.command()
def export(
    job: str | None = JobArg,
    directory: Path = DirOpt,
    fmt: str = typer.Option("csv", "--format", "-f", help="csv or jsonl."),
    output: Path | None = typer.Option(None, "--output", "-o", help="File to write (default stdout)."),
) -> None:
    """Write a job's collected metrics (rank, step, loss, step time, samples/s, time).

    Example: mfctl export my-job-20261128-101500 --format csv -o metrics.csv
    """
    from mfctl.records.export import check_format, export_metrics
    from mfctl.records.store import JobStore

    check_format(fmt)
    store = JobStore()
    record = store.find(job, directory)
    with open(output, "w", encoding="utf-8", newline="") if output else nullcontext(sys.stdout) as handle:
        rows = export_metrics(store, record.id, fmt, handle)
    if output:
        views.err.print(f"{rows} rows of {record.id} -> {output}")


@app.command()
def report(
    job: str | None = JobArg,
    directory: Path = DirOpt,
    output: Path | None = typer.Option(None, "--output", "-o",
                                          help="HTML file to write (default: <job dir>/report.html)."),
    as_json: bool = json_opt("Print what was written as JSON."),
) -> None:
    """Write one self-contained HTML page about a job: plan and config, per-rank loss, throughput
    and step-time curves (hover, pick ranks), alerts, restarts and the exit cause. It opens offline.

    Example: mfctl report my-job-20261128-101500 -o run.html
    """
    from mfctl.jobs.report import write_report
    from mfctl.records.store import JobStore

    if output is not None and output.is_dir():
        raise BadInput(f"{output}: is a directory; give -o a file name such as report.html")
    store = JobStore()
    record = store.find(job, directory)
    result = write_report(record, store, output, collect=read_once)
    if as_json:
        views.print_json(result)
        return
    views.print_report_written(result)


def read_once(record, store):
    """A job's logs read once through a live session, every step with its time (``report``):
    the snapshot and the step rows saved with the record."""
    from mfctl.live.session import LiveSession

    saved: list[tuple] = []
    session = LiveSession(record, store, on_steps=saved.extend, plots=False)  # the page draws the rows
    try:
        return session.read_once(), saved
    finally:
        session.close()
