"""The chunk path: a whole block of log text (``bytes`` or ``str``) into a ``ClusterState`` at once.

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

- ``feed_chunk`` (a block of ``SPLIT_FROM`` bytes or more): one ``split`` by the pattern takes the
  whole block apart in C; losses and norms are converted a column at a time, and a run of ordinary
  steps is a loop of a few float operations per step (the running means). The stretches between
  pairs are sorted out first: those of a shape seen before with no event to apply (a checkpoint
  note every N steps) do not stop that loop, and only the last note's numbers are read. A block
  with a step mark outside a pair, or a progress mark outside one, goes the other way.
- ``pairs.feed_matches`` (shorter blocks, and those): ``finditer``, one pair at a time.
"""

from __future__ import annotations

from itertools import compress, repeat
from operator import contains
from typing import TYPE_CHECKING, Any

from mfctl.metrics.pairs import (
    NL_OF,
    NO_EVENT,
    PAIR_RE,
    PROGRESS_MARK_OF,
    as_text,
    events_between,
    feed_matches,
    is_ordinary,
    known_lines,
    read_note,
    set_last_fields,
)

if TYPE_CHECKING:
    from mfctl.metrics.state import ClusterState, RankTrack

__all__ = ["SPLIT_FROM", "feed_chunk"]


# split() by the pair pattern returns, per pair, the text before it and its 11 groups, then the
# text after the last pair: pair k's group i (0-based, as m.groups()) is parts[_S * k + 1 + i].
_S = 12
# Blocks shorter than this (a few steps: what a live follower reads at a time) take
# feed_matches, which costs less per block; longer ones are split.
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


def _flush(state: ClusterState, r: RankTrack, now: float, ema: float | None, seen: int, gema: float | None,
           gseen: int, parts: list[Any], losses: list[float], gns: list[float], a: int, ma: int, b: int) -> None:
    """Bring r up to date with pairs a..b-1 (its counters are ahead, mirrored by the caller):
    their history points and, from pair ``ma`` on (the earlier went through ``_on_step``), their
    step times, as many as r's deques keep; then the last pair's values."""
    keep = r.history.maxlen
    lo = a if keep is None else max(a, b - keep)
    r.history.extend(zip(map(int, parts[_S * lo + 3:_S * b:_S]), losses[lo:b],
                         map(float, parts[_S * lo + 11:_S * b:_S])))
    keep = r.recent_step_ms.maxlen
    lo = ma if keep is None else max(ma, b - keep)
    r.recent_step_ms.extend(map(int, parts[_S * lo + 7:_S * b:_S]))
    k = b - 1
    j = _S * k
    state._write_back(r, now, ema, seen, gema, gseen, int(parts[j + 3]), losses[k], int(parts[j + 7]),
                      parts[j + 8] is not None, gns[k], float(parts[j + 11]))


