"""mfctl's command line: the one place that prints errors and chooses exit codes.

Known errors (``MfctlError``) print one line to stderr: exit 2 for bad input, 1 for a failed
operation. Anything else keeps its traceback, because it is a bug to report.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mfctl import __version__
from mfctl.errors import BadInput, MfctlError

app = typer.Typer(
    name="mfctl",
    help="Pretrain LLMs with MindSpore + MindFormers on a cluster from one machine: create a job, "
    "render its configs, launch msrun on every node over SSH, and watch every rank live.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # SSH secrets may sit in locals
    add_completion=False,
    rich_markup_mode="rich",
)
data_app = typer.Typer(help="Prepare pretraining datasets (MindRecord).", no_args_is_help=True)
app.add_typer(data_app, name="data")

out = Console()
err = Console(stderr=True)

DirOpt = typer.Option(Path("."), "--dir", "-d", help="The job directory (holds mfctl.yaml).",
                      show_default=True)
NodesOpt = typer.Option(None, "--nodes", "-n", help="Hosts file to use instead of the job's.")


def _table(headers: list[str], rows: list[list[str]], keep: tuple[int, ...], **kwargs) -> Table:
    """A table whose ``keep`` columns (job ids, hosts, rank lists: what the user types next) are
    never cut: they are as wide as their longest value, and every other column wraps or folds first.
    The outer frame is left off: at 80 columns its two cells are what a 29-character id needs."""
    from rich.cells import cell_len
    from rich.text import Text

    table = Table(show_edge=False, **kwargs)
    for i, header in enumerate(headers):
        if i in keep:
            width = max([cell_len(header)] + [cell_len(Text.from_markup(r[i]).plain) for r in rows])
            table.add_column(header, no_wrap=True, overflow="fold", min_width=width)
        else:
            table.add_column(header, overflow="fold")
    for r in rows:
        table.add_row(*r)
    return table


def _version(value: bool) -> None:
    if value:
        out.print(f"mfctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """mfctl: a cluster manager for MindFormers pretraining."""


# --------------------------------------------------------------------------- init / render / plan

@app.command()
def init(
    directory: Path = typer.Argument(..., help="Directory for the new job (created if missing)."),
    model: Optional[str] = typer.Option(None, "--model", "-m",
                                        help="Model preset: llama2-7b, llama3-70b or tiny-llama."),
    model_config: Optional[Path] = typer.Option(
        None, "--model-config", help="Your own MindFormers YAML instead of a preset's template."),
    nodes: Optional[Path] = typer.Option(
        None, "--nodes", "-n", help="Hosts file: one node per line ('host', 'user@host:port', "
        "'host slots=8'); copied into the job. Default: this machine alone."),
    devices_per_node: Optional[int] = typer.Option(None, "--devices-per-node",
                                                   help="Devices (msrun workers) per node."),
    dataset: Optional[str] = typer.Option(None, "--dataset",
                                          help="MindRecord dataset path on the nodes."),
    name: Optional[str] = typer.Option(None, "--name", help="Job name (default: the directory name)."),
    launcher: str = typer.Option("msrun", "--launcher",
                                 help="msrun (mfctl's entry under msrun) or mindformers "
                                 "(scripts/msrun_launcher.sh from a MindFormers checkout)."),
    mindformers_home: Optional[str] = typer.Option(
        None, "--mindformers-home", help="MindFormers source dir on the nodes (launcher mindformers)."),
    dp: Optional[int] = typer.Option(None, "--dp", help="Data-parallel degree."),
    mp: Optional[int] = typer.Option(None, "--mp", help="Model-parallel degree."),
    pp: Optional[int] = typer.Option(None, "--pp", help="Pipeline stages."),
    micro_batch_num: Optional[int] = typer.Option(None, "--micro-batch-num",
                                                  help="Micro batches (pipeline)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size",
                                             help="Per-device batch size (the preset's by default)."),
    grad_accum: Optional[int] = typer.Option(
        None, "--grad-accum", help="Gradient accumulation steps (without pipeline stages); by default "
        "the preset's, scaled to keep its global batch on another device count."),
    master_port: int = typer.Option(8118, "--master-port", help="msrun scheduler port."),
    master_addr: Optional[str] = typer.Option(
        None, "--master-addr", help="MASTER_ADDR when the training network differs from SSH's."),
    python: str = typer.Option("python3", "--python",
                               help="Python on the nodes (with mindspore, mindformers, msrun)."),
    workdir: str = typer.Option("mfctl-jobs", "--workdir",
                                help="Work dir on SSH nodes (relative = under the user's home)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask; use defaults for what is missing."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing mfctl.yaml."),
) -> None:
    """Create a job: write DIR/mfctl.yaml (and copy the hosts file) after validating it all.

    Example: mfctl init llama70b --model llama3-70b --nodes hosts.txt --devices-per-node 8
    --dataset /data/wiki4096.mindrecord --yes
    """
    from mfctl.jobs.create import create_job

    if not yes:
        from mfctl.presets import PRESETS, preset_names

        if model is None and model_config is None:
            model = typer.prompt(f"Model preset ({', '.join(preset_names())})", default="tiny-llama")
        if nodes is None:
            answer = typer.prompt("Hosts file (or 'localhost' for this machine)", default="localhost")
            nodes = None if answer == "localhost" else Path(answer)
        if devices_per_node is None:
            preset = PRESETS.get(model or "")
            devices_per_node = typer.prompt("Devices per node", type=int,
                                            default=preset.devices_per_node if preset else 8)
        if dataset is None:
            dataset = typer.prompt("Dataset (MindRecord path on the nodes)",
                                   default="data/wiki.mindrecord")
    job = create_job(
        directory, model=model, model_config=model_config, nodes=nodes,
        devices_per_node=devices_per_node, dataset=dataset, name=name, launcher=launcher,
        mindformers_home=mindformers_home, dp=dp, mp=mp, pp=pp, micro_batch_num=micro_batch_num,
        master_port=master_port, master_addr=master_addr, python=python, workdir=workdir, force=force,
        train={k: v for k, v in (("batch_size", batch_size), ("gradient_accumulation_steps", grad_accum))
               if v is not None} or None,
    )
    if job.layout_note:
        out.print(f"[yellow]note:[/] {job.layout_note}")
    out.print(f"Created job [bold]{job.spec.name}[/] in {job.spec_path}: {job.preset.name}, "
              f"{len(job.entries)} node(s) x {job.devices_per_node} devices, "
              f"dp {job.layout.data_parallel} mp {job.layout.model_parallel} "
              f"pp {job.layout.pipeline_stage}.")
    out.print(f"Next: [bold]cd {directory} && mfctl plan[/], then [bold]mfctl launch[/].")


@app.command()
def render(
    directory: Path = DirOpt,
    nodes: Optional[str] = NodesOpt,
    master_addr: Optional[str] = typer.Option(None, "--master-addr", help="Override MASTER_ADDR."),
    ssh_config: Optional[Path] = typer.Option(None, "--ssh-config", help="ssh_config for host aliases."),
) -> None:
    """Write the job's MindFormers YAML, one launch script per node and plan.json into rendered/.

    Example: mfctl render --nodes hosts.txt
    """
    from mfctl.jobdir import load_job, make_plan, render_job
    from mfctl.jobs.ids import preview_job_id

    job = load_job(directory, nodes)
    plan = make_plan(job, master_addr, resolve=_resolver(ssh_config))
    for path in render_job(job, plan, preview_job_id(job.spec.name)):
        out.print(str(path))


@app.command()
def plan(
    directory: Path = DirOpt,
    nodes: Optional[str] = NodesOpt,
    master_addr: Optional[str] = typer.Option(None, "--master-addr", help="Override MASTER_ADDR."),
    ssh_config: Optional[Path] = typer.Option(None, "--ssh-config", help="ssh_config for host aliases."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """Show the launch plan: each node's NODE_RANK, global ranks and the exact command it runs.

    Example: mfctl plan --json
    """
    from mfctl.jobdir import load_job, make_plan

    job = load_job(directory, nodes)
    launch_plan = make_plan(job, master_addr, resolve=_resolver(ssh_config))
    if as_json:
        print(json.dumps(launch_plan.to_json(), indent=2))
        return
    if launch_plan.layout_note:
        err.print(f"[yellow]note:[/] {launch_plan.layout_note}")
    lay = launch_plan.layout
    out.print(f"[bold]{job.spec.name}[/]: {job.preset.name}, world size {launch_plan.world_size}, "
              f"master {launch_plan.master_addr}:{launch_plan.master_port}, launcher {launch_plan.launcher}, "
              f"dp {lay.data_parallel} mp {lay.model_parallel} pp {lay.pipeline_stage} "
              f"micro_batch_num {lay.micro_batch_num}")
    if launch_plan.batch is not None:
        b = launch_plan.batch
        out.print(f"global batch: {b.sequences:,} sequences x {b.seq_length:,} tokens = {b.tokens:,} "
                  f"tokens per step ({b.formula()})")
    rows = []
    for node in launch_plan.nodes:
        ranks = f"{node.ranks[0]}-{node.ranks[-1]}" if len(node.ranks) > 1 else str(node.ranks[0])
        rows.append([escape(node.host), str(node.node_rank), ranks, escape(node.command)])
    out.print(_table(["node", "NODE_RANK", "ranks", "command"], rows, keep=(0, 2), show_lines=True))


def _resolver(ssh_config: Optional[Path]):
    from mfctl.remote.resolve import make_resolver

    return make_resolver(ssh_config)


# --------------------------------------------------------------------------- cluster commands

SshConfigOpt = typer.Option(None, "--ssh-config", help="ssh_config file, like `ssh -F` (read through "
                            "`ssh -G`). Default: ~/.ssh/config and /etc/ssh/ssh_config.")
AcceptNewOpt = typer.Option(False, "--accept-new-hosts",
                            help="Record the host key of nodes never seen before: StrictHostKeyChecking "
                            "yes becomes OpenSSH's accept-new. A changed or revoked key is still refused.")
FanoutOpt = typer.Option(64, "--fanout", min=1, help="At most this many nodes are contacted at once.")
TimeoutOpt = typer.Option(None, "--connect-timeout", min=0.5, help="SSH connect timeout, seconds "
                          "(default: the ssh_config's ConnectTimeout, else 10).")
JobArg = typer.Argument(None, help="Job id or name (default: the newest job launched from --dir).")


def _ssh_opts(ssh_config, accept_new_hosts, fanout, connect_timeout):
    from mfctl.remote.connect import SshOptions

    return SshOptions(str(ssh_config.resolve()) if ssh_config else None, accept_new_hosts,
                      connect_timeout, fanout)


def _print_checks(checks, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"ok": all(c.ok for c in checks), "nodes": [c.to_json() for c in checks]},
                         indent=2))
        return
    rows = []
    for c in checks:
        f = c.facts
        free = f.get("disk_free_kb", "")
        rows.append([
            escape(c.host), str(c.node_rank), f.get("python", "-"), f.get("mindspore", "-"),
            f.get("mindformers", "-"), "yes" if f.get("msrun", "MISSING") != "MISSING" and f else "-",
            f.get("dataset", "-"), f"{int(free) // (1024 * 1024)} GiB" if free.isdigit() else "-",
            f.get("port", ""), "[green]ok[/]" if c.ok else "[red]FAIL[/]",
        ])
    out.print(_table(["node", "rank", "python", "mindspore", "mindformers", "msrun", "dataset",
                      "free disk", "port", "result"], rows, keep=(0, 9)))
    for c in checks:
        for problem in c.problems:
            out.print(f"[red]{c.host}[/]: {escape(problem)}", highlight=False)


@app.command()
def check(
    directory: Path = DirOpt,
    nodes: Optional[str] = NodesOpt,
    ssh_config: Optional[Path] = SshConfigOpt,
    accept_new_hosts: bool = AcceptNewOpt,
    fanout: int = FanoutOpt,
    connect_timeout: Optional[float] = TimeoutOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Preflight every node in parallel: reachable, Python and framework versions (equal on every
    node), msrun, dataset, free disk, master port, leftovers of an earlier run, NPU count.

    Example: mfctl check --nodes hosts.txt
    """
    from mfctl.jobs.launch import prepare
    from mfctl.jobs.ops import close_all, open_all, preflight
    from mfctl.errors import OperationFailed

    opts = _ssh_opts(ssh_config, accept_new_hosts, fanout, connect_timeout)
    job, launch_plan = prepare(directory, nodes, opts, None, False)
    transports = open_all(job.entries, str(job.dir), opts)
    try:
        checks = preflight(launch_plan, job.spec, transports, fanout)
    finally:
        close_all(transports)
    _print_checks(checks, as_json)
    bad = [c for c in checks if not c.ok]
    if bad:
        raise OperationFailed(f"{len(bad)} of {len(checks)} node(s) failed the checks; first: "
                              f"{bad[0].host}: {bad[0].problems[0]}")


