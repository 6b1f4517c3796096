"""The pair pattern (a step line and its progress line in one match), the lines between pairs, and
``read_matches``: a block of log text read one pair at a time.

``chunk.read_chunk`` is the way in (its docstring says why the block is read this way); this module
holds what both of its ways share, and the one for short blocks and odd ones. Like the per-line
reader (``mfctl.metrics.lines``) they only read: they yield ``StepRun``s and events, which
``ClusterState`` applies (it holds every rule; nothing here touches a rank's state).

Exactness
---------
The per-line path (``ClusterState.feed`` / ``feed_many``) is the reference; a block must leave
exactly the same state, and the tests compare both on the sample logs and on generated logs with
every oddity. So the pair pattern only takes what the line path would read the same
way, and anything else falls back to it, line by line:

- ``Epoch:\\[`` alone is an alternative of the pattern, so every step mark in the text is seen: a
  mark whose pair does not match sends its whole line to the per-line path (the line path only
  ever tries the first mark of a line, so a later mark on that line is skipped too);
- the step line must not end with ``}`` (the line path's test), the progress line must end with
  it, hold no ``|`` around the bar but its own two, no `` samples/s/p`` before the figure, and a
  plain decimal figure; the loss and norm must convert with ``float`` and the overflow flag be
  ``True``/``False``; otherwise the pair goes to the per-line path;
- fields only the newest step needs (lr, loss scale, epoch, separate losses, percent, time left)
  are converted once per run, from its last pair, with the parser's own functions.

The pair's head and its progress mark come from the declared formats (``mfctl.metrics.formats``:
``MF_STEP``, ``PROGRESS``); the marks of the lines between pairs include every step format's.
"""


from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from itertools import chain
from typing import Any

from mfctl.metrics.events import (
    CheckpointSavedEvent,
    GlobalBatchSizeEvent,
    PidLine,
    ProgressEvent,
    StepEvent,
    StepRun,
    UnreadableLine,
)
from mfctl.metrics.formats import CANN_MARKS, MF_STEP, PROGRESS, STEP_FORMATS
from mfctl.metrics.parser import (
    PROGRESS_MARK,
    STEP_MARK,
    STEP_RE,
    parse_line,
    parse_progress,
    step_event_from_match,
)

__all__ = ["MARKS_PATTERN", "MARK_TAIL_OF", "NL_OF", "NO_EVENT", "PAIR_PATTERN", "PAIR_RE", "PROGRESS_MARK_OF",
           "SHAPES", "Columns", "as_text", "events_between", "known_lines", "last_fields", "note_event", "pair_pattern",
           "read_matches"]

# Derived from the declared MFLossMonitor format (mfctl.metrics.formats.MF_STEP): its mark starts
# the pair, and PROGRESS's mark ends it.
_STEP_HEAD = re.escape(MF_STEP.mark)
assert STEP_RE.pattern.startswith(r"Epoch:\[") and PROGRESS.mark == PROGRESS_MARK
# MFLossMonitor's canonical step line, stricter than STEP_RE: where this matches, STEP_RE reads
# the same epoch, step, loss, step time, overflow flag and norm (each value here is a plain number
# that STEP_RE's wider classes stop at the same place); other shapes (sink mode with separate
# losses, nan, no global_norm...) take the per-line path. The regex engine costs per character and
# per step of its program, and this runs over every step of every rank: plain digit classes, and
# possessive repeats (Python 3.11+; the same matches without them on 3.10) wherever the text after
# a repeat cannot start with what it repeats, so the engine keeps no positions to go back to
# (~13% fewer instructions per pair, counted with cachegrind).
def pair_pattern(possessive: bool) -> str:
    """The pair pattern, with possessive repeats (``*+``: Python 3.11+) or without (same matches)."""
    p = "+" if possessive else ""
    n = r"(?!0[0-9])[0-9]{1,15}" + p  # no leading zeros: equal text is an equal number
    x = r"[0-9]{1,20}" + p + r"\.[0-9]{1,20}" + p
    return (
        _STEP_HEAD + r"(?: *" + p + "(" + n + r")/ *" + p + r"(?:\1()|" + n + r")\], "  # 1 epoch, 2 set when last
        r"step:\[ *" + p + "(" + n + r")/ *" + p + r"(?:\3()|" + n + r")\], "  # 3 step, 4 set when it is the last
        r"loss:(?:\[(" + x + r")/" + x + r"\]| *" + p + "(" + x + r")), "  # 5 current (mean beside) | 6 sink
        r"per_step_time: ([0-9]{1,15}" + p + r")ms, lr: [-+.0-9eE]*" + p + ", "  # 7 (lr, scale: read once a block)
        r"overflow cond: (?:False|True()), loss_scale: [.0-9]*" + p + ", "  # 8 set when True
        r"global_norm: \[(" + x + r")\]"  # 9
        r"[^\n]*" + p + r"(?<!\})\n"  # the rest of the step line, which does not end with "}"
        r"()[^\n]*\| *" + p + r"([0-9]{1,20}" + p + r"\.[0-9]{0,20}" + p + ")"  # 10 the progress line, 11 samples/s
        + PROGRESS_MARK + r"[^\n]*" + p + r"(?<=\})(?:\n|\Z)"  # the progress line ends with "}"
        + r"|)"  # or the mark alone: its line goes to the per-line path
    )


