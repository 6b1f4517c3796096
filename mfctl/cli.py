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
        from mfctl.spec.presets import PRESETS, preset_names

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
    table = Table("node", "NODE_RANK", "ranks", "command", show_lines=True)
    for node in launch_plan.nodes:
        ranks = f"{node.ranks[0]}-{node.ranks[-1]}" if len(node.ranks) > 1 else str(node.ranks[0])
        table.add_row(node.host, str(node.node_rank), ranks, node.command)
    out.print(table)


def _resolver(ssh_config: Optional[Path]):
    from mfctl.remote.resolve import make_resolver

    return make_resolver(ssh_config)


# --------------------------------------------------------------------------- entry point

def main(argv: list[str] | None = None) -> None:
    try:
        rc = app(args=argv, standalone_mode=False, prog_name="mfctl")
    except MfctlError as exc:
        err.print(f"[red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click's usage errors arrive here with standalone_mode=False
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(2 if isinstance(exc, click.exceptions.UsageError) else exc.exit_code)
        raise
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
