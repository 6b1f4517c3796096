"""Job ids: ``<name>-<UTC time>``, unique per launch, sortable, safe in paths and shells."""

from __future__ import annotations

import time


def new_job_id(name: str, now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{name}-{stamp}"


def preview_job_id(name: str) -> str:
    """The id shown in rendered files before a launch gives the job its own."""
    return f"{name}-render"