PAIR_PATTERN = pair_pattern(sys.version_info >= (3, 11))

# A line without any of these is one parse_line has no event for (see parser.py: the step and
# progress marks; _info_event's texts; "with exception" and exception names (both hold "xception"),
# "Exit", "Interrupt", "Fatal Python error"; error levels; a timeout needs a WARNING or error level
# line). Each starts with a character that is rare in log text: the regex engine only tries the
# alternatives where such a character is, so the lines between steps cost little.
# The step marks are every declared step format's, and the CANN failure marks too (a line without a
# log level the parser names by its CANN code): both from mfctl.metrics.formats.
MARKS_PATTERN = ("|".join(sorted({re.escape(f.mark) for f in STEP_FORMATS}))
                 + r"|/s/p|T(?:raceback|raining Over)|xception|WARNING|E(?:RROR|rror|xit)|CRITICAL"
                 r"|Interrupt|F(?:atal Python error|inish saving ckpt)|_batch_size = |"
                 + CANN_MARKS)

# Per kind of data (str or bytes), the value of that kind (typed Any: mypy cannot tie a value's
# type to its key's).
PAIR_RE: dict[type, Any] = {str: re.compile(PAIR_PATTERN), bytes: re.compile(PAIR_PATTERN.encode())}
_MARKS: dict[type, Any] = {str: re.compile(MARKS_PATTERN), bytes: re.compile(MARKS_PATTERN.encode())}
NL_OF: dict[type, Any] = {str: "\n", bytes: b"\n"}
_OPEN: dict[type, Any] = {str: "[", bytes: b"["}
PROGRESS_MARK_OF: dict[type, Any] = {str: PROGRESS_MARK, bytes: PROGRESS_MARK.encode()}
# The mark's last five characters: counting them counts the marks (each mark holds them once, and
# they cannot overlap themselves or recur inside a mark), and a short needle is searched faster
# (the count of a 12-byte one takes twice as long in CPython 3.11).
_TAIL = PROGRESS_MARK[-5:]
assert _TAIL == "s/s/p" and PROGRESS_MARK.count(_TAIL) == 1
MARK_TAIL_OF: dict[type, Any] = {str: _TAIL, bytes: _TAIL.encode()}


def as_text(s: str | bytes) -> str:
    return s if isinstance(s, str) else s.decode("utf-8", "replace")


# Which lines of a stretch between steps need the parser does not depend on its digits (no mark
# holds one, and a digit stays a digit): stretches that differ only in timestamps and counters
# (the checkpoint notes every N steps, a periodic warning) are scanned once. Bytes only (a str
# translate costs more than the scan), short stretches only, and a bounded table.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
SHAPES: dict[Any, list[list[Any]]] = {}  # shape of a stretch (bytes) -> [[start, end, shape], ...]
_SHAPES_MAX = 4096
_SHAPE_LONGEST = 16384


# Lines between steps that recur with other digits (a checkpoint note every N steps, a periodic
# warning) are parsed once per shape (the line with its digits zeroed): whether parse_line finds an
# event in a line does not depend on its digits (its patterns only ask whether a character is a
# digit), nor where a checkpoint note's numbers are (they are read from there for the next ones).
# Only when the pid is known (else a "[" line is read for it) and only these two answers.
NO_EVENT = ()
_CKPT_B = re.compile(rb"Finish saving ckpt of epoch (\d{1,15}) step (\d{1,15})")


