"""``mfctl plan --dryrun``: MindSpore's DryRun of one rank per pipeline stage on one node.

DryRun (``MS_SIMULATION_LEVEL=1``) compiles the real graph of one rank without occupying a card
and prints the memory that rank would need. The job's rendered config and entry go into a
``dryrun/`` bundle beside the node's job dir (a running job's bundle is left alone), then the
node runs ``mfctl/node/dryrun.sh``, stage after stage, and the figures come back here.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Any

from mfctl.cluster.dryrun import parse_dryrun, stage_ranks
from mfctl.cluster.plan import CONFIG_FILE, TRAIN_ENTRY, LaunchPlan, NodePlan
from mfctl.errors import BadInput
from mfctl.jobs.jobdir import Job, render_job
from mfctl.jobs.nodeops import bundle_files, close_all, describe_error, inline, open_all, push_bundle
from mfctl.records.ids import preview_job_id
from mfctl.remote.connect import SshOptions

DRYRUN_DIR = "dryrun"
#: Compiling a large model's graph takes minutes per stage.
STAGE_TIMEOUT_S = 3600


def pick_node(plan: LaunchPlan, node: str | None) -> NodePlan:
    if node is None:
        return plan.nodes[0]
    for n in plan.nodes:
        if node in (n.host, str(n.node_rank)):
            return n
    raise BadInput(f"--node {node}: not a node of this job (hosts: "
                   f"{', '.join(n.host for n in plan.nodes)}, or a node rank 0..{len(plan.nodes) - 1})")


def entry_argv(job: Job, bundle: str) -> list[str]:
    """The training entry and its arguments, as ``launch`` runs it, without msrun."""
    config = posixpath.join(bundle, CONFIG_FILE)
    args = ["--config", config, "--train_dataset_dir", job.spec.dataset, "--run_mode", "train",
            "--use_parallel", "True"]
    if job.spec.launcher == "mindformers":
        return [posixpath.join(job.spec.mindformers_home or ".", "run_mindformer.py"), *args]
    return [posixpath.join(bundle, TRAIN_ENTRY), *args]


def dryrun_command(job: Job, job_dir: str, world: int, pairs: str) -> str:
    """mfctl/node/dryrun.sh with the job's python, setup, CANN environment and env, in bash when
    the node has it (CANN's set_env.sh scripts are written for bash)."""
    set_env = job.spec.ascend.set_env
    python, argv = job.spec.python, entry_argv(job, ".")
    if job.spec.env:
        # The job's env over the CANN environment, as the launch script orders them.
        python, argv = "env", [*(f"{k}={v}" for k, v in sorted(job.spec.env.items())), python, *argv]
    command = inline("dryrun.sh", python, job.spec.setup or "", job_dir, str(world), pairs,
                     "-" if set_env is None else "\n".join(set_env), *argv)
    return '"$(command -v bash || command -v sh)" ' + command.removeprefix("sh ")


def parse_output(host: str, text: str) -> dict[str, Any]:
    """dryrun.sh's lines as ``{"node", "stages": [...]}`` or ``{"node", "skipped": why}``."""
    lines = text.splitlines()
    if "nocann" in lines:
        return {"node": host, "skipped": f"{host}: no CANN found (ASCEND_HOME_PATH, "
                "/usr/local/Ascend/ascend-toolkit/latest): DryRun needs MindSpore for Ascend with CANN"}
    if "setup_failed" in lines:
        return {"node": host, "skipped": f"{host}: the job's setup line failed; DryRun was not run"}
    missing = [line.split(" ", 1)[1] for line in lines if line.startswith("set_env_missing ")]
    if missing:
        return {"node": host, "skipped": f"{host}: ascend.set_env {missing[0]} is not there (or not "
                "readable); DryRun was not run"}
    stages: list[dict[str, Any]] = []
    mem: dict[str, list[str]] = {}
    tails: dict[str, list[str]] = {}
    for line in lines:
        parts = line.split(" ", 2)
        if parts[0] == "stage" and len(line.split()) == 6:
            _, stage, _, rank, _, rc = line.split()
            stages.append({"stage": int(stage), "rank": int(rank), "rc": int(rc)})
        elif parts[0] in ("mem", "tail") and len(parts) == 3:
            (mem if parts[0] == "mem" else tails).setdefault(parts[1], []).append(parts[2])
    for s in stages:
        found = parse_dryrun("\n".join(mem.get(str(s["stage"]), [])))
        if found is not None:
            s.update(found.to_json())
        else:
            s["problem"] = " / ".join(tails.get(str(s["stage"]), [])) or "no memory statistic printed"
    return {"node": host, "stages": stages}


def run_dryrun(job: Job, plan: LaunchPlan, node: str | None, opts: SshOptions,
               progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    if job.spec.slurm is not None:
        return {"skipped": "the job runs on Slurm, which picks its nodes at run time: --dryrun needs "
                "nodes from a hosts file"}
    target = pick_node(plan, node)
    say = progress or (lambda _text: None)
    rendered = job.dir / "rendered"
    render_job(job, plan, preview_job_id(job.spec.name), rendered)
    job_dir = posixpath.join(target.job_dir, DRYRUN_DIR)
    transports = open_all([target.entry], str(job.dir), opts)
    try:
        t = transports[target.entry.label]
        say(f"{target.host}: pushing the config to {job_dir}")
        push_bundle(t, job_dir, bundle_files(rendered, target.node_rank))
        pairs = " ".join(f"{s}:{r}" for s, r in stage_ranks(plan.world_size, plan.pipeline_stage))
        say(f"{target.host}: DryRun of {plan.pipeline_stage} stage(s), one after the other")
        command = dryrun_command(job, job_dir, plan.world_size, pairs)
        res = t.run(command, timeout=STAGE_TIMEOUT_S * plan.pipeline_stage)
    except Exception as exc:  # one node, one answer: say what failed beside the estimate
        return {"node": target.host, "skipped": f"{target.host}: {describe_error(exc)}"}
    finally:
        close_all(transports)
    out = parse_output(target.host, res.stdout)
    if "stages" in out and not out["stages"]:
        err = (res.stderr.strip().splitlines() or ["no output"])[-1]
        return {"node": target.host, "skipped": f"{target.host}: DryRun did not run: {err}"}
    return out
