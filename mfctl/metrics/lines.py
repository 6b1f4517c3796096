"""The per-line reader: lines of one rank into what ``ClusterState`` applies, in order.

``read_lines`` yields ``StepRun``s (consecutive steps as columns), events, ``PidLine``s and
``UnreadableLine``s; ``ClusterState.feed_many`` applies them (``mfctl.metrics.chunk`` is the same
for a block of text). The step rules are the state's; this only reads.

Why it is shaped like this: ingestion must keep up with every rank of a large cluster on one core,
and three quarters of a training log are the two lines MFLossMonitor prints per step. So the
MFLossMonitor step line is matched with the parser's own compiled pattern and only what the rules
need is converted (step, loss, step time, overflow, norm, samples/s), by the group numbers of its
named groups; the newest step's other fields are converted once per run, by the parser itself
(``step_event_from_match``). The progress line's samples/s is read with ``rfind`` as
``parse_progress`` reads it. Every other line (and each line of another step format) goes to
``parse_line``: the same answer as line by line.

A line the parser raises on (not text, or a parser bug) becomes an ``UnreadableLine`` and the
reading goes on: that is the "a line never stops ingestion" contract, held here and not by a
catch-all in the parser (whose tests then see a crash).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from mfctl.metrics.events import (
    CheckpointSavedEvent,
    GlobalBatchSizeEvent,
    PidLine,
    StepEvent,
    StepRun,
    UnreadableLine,
)
from mfctl.metrics.parser import (
    PROGRESS_MARK,
    PYNATIVE_MARK,
    STEP_MARK,
    STEP_RE,
    first_float,
    parse_line,
    parse_other,
    parse_progress,
    step_event_from_match,
    to_bool,
    to_float,
)

__all__ = ["read_lines"]

# Group numbers (0-based, as in m.groups()) of MF_STEP's named groups.
_G = {name: i - 1 for name, i in STEP_RE.groupindex.items()}
_EPOCH, _TEPOCH, _STEP, _TOTAL = _G["epoch"], _G["total_epochs"], _G["step"], _G["total_steps"]
_LOSS, _SINK, _MS, _OV, _GN = _G["loss"], _G["sink_loss"], _G["step_time_ms"], _G["overflow"], _G["global_norm"]


class _Run:
    """The columns of the run being read, and where its newest step and progress line are."""

    __slots__ = ("fins", "gns", "last", "losses", "mss", "ovs", "prog", "spss", "steps", "times")

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.losses: list[float | None] = []
        self.mss: list[int] = []
        self.gns: list[float | None] = []
        self.spss: list[float | None] = []
        self.times: list[Any] = []
        self.ovs: list[bool | None] = []
        self.fins: list[bool] = []
        self.last: Any = None  # (match, mark position) of the newest step line, or its StepEvent
        self.prog: Any = None  # (line, mark position) of the newest progress line the run took

    def add_event(self, ev: StepEvent) -> None:
        self.steps.append(ev.step)
        self.losses.append(ev.loss)
        self.mss.append(ev.step_time_ms)
        self.gns.append(ev.global_norm)
        self.spss.append(None)
        self.times.append(ev.time)
        self.ovs.append(ev.overflow)
        self.fins.append(ev.step == ev.total_steps and ev.epoch == ev.total_epochs)
        self.last = ev

    def take(self) -> StepRun:
        last = self.last
        if type(last) is StepEvent:
            ev, follows = last, last.progress_follows
        else:
            m, i = last
            ev, follows = step_event_from_match(m, m.string[:i]), True
        prog = None
        if self.prog is not None:
            prog = parse_progress(*self.prog)
        ovs = self.ovs if True in self.ovs or None in self.ovs else None  # None: no step overflowed
        run = StepRun(self.steps, self.losses, self.mss, self.gns, self.spss, self.times,
                      ovs, self.fins if True in self.fins else None, ev, prog, follows)
        self.__init__()  # type: ignore[misc]  # a new run's columns (the caller takes them again)
        return run

    def columns(self) -> tuple[list, list, list, list, list, list, list, list]:
        return self.steps, self.losses, self.mss, self.gns, self.spss, self.times, self.ovs, self.fins


def read_lines(lines: Iterable[Any], pid_wanted: Callable[[], bool]) -> Iterator[Any]:
    """What the lines of one rank hold, in order (see the module docstring). ``pid_wanted``: whether
    the rank's pid is still unknown (then lines that may hold it are passed on as ``PidLine``)."""
    run = _Run()
    steps, losses, mss, gns, spss, times, ovs, fins = run.columns()
    step_match = STEP_RE.match
    total_s: str | None = None
    total_i = 0
    ev: Any
    loss: float | None
    gn: float | None
    sps: float | None
    for line in lines:
        try:
            i = -1
            if line[-1:] != "}":  # as parse_line: a MFLossMonitor step line never ends with "}"
                i = line.find(STEP_MARK)
                if i >= 0:
                    m = step_match(line, i)
                    if m is not None:
                        g = m.groups()
                        step = int(g[_STEP])
                        s = g[_LOSS]
                        if s is None:
                            s = g[_SINK]
                        try:
                            loss = float(s)
                        except ValueError:
                            loss = to_float(s)
                        s = g[_GN]
                        if s is None:
                            gn = None
                        else:
                            try:
                                gn = float(s)
                            except ValueError:
                                gn = first_float(s)
                        s = g[_TOTAL]
                        if s != total_s:
                            total_s, total_i = s, int(s)
                        steps.append(step)
                        losses.append(loss)
                        mss.append(int(g[_MS]))
                        gns.append(gn)
                        spss.append(None)
                        times.append(line)
                        s = g[_OV]
                        ovs.append(False if s == "False" else (True if s == "True" else to_bool(s)))
                        fins.append(step == total_i and int(g[_EPOCH]) == int(g[_TEPOCH]))
                        run.last = (m, i)
                        continue
            ev = None
            k = line.find(PROGRESS_MARK)
            if k >= 0 and spss and spss[-1] is None and type(run.last) is not StepEvent:
                b = line.rfind("|", 0, k)  # parse_progress's test, without its other fields
                if b >= 0:
                    s = line[b + 1:k]
                    try:
                        sps = float(s)
                    except ValueError:
                        sps = to_float(s)
                    if sps is not None:  # the progress line of the run's newest step
                        spss[-1] = sps
                        run.prog = (line, k)
                        continue
            # parse_line's answer; without a step or progress mark, what it would try after them.
            ev = parse_other(line) if i < 0 and k < 0 and PYNATIVE_MARK not in line else parse_line(line)
            if ev is None:
                if line.startswith("[") and pid_wanted():
                    yield PidLine(line)
                continue
        except Exception as exc:  # a line never stops ingestion (see the docstring)
            yield UnreadableLine(line, f"{type(exc).__name__}: {exc}")
            continue
        t = type(ev)
        if t is StepEvent:  # another step format, or an odd MFLossMonitor line
            run.add_event(ev)
            continue
        if steps and t is not CheckpointSavedEvent and t is not GlobalBatchSizeEvent:
            # (a checkpoint note and the batch size touch nothing a step does: no cut)
            yield run.take()
            steps, losses, mss, gns, spss, times, ovs, fins = run.columns()
        yield ev
    if steps:
        yield run.take()
