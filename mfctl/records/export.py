"""A job's collected metrics as CSV or JSON Lines (``mfctl export``)."""

from __future__ import annotations

import csv
import json
from typing import TextIO

from mfctl.errors import BadInput
from mfctl.records.store import JobStore

COLUMNS = ("rank", "step", "total_steps", "loss", "step_time_ms", "samples_per_s", "time")
FORMATS = ("csv", "jsonl")


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise BadInput(f"--format must be csv or jsonl, got {fmt!r}")


def export_metrics(store: JobStore, job_id: str, fmt: str, handle: TextIO) -> int:
    """Write every saved step of ``job_id`` to ``handle``; returns the number of rows."""
    check_format(fmt)
    rows = list(store.metrics(job_id))
    if fmt == "csv":
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    else:
        for row in rows:
            handle.write(json.dumps(dict(zip(COLUMNS, row))) + "\n")
    return len(rows)
