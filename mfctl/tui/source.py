"""``DashboardSource``: what the dashboard consumes, defined by the dashboard.

The TUI renders snapshots (``mfctl.metrics.types``) and never looks further: ``mfctl watch``
hands it a live job or a log directory (``mfctl.live``), the tests a scripted source
(``tests.fakes``). The protocol lives here, on the consumer's side, so ``tui`` imports nothing of
the code that follows jobs (remote, jobs, live) and those never import ``tui``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from mfctl.metrics.types import History, Snapshot


@runtime_checkable
class DashboardSource(Protocol):
    """What the dashboard reads. ``mfctl watch`` adapts a live job to it; tests script one."""

    def snapshot(self) -> Snapshot:
        """The current ``{"ranks": [...], "cluster": {...}, "alerts": [...]}``. Thread-safe; the
        dashboard calls it from a thread worker, never on the UI thread after the first frame."""
        ...

    def history(self, rank: int | None = None) -> History:
        """The plots' data, bounded by the source and cheap. ``{"bands": {metric: [(step, min,
        median, max)...]}, "rank": {"rank": n, metric: [(step, v)...]}}`` for the metrics
        ``loss``, ``tokens_per_s``, ``step_time_ms``: the band over all ranks and ``rank``'s own
        line. A source without per-rank data may give cluster lines instead:
        ``{"loss": [(step, v)...], "tokens_per_s": [(step, v)...]}``. ``"throughput": "samples/s"``
        says the ``tokens_per_s`` series holds samples/s (the sequence length is unknown)."""
        ...

    def rank_log(self, rank: int, lines: int) -> list[str]:
        """The last ``lines`` lines of one rank's log. May block: only called from a thread worker."""
        ...

    def stop_job(self) -> str:
        """Stop the job on every node; a one-line outcome for the user. May block (thread worker)."""
        ...
