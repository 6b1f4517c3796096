"""Which checkpoint a failed or stopped job can resume from (``launch --resume``, ``--max-restarts``)."""

from __future__ import annotations

import posixpath
import re

from mfctl.errors import OperationFailed
from mfctl.jobs.backend import Backend
from mfctl.jobs.nodeops import describe_error
from mfctl.records.record import JobRecord

_CKPT = re.compile(r"^(?P<prefix>.+)_rank_(?P<rank>\d+)-(?P<epoch>\d+)_(?P<step>\d+)\.ckpt$")


def has_checkpoint(record: JobRecord, backend: Backend) -> bool:
    """Whether any node of the job saved a checkpoint to resume from."""
    listed = backend.list_checkpoints(record.output_dir)
    return any(files for files in listed.ok.values())


def common_checkpoint(record: JobRecord, backend: Backend) -> str:
    """The newest checkpoint every rank of ``record`` saved, named as rank 0's file.

    Chosen here, from all nodes, so that every rank resumes from the same step (MindFormers'
    own choice synchronises the ranks with a barrier, which the CPU backend lacks).
    """
    listed = backend.list_checkpoints(record.output_dir)
    for host, exc in listed.failed.items():
        raise OperationFailed(f"{host}: cannot list the checkpoints of {record.id}: {describe_error(exc)}")
    steps: dict[int, set[tuple[int, int, str]]] = {}
    for files in listed.ok.values():
        for path in files:
            m = _CKPT.match(posixpath.basename(path))
            if m:
                steps.setdefault(int(m["rank"]), set()).add(
                    (int(m["epoch"]), int(m["step"]), f"{m['prefix']}_rank_0-{m['epoch']}_{m['step']}.ckpt"))
    world = record.plan.world_size
    missing = [r for r in range(world) if r not in steps]
    if missing:
        raise OperationFailed(f"job {record.id} has no checkpoint for rank(s) "
                              f"{', '.join(map(str, missing[:8]))}; it cannot be resumed")
    common = set.intersection(*(steps[r] for r in range(world)))
    if not common:
        raise OperationFailed(f"job {record.id}: its ranks saved no checkpoint at the same step; "
                              "it cannot be resumed")
    return max(common)[2]
