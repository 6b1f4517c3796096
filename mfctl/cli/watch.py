"""Watch commands: ``watch`` (dashboard or one snapshot), ``export`` (metrics) and ``report`` (HTML)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from mfctl.cli import app, views
from mfctl.cli.options import DirOpt, JobArg, json_opt
from mfctl.errors import BadInput


@app.command()
def watch(
    job: Optional[str] = JobArg,
    directory: Path = DirOpt,
    once: bool = typer.Option(False, "--once", help="Print the current state once and exit (no dashboard)."),
    as_json: bool = json_opt("With --once: print the state as JSON."),
    logs: Optional[Path] = typer.Option(None, "--logs",
                                        help="A directory of logs instead of a job (any depth; "
                                        "worker_N.log gives the rank): followed as the files grow "
                                        "(a live job's log dir on a shared filesystem), or read once "
                                        "with --once."),
    seq_length: Optional[int] = typer.Option(None, "--seq-length", min=1,
                                             help="With --logs: sequence length, for tokens/s."),
    pipeline_stage: int = typer.Option(1, "--pipeline-stage", min=1,
                                       help="With --logs: pipeline stages (loss of the last stage)."),
    supervise: bool = typer.Option(True, "--fail-fast/--no-fail-fast",
                                   help="While the dashboard runs, stop the job on every node at the "
                                   "first failure (a worker or msrun exiting with an error, a node "
                                   "unreachable, a rank stalled) and record why."),
) -> None:
    """Live per-rank loss and throughput: the Textual dashboard (or --once for scripts).

    Keys: / filter, o sort, arrows select a rank (the plots follow it), y log loss axis, l the selected
    rank's log, s stop the job, ? help, q quit.

    Example: mfctl watch   |   mfctl watch --once --json   |   mfctl watch --logs copied/ --once --json
    """
    if logs is not None:
        from mfctl.jobs.watch import LogDirSource

        if not logs.is_dir():
            raise BadInput(f"{logs}: not a directory of logs; give the folder that holds worker_N.log files")
        source = LogDirSource(logs, seq_length, pipeline_stage, follow=not once)
        if once and not source.files:
            raise BadInput(f"{logs}: no worker_N.log, scheduler.log or rank_N/info.log found under it")
        if once:
            views.print_state(source.snapshot(), as_json)
            return
        from mfctl.tui.app import make_app

        # Followed: the files appear and grow while the dashboard is open (an empty dir is a job
        # whose workers have not written yet).
        source.start()
        from mfctl.metrics.logdir import ranks_of_files

        devices = len(ranks_of_files(source.files)) or "?"  # scheduler.log is not a device
        try:
            make_app(source, job={"id": str(logs), "name": logs.name, "model": "logs", "nodes": 1,
                                  "devices_per_node": devices, "world_size": None,
                                  "started_at": None}, freeze_heap=True).run()
        finally:
            source.close()
        return
    from mfctl.jobs.store import JobStore
    from mfctl.jobs.watch import collect_once, run_dashboard

    store = JobStore()
    record = store.find(job, directory)
    if once or as_json:
        snap = collect_once(record, store)
        snap = {"job": record.to_json(), **snap}
        views.print_state(snap, as_json)
        return
    run_dashboard(record, store=store, supervise=supervise)


@app.command()
def export(
    job: Optional[str] = JobArg,
    directory: Path = DirOpt,
    fmt: str = typer.Option("csv", "--format", "-f", help="csv or jsonl."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="File to write (default stdout)."),
) -> None:
    """Write a job's collected metrics (rank, step, loss, step time, samples/s, time).

    Example: mfctl export my-job-20261128-101500 --format csv -o metrics.csv
    """
    from mfctl.jobs.store import JobStore

    if fmt not in ("csv", "jsonl"):
        raise BadInput(f"--format must be csv or jsonl, got {fmt!r}")
    store = JobStore()
    record = store.find(job, directory)
    cols = ("rank", "step", "total_steps", "loss", "step_time_ms", "samples_per_s", "time")
    rows = list(store.metrics(record.id))
    handle = open(output, "w", encoding="utf-8", newline="") if output else sys.stdout
    try:
        if fmt == "csv":
            import csv

            writer = csv.writer(handle)
            writer.writerow(cols)
            writer.writerows(rows)
        else:
            for row in rows:
                handle.write(json.dumps(dict(zip(cols, row))) + "\n")
    finally:
        if output:
            handle.close()
    if output:
        views.err.print(f"{len(rows)} rows of {record.id} -> {output}")


@app.command()
def report(
    job: Optional[str] = JobArg,
    directory: Path = DirOpt,
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="HTML file to write (default: <job dir>/report.html)."),
    as_json: bool = json_opt("Print what was written as JSON."),
) -> None:
    """Write one self-contained HTML page about a job: plan and config, per-rank loss, throughput
    and step-time curves (hover, pick ranks), alerts, restarts and the exit cause. It opens offline.

    Example: mfctl report my-job-20261128-101500 -o run.html
    """
    from mfctl.jobs.report import write_report
    from mfctl.jobs.store import JobStore

    if output is not None and output.is_dir():
        raise BadInput(f"{output}: is a directory; give -o a file name such as report.html")
    store = JobStore()
    record = store.find(job, directory)
    result = write_report(record, store, output)
    if as_json:
        views.print_json(result)
        return
    views.print_report_written(result)
