"""The launcher's rules: what msrun's and the scheduler's lines (a log of rank None, or msrun's
lines echoed in a worker log) do to the ranks of ``mfctl.metrics.state``: a worker's exit fails
the rank whose pid it names, "kill all other workers" fails the node's live ranks, "node N is
timed out" fails rank N softly, a traceback and its exception, error lines (an identical repeat
from the same source is dropped; a CANN failure is named by its code: ``mfctl.metrics.cann``).
Pure: no I/O, the clock is given.
"""

from __future__ import annotations

import signal
from typing import Any

from mfctl.metrics.alerts import AlertLog
from mfctl.metrics.cann import error_alert
from mfctl.metrics.events import (
    ErrorLineEvent,
    ExceptionEvent,
    KillAllWorkersEvent,
    SchedulerExitEvent,
    TimeoutEvent,
    TracebackEvent,
    WorkerExitEvent,
)
from mfctl.metrics.track import RankTrack
from mfctl.metrics.types import RankState

__all__ = ["LauncherRules"]

STARTING, RUNNING, STALLED = RankState.STARTING, RankState.RUNNING, RankState.STALLED
FINISHED, FAILED = RankState.FINISHED, RankState.FAILED


def _signal_name(code: int) -> str:
    if code < 0:
        try:
            return f" ({signal.Signals(-code).name})"
        except ValueError:
            return ""
    return ""


class LauncherRules:
    """The launcher's logs' rules over the state's ``ranks`` (shared, not copied) and ``alerts``;
    ``world_size`` bounds the ranks a timeout may name."""

    def __init__(self, ranks: dict[int, RankTrack], alerts: AlertLog, world_size: int | None) -> None:
        self.ranks = ranks
        self.alerts = alerts
        self.world_size = world_size
        self._traceback: dict[str | None, bool] = {}
        self._last_error: dict[str | None, str] = {}

    def apply(self, node: str | None, ev: Any, now: float) -> None:  # ev: an Event, as ClusterState._apply's
        """One event of the launcher's log of ``node`` (or msrun's lines in a worker log)."""
        where = f" on {node}" if node else ""
        t = type(ev)
        if t is WorkerExitEvent:
            r = self._rank_of_pid(ev.pid, node)
            what = f"worker process {ev.pid} exited with code {ev.code}{_signal_name(ev.code)}"
            if r is None:
                self.alerts.raise_("worker_exit", None, f"{what}{where} (rank unknown)", None, now)
                return
            self.alerts.raise_("worker_exit", r.rank, what, r.step, now, key=ev.code)
            if r.state != FINISHED:
                if r.state != FAILED or r.reason is None or r.reason.startswith("traceback ("):
                    r.reason = what
                r.state, r.soft_failed = FAILED, False
        elif t is KillAllWorkersEvent:
            self.alerts.raise_("msrun_failure", None, f"msrun{where}: a worker exited with an error, "
                        "killing all other workers", None, now)
            for r in self.ranks.values():
                if (node is None or r.node is None or r.node == node) and r.state in (STARTING, RUNNING, STALLED):
                    r.state, r.soft_failed = FAILED, False
                    r.reason = f"killed by msrun{where}: another worker exited with an error"
        elif t is SchedulerExitEvent:
            self.alerts.raise_("msrun_failure", None, f"scheduler process {ev.pid}{where} exited with an error",
                               None, now)
        elif t is TimeoutEvent:
            rank = None
            if ev.node_id is not None and ev.node_id.isdigit():
                rank = int(ev.node_id)
                if self.world_size is not None and rank >= self.world_size:
                    rank = None
            r = self.ranks.get(rank) if rank is not None else None
            self.alerts.raise_("timeout", rank, f"{node or 'launcher'}: {ev.message}", r.step if r else None, now)
            if r is not None and r.state in (STARTING, RUNNING, STALLED):
                # The scheduler gave up on it: not "running" in the table while the alerts say timed
                # out. Soft: should its log go on with steps, it is running again.
                r.state, r.soft_failed = FAILED, True
                r.reason = f"timed out ({node or 'launcher'}: {ev.message})"
        elif t is TracebackEvent:
            self._traceback[node] = True
        elif t is ExceptionEvent:
            if self._traceback.pop(node, False) or ev.exc_type == "Fatal Python error":
                text = f"{ev.exc_type}: {ev.message}" if ev.message else ev.exc_type
                self.alerts.raise_("msrun_failure", None, f"{node or 'launcher'}: {text}", None, now)
        elif t is ErrorLineEvent and self._last_error.get(node) != ev.message:
            self._last_error[node] = ev.message
            e = error_alert(ev.message)  # a CANN failure is named by its code
            self.alerts.raise_(e["kind"], None, f"{node or 'launcher'}: {e['detail']}", None, now, e["key"])

    def _rank_of_pid(self, pid: int, node: str | None) -> RankTrack | None:
        found = [r for r in self.ranks.values()
                 if r.pid == pid and (node is None or r.node is None or r.node == node)]
        return found[0] if len(found) == 1 else None
