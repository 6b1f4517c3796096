"""The pair pattern (a step line and its progress line in one match), the lines between pairs, and
``feed_matches``: a block of log text into a ``ClusterState`` one pair at a time.

``chunk.feed_chunk`` is the way in (its docstring says why the block is read this way); this module
holds what both of its ways share, and the one for short blocks and odd ones.

Exactness
---------
``ClusterState.feed_many`` (the per-line path over ``parse_line``) is the reference; a block must
leave exactly the same state, and the tests compare both on the sample logs and on generated
logs with every oddity. So the pair pattern only takes what the line path would read the same
way, and anything else falls back to it, line by line:

- ``Epoch:\\[`` alone is an alternative of the pattern, so every step mark in the text is seen: a
  mark whose pair does not match sends its whole line to the per-line path (the line path only
  ever tries the first mark of a line, so a later mark on that line is skipped too);
- the step line must not end with ``}`` (the line path's test), the progress line must end with
  it, hold no ``|`` around the bar but its own two, no `` samples/s/p`` before the figure, and a
  plain decimal figure; the loss and norm must convert with ``float`` and the overflow flag be
  ``True``/``False``; otherwise the pair goes to the per-line path;
- fields only the newest step needs (lr, loss scale, epoch, separate losses, percent, time left)
  are converted once per block, from the last pair, with the parser's own functions.
"""


from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from itertools import chain
from typing import TYPE_CHECKING, Any

from mfctl.metrics.cann import MARKS_PATTERN as CANN_MARKS
from mfctl.metrics.events import CheckpointSavedEvent, GlobalBatchSizeEvent, ProgressEvent, StepEvent
from mfctl.metrics.parser import (
    PROGRESS_MARK,
    STEP_MARK,
    STEP_RE,
    parse_line,
    parse_pid,
    parse_progress,
    step_event_from_match,
)

if TYPE_CHECKING:
    from mfctl.metrics.state import ClusterState, RankTrack

__all__ = ["MARKS_PATTERN", "NL_OF", "NO_EVENT", "PAIR_PATTERN", "PAIR_RE", "PROGRESS_MARK_OF", "SHAPES", "as_text",
           "events_between", "feed_matches", "is_ordinary", "known_lines", "pair_pattern", "read_note",
           "set_last_fields"]

_STEP_HEAD = r"Epoch:\["
assert STEP_RE.pattern.startswith(_STEP_HEAD)
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
# line; CANN_MARKS: a CANN code or a device out-of-memory text, mfctl.metrics.cann). Each starts
# with a character that is rare in log text: the regex engine only tries the
# alternatives where such a character is, so the lines between steps cost little.
MARKS_PATTERN = (r"Epoch:\[|/s/p|T(?:raceback|raining Over)|xception|WARNING|E(?:RROR|rror|xit)|CRITICAL"
                 r"|Interrupt|F(?:atal Python error|inish saving ckpt)|_batch_size = |" + CANN_MARKS)

# Per kind of data (str or bytes), the value of that kind (typed Any: mypy cannot tie a value's
# type to its key's).
PAIR_RE: dict[type, Any] = {str: re.compile(PAIR_PATTERN), bytes: re.compile(PAIR_PATTERN.encode())}
_MARKS: dict[type, Any] = {str: re.compile(MARKS_PATTERN), bytes: re.compile(MARKS_PATTERN.encode())}
RUNNING = "running"  # state.RUNNING (state.py imports this module)
NL_OF: dict[type, Any] = {str: "\n", bytes: b"\n"}
_OPEN: dict[type, Any] = {str: "[", bytes: b"["}
PROGRESS_MARK_OF: dict[type, Any] = {str: PROGRESS_MARK, bytes: PROGRESS_MARK.encode()}


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


def is_ordinary(r: RankTrack) -> bool:
    """Whether the next plain step may skip ``_on_step``: a running rank with nothing pending."""
    return (r.state == RUNNING and r.loss_ema is not None and r.gn_ema is not None
            and not (r.loss_spiking or r.loss_nonfinite or r.gn_spiking or r.gn_nonfinite or r.overflow_run))


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


