"""Turn one line of a MindFormers / msrun log into an event, or ``None``.

Pure: no I/O, no clock, standard library only. ``parse_line`` gives None for any ``str`` that holds
no event (garbage, truncated lines); it raises on what is not a ``str``, and the state's entry
points, where lines come in, keep going past such a line (``ClusterState.feed``).

Why it is shaped like this
--------------------------
Ingestion must keep up with every rank of a large cluster on one core (the benchmark goal is one
million lines a second through parse + state), and most lines are not interesting. Measured with
callgrind, every CPython-level operation on a line (a method call, a slice, an ``in`` test) costs
about as much as scanning the whole line in C, and the regex engine costs ~50 instructions per
character it matches. So: recognisers sit behind one substring test each (``str.find``), regexes
are compiled once and, for the step line, anchored where that test found its mark
(``match(line, i)``, not ``search``), the progress line is read with ``find``/``rfind`` and no
regex, and ``parse_other`` lets the log level decide which few tests an uninteresting line goes
through.

The two lines MindFormers' ``MFLossMonitor.print_output_info`` prints per step are::

    { Epoch:[%3d/%3d], step:[%5d/%5d], <loss_info><separate_loss>per_step_time: %dms, lr: %s,
      overflow cond: %s, loss_scale: %s, global_norm: %s<throughput>
      %4.1f%% |<50-char bar>| %.5f samples/s/p  <timedelta> }

with ``loss_info`` ``loss: %5.6f, `` (sink mode) or ``loss:[cur/mean], `` (older: ``%5.3f``),
``separate_loss`` e.g. ``lm_loss: %5.3f, mtp_loss: %5.3f, `` in newer model paths, ``, lr: %s``
absent when the lr cannot be computed, ``, global_norm: %s`` absent in old releases and
``throughput`` ``, train_throughput_per_npu: %.3fT`` or nothing. Both logger formats (stdout,
which is what lands in msrun's ``worker_N.log``, and the ``output/log/rank_N/info.log`` file
format) only differ before ``{ Epoch:``: a format is matched from its mark, and the prefix is only
read for its timestamp (the step's time, ``formats.log_time``). Every step format is declared
once, with named groups, in ``mfctl.metrics.formats`` (r0.x, MFLossMonitor 1.x, the PyNative
trainer's); ``step_event_from_match`` reads any of them by group name.

``STEP_RE``, ``step_event_from_match`` and ``parse_progress`` are public so that the readers
(``mfctl.metrics.lines``, ``pairs``) recognise and convert a line exactly as ``parse_line`` does.
The progress line needs no regex: it is found from its ``samples/s/p`` mark backwards.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mfctl.metrics.cann import cann_line, names_failure
from mfctl.metrics.events import (
    CheckpointSavedEvent,
    ErrorLineEvent,
    Event,
    ExceptionEvent,
    GlobalBatchSizeEvent,
    KillAllWorkersEvent,
    ProgressEvent,
    SchedulerExitEvent,
    StepEvent,
    TimeoutEvent,
    TracebackEvent,
    TrainingOverEvent,
    WorkerExitEvent,
)
from mfctl.metrics.formats import MF_STEP, PROGRESS, PYNATIVE_STEP, R0_STEP, log_time

__all__ = [
    "PROGRESS_MARK",
    "PYNATIVE_MARK",
    "STEP_MARK",
    "STEP_RE",
    "first_float",
    "parse_line",
    "parse_lines",
    "parse_other",
    "parse_pid",
    "parse_progress",
    "parse_timedelta",
    "step_event_from_match",
    "to_bool",
    "to_float",
]


_TRAINING_OVER = TrainingOverEvent()
_KILL_ALL = KillAllWorkersEvent()
_TRACEBACK = TracebackEvent()

# Longest message kept in an event: alerts show it, nobody needs a 100 kB line.
MAX_MESSAGE = 500

# ---------------------------------------------------------------------------------------------
# Regexes (compiled once)

STEP_MARK = MF_STEP.mark
PYNATIVE_MARK = PYNATIVE_STEP.mark
PROGRESS_MARK = PROGRESS.mark

# Each step format compiled once (mfctl.metrics.formats declares them, with named groups).
STEP_RE = re.compile(MF_STEP.pattern)
_R0_RE = re.compile(R0_STEP.pattern)
_PYNATIVE_RE = re.compile(PYNATIVE_STEP.pattern)
assert MF_STEP.mark == R0_STEP.mark  # both are tried at the same mark
_TIMEDELTA_RE = re.compile(r"(?:(-?\d{1,9}) days?, )?(-?\d{1,9}):(\d\d):(\d\d)(?:\.(\d{1,6}))?")
_CKPT_RE = re.compile(r"Finish saving ckpt of epoch (\d{1,15}) step (\d{1,15})(?: using ([\d.eE+-]+) seconds)?")
_GBS_RE = re.compile(
    r"global_batch_size = batch_size_per_card \* device_num \* gradient_accumulation_steps = "
    r"(\d{1,15}) = (\d{1,15}) \* (\d{1,15}) \* (\d{1,15})"
)
_WORKER_EXIT_RE = re.compile(r"Worker process (\d{1,10}) exit with exception\. Error code: (-?\d{1,10})")
_SCHED_EXIT_RE = re.compile(r"Scheduler process (\d{1,10}) exit with exception")
_NODE_TIMEOUT_RE = re.compile(r"The node: (\S{1,64}) is timed out")
# "timeout" as a word: not a C++ function name (ReconnectWithTimeoutWindow) nor a setting (HCCL_CONNECT_TIMEOUT).
_TIMEOUT_WORD_RE = re.compile(r"\b(?:[Tt]imed? ?out|TIMED? ?OUT)\b")
_EXC_RE = re.compile(
    r"((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt)|Fatal Python error)(?::\s?(.*))?$"
)
# "[WARNING] ME(23277:1403...,MainProcess):..." / "[WARNING] DISTRIBUTED(23277,7fa4...,python):..."
_PID_RE = re.compile(r"\[[A-Z]{1,10}\] [A-Z_]{1,32}\((\d{1,10})[,:]")

_BRACKETS = " []\t\r\n"

# ---------------------------------------------------------------------------------------------
# Field conversions (shared with the batch path in state.py)


def to_float(s: str | None) -> float | None:
    """``float(s)`` or ``None``; accepts ``nan``, ``inf``, ``-inf`` and surrounding blanks."""
    if s is None:
        return None
    try:
        return float(s)
    except (ValueError, OverflowError):
        return first_float(s)


def first_float(s: str | None) -> float | None:
    """The first number of a printed scalar or list: ``[0.59495854]`` -> 0.59495854."""
    if s is None:
        return None
    t = s.strip(_BRACKETS)
    try:
        return float(t)
    except (ValueError, OverflowError):
        pass
    head = t.split(None, 1)
    if not head:
        return None
    try:
        return float(head[0].strip(_BRACKETS))
    except (ValueError, OverflowError):
        return None


def to_bool(s: str | None) -> bool | None:
    """``True``/``False`` as printed (also inside a Tensor repr), else None."""
    if s is None:
        return None
    s = s.strip()
    if s == "False":
        return False
    if s == "True":
        return True
    # e.g. "Tensor(shape=[], dtype=Bool, value= True)"
    if "True" in s:
        return True
    if "False" in s:
        return False
    return None


def _separate(blob: str | None) -> tuple[tuple[str, float | None], ...]:
    """``lm_loss: 2.3, mtp_loss: 0.4, `` (MFLossMonitor) or ``, load_balancing_loss:   1.09``
    (the PyNative trainer) -> the names and their values."""
    if not blob:
        return ()
    out = []
    for part in blob.split(", "):
        name, sep, value = part.partition(":")
        if sep:
            out.append((name, to_float(value)))
    return tuple(out)


def step_event_from_match(m: re.Match, prefix: str | None = None) -> StepEvent:
    """A StepEvent from a match of a ``formats.STEP_FORMATS`` pattern (the only place step fields
    are converted), read by group name; ``prefix``: the line's text before the match, whose
    timestamp is the step's time."""
    g = m.groupdict()
    loss = g["loss"]
    if loss is None:
        loss = g.get("sink_loss")
    ms = g.get("step_time_ms")
    epoch, total_epochs = g.get("epoch"), g.get("total_epochs")
    return StepEvent(
        epoch=int(epoch) if epoch is not None else None,
        total_epochs=int(total_epochs) if total_epochs is not None else None,
        step=int(g["step"]), total_steps=int(g["total_steps"]),
        loss=to_float(loss),
        loss_mean=to_float(g.get("loss_mean")),
        separate_losses=_separate(g.get("separate")),
        step_time_ms=int(ms) if ms is not None else round(float(g["step_time_float"])),
        lr=first_float(g.get("lr")),
        overflow=to_bool(g.get("overflow")),
        loss_scale=first_float(g.get("loss_scale")),
        global_norm=first_float(g.get("global_norm")),
        tflops=to_float(g.get("tflops")),
        time=log_time(prefix),
        progress_follows=m.re is STEP_RE,
    )


