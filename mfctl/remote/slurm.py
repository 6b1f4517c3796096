"""Slurm's command-line tools (``sbatch``, ``squeue``, ``scontrol``, ``scancel``, ``stat``), run on
this machine or over SSH on a login node.

Locally the commands inherit this process's environment, so ``SLURM_CONF`` and the other
``SLURM_*`` variables apply exactly as they do to Slurm's own tools typed in this shell; on a login
node they get that node's login environment. Parsing is in ``mfctl.cluster.slurm`` (pure).
"""

from __future__ import annotations

import shlex
import time

from mfctl.cluster.hostfile import HostEntry
from mfctl.cluster.plan import entry_of_label
from mfctl.cluster.slurm import (
    Partition,
    SlurmJob,
    job_from_scontrol,
    job_from_squeue,
    node_addr,
    partition_from_scontrol,
    unknown_job,
)
from mfctl.errors import BadInput, OperationFailed
from mfctl.remote.base import RunResult, Transport
from mfctl.remote.connect import SshOptions, open_transport


def login_entry(login: str | None) -> HostEntry:
    """Where Slurm's commands run: the login node, or this machine."""
    return entry_of_label(login) if login else HostEntry("localhost")


class SlurmClient:
    """Slurm's tools on one machine (this one, or a login node)."""

    def __init__(self, transport: Transport, where: str) -> None:
        self.t = transport
        #: For messages: "this machine" or "login node HOST".
        self.where = where

    @classmethod
    def open(cls, login: str | None, local_dir: str, opts: SshOptions) -> SlurmClient:
        entry = login_entry(login)
        return cls(open_transport(entry, local_dir, opts),
                   f"login node {login}" if login else "this machine")

    def run(self, argv: list[str], timeout: float = 30) -> RunResult:
        return self.t.run(shlex.join(argv), timeout=timeout)

    def close(self) -> None:
        self.t.close()

    # -- before a submission

    def require_tools(self) -> None:
        res = self.t.run("command -v sbatch && command -v scontrol && command -v squeue && "
                         "command -v scancel", timeout=30)
        if not res.ok:
            raise BadInput(f"{self.where}: Slurm's commands (sbatch, squeue, scontrol, scancel) are not "
                           "installed or not on PATH; run mfctl where sbatch works, or set slurm.login "
                           "(--login HOST) to a login node")

    def partition(self, name: str, spec_file: str = "mfctl.yaml") -> Partition:
        res = self.run(["scontrol", "-o", "show", "partition", name])
        if not res.ok or not res.stdout.strip():
            why = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "not found"
            if "not found" in why.lower() or "invalid" in why.lower():
                raise BadInput(f"{spec_file}: slurm.partition {name!r}: Slurm on {self.where} has no such "
                               "partition; 'sinfo' lists them")
            raise OperationFailed(f"{self.where}: scontrol show partition {name} failed: {why}")
        return partition_from_scontrol(res.stdout.strip().splitlines()[0])

    def fs_type(self, path: str) -> str:
        res = self.run(["stat", "-f", "-c", "%T", path])
        return res.stdout.strip() if res.ok else ""

    # -- a job

    def submit(self, argv: list[str]) -> str:
        res = self.run(argv, timeout=60)
        if not res.ok:
            lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
            raise OperationFailed(f"sbatch failed on {self.where}: "
                                  f"{lines[-1] if lines else f'exit code {res.exit_code}'}")
        # --parsable prints "ID" or "ID;cluster".
        return res.stdout.strip().splitlines()[-1].split(";")[0]

    def job(self, job_id: str) -> SlurmJob | None:
        """What Slurm says about the job; None once it has forgotten it (``MinJobAge``)."""
        res = self.run(["scontrol", "-o", "show", "job", job_id])
        if res.ok and res.stdout.strip():
            return job_from_scontrol(res.stdout.strip().splitlines()[0])
        if unknown_job(res.stderr):
            return None
        # scontrol failed otherwise (controller busy): squeue may still answer.
        res = self.run(["squeue", "-h", "--states=all", "-j", job_id, "-o", "%i|%T|%r|%N"])
        if res.ok:
            for line in res.stdout.splitlines():
                row = job_from_squeue(line)
                if row is not None and row.job_id == job_id:
                    return row
            return None
        if unknown_job(res.stderr):
            return None
        raise OperationFailed(f"{self.where}: cannot ask Slurm about job {job_id}: "
                              f"{(res.stderr or res.stdout).strip()[:200]}")

    def steps(self, job_id: str) -> list[str]:
        res = self.run(["squeue", "-h", "-s", "-j", job_id, "-o", "%i"])
        return [s.strip() for s in res.stdout.split() if s.strip()] if res.ok else []

    def signal(self, target: str, sig: str) -> RunResult:
        return self.run(["scancel", "-s", sig, target])

    def cancel(self, job_id: str) -> RunResult:
        return self.run(["scancel", job_id])

    def node_addr(self, node: str) -> str | None:
        res = self.run(["scontrol", "-o", "show", "node", node])
        return node_addr(res.stdout) if res.ok else None

    def wait_ended(self, job_id: str, timeout: float) -> SlurmJob | None:
        """Poll until the job holds no node any more (or Slurm forgot it); the last look."""
        deadline = time.monotonic() + timeout
        job = self.job(job_id)
        while job is not None and job.active and time.monotonic() < deadline:
            time.sleep(0.2)
            job = self.job(job_id)
        return job
