"""The launch plan: which node runs which ranks, and the exact command each runs (pure).

Global rank = ``node_rank * local_worker_num + i`` (msrun's rule), node ranks follow hosts-file
order, and MASTER_ADDR is the first node's address unless overridden. Commands are built with
``shlex`` so every value reaches the node's shell literally.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mfctl.cluster.batch import GlobalBatch
from mfctl.cluster.hostfile import HostEntry
from mfctl.cluster.layout import Layout
from mfctl.cluster.slurm import MASTER_PLACEHOLDER, node_dir
from mfctl.errors import BadInput
from mfctl.jobspec.schema import JobSpec

#: Where the pushed job bundle lives inside a node's job dir.
BUNDLE_DIR = "bundle"
#: mfctl's training entry inside the bundle (copied from ``mfctl/node``).
TRAIN_ENTRY = f"{BUNDLE_DIR}/node/train.py"
CONFIG_FILE = f"{BUNDLE_DIR}/config.yaml"
LAUNCH_SCRIPT = f"{BUNDLE_DIR}/launch.sh"
#: With launcher 'mindformers' on CPU: a sitecustomize that registers mfctl's CPU train cell for
#: MindFormers' own run_mindformer.py (put on PYTHONPATH by the launch script).
CPU_SITE_DIR = f"{BUNDLE_DIR}/cpu_site"
RUN_DIR = "run"

# msrun_launcher.sh splits its first argument on spaces: paths put inside it must be plain words.
_PLAIN_WORD = re.compile(r"^[A-Za-z0-9._/@%+=:,~-]+$")


@dataclass(frozen=True, slots=True)
class NodePlan:
    host: str
    entry: HostEntry
    node_rank: int
    local_worker_num: int
    ranks: tuple[int, ...]
    #: The job's directory on the node (relative paths are under the SSH user's home).
    job_dir: str
    #: Where msrun writes worker_N.log / scheduler.log on the node (relative to job_dir if relative).
    log_dir: str
    #: The training command, run by the node launch script from ``cwd``.
    command: str
    cwd: str
    #: The devices the node's workers use (the spec's ``devices``; local rank i on the i-th),
    #: exported as ASCEND_RT_VISIBLE_DEVICES. None: the node's default (0..local_worker_num-1).
    devices: tuple[int, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "host": self.host,
            "node_rank": self.node_rank,
            "local_worker_num": self.local_worker_num,
            "ranks": list(self.ranks),
            "command": self.command,
            "job_dir": self.job_dir,
            "log_dir": self.log_dir,
        }
        if self.devices is not None:
            out["devices"] = list(self.devices)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], entry: HostEntry | None = None) -> NodePlan:
        """The node ``to_json`` wrote; ``entry``: the hosts-file entry (else one from the label)."""
        return cls(
            host=data["host"], entry=entry or entry_of_label(data["host"]), node_rank=data["node_rank"],
            local_worker_num=data["local_worker_num"], ranks=tuple(data["ranks"]), job_dir=data["job_dir"],
            log_dir=data["log_dir"], command=data["command"], cwd=data.get("cwd", data["job_dir"]),
            devices=tuple(data["devices"]) if data.get("devices") is not None else None)

    def log_path(self, rank: int | None) -> str:
        """The node's msrun log of ``rank`` (None: the scheduler's), as a path on the node.
        The one join of the log dir with the job dir."""
        return posixpath.join(self.log_dir_path, "scheduler.log" if rank is None else f"worker_{rank}.log")

    @property
    def log_dir_path(self) -> str:
        """``log_dir`` on the node: relative ones are under the job dir."""
        return self.log_dir if self.log_dir.startswith("/") else posixpath.join(self.job_dir, self.log_dir)


def entry_of_label(label: str) -> HostEntry:
    """``[user@]host[:port]`` (``HostEntry.label``) back to an entry."""
    user, _, rest = label.rpartition("@")
    host, port = rest, None
    if rest.count(":") == 1 or (rest.startswith("[") and "]:" in rest):
        head, _, tail = rest.rpartition(":")
        if tail.isdigit():
            host, port = head, int(tail)
    return HostEntry(host=host, user=user or None, port=port)


@dataclass(frozen=True, slots=True)
class LaunchPlan:
    job_name: str
    world_size: int
    master_addr: str
    master_port: int
    layout: Layout
    launcher: str
    local: bool
    nodes: tuple[NodePlan, ...]
    layout_note: str | None = None
    batch: GlobalBatch | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "job_name": self.job_name,
            "world_size": self.world_size,
            "master_addr": self.master_addr,
            "master_port": self.master_port,
            "launcher": self.launcher,
            "parallel": self.layout.as_dict(),
            "nodes": [n.to_json() for n in self.nodes],
        }
        if self.batch is not None:
            out["global_batch"] = self.batch.to_json()
        if self.layout_note:
            out["note"] = self.layout_note
        out["local"] = self.local
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], entries: list[HostEntry] | None = None) -> LaunchPlan:
        """The plan ``to_json`` wrote (a job record's). ``entries``: the hosts-file entries, matched
        to the nodes by label. Plans recorded before ``local`` was written: local when the only
        node is this machine."""
        by_label = {e.label: e for e in entries or ()}
        nodes = tuple(NodePlan.from_json(n, by_label.get(n["host"])) for n in data["nodes"])
        p = data["parallel"]
        layout = Layout(p["data_parallel"], p["model_parallel"], p["pipeline_stage"], p["micro_batch_num"])
        batch = data.get("global_batch")
        local = data.get("local")
        if local is None:
            local = len(nodes) == 1 and nodes[0].entry.is_local
        return cls(
            job_name=data["job_name"], world_size=data["world_size"], master_addr=data["master_addr"],
            master_port=data["master_port"], layout=layout, launcher=data["launcher"], local=local,
            nodes=nodes, layout_note=data.get("note", data.get("layout_note")),
            batch=GlobalBatch.from_json(batch, layout) if batch else None)

    @property
    def pipeline_stage(self) -> int:
        return self.layout.pipeline_stage

    def node(self, host: str) -> NodePlan:
        return next(n for n in self.nodes if n.host == host)

    def node_of_rank(self, rank: int) -> NodePlan:
        for node in self.nodes:
            if rank in node.ranks:
                return node
        raise BadInput(f"rank {rank} is not in this job (ranks 0..{self.world_size - 1})")


def msrun_executable(python: str) -> str:
    """msrun next to the nodes' python when that is a path, else from PATH."""
    if "/" in python:
        return posixpath.join(posixpath.dirname(python), "msrun")
    return "msrun"


def _train_args(spec: JobSpec, dataset: str, resume: str | None, job_dir_ref: str) -> list[str]:
    args = ["--config", f"{job_dir_ref}{CONFIG_FILE}", "--train_dataset_dir", dataset,
            "--run_mode", "train", "--use_parallel", "True"]
    if resume:
        args += ["--load_checkpoint", f"{job_dir_ref}{spec.output_dir}/checkpoint",
                 "--resume_training", resume]
    return args


def _mindformers_command(spec: JobSpec, world: int, devices: int, master: str, node_rank: int,
                         job_dir: str, log_dir: str, resume: str | None) -> str:
    """MindFormers' own launcher with its 9 arguments, run from the node's job dir.

    The node launch script sets ``$MF_HOME`` and ``$JOB_DIR`` to absolute paths (checked there to
    be plain words too), so run_mindformer.py finds the job's config wherever the checkout is, and
    msrun_launcher.sh, which logs under the current directory, writes ``output/`` into the job dir.
    JOIN is True: msrun stays in the foreground, so the launch script's exit code is the job's.
    """
    home = spec.mindformers_home
    if not home:
        raise BadInput("mindformers_home is required with launcher 'mindformers': the MindFormers "
                       "source dir on the nodes (--mindformers-home PATH)")
    if world < 2:
        # msrun_launcher.sh exits 0 without starting anything for a single rank.
        raise BadInput("launcher 'mindformers' needs at least 2 workers (MindFormers' "
                       "msrun_launcher.sh refuses a single rank); use launcher 'msrun'")
    # The first argument is split on spaces and the msrun command line is eval'ed by the script.
    for what, value in (("mindformers_home", home), ("job dir", job_dir), ("dataset", spec.dataset),
                        ("output_dir", spec.output_dir),
                        ("master_addr", master.replace("$MASTER_ADDR", "MASTER_ADDR")),
                        ("register_path", spec.register_path or "-")):
        if not _PLAIN_WORD.match(value):
            raise BadInput(
                f"{what} {value!r} has spaces or shell characters, which MindFormers' "
                "msrun_launcher.sh cannot pass on; use a plain path or the 'msrun' launcher")
    order = ["$MF_HOME/run_mindformer.py"]
    if spec.register_path:
        # Relative to the checkout, as run_mindformer.py resolves it.
        order += ["--register_path", spec.register_path]
    order += _train_args(spec, spec.dataset, resume, "$JOB_DIR/")
    order += ["--output_dir", f"$JOB_DIR/{spec.output_dir}"]
    return " ".join([
        "bash", '"$MF_HOME/scripts/msrun_launcher.sh"', '"' + " ".join(order) + '"',
        str(world), str(devices), master, str(spec.master_port), str(node_rank),
        log_dir, "True", str(spec.cluster_timeout),
    ])


def _workers_per_node(spec: JobSpec, entries: list[HostEntry]) -> int:
    """msrun's local workers per node: the hosts file's slots, else the spec's device count (the
    length of ``devices`` when it lists them: then the slots must agree)."""
    slots = entries[0].slots
    if spec.devices is not None and slots is not None and slots != len(spec.devices):
        raise BadInput(f"hosts file line {entries[0].line}: slots={slots} but devices lists "
                       f"{len(spec.devices)} device(s) ({','.join(map(str, spec.devices))}); make them agree")
    return slots or spec.devices_per_node


def build_plan(
    spec: JobSpec,
    entries: list[HostEntry],
    layout: Layout,
    local_job_dir: str,
    master_addr: str | None = None,
    resolve: Callable[[HostEntry], str] = lambda e: e.host,
    resume: str | None = None,
    layout_note: str | None = None,
    batch: GlobalBatch | None = None,
) -> LaunchPlan:
    """The plan for ``spec`` on ``entries``.

    ``resume`` (a checkpoint file name every rank has, or "True" to let MindFormers choose)
    restarts from the job's checkpoints. ``local_job_dir`` is the job directory on this machine
    (used as the node job dir when the cluster is this machine alone); ``resolve`` maps a node to
    the address msrun can reach (an ssh_config alias's HostName).
    """
    local = len(entries) == 1 and entries[0].is_local
    devices = _workers_per_node(spec, entries)
    visible = tuple(spec.devices) if spec.devices is not None else None
    if len(entries) > 1 and "HCCL_IF_IP" in spec.env:
        raise BadInput(f"env.HCCL_IF_IP is one address for all {len(entries)} nodes, but HCCL binds "
                       "each node's own address; set HCCL_SOCKET_IFNAME (the interface name) instead")
    world = devices * len(entries)
    master = master_addr or spec.master_addr or ("127.0.0.1" if local else resolve(entries[0]))
    job_dir = local_job_dir if local else posixpath.join(spec.workdir, spec.name)
    slurm = spec.scheduler == "slurm"
    if slurm:
        # Slurm picks the nodes: the batch script fills in node 0's NodeAddr at run time, and each
        # node rank keeps its files in its own directory of the shared job dir.
        master = master_addr or spec.master_addr or MASTER_PLACEHOLDER
        local = False
    log_dir = posixpath.join(spec.output_dir, "msrun_log")
    nodes: list[NodePlan] = []
    for node_rank, entry in enumerate(entries):
        ranks = tuple(range(node_rank * devices, (node_rank + 1) * devices))
        if slurm:
            job_dir = node_dir(local_job_dir, node_rank)
        if spec.launcher == "msrun":
            argv = [
                msrun_executable(spec.python),
                "--worker_num", str(world), "--local_worker_num", str(devices),
                "--master_addr", master, "--master_port", str(spec.master_port),
                "--node_rank", str(node_rank), "--log_dir", log_dir,
                "--join", "True", "--cluster_time_out", str(spec.cluster_timeout),
                TRAIN_ENTRY, *_train_args(spec, spec.dataset, resume, ""),
            ]
            command = shlex.join(argv)
            if master == MASTER_PLACEHOLDER:
                # Expanded by the node's shell: the batch script exports it.
                command = command.replace(shlex.quote(master), '"$MASTER_ADDR"')
        else:
            command = _mindformers_command(spec, world, devices, master, node_rank, job_dir, log_dir,
                                           resume)
        nodes.append(NodePlan(
            host=entry.label, entry=entry, node_rank=node_rank, local_worker_num=devices,
            ranks=ranks, job_dir=job_dir, log_dir=log_dir, command=command, cwd=job_dir,
            devices=visible,
        ))
    return LaunchPlan(
        job_name=spec.name, world_size=world, master_addr=master, master_port=spec.master_port,
        layout=layout, launcher=spec.launcher, local=local, nodes=tuple(nodes), layout_note=layout_note,
        batch=batch,
    )