def read_note(r: RankTrack, text: Any, a: int, spans: Any) -> None:
    """A checkpoint note's numbers, from the line at text[a:] whose shape gave their ``spans``."""
    (c, d), (f, h) = spans
    r.ckpt_epoch, r.ckpt_step = int(text[a + c:a + d]), int(text[a + f:a + h])


def set_last_fields(state: ClusterState, r: RankTrack, step_line: str | None, progress_line: str | None) -> None:
    """The newest step's and progress line's fields that only the newest counts (lr, loss scale,
    epoch, percent, time left...), read from those lines by the parser itself."""
    if step_line is not None:
        sm = STEP_RE.match(step_line, step_line.find(STEP_MARK))
        if sm is not None:
            state._set_step_fields(r, step_event_from_match(sm))
    if progress_line is not None:
        ev = parse_progress(progress_line, progress_line.find(PROGRESS_MARK))
        if ev is not None:
            r.percent, r.eta_s = ev.percent, ev.eta_s


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


def events_between(state: ClusterState, r: RankTrack, data: str | bytes, a: int, b: int) -> Iterator[Any]:
    """The events of the whole lines in data[a:b] (lines no pair took) that need ``_apply``, in
    order; the others (the pid, checkpoint notes, the batch size) are set here as they come. The
    caller applies each before the next line is read (a line read for the pid may come after one)."""
    kind = type(data)
    while a < b:
        if r.pid is None:
            text = data
            lines, a = _lines_to_pid(data, a, b)
        else:
            text, lines = _lines_to_parse(data, a, b)
            a = b
        yield from _line_events(state, r, kind, text, lines)


def _line_events(state: ClusterState, r: RankTrack, kind: type, text: Any, lines: list) -> Iterator[Any]:
    """``events_between`` for the given lines of ``text``."""
    # An Event, dispatched on `t = type(ev)` (cheaper than isinstance); mypy cannot narrow through t.
    ev: Any
    for entry in lines:
        a, b, shape = entry
        if shape is not None:  # a line of this shape was parsed before
            if shape is not NO_EVENT:
                read_note(r, text, a, shape)
            continue
        raw = text[a:b]
        # Shapes are kept when the pid is known (else a "[" line is read for it) and for
        # ASCII lines (str's \d matches more than bytes' does).
        shaped = kind is bytes and r.pid is not None and raw.isascii()
        line = as_text(raw)
        ev = parse_line(line)
        if ev is None:
            if r.pid is None and line.startswith("["):
                r.pid = parse_pid(line)
            elif shaped:
                entry[2] = NO_EVENT
            continue
        t = type(ev)
        if t is CheckpointSavedEvent:  # touches nothing the caller's locals mirror
            r.ckpt_epoch, r.ckpt_step = ev.epoch, ev.step
            if shaped:
                found = list(_CKPT_B.finditer(raw))
                if len(found) == 1 and (int(found[0][1]), int(found[0][2])) == (ev.epoch, ev.step):
                    entry[2] = (found[0].span(1), found[0].span(2))
            continue
        if t is GlobalBatchSizeEvent:
            state.global_batch_size = ev.global_batch_size
            continue
        yield ev


def _store(state: ClusterState, r: RankTrack, now: float, ema: float | None, seen: int,
           gema: float | None, gseen: int, lg: Any, loss: float | None, overflow: bool | None,
           gn: float | None, pend: list[Any], pend_ms: list[Any]) -> None:
    """Bring r up to date with the pairs fed so far: their history points and step times (the
    newest that r's deques keep), the counters and the last pair's values."""
    keep = r.history.maxlen
    append = r.history.append
    for g in (pend[-keep:] if keep is not None else pend):
        v = g[4]
        append((int(g[2]), float(v if v is not None else g[5]), float(g[10])))
    keep = r.recent_step_ms.maxlen
    append = r.recent_step_ms.append
    for g in (pend_ms[-keep:] if keep is not None else pend_ms):
        append(int(g[6]))
    pend.clear()
    pend_ms.clear()
    state._write_back(r, now, ema, seen, gema, gseen, int(lg[2]), loss, int(lg[6]), overflow, gn, float(lg[10]))