def parse_timedelta(s: str) -> int | None:
    """Seconds in ``str(datetime.timedelta)``: ``0:04:58``, ``2 days, 1:00:00``, ``-1 day, 23:59:57`` (-3)."""
    m = _TIMEDELTA_RE.match(s.strip())
    if m is None:
        return None
    days, h, mi, sec, _micro = m.groups()
    total = int(h) * 3600 + int(mi) * 60 + int(sec)
    if days is not None:
        total += int(days) * 86400
    return total


def parse_progress(line: str, k: int) -> ProgressEvent | None:
    """The progress line whose ``PROGRESS_MARK`` is at ``k`` (``line.find(PROGRESS_MARK)``), else None.

    ``<percent>% |<bar>| <samples/s/p> samples/s/p  <time left> }``. The bar holds no ``|``, so the
    last ``|`` before the mark closes it: the line is a progress line when what lies between is a
    number. The percent (before ``% |``) and the time left are read only here, not per line by the
    state's batch path, which applies this same test.
    """
    b = line.rfind("|", 0, k)
    if b < 0:
        return None
    sps = to_float(line[b + 1:k])
    if sps is None:
        return None
    j = line.rfind("% |", 0, b)
    percent = to_float(line[line.rfind(" ", 0, j) + 1:j]) if j >= 0 else None
    eta = parse_timedelta(line[k + len(PROGRESS_MARK):].strip().rstrip("}"))
    return ProgressEvent(percent=percent, samples_per_s=sps, eta_s=eta)


