"""The chunk path: a whole block of log text (``bytes`` or ``str``) read at once, into the runs of
steps and events ``ClusterState.feed_chunk`` applies.

Why it exists
-------------
Per-line work in CPython costs a method call or two per line whatever the line says, and three
quarters of a training log are the two lines ``MFLossMonitor`` prints per step. Here one compiled
pattern (``pairs.PAIR_PATTERN``) takes a step line *and* the progress line after it in one match
(fields and samples/s captured together), and the lines between steps (checkpoint notes,
warnings, the config dump) cost nothing unless a prefilter (every substring an event of
``parse_line`` needs) finds something in them. Working on ``bytes`` spares the UTF-8 decoding of
the bar's block characters: only the few lines that go to the per-line parser are decoded.

Two ways through a block, the same state (``pairs`` says how it stays exactly the per-line
path's):

- ``read_chunk`` (a block of ``SPLIT_FROM`` bytes or more): one ``split`` by the pattern takes the
  whole block apart in C; losses and norms are converted a column at a time, and the pairs go out
  as one ``StepRun`` (the state's loop over ordinary steps is a few float operations per step).
  The stretches between pairs are sorted out first: those of a shape seen before with no event
  to apply (a checkpoint note every N steps) do not cut the run, and only the last note's numbers
  are read. A block with a step mark outside a pair, or a progress mark outside one, goes the
  other way.
- ``pairs.read_matches`` (shorter blocks, and those): ``finditer``, one pair at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import compress, repeat
from operator import contains
from typing import Any

from mfctl.metrics.events import StepRun
from mfctl.metrics.pairs import (
    MARK_TAIL_OF,
    NL_OF,
    NO_EVENT,
    PAIR_RE,
    as_text,
    events_between,
    known_lines,
    last_fields,
    note_event,
    read_matches,
)

__all__ = ["SPLIT_FROM", "read_chunk"]


# split() by the pair pattern returns, per pair, the text before it and its 11 groups, then the
# text after the last pair: pair k's group i (0-based, as m.groups()) is parts[_S * k + 1 + i].
_S = 12
# Blocks shorter than this (a few steps: what a live follower reads at a time) take
# read_matches, which costs less per block; longer ones are split.
SPLIT_FROM = 4096


def _where(col: list[Any], value: Any) -> list[int]:
    """The indexes where ``col`` holds ``value`` (few: found by C scans, not a Python loop)."""
    out = []
    k = -1
    try:
        while True:
            k = col.index(value, k + 1)
            out.append(k)
    except ValueError:
        return out


def read_chunk(data: str | bytes, pid_wanted: Callable[[], bool]) -> Iterator[Any]:
    """What complete lines of one rank hold (a trailing partial line counts as a line), in order:
    ``StepRun``s, events, ``PidLine``s, ``UnreadableLine``s, as ``lines.read_lines`` gives them.

    One ``split`` by the pair pattern takes the block apart in C; the losses and norms are
    converted a column at a time (``map``); the other columns stay text, for the state to
    convert what it keeps. The pairs make one run, cut only where the lines between two pairs
    hold an event that is not a checkpoint note: stretches of a shape seen before with nothing
    but a note in them are sorted out first, and only the last note of each is read. Where the
    block holds a step mark without its pair, or a progress mark outside one, it goes to
    ``read_matches`` (the same items, a pair at a time).
    """
    if len(data) < SPLIT_FROM:
        yield from read_matches(data, pid_wanted)
        return
    kind = type(data)
    parts = PAIR_RE[kind].split(data)
    n = len(parts) // _S
    # A step mark alone leaves its step (group 2) None. One progress mark per pair and none
    # elsewhere: the mark in each pair is its own (the line path reads the figure before the first).
    # Counted by the mark's tail (``MARK_TAIL_OF``), which the C search finds in half the time
    # of the whole mark: each mark holds it once, so n of them means n marks.
    if None in parts[3::_S] or data.count(MARK_TAIL_OF[kind]) != n:
        yield from read_matches(data, pid_wanted)
        return
    nl = NL_OF[kind]
    empty = nl[:0]
    gaps = parts[0::_S]  # the text before each pair, then the text after the last one
    # Pairs with whole lines before them.
    lined = list(compress(range(n), map(contains, gaps, repeat(nl))))
    if lined and lined[0] == 0:  # a log's header (the pid is read there): no pair before it
        yield from events_between(gaps[0], 0, gaps[0].rfind(nl), pid_wanted)
        del lined[0]
    # The lines between pairs that hold no more than a checkpoint note (a shape seen before: see
    # pairs.SHAPES, bytes only) and where the last note of each such stretch is; the others are
    # `unknown`. (While the pid is unknown no shape is used: a "[" line is read for it.)
    unknown: list[int] = []
    notes: list[tuple[int, Any, int, Any]] = []  # (pair, text, line start, spans) of a stretch's last note
    if not pid_wanted():
        for s in lined:
            text = gaps[s]
            lines = known_lines(text, 0, text.rfind(nl))
            if lines is not None:
                note = None
                for a, _b, shape in lines:
                    if shape is None:
                        break
                    if shape is not NO_EVENT:
                        note = (s, text, a, shape)
                else:
                    if note is not None:
                        notes.append(note)
                    continue
            unknown.append(s)
    else:
        unknown = lined
    col = parts[5::_S]  # the loss (group 4), or in sink mode group 5
    if None in col:
        col = [v if v is not None else w for v, w in zip(col, parts[6::_S])]
    losses = list(map(float, col))  # plain decimals: they convert, and are finite
    gns = list(map(float, parts[9::_S]))
    steps, mss, spss, times = parts[3::_S], parts[7::_S], parts[11::_S], gaps[:n]
    # Flag groups hold "" where set: an overflow (group 7), the last step (groups 1 and 3).
    ovs: list[bool] | None = None
    col = parts[8::_S]
    if empty in col:
        ovs = [v is not None for v in col]
    fins: list[bool] | None = None
    epoch_last = parts[2::_S]
    last_steps = [k for k in _where(parts[4::_S], empty) if epoch_last[k] is not None]
    if last_steps:
        fins = [False] * n
        for k in last_steps:
            fins[k] = True
    # The newest pair's lines, found back from the text after it: the progress line ends the
    # pair (at its newline or the end), the step line is the line before it. Their other fields
    # (epoch, lr, percent...) are the newest step's: the last run brings them.
    step = prog = None
    if n:
        end = len(data) - len(gaps[n])
        pe = end - 1 if data[end - 1:end] == nl else end
        ps = data.rfind(nl, 0, pe) + 1
        step, prog = last_fields(as_text(data[data.rfind(nl, 0, ps - 1) + 1:ps - 1]), as_text(data[ps:pe]))
    noted = 0  # notes[:noted] are given
    start = 0
    for s in [*unknown, n]:
        if s > start:  # the pairs before these lines
            yield StepRun(steps[start:s], losses[start:s], mss[start:s], gns[start:s], spss[start:s],
                          times[start:s], ovs[start:s] if ovs is not None else None,
                          fins[start:s] if fins is not None else None,
                          step if s == n else None, prog if s == n else None, True)
            start = s
        # The checkpoint notes before these lines, then the lines (the text after the last pair:
        # all of it, a partial line too).
        last = noted
        while noted < len(notes) and notes[noted][0] < s:
            noted += 1
        if noted > last:
            yield note_event(*notes[noted - 1][1:])
        text = gaps[s]
        yield from events_between(text, 0, len(text) if s == n else text.rfind(nl), pid_wanted)
