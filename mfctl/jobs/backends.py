"""Which backend a job runs on: hosts (local or SSH) or Slurm, picked once from its spec or record.

The one place that names the backends; everything else holds a ``Backend`` and never asks which.
"""

from __future__ import annotations

from mfctl.cluster.hostfile import HostEntry
from mfctl.cluster.plan import LaunchPlan
from mfctl.jobs.backend import Backend, HostsBackend
from mfctl.jobspec.schema import JobSpec
from mfctl.records.record import JobRecord
from mfctl.remote.connect import SshOptions


def backend_for_job(plan: LaunchPlan, entries: list[HostEntry], local_dir: str, opts: SshOptions,
                    spec: JobSpec) -> Backend:
    """The backend a new launch runs on."""
    if spec.slurm is not None:
        from mfctl.jobs.slurm_backend import SlurmBackend  # loaded only for Slurm jobs (~20 ms of imports)

        return SlurmBackend(plan, spec.slurm, local_dir, opts, spec, spec.python, spec.setup)
    return HostsBackend(plan, entries, local_dir, opts, spec.python, spec.setup)


def backend_for_record(record: JobRecord) -> Backend:
    """The backend a recorded job runs on (its record says which)."""
    if record.spec.get("scheduler") == "slurm":
        from mfctl.jobs.slurm_backend import SlurmBackend

        return SlurmBackend.for_record(record)
    return HostsBackend.for_record(record)