# ---------------------------------------------------------------------------------------------
# Parsing


def _clip(line: str) -> str:
    line = line.strip()
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 3] + "..."


def _is_error_level(line: str) -> bool:
    return (" - ERROR - " in line or " - CRITICAL - " in line
            or line.startswith("[ERROR]") or line.startswith("[CRITICAL]"))


def _exit_event(line: str) -> Event | None:
    """msrun's and the scheduler's lines with "with exception" in them."""
    m = _WORKER_EXIT_RE.search(line)
    if m is not None:
        return WorkerExitEvent(int(m[1]), int(m[2]))
    if "kill all other workers" in line:
        return _KILL_ALL
    m = _SCHED_EXIT_RE.search(line)
    if m is not None:
        return SchedulerExitEvent(int(m[1]))
    m = _NODE_TIMEOUT_RE.search(line)
    if m is not None:
        return TimeoutEvent(_clip(line), m[1])
    return None  # e.g. "RuntimeError: Distributed job exited with exception." is an exception line


def _timeout_event(line: str) -> Event | None:
    # "timeout" as a word, at WARNING or ERROR level (the callers' business): at INFO level it is a
    # setting being printed, "Topology build timed out., retry(3/1200)" is the topology builder's
    # normal polling and "ReconnectWithTimeoutWindow" is a function name.
    if "retry(" in line or _TIMEOUT_WORD_RE.search(line) is None:
        return None
    m = _NODE_TIMEOUT_RE.search(line)
    return TimeoutEvent(_clip(line), m[1] if m is not None else None)


def _info_event(msg: str) -> Event | None:
    """The events MindFormers logs at INFO, in the message part of an INFO line."""
    if "Training Over" in msg:
        return _TRAINING_OVER
    if "Finish saving ckpt" in msg:
        m = _CKPT_RE.search(msg)
        return CheckpointSavedEvent(int(m[1]), int(m[2]), to_float(m[3])) if m is not None else None
    if "global_batch_size = " in msg:
        m = _GBS_RE.search(msg)
        return GlobalBatchSizeEvent(int(m[1]), int(m[2]), int(m[3]), int(m[4])) if m is not None else None
    if "Traceback (most recent call last)" in msg:
        return _TRACEBACK
    return None