def feed_matches(state: ClusterState, rank: int, data: str | bytes, node: str | None = None) -> None:
    """``feed_chunk`` one pair at a time (``finditer``): for any block, odd marks included.

    The rank's counters live in locals while ordinary steps go by (``feed_many``'s inline case);
    anything else writes them back, goes through ``ClusterState._on_step`` / ``_apply`` and
    reads them again.
    """
    kind = type(data)
    nl, mark = NL_OF[kind], PROGRESS_MARK_OF[kind]
    now = state.clock()
    r = state.rank(rank, node)
    alpha, lratio, gratio, warm = (state.spike_alpha, state.loss_spike_ratio, state.global_norm_spike_ratio,
                                   state.spike_warmup)
    end = len(data)
    # The last pair: the newest step's (and progress line's) other fields come from it.
    last_step = last_prog = None
    # Mirrors of r's counters. `dirty`: they and the last pair's values (`lg` its groups, loss,
    # overflow, gn) are ahead of r, and `pend` / `pend_ms` hold the pairs whose history points /
    # step times are not in r yet (only the newest of them survive r's bounded deques, so the rest
    # are never converted).
    # ema and gema are floats whenever `ordinary` is true (is_ordinary checks both); lg is the last
    # pair's groups once `dirty`.
    ema: Any
    gema: Any
    lg: Any
    loss: float | None
    overflow: bool | None
    gn: float | None
    # An Event, dispatched on `t = type(ev)` (cheaper than isinstance); mypy cannot narrow through t.
    ev: Any
    ema, seen, gema, gseen = r.loss_ema, r.loss_seen, r.gn_ema, r.gn_seen
    lg = loss = overflow = gn = None
    pend: list[Any] = []
    pend_ms: list[Any] = []
    pend_append, pend_ms_append = pend.append, pend_ms.append
    ordinary = is_ordinary(r)
    dirty = False
    pos = 0  # data[:pos] is handled
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
        if ls >= 0:  # whole lines before this pair (or the end): those that may hold an event
            for ev in events_between(state, r, data, pos, ls):
                if dirty:
                    _store(state, r, now, ema, seen, gema, gseen, lg, loss, overflow, gn, pend, pend_ms)
                    dirty = False
                state._apply(r, ev, now)
                t = type(ev)
                if t is StepEvent:  # r holds this line's fields already (a later pair sets them again)
                    last_step = None
                elif t is ProgressEvent:
                    last_prog = None
                ema, seen, gema, gseen = r.loss_ema, r.loss_seen, r.gn_ema, r.gn_seen
                ordinary = is_ordinary(r)
        if m is None:
            break
        v = g[4]
        loss = float(v if v is not None else g[5])
        gn = float(g[8])
        overflow = g[7] is not None
        final = g[3] is not None and g[1] is not None
        # Plain decimals: loss and norm are finite; an ordinary step is _on_step's usual case
        # (`ordinary` includes both running means being known).
        if (ordinary and not final and not overflow
                and not (loss > ema * lratio and seen >= warm and ema > 0.0)
                and not (gn > gema * gratio and gseen >= warm and gema > 0.0)):
            ema += alpha * (loss - ema)
            seen += 1
            gema += alpha * (gn - gema)
            gseen += 1
            pend_ms_append(g)
        else:
            if dirty:  # this pair's loss, overflow, norm already: _on_step sets them the same way
                _store(state, r, now, ema, seen, gema, gseen, lg, loss, overflow, gn, pend, pend_ms)
            state._on_step(r, int(g[2]), loss, int(g[6]), overflow, gn, final, now)
            ema, seen, gema, gseen = r.loss_ema, r.loss_seen, r.gn_ema, r.gn_seen
            ordinary = is_ordinary(r)
        pend_append(g)
        lg = g
        dirty = True
        last_step = last_prog = m
        pos = e
    if dirty:
        _store(state, r, now, ema, seen, gema, gseen, lg, loss, overflow, gn, pend, pend_ms)
    set_last_fields(
        state, r,
        None if last_step is None else as_text(
            data[data.rfind(nl, 0, last_step.start()) + 1:last_step.start(10) - 1]),  # its step line
        None if last_prog is None else as_text(
            data[last_prog.start(10):last_prog.end()]).rstrip("\n"))  # its progress line
