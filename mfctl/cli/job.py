"""Job commands: ``init`` (create a job), ``render`` (its files) and ``plan`` (what runs where)."""

from __future__ import annotations

from pathlib import Path

import typer

from mfctl.cli import views
from mfctl.cli.options import AliasSshConfigOpt, DirOpt, MasterAddrOpt, NodesOpt, json_opt, resolver
from mfctl.cli.root import app


@app.command()
def init(
    directory: Path = typer.Argument(..., help="Directory for the new job (created if missing)."),
    model: str | None = typer.Option(None, "--model", "-m",
                                        help="Model preset: llama2-7b, llama3-70b or tiny-llama."),
    model_config: Path | None = typer.Option(
        None, "--model-config", help="Your own MindFormers YAML instead of a preset's template."),
    nodes: Path | None = typer.Option(
        None, "--nodes", "-n", help="Hosts file: one node per line ('host', 'user@host:port', "
        "'host slots=8'); copied into the job. Default: this machine alone."),
    devices_per_node: int | None = typer.Option(None, "--devices-per-node",
                                                   help="Devices (msrun workers) per node."),
    devices: str | None = typer.Option(
        None, "--devices", help="The devices each node's job uses, e.g. 0,1,2,3: exported as "
        "ASCEND_RT_VISIBLE_DEVICES; their count is the workers per node."),
    dataset: str | None = typer.Option(None, "--dataset",
                                          help="MindRecord dataset path on the nodes."),
    name: str | None = typer.Option(None, "--name", help="Job name (default: the directory name)."),
    launcher: str = typer.Option("msrun", "--launcher",
                                 help="msrun (mfctl's entry under msrun) or mindformers "
                                 "(scripts/msrun_launcher.sh from a MindFormers checkout)."),
    mindformers_home: str | None = typer.Option(
        None, "--mindformers-home", help="MindFormers source dir on the nodes (launcher mindformers)."),
    dp: int | None = typer.Option(None, "--dp", help="Data-parallel degree."),
    mp: int | None = typer.Option(None, "--mp", help="Model-parallel degree."),
    pp: int | None = typer.Option(None, "--pp", help="Pipeline stages."),
    micro_batch_num: int | None = typer.Option(None, "--micro-batch-num",
                                                  help="Micro batches (pipeline)."),
    batch_size: int | None = typer.Option(None, "--batch-size",
                                             help="Per-device batch size (the preset's by default)."),
    grad_accum: int | None = typer.Option(
        None, "--grad-accum", help="Gradient accumulation steps (without pipeline stages); by default "
        "the preset's, scaled to keep its global batch on another device count."),
    master_port: int = typer.Option(8118, "--master-port", help="msrun scheduler port."),
    master_addr: str | None = typer.Option(
        None, "--master-addr", help="MASTER_ADDR when the training network differs from SSH's."),
    python: str = typer.Option("python3", "--python",
                               help="Python on the nodes (with mindspore, mindformers, msrun)."),
    workdir: str = typer.Option("mfctl-jobs", "--workdir",
                                help="Work dir on SSH nodes (relative = under the user's home)."),
    scheduler: str = typer.Option("hosts", "--scheduler",
                                  help="hosts (mfctl starts the nodes over SSH) or slurm (sbatch)."),
    partition: str | None = typer.Option(None, "--partition", help="Slurm partition (scheduler slurm)."),
    node_count: int | None = typer.Option(None, "--node-count", help="Slurm nodes to allocate."),
    gres: str | None = typer.Option(None, "--gres", help="Slurm generic resources per node, e.g. npu:8."),
    time_limit: str | None = typer.Option(None, "--time", help="Slurm time limit, e.g. 2-00:00:00."),
    account: str | None = typer.Option(None, "--account", help="Slurm account."),
    qos: str | None = typer.Option(None, "--qos", help="Slurm QOS."),
    sbatch_arg: list[str] | None = typer.Option(
        None, "--sbatch-arg", help="An extra sbatch option, passed through (repeatable), e.g. "
        "--sbatch-arg=--exclusive."),
    login: str | None = typer.Option(
        None, "--login", help="Run Slurm's commands over SSH on this login node (host, user@host or user@host:port); "
        "default: on this machine (SLURM_CONF and the SLURM_* environment apply)."),
    shared_root: str | None = typer.Option(
        None, "--shared-root", help="A directory every Slurm node sees at the same path; the job dir "
        "must be under it (not needed on NFS, Lustre, GPFS, ...)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask; use defaults for what is missing."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing mfctl.yaml."),
    no_fit_check: bool = typer.Option(
        False, "--no-fit-check", help="Create the job even if its layout does not fit in device "
        "memory (launch still refuses it unless given --no-fit-check too)."),
) -> None:
    """Create a job: write DIR/mfctl.yaml (and copy the hosts file) after validating it all.

    Example: mfctl init llama70b --model llama3-70b --nodes hosts.txt --devices-per-node 8
    --dataset /data/wiki4096.mindrecord --yes
    """
    from mfctl.errors import BadInput
    from mfctl.jobs.create import create_job

    slurm = None
    if scheduler not in ("hosts", "slurm"):
        raise BadInput(f"--scheduler must be 'hosts' or 'slurm', got {scheduler!r}")
    if scheduler == "slurm":
        if partition is None or node_count is None:
            raise BadInput("--scheduler slurm needs --partition P and --node-count N")
        slurm = {k: v for k, v in (("partition", partition), ("node_count", node_count), ("gres", gres),
                                   ("time", time_limit), ("account", account), ("qos", qos),
                                   ("sbatch_args", sbatch_arg), ("login", login),
                                   ("shared_root", shared_root)) if v}
        nodes = nodes or None
    elif any(v is not None for v in (partition, node_count, gres, time_limit, account, qos, sbatch_arg,
                                     login, shared_root)):
        raise BadInput("--partition/--node-count/--gres/--time/--account/--qos/--sbatch-arg/--login/"
                       "--shared-root are Slurm settings: add --scheduler slurm")
    if not yes:
        from mfctl.presets import PRESETS, preset_names

        if model is None and model_config is None:
            model = typer.prompt(f"Model preset ({', '.join(preset_names())})", default="tiny-llama")
        if nodes is None and slurm is None:
            answer = typer.prompt("Hosts file (or 'localhost' for this machine)", default="localhost")
            nodes = None if answer == "localhost" else Path(answer)
        if devices_per_node is None and devices is None:
            preset = PRESETS.get(model or "")
            devices_per_node = typer.prompt("Devices per node", type=int,
                                            default=preset.devices_per_node if preset else 8)
        if dataset is None:
            dataset = typer.prompt("Dataset (MindRecord path on the nodes)",
                                   default="data/wiki.mindrecord")
    job = create_job(
        directory, model=model, model_config=model_config, nodes=nodes,
        devices_per_node=devices_per_node, devices=devices, dataset=dataset, name=name, launcher=launcher,
        mindformers_home=mindformers_home, dp=dp, mp=mp, pp=pp, micro_batch_num=micro_batch_num,
        master_port=master_port, master_addr=master_addr, python=python, workdir=workdir, force=force,
        train={k: v for k, v in (("batch_size", batch_size), ("gradient_accumulation_steps", grad_accum))
               if v is not None} or None,
        slurm=slurm, fit_check=not no_fit_check,
    )
    views.print_created(job, directory)


@app.command()
def render(
    directory: Path = DirOpt,
    nodes: str | None = NodesOpt,
    master_addr: str | None = MasterAddrOpt,
    ssh_config: Path | None = AliasSshConfigOpt,
) -> None:
    """Write the job's MindFormers YAML, one launch script per node and plan.json into rendered/.

    Example: mfctl render --nodes hosts.txt
    """
    from mfctl.jobs.jobdir import load_job, make_plan, render_job
    from mfctl.records.ids import preview_job_id

    job = load_job(directory, nodes)
    plan = make_plan(job, master_addr, resolve=resolver(ssh_config))
    for path in render_job(job, plan, preview_job_id(job.spec.name)):
        views.out.print(str(path))


@app.command()
def plan(
    directory: Path = DirOpt,
    nodes: str | None = NodesOpt,
    master_addr: str | None = MasterAddrOpt,
    ssh_config: Path | None = AliasSshConfigOpt,
    as_json: bool = json_opt("Print the plan as JSON."),
    dryrun: bool = typer.Option(
        False, "--dryrun", help="Also compile one rank per pipeline stage with MindSpore's DryRun "
        "(MS_SIMULATION_LEVEL=1) on a node and show its peak memory beside the estimate; needs "
        "MindSpore for Ascend with CANN on that node (no card is used)."),
    node: str | None = typer.Option(None, "--node", help="With --dryrun: the node to run it on "
                                       "(host name or node rank; default: the first node)."),
) -> None:
    """Show the launch plan: each node's NODE_RANK, global ranks and the exact command it runs,
    and the device memory every pipeline stage needs (params, grads, optimizer, activations,
    other) against the limit, with what to change when it does not fit.

    Example: mfctl plan --json
    """
    from mfctl.cli.memory_view import print_memory
    from mfctl.jobs.fit import memory_report
    from mfctl.jobs.jobdir import load_job, make_plan

    job = load_job(directory, nodes)
    launch_plan = make_plan(job, master_addr, resolve=resolver(ssh_config))
    memory = memory_report(job)
    measured = None
    if dryrun:
        from mfctl.cli.options import ssh_opts
        from mfctl.jobs.dryrun import run_dryrun

        measured = run_dryrun(job, launch_plan, node, ssh_opts(ssh_config, False, 64, None),
                              progress=None if as_json else views.say)
    if as_json:
        views.print_json({**launch_plan.to_json(), "memory": memory,
                          **({"dryrun": measured} if dryrun else {})})
        return
    views.print_plan(job, launch_plan)
    print_memory(memory, measured)
    if job.spec.slurm is not None:
        from mfctl.jobs.launch import submission_preview

        views.out.print("\nSlurm: one srun task per node runs that node's command above, from "
                        "<job dir>/nodes/node$SLURM_NODEID, with NODE_RANK = $SLURM_NODEID and "
                        "MASTER_ADDR = the first allocated node's NodeAddr. The batch script:",
                        highlight=False)
        views.out.print(submission_preview(job, launch_plan) or "", markup=False, highlight=False, soft_wrap=True)
