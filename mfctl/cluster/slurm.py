"""Slurm, pure: where a Slurm job's nodes keep their files, the sbatch command, and what Slurm's
own tools print (``scontrol -o show job|node|partition``, ``squeue -h -o '%i|%T|%r|%N'``) turned
into typed values. No I/O: ``mfctl.remote.slurm`` runs the commands.

Formats chosen because they hold across Slurm versions: ``squeue --json`` changes shape between
releases and ignores ``-j`` on 22.05, and there may be no ``sacct`` (no slurmdbd).
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass, field

from mfctl.jobspec.schema import SlurmSpec

#: Inside the shared job dir: one directory per node rank (bundle, run files, logs, checkpoints,
#: exactly what an SSH node keeps in its own job dir), and the batch scripts and their output.
NODES_DIR = "nodes"
SLURM_DIR = "slurm"
#: What the plan's per-node command says for the master address, filled in by the batch script.
MASTER_PLACEHOLDER = "$MASTER_ADDR"
#: Filesystems every node of a cluster sees at the same path.
NETWORK_FS = frozenset({"nfs", "nfs4", "lustre", "gpfs", "beegfs", "cephfs", "ceph", "fuse.glusterfs",
                        "glusterfs", "fuse.sshfs", "pvfs2", "orangefs", "panfs", "wekafs", "9p",
                        "fuse.juicefs", "virtiofs", "smbfs", "cifs", "afs", "dvsfs"})
#: Slurm states of a job that still holds (or waits for) its nodes.
ACTIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
                    "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED",
                    "RESV_DEL_HOLD", "SPECIAL_EXIT"})
FAILED = frozenset({"FAILED", "NODE_FAIL", "TIMEOUT", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
                    "PREEMPTED", "REVOKED"})


def node_dir(job_dir: str, node_rank: int) -> str:
    """Node rank ``node_rank``'s directory inside the shared job dir."""
    return posixpath.join(job_dir, NODES_DIR, f"node{node_rank}")


def node_label(node_rank: int) -> str:
    """The plan's name for a node Slurm has not chosen yet."""
    return f"slurm-node{node_rank}"


def sbatch_argv(slurm: SlurmSpec, job_name: str, output: str, script: str) -> list[str]:
    """``sbatch --parsable`` with the spec's options. mfctl restarts jobs itself (--resume,
    --max-restarts): ``--no-requeue`` keeps Slurm from running one again behind its back."""
    argv = ["sbatch", "--parsable", f"--job-name={job_name}", f"--partition={slurm.partition}",
            f"--nodes={slurm.node_count}", "--ntasks-per-node=1", "--no-requeue", f"--output={output}"]
    for flag, value in (("--gres", slurm.gres), ("--time", slurm.time), ("--account", slurm.account),
                        ("--qos", slurm.qos)):
        if value:
            argv.append(f"{flag}={value}")
    return argv + list(slurm.sbatch_args) + [script]


def sbatch_command(slurm: SlurmSpec, job_name: str, output: str, script: str) -> str:
    return shlex.join(sbatch_argv(slurm, job_name, output, script))


_KEY = re.compile(r"(?:^|(?<=\s))([A-Za-z][A-Za-z0-9_:/.()-]*)=")


def parse_scontrol(line: str) -> dict[str, str]:
    """One ``scontrol -o show ...`` line as a dict. Values may contain spaces (``OS=Linux 6.1 ...``),
    so a value runs up to the next `` Key=``."""
    out: dict[str, str] = {}
    marks = list(_KEY.finditer(line))
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(line)
        out[m.group(1)] = line[m.end():end].strip()
    return out


@dataclass(frozen=True)
class SlurmJob:
    """What Slurm says about one job."""

    job_id: str
    state: str
    reason: str = ""
    nodelist: str = ""
    #: The batch script's exit code and the signal that ended it (scontrol's ``ExitCode=E:S``).
    exit_code: int | None = None
    signal: int | None = None
    batch_host: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def pending(self) -> bool:
        return self.state == "PENDING"

    def describe(self) -> str:
        """One phrase: 'pending (Resources)', 'running on node[1-2]', 'failed: exit code 1 ...'."""
        state = self.state.lower().replace("_", " ")
        reason = f" ({self.reason})" if self.reason and self.reason != "None" else ""
        if self.pending:
            # Just after submission Slurm says None for a few seconds before it names the reason.
            return f"pending{reason or ' (not scheduled yet)'}"
        if self.active:
            return f"{state} on {self.nodelist or '?'}"
        code = ""
        if self.state != "COMPLETED" and (self.exit_code or self.signal):
            code = f", exit code {self.exit_code}" + (f" signal {self.signal}" if self.signal else "")
        where = f" on {self.nodelist}" if self.nodelist else ""
        return f"{state}{where}{code}{reason}"


def job_from_scontrol(line: str) -> SlurmJob:
    d = parse_scontrol(line)
    code, sig = None, None
    exit_text = d.get("ExitCode", "")
    if re.fullmatch(r"\d+:\d+", exit_text):
        code, sig = (int(x) for x in exit_text.split(":"))
    nodes = d.get("NodeList", "")
    return SlurmJob(d.get("JobId", ""), d.get("JobState", "UNKNOWN"), d.get("Reason", ""),
                    "" if nodes == "(null)" else nodes, code, sig, d.get("BatchHost", ""), d)


def job_from_squeue(line: str) -> SlurmJob | None:
    """A ``squeue -h --states=all -o '%i|%T|%r|%N'`` row (no exit code in it)."""
    parts = line.strip().split("|")
    if len(parts) != 4 or not parts[0]:
        return None
    return SlurmJob(parts[0], parts[1], parts[2], parts[3])


def unknown_job(stderr: str) -> bool:
    """Slurm has forgotten the job (``MinJobAge`` after its end): fall back to mfctl's record."""
    return "Invalid job id" in stderr


@dataclass(frozen=True)
class Partition:
    name: str
    total_nodes: int | None
    state: str
    max_nodes: int | None


def partition_from_scontrol(line: str) -> Partition:
    d = parse_scontrol(line)
    total = d.get("TotalNodes", "")
    max_nodes = d.get("MaxNodes", "")
    return Partition(d.get("PartitionName", ""), int(total) if total.isdigit() else None,
                     d.get("State", ""), int(max_nodes) if max_nodes.isdigit() else None)


def partition_problem(part: Partition, node_count: int) -> str | None:
    """Why ``node_count`` nodes can never run on ``part`` (Slurm accepts such a job and lets it
    pend forever with ``PartitionNodeLimit``)."""
    if part.state and part.state != "UP":
        return f"partition {part.name} is {part.state}, not UP"
    limit = min(x for x in (part.total_nodes, part.max_nodes) if x is not None) \
        if part.total_nodes is not None or part.max_nodes is not None else None
    if limit is not None and node_count > limit:
        return (f"node_count {node_count} is more than partition {part.name} has "
                f"({limit} node{'s' if limit != 1 else ''})")
    return None


def node_addr(line: str) -> str | None:
    """``NodeAddr`` of a ``scontrol -o show node`` line."""
    return parse_scontrol(line).get("NodeAddr") or None