def _marked(data: str | bytes, a: int, b: int) -> list[tuple[int, int]]:
    """(start, end) of each line of data[a:b] a mark is in."""
    kind = type(data)
    nl = NL_OF[kind]
    out = []
    done = a
    for mk in _MARKS[kind].finditer(data, a, b):
        s = mk.start()
        if s < done:
            continue
        ls = data.rfind(nl, a, s) + 1
        if ls == 0:
            ls = a
        e = data.find(nl, s, b)
        e = b if e < 0 else e
        out.append((ls, e))
        done = e + 1
    return out


def _shape(data: str | bytes, a: int, b: int) -> tuple[bytes, bytes] | None:
    """(data[a:b], its key in SHAPES) when the shape of that stretch may be kept (bytes, short)."""
    if type(data) is bytes and b - a <= _SHAPE_LONGEST:
        seg = data[a:b]
        return seg, seg.translate(_DIGITS_TO_ZERO)
    return None


def known_lines(data: str | bytes, a: int, b: int) -> list | None:
    """What ``_lines_to_parse`` would return as the lines of data[a:b] when their shape was seen
    before (offsets from ``a``), without keeping anything; None otherwise."""
    shape = _shape(data, a, b)
    return None if shape is None else SHAPES.get(shape[1])


def note_event(text: Any, a: int, spans: Any) -> CheckpointSavedEvent:
    """A checkpoint note's event, from the line at text[a:] whose shape gave its numbers' ``spans``."""
    (c, d), (f, h) = spans
    return CheckpointSavedEvent(int(text[a + c:a + d]), int(text[a + f:a + h]), None)


def _lines_to_parse(data: str | bytes, a: int, b: int) -> tuple[Any, list]:
    """The lines of data[a:b] (complete lines that no pair took) that may hold an event: those a
    mark is in. Returns (text, [[start, end, shape], ...]): a line is text[start:end]; ``shape``
    is what an earlier line of the same shape gave (None: not known, parse it), and may be filled
    in (see SHAPES)."""
    shape = _shape(data, a, b)
    if shape is not None:
        seg, key = shape
        lines = SHAPES.get(key)
        if lines is None:
            lines = [[s, e, None] for s, e in _marked(seg, 0, len(seg))]
            if len(SHAPES) >= _SHAPES_MAX:
                SHAPES.clear()
            SHAPES[key] = lines
        return seg, lines
    return data, [[s, e, None] for s, e in _marked(data, a, b)]


def _lines_to_pid(data: str | bytes, a: int, b: int) -> tuple[list, int]:
    """While the pid is unknown: the lines of data[a:b] a mark is in up to the next line that
    starts with "[" (the pid is read from one), that line included, and where the rest begins."""
    kind = type(data)
    nl, opener = NL_OF[kind], _OPEN[kind]
    f = a if data.startswith(opener, a) else data.find(nl + opener, a, b) + 1
    if f <= 0:
        return [[s, e, None] for s, e in _marked(data, a, b)], b
    e = data.find(nl, f, b)
    e = b if e < 0 else e
    return [[s, e, None] for s, e in _marked(data, a, max(a, f - 1))] + [[f, e, None]], e + 1


def events_between(data: str | bytes, a: int, b: int, pid_wanted: Callable[[], bool]) -> Iterator[Any]:
    """What the whole lines in data[a:b] (lines no pair took) hold, in order: events, checkpoint
    notes (as events), ``PidLine``s while ``pid_wanted()``, ``UnreadableLine``s. The consumer
    applies each before the next line is read (a line read for the pid may come after one)."""
    kind = type(data)
    while a < b:
        if pid_wanted():
            text = data
            lines, a = _lines_to_pid(data, a, b)
            yield from _line_events(kind, text, lines, False)
        else:
            text, lines = _lines_to_parse(data, a, b)
            a = b
            yield from _line_events(kind, text, lines, True)


def _line_events(kind: type, text: Any, lines: list, pid_known: bool) -> Iterator[Any]:
    """``events_between`` for the given lines of ``text``."""
    for entry in lines:
        a, b, shape = entry
        if shape is not None:  # a line of this shape was parsed before
            if shape is not NO_EVENT:
                yield note_event(text, a, shape)
            continue
        raw = text[a:b]
        # Shapes are kept when the pid is known (else a "[" line is read for it) and for
        # ASCII lines (str's \d matches more than bytes' does).
        shaped = kind is bytes and pid_known and raw.isascii()
        line = as_text(raw)
        try:
            ev = parse_line(line)
        except Exception as exc:  # a line never stops ingestion (mfctl.metrics.lines)
            yield UnreadableLine(line, f"{type(exc).__name__}: {exc}")
            continue
        if ev is None:
            if not pid_known and line.startswith("["):
                yield PidLine(line)
            elif shaped:
                entry[2] = NO_EVENT
            continue
        if type(ev) is CheckpointSavedEvent and shaped:
            found = list(_CKPT_B.finditer(raw))
            if len(found) == 1 and (int(found[0][1]), int(found[0][2])) == (ev.epoch, ev.step):
                entry[2] = (found[0].span(1), found[0].span(2))
        yield ev