def feed_chunk(state: ClusterState, rank: int, data: str | bytes, node: str | None = None) -> None:
    """Complete lines of ``rank`` (a trailing partial line counts as a line), as ``feed_many`` would.

    One ``split`` by the pair pattern takes the block apart in C; the losses and norms are
    converted a column at a time (``map``), and a run of ordinary steps is one small loop over two
    lists of floats (the running means: that is all an ordinary step changes). The lines between
    pairs only stop that loop when they hold an event to apply: those of a shape seen before
    with nothing but a checkpoint note in them are sorted out first, and only the last note's
    numbers are read. Where the block holds a step mark without its pair, or a progress mark
    outside one, it goes to ``feed_matches`` (the same state, a pair at a time).
    """
    if len(data) < SPLIT_FROM:
        feed_matches(state, rank, data, node)
        return
    kind = type(data)
    parts = PAIR_RE[kind].split(data)
    n = len(parts) // _S
    # A step mark alone leaves its step (group 2) None. One progress mark per pair and none
    # elsewhere: the mark in each pair is its own (the line path reads the figure before the first).
    if None in parts[3::_S] or data.count(PROGRESS_MARK_OF[kind]) != n:
        feed_matches(state, rank, data, node)
        return
    nl = NL_OF[kind]
    now = state.clock()
    r = state.rank(rank, node)
    ev: Any  # an Event
    gaps = parts[0::_S]  # the text before each pair, then the text after the last one
    # Pairs with whole lines before them.
    lined = list(compress(range(n), map(contains, gaps, repeat(nl))))
    if lined and lined[0] == 0:  # a log's header (the pid is read there): no pair before it
        for ev in events_between(state, r, gaps[0], 0, gaps[0].rfind(nl)):
            state._apply(r, ev, now)
        del lined[0]
    # The lines between pairs that need no more than a checkpoint note's numbers (a shape seen
    # before: see pairs.SHAPES, bytes only) and where the last note of each such stretch is; the
    # others are `unknown`. (While the pid is unknown no shape is used: a "[" line is read for it.)
    unknown: set[int] = set()
    notes: list[tuple[int, Any, int, Any]] = []  # (pair, text, line start, spans) of a stretch's last note
    if r.pid is not None:
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
            unknown.add(s)
    else:
        unknown.update(lined)
    col = parts[5::_S]  # the loss (group 4), or in sink mode group 5
    if None in col:
        col = [v if v is not None else w for v, w in zip(col, parts[6::_S])]
    losses = list(map(float, col))  # plain decimals: they convert, and are finite
    gns = list(map(float, parts[9::_S]))
    # Pairs that must go through _on_step: an overflow (group 7), the last step (groups 1 and 3).
    # (Flag groups are empty: they hold "" where set.)
    special = set(_where(parts[8::_S], nl[:0]))
    epoch_last = parts[2::_S]
    special.update(k for k in _where(parts[4::_S], nl[:0]) if epoch_last[k] is not None)
    starts = sorted(unknown | special | {0, n})
    # Mirrors of r's counters. Pairs pend..k-1 are ahead of r (the newest of them give r its
    # history points; from ms_from on, its step times); ema and gema are floats when `ordinary`.
    alpha, lratio, gratio, warm = (state.spike_alpha, state.loss_spike_ratio, state.global_norm_spike_ratio,
                                   state.spike_warmup)
    ema: Any
    gema: Any
    ema, seen, gema, gseen = r.loss_ema, r.loss_seen, r.gn_ema, r.gn_seen
    ordinary = is_ordinary(r)
    pend = ms_from = 0
    noted = 0  # notes[:noted] are in r
    for s, e in zip(starts, starts[1:] + [n]):
        if s in unknown or s == n:
            # The checkpoint notes before these lines, then the lines (the text after the last
            # pair: all of it, a partial line too).
            last = noted
            while noted < len(notes) and notes[noted][0] < s:
                noted += 1
            if noted > last:
                read_note(r, *notes[noted - 1][1:])
            # None of these lines is a step or progress line (parse_line reads those only where
            # their mark is, and every mark here is in a pair): the last pair's lines keep the
            # newest step's fields.
            text = gaps[s]
            for ev in events_between(state, r, text, 0, len(text) if s == n else text.rfind(nl)):
                if s > pend:
                    _flush(state, r, now, ema, seen, gema, gseen, parts, losses, gns, pend, ms_from, s)
                    pend = ms_from = s
                state._apply(r, ev, now)
                ema, seen, gema, gseen = r.loss_ema, r.loss_seen, r.gn_ema, r.gn_seen
                ordinary = is_ordinary(r)
        if s == e:
            continue
        k = s
        through = s in special  # its first pair goes through _on_step
        while k < e:
            if ordinary and not through:
                # Ordinary steps (_on_step's usual case): the running means move, nothing else.
                i = k
                for loss, gn in zip(losses[k:e], gns[k:e]):
                    if ((loss > ema * lratio or gn > gema * gratio)
                            and ((loss > ema * lratio and seen + i - k >= warm and ema > 0.0)
                                 or (gn > gema * gratio and gseen + i - k >= warm and gema > 0.0))):
                        break
                    ema += alpha * (loss - ema)
                    gema += alpha * (gn - gema)
                    i += 1
                seen += i - k
                gseen += i - k
                k = i
                if k == e:
                    break
            through = False
            if k > pend:
                _flush(state, r, now, ema, seen, gema, gseen, parts, losses, gns, pend, ms_from, k)
                pend = k
            j = _S * k
            state._on_step(r, int(parts[j + 3]), losses[k], int(parts[j + 7]), parts[j + 8] is not None, gns[k],
                           parts[j + 4] is not None and parts[j + 2] is not None, now)
            ms_from = k + 1
            ema, seen, gema, gseen = r.loss_ema, r.loss_seen, r.gn_ema, r.gn_seen
            ordinary = is_ordinary(r)
            k += 1
    if n > pend:
        _flush(state, r, now, ema, seen, gema, gseen, parts, losses, gns, pend, ms_from, n)
    if not n:
        return
    # The newest pair's lines, found back from the text after it: the progress line ends the
    # pair (at its newline or the end), the step line is the line before it.
    end = len(data) - len(gaps[n])
    pe = end - 1 if data[end - 1:end] == nl else end
    ps = data.rfind(nl, 0, pe) + 1
    set_last_fields(state, r, as_text(data[data.rfind(nl, 0, ps - 1) + 1:ps - 1]), as_text(data[ps:pe]))