class _RichProgress:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None
        self.task = None

    def stage(self, text: str) -> None:
        self._finish()
        if not self.quiet:
            err.print(f"[dim]-[/] {text}")

    def start_push(self, total: int) -> None:
        if self.quiet:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.bar = Progress(TextColumn("  files"), BarColumn(), MofNCompleteColumn(), console=err,
                            transient=True)
        self.bar.start()
        self.task = self.bar.add_task("push", total=total)

    def advance_push(self) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)

    def _finish(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


@app.command()
def launch(
    directory: Path = DirOpt,
    nodes: Optional[str] = NodesOpt,
    ssh_config: Optional[Path] = SshConfigOpt,
    accept_new_hosts: bool = AcceptNewOpt,
    fanout: int = FanoutOpt,
    connect_timeout: Optional[float] = TimeoutOpt,
    master_addr: Optional[str] = typer.Option(None, "--master-addr", help="Override MASTER_ADDR."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would run where; touch nothing."),
    sync_dataset: bool = typer.Option(
        False, "--sync-dataset", help="Copy the dataset from this machine (the spec's dataset path) "
        "into every node's job dir (data/), only where it differs."),
    resume: Optional[str] = typer.Option(None, "--resume", metavar="JOB",
                                         help="Start JOB again from its last checkpoint."),
    supervise: bool = typer.Option(False, "--supervise",
                                   help="Stay in the foreground until the job ends; stop it on every "
                                   "node at the first failure; exit 0 only if it finished."),
    max_restarts: int = typer.Option(0, "--max-restarts", min=0,
                                     help="With --supervise: after a failure, resume from the last "
                                     "checkpoint up to N times."),
    stall_timeout: Optional[float] = typer.Option(
        None, "--stall-timeout", min=1, help="With --supervise: a rank with no step for this long "
        "fails the job (default: from the observed step time, at least 60 s)."),
    unreachable_timeout: float = typer.Option(
        15.0, "--unreachable-timeout", min=1, help="With --supervise: a node unreachable this long "
        "fails the job."),
    as_json: bool = typer.Option(False, "--json", help="Print the launched job as JSON."),
) -> None:
    """Check every node, push the job bundle, start msrun on each with its NODE_RANK, detached.

    The job keeps running after mfctl exits; follow it with 'mfctl status', 'mfctl logs',
    'mfctl watch', and end it with 'mfctl stop'. If any node fails to start, the others are
    stopped again: there is no half-started job.

    Example: mfctl launch --nodes hosts.txt
    """
    from mfctl.jobs.launch import LaunchRefused, launch as do_launch
    from mfctl.jobs.store import JobStore

    opts = _ssh_opts(ssh_config, accept_new_hosts, fanout, connect_timeout)
    previous = None
    store = None
    if resume:
        store = JobStore()
        previous = store.find(resume)
    try:
        result = do_launch(directory, nodes, opts, master_addr, dry_run=dry_run, sync_dataset=sync_dataset,
                           resume_from=previous,
                           progress=_RichProgress(as_json), store=store)
    except LaunchRefused as exc:
        if not as_json:
            _print_checks(exc.checks, False)
        raise
    if dry_run:
        if as_json:
            print(json.dumps({"dry_run": True, "plan": result.plan.to_json()}, indent=2))
            return
        out.print("[bold]Dry run[/]: nothing was contacted or written. Each node would get bundle/ "
                  "(config.yaml, launch.sh, node/train.py) in its job dir and run:")
        for node in result.plan.nodes:
            out.print(f"  [bold]{node.host}[/] (NODE_RANK {node.node_rank}, ranks "
                      f"{node.ranks[0]}-{node.ranks[-1]}) in {escape(node.cwd)}:\n    {escape(node.command)}")
        return
    rec = result.record
    if supervise:
        from mfctl.jobs.supervise import run_supervised

        rc = run_supervised(rec, directory, nodes, opts, master_addr, sync_dataset, max_restarts,
                            stall_timeout, unreachable_timeout, as_json,
                            say=lambda text: err.print(f"[dim]-[/] {text}", highlight=False))
        raise typer.Exit(rc)
    if as_json:
        print(json.dumps(rec.to_json(), indent=2))
        return
    out.print(f"Launched [bold]{rec.id}[/] on {len(result.plan.nodes)} node(s), world size "
              f"{result.plan.world_size}.")
    out.print(f"Follow it: [bold]mfctl watch {rec.id}[/]  |  [bold]mfctl status {rec.id}[/]  |  "
              f"[bold]mfctl logs {rec.id} --rank 0 --follow[/]  |  stop: [bold]mfctl stop {rec.id}[/]")


@app.command("supervise")
def supervise_cmd(
    job: Optional[str] = JobArg,
    directory: Path = DirOpt,
    stall_timeout: Optional[float] = typer.Option(None, "--stall-timeout", min=1,
                                                  help="A rank with no step for this long fails the job."),
    unreachable_timeout: float = typer.Option(15.0, "--unreachable-timeout", min=1,
                                              help="A node unreachable this long fails the job."),
    fail_fast: bool = typer.Option(True, "--fail-fast/--no-fail-fast",
                                   help="Stop the job on every node at the first failure."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Attach to a running job and supervise it until it ends (exit 0 only if it finished).

    Example: mfctl supervise my-job-20261128-101500
    """
    from mfctl.jobs.store import JobStore
    from mfctl.jobs.supervise import supervise

    store = JobStore()
    record = store.find(job, directory)
    if record.state not in ("running", "launching"):
        raise BadInput(f"job {record.id} is {record.state}, not running; 'mfctl launch --resume "
                       f"{record.id}' starts it again")
    verdict = supervise(record, store, unreachable_after_s=unreachable_timeout, stall_after_s=stall_timeout,
                        fail_fast=fail_fast, say=lambda text: err.print(f"[dim]-[/] {text}", highlight=False))
    _print_verdict(record.id, verdict, as_json)
    raise typer.Exit(0 if verdict.state == "finished" else 1)


def _print_verdict(job_id: str, verdict, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"job": job_id, "state": verdict.state, "cause": verdict.cause}))
    else:
        colour = "green" if verdict.state == "finished" else "red"
        out.print(f"{job_id}: [{colour}]{verdict.state}[/] ({verdict.cause})")


@app.command()
def jobs(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List launched jobs, newest first, with state and exit cause.

    Example: mfctl jobs
    """
    from mfctl.jobs.store import JobStore

    records = JobStore().all()
    if as_json:
        print(json.dumps([r.to_json() for r in records], indent=2))
        return
    if not records:
        out.print("No jobs yet: 'mfctl launch' in a job directory starts one.")
        return
    import datetime as dt

    rows = []
    for r in records:
        when = dt.datetime.fromtimestamp(r.started_at or r.created_at).strftime("%Y-%m-%d %H:%M:%S")
        colour = {"running": "green", "failed": "red", "finished": "cyan"}.get(r.state, "white")
        rows.append([escape(r.id), f"[{colour}]{r.state}[/]", str(len(r.plan.get("nodes", []))),
                     str(r.plan.get("world_size", "")), when, escape(r.exit_cause or "")])
    # The state too keeps its width: it is one word, and "finishe/d" reads worse than a taller cause.
    out.print(_table(["job", "state", "nodes", "world", "started", "cause"], rows, keep=(0, 1)))


@app.command()
def status(
    job: Optional[str] = JobArg,
    directory: Path = DirOpt,
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Per node: processes alive or exit code; per rank: the last step and loss in its log.

    Example: mfctl status my-job-20261128-101500 --json
    """
    from mfctl.jobs.status import collect_status

    report = collect_status(job, directory)
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
        return
    rec = report.record
    colour = {"running": "green", "failed": "red", "finished": "cyan"}.get(rec.state, "white")
    out.print(f"[bold]{rec.id}[/]: [{colour}]{rec.state}[/]" + (f" ({escape(rec.exit_cause)})" if rec.exit_cause else ""))
    nodes = [[escape(n.host), str(n.node_rank), str(len(n.procs)) if n.reachable else "-",
              "" if n.exit_code is None else str(n.exit_code), escape(n.error or "")] for n in report.nodes]
    out.print(_table(["node", "NODE_RANK", "processes", "exit code", "note"], nodes, keep=(0,)))
    ranks = []
    for r in report.snapshot["ranks"]:
        step = f"{r['step']}/{r['total_steps']}" if r.get("step") is not None else "-"
        loss = f"{r['loss']:.6f}" if isinstance(r.get("loss"), float) else "-"
        ranks.append([str(r["rank"]), escape(str(r.get("node") or "")), step, loss,
                      str(r.get("step_time_ms") if r.get("step_time_ms") is not None else "-"),
                      str(r.get("samples_per_s") if r.get("samples_per_s") is not None else "-"),
                      str(r.get("state", ""))])
    out.print(_table(["rank", "node", "step", "loss", "step ms", "samples/s/p", "state"], ranks,
                     keep=(0, 1)))


@app.command()
def stop(
    job: Optional[str] = JobArg,
    directory: Path = DirOpt,
    grace: float = typer.Option(10.0, "--grace", min=0, help="Seconds between TERM and KILL."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Stop every process of the job on every node (TERM, then KILL after --grace), then verify
    that none is left. Safe to run twice.

    Example: mfctl stop my-job-20261128-101500
    """
    from mfctl.jobs.status import stop_job

    result = stop_job(job, directory, grace)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        for host, left in result["nodes"].items():
            state = "[green]no process left[/]" if left == 0 else f"[red]{left}[/]"
            out.print(f"{host}: {state}")
        out.print(f"Job {result['job']} is {result['state']}.")
    if not result["clean"]:
        from mfctl.errors import OperationFailed

        raise OperationFailed("some nodes could not be verified clean; run 'mfctl stop' again")


@app.command()
def logs(
    job: Optional[str] = JobArg,
    directory: Path = DirOpt,
    rank: Optional[int] = typer.Option(None, "--rank", "-r", min=0,
                                       help="Global rank (default: the scheduler log of node 0)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    lines: int = typer.Option(50, "--lines", "-n", min=0, help="How many last lines to show."),
) -> None:
    """Print (or follow) one rank's worker log from whichever node runs it.

    Example: mfctl logs --rank 1 --follow
    """
    from mfctl.jobs.status import print_logs

    print_logs(job, directory, rank, follow, lines)


@app.command()
def watch(
    job: Optional[str] = JobArg,
    directory: Path = DirOpt,
    once: bool = typer.Option(False, "--once", help="Print the current state once and exit (no dashboard)."),
    as_json: bool = typer.Option(False, "--json", help="With --once: print the state as JSON."),
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
            _print_state(source.snapshot(), as_json)
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
        _print_state(snap, as_json)
        return
    run_dashboard(record, store=store, supervise=supervise)


def _print_state(snap: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(snap, indent=2, default=str))
        return
    c = snap.get("cluster", {})
    out.print(f"step {c.get('step')}/{c.get('total_steps')}  loss {c.get('loss')}  "
              f"samples/s {c.get('samples_per_s')}  tokens/s {c.get('tokens_per_s')}  state {c.get('state')}")
    table = Table("rank", "node", "step", "loss", "step ms", "samples/s/p", "state", "reason")
    for r in snap.get("ranks", []):
        table.add_row(str(r["rank"]), str(r.get("node") or ""), f"{r.get('step')}/{r.get('total_steps')}",
                      str(r.get("loss")), str(r.get("step_time_ms")), str(r.get("samples_per_s")),
                      str(r.get("state")), str(r.get("reason") or ""))
    out.print(table)
    for a in snap.get("alerts", [])[-10:]:
        out.print(f"[yellow]alert[/] {a.get('kind')}: {a.get('message')}", highlight=False)


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
        err.print(f"{len(rows)} rows of {record.id} -> {output}")


@app.command()
def report(
    job: Optional[str] = JobArg,
    directory: Path = DirOpt,
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="HTML file to write (default: <job dir>/report.html)."),
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
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
        print(json.dumps(result, indent=2))
        return
    for note in result["notes"]:
        err.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    out.print(f"{result['path']}  ({result['points']} points of {len(result['ranks'])} ranks, "
              f"{result['alerts']} alerts, {result['bytes'] // 1024} KiB)", highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------- data / demo

@data_app.command("prepare")
def data_prepare(
    inputs: list[str] = typer.Option(..., "--input", "-i",
                                     help="Input files or globs: WikiText token files (wiki rules), "
                                     ".jsonl/.json or .parquet with a 'text' field (taken as is). "
                                     "Repeatable."),
    output: Path = typer.Option(..., "--output", "-o", help="The .mindrecord file to write."),
    seq_length: int = typer.Option(4096, "--seq-length", min=8,
                                   help="Model sequence length; each sample is seq_length + 1 tokens."),
    tokenizer: Optional[Path] = typer.Option(None, "--tokenizer",
                                             help="sentencepiece model (Llama's tokenizer.model)."),
    train_tokenizer: Optional[int] = typer.Option(
        None, "--train-tokenizer", metavar="VOCAB", min=16,
        help="Train a sentencepiece tokenizer of VOCAB pieces on the input first (saved beside the output)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output."),
    directory: Path = typer.Option(Path("."), "--dir", "-d",
                                   help="Job dir: refuse a tokenizer larger than its model's vocab."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Tokenize a corpus into a MindRecord pretraining dataset ({"input_ids": int32[-1]}).

    WikiText token files (any name not ending in .jsonl/.json/.parquet) follow MindFormers 1.9.0's
    llama_preprocess.py --dataset_type wiki exactly: the text is cleaned (" @-@ " -> "-", no space
    before punctuation or inside brackets and quotes, ...), split into paragraphs at blank lines,
    and heading paragraphs ("= Title =", "= = Section = =") are dropped. One file with --tokenizer
    gives the same samples, in the same order, as that script with the same --seq_length.

    JSONL/Parquet: each non-blank 'text' is one document, taken as is (no cleaning, nothing dropped).

    Every input: each paragraph or document is encoded as MindFormers' LlamaTokenizer does ("<s>",
    "</s>", "<unk>" in the text are those tokens) and framed as BOS + ids + EOS, with the BOS/EOS
    ids of the tokenizer model file; the encoded texts are concatenated in input order and cut into
    samples of seq_length + 1 tokens; the tail that does not fill a sample is dropped.

    Example: mfctl data prepare --input 'wikitext-2/wiki.train.tokens' --tokenizer tokenizer.model
    --seq-length 4096 --output wiki4096.mindrecord
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from mfctl.data.prepare import prepare_dataset

    if (tokenizer is None) == (train_tokenizer is None):
        raise BadInput("give exactly one of --tokenizer FILE or --train-tokenizer VOCAB")
    max_vocab = None
    if (directory / "mfctl.yaml").exists():
        from mfctl.jobdir import load_job
        from mfctl.render import model_shape

        job = load_job(directory)
        max_vocab = model_shape(job.spec, job.preset).vocab_size
    with Progress(TextColumn("tokenizing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, transient=True,
                  # Off a terminal a transient bar leaves a blank line before any error.
                  disable=as_json or not err.is_terminal) as bar:
        task = bar.add_task("docs", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        summary = prepare_dataset(list(inputs), output, seq_length, tokenizer=tokenizer,
                                  train_tokenizer_vocab=train_tokenizer, force=force,
                                  max_vocab=max_vocab, progress=progress)
    result = {"output": str(summary.output), "documents": summary.documents, "tokens": summary.tokens,
              "samples": summary.samples, "seq_length": summary.seq_length,
              "tokenizer": str(summary.tokenizer), "vocab_size": summary.vocab_size,
              "files": [str(f) for f in summary.files]}
    if as_json:
        print(json.dumps(result, indent=2))
        return
    out.print(f"Wrote {summary.samples} samples of {summary.seq_length + 1} tokens "
              f"({summary.documents} documents, {summary.tokens} tokens) to {summary.output}")
    out.print(f"Tokenizer: {summary.tokenizer} ({summary.vocab_size} pieces). Use it with "
              f"--dataset {summary.output} in 'mfctl init'.")


@app.command()
def demo(
    directory: Optional[Path] = typer.Option(None, "--dir", "-d",
                                             help="New directory for the demo job (default: "
                                             "./mfctl-demo-<time>)."),
    headless: bool = typer.Option(False, "--headless",
                                  help="No dashboard: progress and per-rank loss lines, for scripts/CI."),
    as_json: bool = typer.Option(False, "--json", help="Print the final summary as JSON (headless)."),
) -> None:
    """Pretrain a tiny Llama for real on this machine: corpus, tokenizer, MindRecord dataset,
    2 data-parallel workers under msrun, live progress, and a summary with the checkpoints.

    Example: mfctl demo --headless --dir demo1
    """
    from mfctl.jobs.demo import run_demo_cli

    rc = run_demo_cli(directory, headless or as_json, as_json, out, err)
    raise typer.Exit(rc)


# --------------------------------------------------------------------------- entry point

def _click_exception_types() -> tuple[type, ...]:
    """Click's exception class, as typer ships it (vendored in newer typer) and as click does."""
    types: list[type] = []
    try:
        from typer._click.exceptions import ClickException as Vendored

        types.append(Vendored)
    except ImportError:
        pass
    try:
        from click.exceptions import ClickException

        types.append(ClickException)
    except ImportError:
        pass
    return tuple(types)


def _one_line(text: str) -> str:
    """An error stays one line even when it quotes a value with a newline (a path, say)."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def main(argv: list[str] | None = None) -> None:
    try:
        rc = app(args=argv, standalone_mode=False, prog_name="mfctl")
    except MfctlError as exc:
        # escape: a message quotes user values, and "[/x]" in a path is not rich markup.
        err.print(f"[red]error:[/] {escape(_one_line(exc.message))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # usage errors arrive here with standalone_mode=False
        usage = _click_exception_types()
        if isinstance(exc, usage):
            ctx = getattr(exc, "ctx", None)
            where = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
            err.print(f"[red]error:[/] {escape(_one_line(exc.format_message().rstrip('.')))}{escape(where)}",
                      highlight=False,
                      soft_wrap=True)
            sys.exit(exc.exit_code if exc.exit_code else 2)
        raise
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