def last_fields(step_line: str, progress_line: str | None) -> tuple[StepEvent | None, ProgressEvent | None]:
    """The newest step's and progress line's events (their other fields: lr, loss scale, epoch,
    percent, time left...), read from those lines by the parser itself."""
    i = step_line.find(STEP_MARK)
    sm = STEP_RE.match(step_line, i)
    step = step_event_from_match(sm, step_line[:i]) if sm is not None else None
    prog = None
    if progress_line is not None:
        prog = parse_progress(progress_line, progress_line.find(PROGRESS_MARK))
    return step, prog


class Columns:
    """The columns of a run of pairs being read one match at a time."""

    __slots__ = ("fins", "gns", "losses", "mss", "ovs", "spss", "steps", "times")

    def __init__(self) -> None:
        self.steps: list[Any] = []
        self.losses: list[float] = []
        self.mss: list[Any] = []
        self.gns: list[float] = []
        self.spss: list[Any] = []
        self.times: list[Any] = []
        self.ovs: list[bool] = []
        self.fins: list[bool] = []

    def run(self, last: StepEvent | None, prog: ProgressEvent | None) -> StepRun:
        return StepRun(self.steps, self.losses, self.mss, self.gns, self.spss, self.times,
                       self.ovs if True in self.ovs else None, self.fins if True in self.fins else None,
                       last, prog, True)


def read_matches(data: str | bytes, pid_wanted: Callable[[], bool]) -> Iterator[Any]:
    """``chunk.read_chunk`` one pair at a time (``finditer``): for any block, odd marks included.
    Runs of pairs are cut where a line between them holds an event that is not a checkpoint note,
    the batch size or a pid (those touch nothing a step does)."""
    kind = type(data)
    nl, mark = NL_OF[kind], PROGRESS_MARK_OF[kind]
    end = len(data)
    cols = Columns()
    last = None  # the newest pair of cols
    pos = 0  # data[:pos] is read
    skip_to = -1  # a mark before this offset is on a line the per-line path takes
    for m in chain(PAIR_RE[kind].finditer(data), (None,)):
        if m is not None:
            s, e = m.span()
            if s < skip_to:
                continue
            g = m.groups()
            if g[2] is None:  # a step mark without its pair: its whole line goes to the per-line path
                skip_to = data.find(nl, s)
                if skip_to < 0:
                    skip_to = end
                continue
            # The line path reads the figure before the *first* mark of the progress line: another
            # mark before it in the pair (MindFormers never prints one) sends the pair to it.
            if data.find(mark, s, e) != m.end(11):
                skip_to = e
                continue
            ls = data.rfind(nl, pos, s)
        else:
            ls = end
        if ls >= 0:  # whole lines before this pair (or the end)
            for item in events_between(data, pos, ls, pid_wanted):
                if last is not None and type(item) not in _NO_CUT:
                    yield cols.run(*_last_of(data, nl, last))
                    cols, last = Columns(), None
                yield item
        if m is None:
            break
        v = g[4]
        cols.steps.append(g[2])
        cols.losses.append(float(v if v is not None else g[5]))
        cols.mss.append(g[6])
        cols.gns.append(float(g[8]))
        cols.spss.append(g[10])
        cols.times.append(data[ls + 1 if ls >= 0 else pos:s])
        cols.ovs.append(g[7] is not None)
        cols.fins.append(g[3] is not None and g[1] is not None)
        last = m
        pos = e
    if last is not None:
        yield cols.run(*_last_of(data, nl, last))


# Items between pairs that need no cut of the run (they touch nothing a step does).
_NO_CUT = (CheckpointSavedEvent, GlobalBatchSizeEvent, PidLine)


def _last_of(data: Any, nl: Any, m: Any) -> tuple[StepEvent | None, ProgressEvent | None]:
    """The fields of pair ``m``'s step line and progress line."""
    return last_fields(as_text(data[data.rfind(nl, 0, m.start()) + 1:m.start(10) - 1]),
                       as_text(data[m.start(10):m.end()]).rstrip("\n"))
