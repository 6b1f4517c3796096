"""Scripted dashboard sources: a fixed list of snapshots played back one by one.

``StaticSource`` serves the TUI tests (a test calls ``advance()`` between frames, or lets it move on
after each ``snapshot()`` call with ``advance_on_call=True``). ``FakeStopSource`` adds a
``stop_job`` a test can count, hold and fail. ``synthetic_snapshot`` builds a deterministic
snapshot of any size for tests, snapshot tests and ``bench/dashboard.py``.

Both meet ``mfctl.tui.source.DashboardSource``, as the real ``LiveSource`` and ``LogDirSource`` do.
Nothing here imports textual: a source is plain data behind a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mfctl.metrics.series import SeriesStore

HISTORY_LIMIT = 2000  # points per series kept for the plots

Logs = Mapping[int, Sequence[str]] | Callable[[int, int], Sequence[str]]


class StaticSource:
    """Serves ``snapshots[i]``; ``i`` moves on with ``advance()`` (or after each ``snapshot()`` call
    when ``advance_on_call``) and stays on the last one at the end.

    ``history`` is either one fixed ``{"loss": [...], "tokens_per_s": [...]}`` dict, a list of them
    parallel to ``snapshots``, or None to derive it from the snapshots served so far: the cluster
    ``step``/``loss``/``tokens_per_s`` lines, and the band over ranks and each rank's line from the
    ranks' ``step``/``loss``/``tokens_per_s``/``step_time_ms`` (as ``mfctl watch`` keeps them).
    ``logs`` maps a rank to its lines, or is a function ``(rank, lines) -> lines``.
    """

    def __init__(self, snapshots: Sequence[Mapping[str, Any]],
                 history: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
                 logs: Logs | None = None, *, advance_on_call: bool = False,
                 history_limit: int = HISTORY_LIMIT) -> None:
        if not snapshots:
            raise ValueError("StaticSource needs at least one snapshot")
        if isinstance(history, Sequence) and len(history) != len(snapshots):
            raise ValueError(f"history has {len(history)} entries for {len(snapshots)} snapshots")
        self._snapshots = list(snapshots)
        self._history = history
        self._logs = logs
        self.advance_on_call = advance_on_call
        self.history_limit = history_limit
        self._lock = threading.Lock()
        self._index = 0
        self._served = 0  # highest index handed out: the derived history covers up to here
        self._derived: dict[str, list[tuple[float, float]]] = {"loss": [], "tokens_per_s": []}
        self._derived_upto = -1
        self._series = SeriesStore()
        # What was asked of the source, for tests: (rank, lines, thread name) per rank_log call.
        self.log_requests: list[tuple[int, int, str]] = []

    # -- scripting -----------------------------------------------------------------------------

    @property
    def index(self) -> int:
        with self._lock:
            return self._index

    @property
    def done(self) -> bool:
        """True once the last snapshot has been served."""
        with self._lock:
            return self._served == len(self._snapshots) - 1

    def advance(self, steps: int = 1) -> bool:
        """Move on ``steps`` snapshots (not past the last); False when already at the end."""
        with self._lock:
            new = min(self._index + steps, len(self._snapshots) - 1)
            moved = new != self._index
            self._index = new
            return moved

    # -- DashboardSource -----------------------------------------------------------------------

    def snapshot(self) -> dict:
        with self._lock:
            snap = self._snapshots[self._index]
            self._served = max(self._served, self._index)
            if self.advance_on_call and self._index < len(self._snapshots) - 1:
                self._index += 1
            return dict(snap)

    def history(self, rank: int | None = None) -> dict:
        with self._lock:
            if isinstance(self._history, Mapping):
                return {k: list(v) for k, v in self._history.items()}
            if self._history is not None:
                return {k: list(v) for k, v in self._history[self._served].items()}
            self._derive()
            out: dict[str, Any] = {k: list(v) for k, v in self._derived.items()}
            out["bands"] = self._series.bands()
            out["rank"] = {"rank": rank, **self._series.rank(rank)} if rank is not None else None
            return out

    def rank_log(self, rank: int, lines: int) -> list[str]:
        self.log_requests.append((rank, lines, threading.current_thread().name))
        if self._logs is None:
            return []
        if callable(self._logs):
            got = list(self._logs(rank, lines))
        else:
            got = list(self._logs.get(rank, ()))
        return got[-lines:] if lines > 0 else []

    def stop_job(self) -> str:
        return "this is a replay of saved logs: there is no running job to stop"

    # -- internals -----------------------------------------------------------------------------

    def _derive(self) -> None:
        for i in range(self._derived_upto + 1, self._served + 1):
            for r in self._snapshots[i].get("ranks") or ():
                rstep = r.get("step")
                if isinstance(rstep, int) and rstep > 0 and isinstance(r.get("rank"), int):
                    self._series.add(r["rank"], rstep, r.get("loss"), r.get("tokens_per_s"),
                                     r.get("step_time_ms"))
            cluster = self._snapshots[i].get("cluster") or {}
            step = cluster.get("step")
            if not isinstance(step, (int, float)):
                continue
            for series in ("loss", "tokens_per_s"):
                value = cluster.get(series)
                if not isinstance(value, (int, float)):
                    continue
                points = self._derived[series]
                if points and points[-1][0] == step:
                    points[-1] = (step, value)  # the same step seen again: keep the newest value
                elif not points or step > points[-1][0]:
                    points.append((step, value))
                del points[:-self.history_limit]
        self._derived_upto = self._served


class FakeStopSource(StaticSource):
    """A ``StaticSource`` whose ``stop_job`` counts its calls, can be held until ``release()``,
    and can fail with a given exception."""

    def __init__(self, *args: Any, outcome: str = "stopped on 2/2 nodes", hold: bool = False,
                 error: Exception | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcome = outcome
        self.error = error
        self.stop_calls = 0
        self.stop_threads: list[str] = []
        self._release = threading.Event()
        if not hold:
            self._release.set()

    def release(self) -> None:
        self._release.set()

    def stop_job(self) -> str:
        with self._lock:
            self.stop_calls += 1
            self.stop_threads.append(threading.current_thread().name)
        if not self._release.wait(timeout=30):
            raise TimeoutError("FakeStopSource was held and never released")
        if self.error is not None:
            raise self.error
        return self.outcome


def synthetic_snapshot(world_size: int, step: int, *, total_steps: int = 1000, devices_per_node: int = 8,
                       seq_length: int = 4096, node_prefix: str = "node-",
                       failed: Mapping[int, str] | None = None, stalled: Mapping[int, str] | None = None,
                       stragglers: Sequence[int] = (), finished: bool = False,
                       alerts: Sequence[Mapping[str, Any]] = ()) -> dict:
    """A deterministic snapshot of the fixed shape, with every running rank's figures moving with
    ``step``: for tests, snapshot tests and the dashboard benchmark. No randomness, no clock."""
    failed = dict(failed or {})
    stalled = dict(stalled or {})
    ranks = []
    for r in range(world_size):
        jitter = ((r * 31 + step * 17) % 53) / 53.0  # in [0, 1), different for every rank and step
        slow = 1.6 if r in stragglers else 1.0
        step_ms = (420.0 + 60.0 * jitter) * slow
        samples = 4 * 1000.0 / step_ms
        if finished:
            state, reason, rstep = "finished", "", total_steps
        elif r in failed:
            state, reason, rstep = "failed", failed[r], max(step - 3, 0)
        elif r in stalled:
            state, reason, rstep = "stalled", stalled[r], max(step - 5, 0)
        else:
            state, reason, rstep = ("starting", "", 0) if step == 0 else ("running", "", step)
        loss = None if rstep == 0 else round(2.0 + 8.0 / (1.0 + rstep / 50.0) + 0.05 * jitter, 6)
        ranks.append({
            "rank": r, "node": f"{node_prefix}{r // devices_per_node:02d}", "step": rstep,
            "total_steps": total_steps, "epoch": 1, "loss": loss, "loss_mean": loss,
            "step_time_ms": None if rstep == 0 else round(step_ms, 1),
            "samples_per_s": None if rstep == 0 else round(samples, 3),
            "tokens_per_s": None if rstep == 0 else round(samples * seq_length, 1),
            "tflops": None, "lr": 1e-4, "global_norm": 1.0 + jitter, "overflow": False, "loss_scale": 1.0,
            "percent": 100.0 * rstep / total_steps, "eta_s": (total_steps - rstep) * step_ms / 1000.0,
            "state": state, "reason": reason, "last_update_age_s": 0.5,
        })
    running = [x for x in ranks if x["state"] == "running"]
    samples_total = sum(x["samples_per_s"] for x in running)
    if finished:
        cstate = "finished"
    elif failed:
        cstate = "failed"
    elif stalled:
        cstate = "stalled"
    else:
        cstate = "running" if step else "starting"
    steps = [x["step"] for x in ranks]
    losses = [x["loss"] for x in running if x["loss"] is not None]
    cluster = {
        "world_size": world_size, "step": min(steps) if steps else 0, "total_steps": total_steps,
        "samples_per_s": round(samples_total, 3) if running else None,
        "tokens_per_s": round(samples_total * seq_length, 1) if running else None,
        "eta_s": max((x["eta_s"] for x in running), default=None),
        "loss": round(sum(losses) / len(losses), 6) if losses else None, "state": cstate,
        "stragglers": sorted(stragglers),
        "finished_ranks": [x["rank"] for x in ranks if x["state"] == "finished"],
        "failed_ranks": sorted(failed),
    }
    return {"ranks": ranks, "cluster": cluster, "alerts": [dict(a) for a in alerts]}