def _warning_event(line: str) -> Event | None:
    """msrun's "kill all other workers", timeouts, a logged traceback."""
    if "with exception" in line:
        ev = _exit_event(line)
        if ev is not None:
            return ev
    if "Traceback (most recent call last)" in line:
        return _TRACEBACK
    if "ime" in line or "IME" in line:
        return _timeout_event(line)
    return None


def _any_event(line: str) -> Event | None:
    """A line of unknown or ERROR level: every test."""
    ev = _info_event(line)
    if ev is not None:
        return ev
    if "with exception" in line:
        ev = _exit_event(line)
        if ev is not None:
            return ev
    c = line[:1]
    if c.isalpha() or c == "_":
        m = _EXC_RE.match(line)
        if m is not None:
            return ExceptionEvent(m[1], _clip(m[2] or ""))
    error = ("ERROR" in line or "CRITICAL" in line) and _is_error_level(line)
    if ("ime" in line or "IME" in line) and (error or " - WARNING - " in line or line.startswith("[WARNING]")):
        ev = _timeout_event(line)
        if ev is not None and not (error and names_failure(line)):  # a CANN code names an HCCL timeout
            return ev
    return ErrorLineEvent(_clip(line)) if error else cann_line(line)  # cann_line: an "Ascend Error Message" code line


def parse_other(line: str) -> Event | None:
    """Every event but the step and progress lines (which ``parse_line`` tries first).

    Most lines that get here are noise, and each substring test scans the whole line, so the log
    level routes the tests: an INFO line can only hold what MindFormers logs at INFO (training over,
    checkpoint saved, global batch size), looked for in its message only; a WARNING line msrun's
    "kill all", a timeout or a traceback; indented lines (config dumps, traceback frames) only a
    traceback. ERROR lines and lines of unknown shape get every test.
    """
    c = line[:1]
    if c == "[":  # "[LEVEL] ..." (MindSpore, and MindFormers' file format)
        if line.startswith("[INFO]") or line.startswith("[DEBUG]"):
            return _info_event(line)
        if line.startswith("[WARNING]"):
            return _warning_event(line)
    elif "0" <= c <= "9":  # MindFormers' stdout format: "<date> <time> - <name>[<file>:<n>] - LEVEL - msg"
        j = line.find("] - ")
        if j >= 0:
            if line.startswith("INFO - ", j + 4):
                return _info_event(line[j + 11:])
            if line.startswith("WARNING - ", j + 4):
                return _warning_event(line)
            if line.startswith("DEBUG - ", j + 4):
                return _info_event(line[j + 12:])
    elif c == " " or c == "'" or c == "{" or c == "}" or c == "\t":
        return _TRACEBACK if "Traceback (most recent call last)" in line else cann_line(line)  # CANN TraceBack
    return _any_event(line)


def parse_line(line: str) -> Event | None:
    """The event in one log line (with or without its newline), or None for every other line.

    Raises on what is not a ``str`` (and would on a parser bug): the state's entry points hold
    the "a line never stops ingestion" contract (``ClusterState.feed`` and the batch paths), so a
    crash here is seen by the tests instead of looking like a line without an event."""
    # The progress line ends with " }" and a MFLossMonitor step line never does: checking the last
    # character spares progress lines a scan for "Epoch:[" (the state's batch path relies on this).
    if line[-1:] != "}":
        i = line.find(STEP_MARK)
        if i >= 0:
            m = STEP_RE.match(line, i) or _R0_RE.match(line, i)
            if m is not None:
                return step_event_from_match(m, line[:i])
    k = line.find(PROGRESS_MARK)
    if k >= 0:
        ev = parse_progress(line, k)
        if ev is not None:
            return ev
    i = line.find(PYNATIVE_MARK)
    if i >= 0:
        m = _PYNATIVE_RE.match(line, i)
        if m is not None:
            return step_event_from_match(m, line[:i])
    return parse_other(line)


def parse_lines(lines: Iterable[str]) -> list[Event]:
    """The events of many lines, in order (lines without an event are skipped)."""
    parse = parse_line
    return [e for e in map(parse, lines) if e is not None]


def parse_pid(line: str) -> int | None:
    """The process id in a MindSpore-format line (``[WARNING] ME(23277:1403...`` -> 23277), else None.

    msrun reports a dead worker by pid; the worker's own log is where pid and rank meet.
    """
    m = _PID_RE.match(line)
    return int(m[1]) if m is not None else None
