"""Alerts are events, not lines: one kind of trouble at one step, on however many ranks it hit.

A global-norm spike in data-parallel training is the same number on every rank at the same step;
listing it once per rank buries everything else (and, bounded, drops most of the ranks). So an
alert raised for a rank joins the newest alert of the same kind (and ``key``: the same error text,
the same exception) when that one is near enough, at most ``window_steps`` steps away (or, for
alerts without a step, ``window_s`` seconds after its latest rank joined), and the alert names
its ranks compactly (``ranks 0-1023 (1024): ...``). Alerts that concern no rank (msrun, the
scheduler) stay one per line. The bound counts alerts, not ranks.

Pure: no I/O, no clock (times are given).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterator

from mfctl.metrics.cann import alert_fields
from mfctl.metrics.ranks import rank_label
from mfctl.metrics.types import AlertView

__all__ = ["Alert", "AlertLog"]


class Alert:
    """One alert. ``ranks``: the ranks it concerns (sorted; empty for launcher alerts); ``rank``:
    the rank when there is exactly one. ``message`` starts with the rank label; with several ranks
    the figures in it are the first rank's (said so when the ranks' own texts differ)."""

    __slots__ = (
        "_first",
        "_message",
        "_ranks",
        "detail",
        "key",
        "kind",
        "last_time",
        "step",
        "time",
        "varied",
    )

    def __init__(self, kind: str, rank: int | None, detail: str, step: int | None, time: float,
                 key: Hashable = None) -> None:
        self.kind = kind
        self.step = step
        self.time = time  # when it was raised
        self.last_time = time  # when its latest rank joined
        self.detail = detail
        self.key = key
        self.varied = False
        self._ranks: set[int] = set() if rank is None else {rank}
        self._first = rank
        self._message: str | None = None

    @property
    def ranks(self) -> list[int]:
        return sorted(self._ranks)

    @property
    def count(self) -> int:
        return len(self._ranks)

    @property
    def rank(self) -> int | None:
        return next(iter(self._ranks)) if len(self._ranks) == 1 else None

    @property
    def message(self) -> str:
        if self._message is None:  # built when read: 1024 ranks join one by one
            if not self._ranks:
                self._message = self.detail
            else:
                note = f" (figures of rank {self._first})" if self.varied and len(self._ranks) > 1 else ""
                self._message = f"{rank_label(self._ranks)}: {self.detail}{note}"
        return self._message

    def add(self, rank: int, detail: str, now: float) -> None:
        if rank not in self._ranks:
            self._ranks.add(rank)
            self._message = None
        if detail != self.detail:
            self.varied = True
        self.last_time = max(self.last_time, now)

    def set_detail(self, detail: str) -> None:
        self.detail, self.varied, self._message = detail, False, None

    def discard(self, rank: int) -> None:
        self._ranks.discard(rank)
        self._message = None
        if rank == self._first:
            self._first = min(self._ranks) if self._ranks else None

    def to_dict(self) -> AlertView:
        d: AlertView = {"kind": self.kind, "rank": self.rank, "ranks": self.ranks, "count": self.count,
                        "message": self.message, "step": self.step, "time": self.time,
                        "last_time": self.last_time}
        d.update(alert_fields(self.key))  # type: ignore[typeddict-item]  # CANN alerts: code, hint
        return d

    def __repr__(self) -> str:
        return f"Alert({self.kind!r}, {self.message!r}, step={self.step!r}, time={self.time!r})"


class AlertLog:
    """The alerts of a job, oldest first, at most ``max_alerts`` of them."""

    def __init__(self, max_alerts: int = 256, window_steps: int = 2, window_s: float = 30.0) -> None:
        self._alerts: deque[Alert] = deque()
        self.max_alerts = max(1, max_alerts)
        self.window_steps = window_steps
        self.window_s = window_s
        self._open: dict[tuple[str, Hashable], Alert] = {}  # the newest alert of each (kind, key)

    def __len__(self) -> int:
        return len(self._alerts)

    def __iter__(self) -> Iterator[Alert]:
        return iter(self._alerts)

    def __getitem__(self, i: int) -> Alert:
        return self._alerts[i]

    def __bool__(self) -> bool:
        return bool(self._alerts)

    def raise_(self, kind: str, rank: int | None, detail: str, step: int | None, now: float,
               key: Hashable = None) -> Alert:
        """An alert of ``kind`` for ``rank`` (None: no rank), joined to a near one when there is one."""
        if rank is not None:
            near = self._open.get((kind, key))
            if near is not None and self._near(near, step, now):
                near.add(rank, detail, now)
                return near
        a = Alert(kind, rank, detail, step, now, key)
        if len(self._alerts) >= self.max_alerts:
            self._forget(self._alerts.popleft())
        self._alerts.append(a)
        if rank is not None:
            self._open[(kind, key)] = a
        return a

    def withdraw(self, alert: Alert, rank: int) -> None:
        """``rank`` is no longer part of ``alert``; an alert left with no rank goes."""
        alert.discard(rank)
        if alert.count == 0:
            try:
                self._alerts.remove(alert)
            except ValueError:  # already dropped by the bound
                pass
            self._forget(alert)

    def _near(self, a: Alert, step: int | None, now: float) -> bool:
        if step is not None and a.step is not None:
            return abs(step - a.step) <= self.window_steps
        return now - a.last_time <= self.window_s

    def _forget(self, a: Alert) -> None:
        if self._open.get((a.kind, a.key)) is a:
            del self._open[(a.kind, a.key)]
