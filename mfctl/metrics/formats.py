"""The log line formats mfctl reads, each declared once, with named groups.

Everything that recognises a training log line starts here:

- ``mfctl.metrics.parser`` compiles ``STEP_FORMATS`` and ``PROGRESS`` (and reads the named groups);
- ``mfctl.metrics.pairs`` builds its one-match-per-step pattern from ``MF_STEP``'s and ``PROGRESS``'s
  marks and the same group names;
- ``mfctl.metrics.cann`` names a CANN failure in a line that holds one of ``CANN_MARKS``, which
  ``pairs``' marks include;
- the node side cannot import this module (``mfctl.node`` imports nothing of mfctl): its filter
  (``node/logtail.py``'s ``KEEP``) and the greps of ``node/nodectl.sh`` and the Slurm backend are
  tested against every format's ``samples`` (``tests/unit/test_metrics_formats.py`` runs them).

A format is matched from the position of its ``mark`` (a literal every line of it holds), so the
text before it, the logger's prefix, may be anything: MindFormers' stdout format
``2025-01-02 03:04:05,678 - mindformers[...] - INFO - { Epoch:...``, its file format
``[INFO] 2025-01-02 03:04:05,678 [...] print_output_info: { Epoch:...``, or none at all. The
prefix's timestamp, when there is one, is the step's time (``PREFIX_TIME``, ``log_time``).

Adding a format: one ``LineFormat`` in ``STEP_FORMATS`` (named groups from ``FIELDS``; a group it
lacks reads as None) and its real lines, with their source, in the formats test's table.

Pure: standard library only, no I/O.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import add, contains, itemgetter
from typing import Any

__all__ = [
    "CANN_CODE",
    "CANN_MARKS",
    "FIELDS",
    "MF_STEP",
    "OTHER_MARKS",
    "PREFIX_TIME",
    "PROGRESS",
    "PYNATIVE_STEP",
    "R0_STEP",
    "STEP_FORMATS",
    "LineFormat",
    "log_time",
    "log_times",
]


@dataclass(frozen=True)
class LineFormat:
    """One line format. ``pattern`` is matched at the position of ``mark`` (which it starts with);
    ``progress_follows``: MindFormers prints a progress line (samples/s) right after each such
    step line; ``ends_with_brace``: the line ends with ``}`` (the progress line does too, the
    MFLossMonitor step line never: the parser uses it to tell them apart without a scan)."""

    name: str
    versions: str
    mark: str
    pattern: str
    progress_follows: bool = False
    ends_with_brace: bool = False


# The step line's fields (named groups; a format holds a subset). Numbers as printed.
FIELDS = ("epoch", "total_epochs", "step", "total_steps", "loss", "loss_mean", "sink_loss", "separate",
          "step_time_ms", "step_time_float", "lr", "overflow", "loss_scale", "global_norm", "tflops")

# Digits are bounded (int() refuses strings over 4300 digits; a bound keeps garbage out).
# Optional parts are written "(?:...|)", not "(?:...)?": same language, but sre runs a cheap BRANCH
# instead of its REPEAT machinery. Values are what numpy prints ("False", "1024.0",
# "[0.59495854]"); a value with commas in it (a Tensor repr) ends the match early, which leaves
# the later fields None but step, loss and step time read.
_EPOCH_STEP = (r"Epoch:\[ *(?P<epoch>\d{1,15})/ *(?P<total_epochs>\d{1,15})\], "
               r"step:\[ *(?P<step>\d{1,15})/ *(?P<total_steps>\d{1,15})\], ")

# MFLossMonitor.print_output_info, 1.0 to 1.9 (mindformers/core/callback/callback.py):
#   "{ Epoch:[%3d/%3d], step:[%5d/%5d], " + loss_info + separate losses + "per_step_time: %dms,
#   lr: %s, overflow cond: %s, loss_scale: %s" (1.3+: ", global_norm: %s"; 1.5+: throughput)
# loss_info: "loss: %5.6f, " (sink mode) or "loss:[%5.3f/%5.3f], " (1.7+: "%5.6f"); separate
# losses (1.7+): "lm_loss: %5.6f, load_balancing_loss: ..., mtp_loss: ..., "; ", lr: %s" is absent
# when the lr cannot be computed; throughput ", train_throughput_per_npu: %.3fT" (1.5+). The 1.5
# docs print "global_norm [x]" without its colon: read too.
MF_STEP = LineFormat(
    name="mfloss",
    versions="MindFormers 1.0-1.9 (MFLossMonitor)",
    mark="Epoch:[",
    pattern=(
        _EPOCH_STEP
        + r"loss:(?:\[ *(?P<loss>[^/\]\n]*)/ *(?P<loss_mean>[^\]\n]*)\]| *(?P<sink_loss>[^,\n]*)), "
        r"(?P<separate>(?:[A-Za-z_]\w*: [^,\n]*, )*?)"
        r"per_step_time: (?P<step_time_ms>-?\d{1,15})ms"
        r"(?:, lr: (?P<lr>[^,\n]*)|)"
        r"(?:, overflow cond: (?P<overflow>[^,\n]*), loss_scale: (?P<loss_scale>[^,\n]*)|)"
        r"(?:, global_norm:? \[?(?P<global_norm>[^\],\n]*)\]?|)"
        r"(?:, train_throughput_per_npu: (?P<tflops>[^,\nT]*)T|)"
    ),
    progress_follows=True,
)

# MFLossMonitor of r0.x (2023; mindformers/core/callback/callback.py of v0.3-v0.8): no braces,
# no progress line, the step time a float: "Epoch:[%3d/%3d], step:[%5d/%5d], loss:[%5.3f/%5.3f],
# time:%5.3f ms, lr:%s, overflow cond: %s, loss_scale: %s" (", lr:%s" absent without an lr).
R0_STEP = LineFormat(
    name="mfloss-r0",
    versions="MindFormers r0.x (2023)",
    mark="Epoch:[",
    pattern=(
        _EPOCH_STEP
        + r"loss:\[ *(?P<loss>[^/\]\n]*)/ *(?P<loss_mean>[^\]\n]*)\], "
        r"time: *(?P<step_time_float>-?\d{1,15}(?:\.\d{1,9}|)) ?ms"
        r"(?:, lr: ?(?P<lr>[^,\n]*)|)"
        r"(?:, overflow cond: (?P<overflow>[^,\n]*), loss_scale: (?P<loss_scale>[^,\n]*)|)"
    ),
)

# The PyNative trainer of 1.9 (mindformers/pynative/callback/loss_callback.py, _print_log), one
# line, no epoch, no progress line: "{ step:[%5d/%5d], loss: %10.6f, per_step_time: %6dms" then
# extra losses (", load_balancing_loss: %10.6f", ", indexer_loss: ...", mtp), ", lr: %10.6e",
# ", grad_norm: %10.6f" (or NaN), ", throughput: %6.2fT", " }". Newer sources print
# "loss: N/A (non-last PP stage, refer to last stage for real loss)" on the other stages.
PYNATIVE_STEP = LineFormat(
    name="pynative",
    versions="MindFormers 1.9 PyNative trainer",
    mark="{ step:[",
    pattern=(
        r"\{ step:\[ *(?P<step>\d{1,15})/ *(?P<total_steps>\d{1,15})\], "
        r"loss: *(?P<loss>N/A[^)\n]*\)|[^,\n]*), "
        r"per_step_time: *(?P<step_time_ms>-?\d{1,15})ms"
        r"(?P<separate>(?:, (?!lr: |grad_norm: |throughput: )[A-Za-z_]\w*: *[^,\n]*)*)"
        r"(?:, lr: *(?P<lr>[^,\n]*)|)"
        r"(?:, grad_norm: *(?:NaN|(?P<global_norm>[^,\n]*))|)"  # "NaN": none computed (None)
        r"(?:, throughput: *(?P<tflops>[^,\nT]*)T|)"
        r" \}"
    ),
    ends_with_brace=True,
)

# Tried in this order at their mark (the r0 format only where the 1.x one does not match).
STEP_FORMATS = (MF_STEP, R0_STEP, PYNATIVE_STEP)

# The line MFLossMonitor prints after each step line: "  %4.1f%% %s %.5f samples/s/p  %s }"
# (percent, a 50-character bar between "|", samples/s per device, the time left as a timedelta).
# Read backwards from its mark, without a regex (``parser.parse_progress``).
PROGRESS = LineFormat(
    name="progress",
    versions="MindFormers 1.0-1.9 (MFLossMonitor)",
    mark=" samples/s/p",
    pattern=r"(?P<percent>[-\d.]+)% \|[^|\n]*\| *(?P<samples_per_s>[-\d.]+) samples/s/p *(?P<eta>[^}\n]*) \}",
    ends_with_brace=True,
)

# The other lines a rank's state reads (parser.parse_other), by the literal each holds: the node
# filter and greps are tested against these too.
OTHER_MARKS = ("Training Over", "Finish saving ckpt", "global_batch_size = ", "Traceback (most recent call last)",
               "exit with exception", "kill all other workers", "is timed out")

# A CANN / HCCL failure in a line without a log level (an "Ascend Error Message" block's code line,
# the indented TraceBack of a device out-of-memory block): an error code (E, a capital or digit,
# four digits) or one of those blocks' texts. ``mfctl.metrics.cann`` names the failure; the parser
# asks it only about lines that hold one of these, the chunk reader's marks include them, and the
# node filter keeps them (tested). Each starts with a capital, rare in log text: the scans stay fast.
CANN_CODE = r"E[A-Z0-9][0-9]{4}"
CANN_MARKS = rf"{CANN_CODE}|M(?:emAlloc|alloc device memory|emory_Allocation)|Out of Memory"

# The logger prefix's time: MindFormers' "%Y-%m-%d %H:%M:%S,%f"[:-3] (stdout and file formats).
PREFIX_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)[,.](\d{3})")

_HOUR_START: dict[str, float] = {}

# A log prints many steps a second (and a cluster's ranks the same seconds): the seconds since the
# epoch of each "YYYY-MM-DD HH:MM:SS" a line starts with (the stdout format), kept under that
# text (bytes or str, as the line came), and the fraction of each ",mmm" / ".mmm" after it. A
# line whose second is known costs two slices and two lookups. Filled only by ``log_time``'s full
# reading of such a line, with the same sum: the same float.
_SECOND: dict[str | bytes, float] = {}
_MS: dict[str | bytes, float] = {
    sep + digits: int(digits) / 1000.0
    for digits in (f"{ms:03d}" for ms in range(1000)) for sep in (",", ".")}
_MS.update({k.encode(): v for k, v in list(_MS.items()) if isinstance(k, str)})
_SECOND_RE: dict[type, re.Pattern] = {str: re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d{3}"),
              bytes: re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d{3}")}


def log_time(prefix: str | bytes | None) -> float | None:
    """Seconds since the epoch of the timestamp in a log line's prefix (the text before its mark;
    of a longer text, its last line), read as the local time it was printed in; None when it
    holds none.

    A line that starts with a second seen before is read from two tables (``_SECOND``, ``_MS``);
    otherwise the start of its hour is computed once (datetime is slow; a log has a few hours,
    and a cluster's logs the same ones), then minutes, seconds and milliseconds are added."""
    if prefix is None:
        return None
    nl = prefix.rfind(b"\n") if isinstance(prefix, bytes) else prefix.rfind("\n")
    if nl >= 0:
        prefix = prefix[nl + 1:]
    base = _SECOND.get(prefix[:19])
    if base is not None:
        ms = _MS.get(prefix[19:23])
        if ms is not None:
            return base + ms
    t = _read_time(prefix)
    if t is not None and _SECOND_RE[bytes if isinstance(prefix, bytes) else str].match(prefix) is not None:
        if len(_SECOND) > 65536:
            _SECOND.clear()
        _SECOND[prefix[:19]] = t[0]
    return None if t is None else t[0] + t[1]


_SECOND_OF = itemgetter(slice(0, 19))
_FRACTION_OF = itemgetter(slice(19, 23))


def log_times(prefixes: Sequence[Any]) -> list[float | None]:
    """``log_time`` of each of ``prefixes``; a float or None in it is taken as it is (a time the
    line path read already). Prefixes (all ``bytes`` or all ``str``) of seconds seen before are
    read a column at a time: C loops, no Python call per line."""
    try:
        bases = list(map(_SECOND.get, map(_SECOND_OF, prefixes)))
        fractions = list(map(_MS.get, map(_FRACTION_OF, prefixes)))
        multi = list(map(contains, prefixes, repeat(b"\n" if isinstance(prefixes[0], bytes) else "\n")))
    except (TypeError, IndexError):  # floats, None, mixed kinds; or none at all
        return [v if v is None or type(v) is float else log_time(v) for v in prefixes]
    if None in bases or None in fractions or True in multi:
        return [b + f if b is not None and f is not None and not m else log_time(p)
                for p, b, f, m in zip(prefixes, bases, fractions, multi)]
    return list(map(add, bases, fractions))


def _read_time(line: str | bytes) -> tuple[float, float] | None:
    """``log_time`` of one line in full: (the second, the fraction), or None."""
    prefix = line.decode("ascii", "replace") if isinstance(line, bytes) else line
    # Where MindFormers' loggers put it (stdout: first; file format: after "[LEVEL] "), read by
    # position once its hour is known: a regex search per step costs more than the rest of it.
    o = 0 if prefix[:1].isdigit() else prefix.find(" ") + 1
    t = prefix[o:o + 23]
    if len(t) == 23 and t[19] in ",." and t[16] == ":" and t[13] == ":":
        base = _HOUR_START.get(t[:13])
        if base is not None and t[14:16].isdigit() and t[17:19].isdigit() and t[20:23].isdigit():
            return base + int(t[14:16]) * 60 + int(t[17:19]), int(t[20:23]) / 1000.0
    m = PREFIX_TIME.search(prefix)
    if m is None:
        return None
    hour = prefix[m.start():m.start(5) - 1]
    base = _HOUR_START.get(hour)
    if base is None:
        try:
            base = datetime.datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4])).timestamp()
        except (ValueError, OverflowError, OSError):
            return None
        if len(_HOUR_START) > 4096:
            _HOUR_START.clear()
        _HOUR_START[hour] = base
    return base + int(m[5]) * 60 + int(m[6]), int(m[7]) / 1000.0
