"""Name a CANN / HCCL failure in a log line: its code, what it usually means, what to check.

``classify(line)`` returns a ``CannError`` (frozen: the alert log groups the ranks that hit the same
one) or ``None``. It recognises:

- a CANN error code in its usual places: at the start of a line (``EI0006: Getting socket times
  out...``, ``EE9999  Task execute failed``, also after torch's ``[rank1]: ``), in parentheses
  (``Get_Socket_Timeout(EI0006): ...``, CANN 8's form), after ``Ascend Error Message:`` or
  ``module_name=``, in brackets (``[EB0000]``);
- a failure printed without its code (the "TraceBack" lines under an ``EE9999: Inner Error!``,
  MindSpore's ``Out of Memory!!!``), by the texts of its row;
- any other ``[ERROR] HCCL(...)`` line, as an HCCL error without a code.

The meanings are data (``mfctl.metrics.cann_codes``); this module only finds the row. The hooks
the metrics core calls, one line each: the parser makes a line without a log level that names a
failure an ERROR line (``cann_line``; ``MARKS_PATTERN`` is the chunk path's share of that test) and
keeps a coded HCCL timeout an ERROR line (``names_failure``); the state raises ``error_alert``'s
alert for ERROR lines and exception texts: the row's kind (``cann_error``, or ``device_oom``) keyed
by the ``CannError``, whose ``code``, ``summary`` and ``hint`` ``alert_fields`` puts into the
alert's JSON. ``cause_of(alerts)`` picks the alert that best names why a job failed (``mfctl jobs``).

Pure: no I/O (the table is a Python module), standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mfctl.metrics.cann_codes import FALLBACK_HINT, HCCL_ROW, PREFIXES, ROWS, Row
from mfctl.metrics.events import ErrorLineEvent
from mfctl.metrics.formats import CANN_CODE, CANN_MARKS

__all__ = ["CANN_KINDS", "MARKS_PATTERN", "CannError", "alert_fields", "cann_line", "cause_of", "classify",
           "detail", "error_alert", "looks_like_cann", "names_failure"]

CANN_KINDS = frozenset({"cann_error", "device_oom"})

# E + a capital or digit + four digits (mfctl.metrics.formats), where CANN puts it (see the module
# docstring).
_CODE = CANN_CODE
_CODE_RE = re.compile(
    rf"(?:^\s*(?:\[rank\d+\]:\s*)?(?P<a>{_CODE})(?=[:\s]|$)"
    rf"|\((?P<b>{_CODE})\)"
    rf"|(?:Ascend Error Message:\s*|module_name=|error code:?\s*)(?P<c>{_CODE})\b"
    rf"|\[(?P<d>{_CODE})\])")

_TEXT_ROWS: tuple[Row, ...] = tuple(r for r in ROWS if r["texts"])
_BY_CODE: dict[str, Row] = {}
for _row in ROWS:  # a code's plain row (no texts) wins over one found by text
    _c = _row["code"]
    if _c is not None and (_c not in _BY_CODE or (_BY_CODE[_c]["texts"] and not _row["texts"])):
        _BY_CODE[_c] = _row

# What a line without a log level must hold for the parser to ask ``classify`` about it: a code,
# or the texts of a device out-of-memory block's lines, declared with the other formats
# (``mfctl.metrics.formats.CANN_MARKS``), where the chunk path's marks (``mfctl.metrics.pairs``)
# take them too, so every reader sees the same lines. (ERROR lines reach ``classify`` whatever
# they hold.)
MARKS_PATTERN = CANN_MARKS
_MARKS_RE = re.compile(MARKS_PATTERN)

_MAX_DETAIL = 160
_MAX_MESSAGE = 500  # as the parser's events: alerts show it, nobody needs a 100 kB line


@dataclass(frozen=True, slots=True)
class CannError:
    """A failure named by its code. ``code`` is None when the log gave none (MindSpore's own
    out-of-memory message, an HCCL line without a code); ``kind`` is the alert kind."""

    code: str | None
    kind: str
    summary: str
    hint: str
    consequence: bool = False

    @property
    def label(self) -> str:
        """``EI0006 socket build timeout``, or the summary alone when there is no code."""
        return f"{self.code} {self.summary}" if self.code else self.summary


def _error(row: Row, code: str | None) -> CannError:
    return CannError(code if code is not None else row["code"], row["kind"], row["summary"], row["hint"],
                     row["consequence"])


def _code_in(line: str) -> str | None:
    m = _CODE_RE.search(line)
    if m is None:
        return None
    return m["a"] or m["b"] or m["c"] or m["d"]


def looks_like_cann(line: str) -> bool:
    """Whether a line without a log level holds a failure ``classify`` names."""
    return _MARKS_RE.search(line) is not None and classify(line) is not None


def cann_line(line: str) -> ErrorLineEvent | None:
    """The event of a line without a log level that reports a CANN failure (a code line of an
    "Ascend Error Message" block, the indented TraceBack of a device out-of-memory block): an
    ``ErrorLineEvent``, so the state names it like an ERROR line; None for every other line."""
    if not looks_like_cann(line):
        return None
    text = line.strip()
    return ErrorLineEvent(text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE - 3] + "...")


def names_failure(line: str) -> bool:
    """Whether ``line`` reports a failure ``classify`` gives a code (the parser makes such an ERROR
    line a CANN alert even when it also says "timeout")."""
    err = classify(line)
    return err is not None and err.code is not None


def classify(line: str) -> CannError | None:
    """The CANN failure ``line`` reports, or None. Never raises."""
    try:
        code = _code_in(line)
        for row in _TEXT_ROWS:
            if any(t in line for t in row["texts"]):
                # The line's own code when it has one (EL0004 in CANN 8's form), else the row's.
                return _error(row, code if code is not None and row["code"] is not None else None)
        if code is not None:
            row_ = _BY_CODE.get(code)
            if row_ is not None:
                return _error(row_, code)
            module = PREFIXES.get(code[:2], "CANN")
            return CannError(code, "cann_error", f"{module} error", FALLBACK_HINT)
        if "HCCL(" in line and ("[ERROR]" in line or "[CRITICAL]" in line):
            return _error(HCCL_ROW, None)
    except Exception:  # a bad line is just not a CANN error
        return None
    return None


def detail(err: CannError, line: str) -> str:
    """The alert's text: the failure's label, then what the line says after its code."""
    text = line.strip()
    if err.code:
        i = text.find(err.code)
        if i >= 0:
            text = text[i + len(err.code):].lstrip(" :)]\t")
    if len(text) > _MAX_DETAIL:
        text = text[:_MAX_DETAIL - 3] + "..."
    return f"{err.label}: {text}" if text else err.label


def error_alert(message: str, otherwise: str = "error") -> dict[str, Any]:
    """The alert an ERROR line (or an exception's text) raises, as the ``kind``, ``detail`` and
    ``key`` arguments of ``AlertLog.raise_``: a CANN failure named by its code (``cann_error`` /
    ``device_oom``, keyed by its ``CannError`` so the ranks that hit it group), else an alert of
    kind ``otherwise`` keyed by its text. The metrics state's one call for error lines:
    ``self._alert(rank=..., step=..., now=..., **error_alert(message))``; an exception such as
    ``RuntimeError: ... Malloc device memory failed ...`` is a ``device_oom`` rather than a
    ``traceback`` alert."""
    err = classify(message)
    if err is None:
        return {"kind": otherwise, "detail": message, "key": message}
    return {"kind": err.kind, "detail": detail(err, message), "key": err}


def alert_fields(key: Hashable) -> dict[str, Any]:
    """The JSON fields an alert keyed by a ``CannError`` adds (``code``, ``summary``: the label,
    ``hint``); {} for others."""
    if isinstance(key, CannError):
        return {"code": key.code, "summary": key.label, "hint": key.hint}
    return {}


def cause_of(alerts: Iterable[Mapping[str, Any]]) -> str | None:
    """What best names why a job failed among its alerts: device out of memory first, then a code
    that is not usually another rank's failure seen from here, then one that is, then a failure
    without a code; the earliest of those. None without a CANN alert.
    ``rank 3: EI0006 socket build timeout (a peer never connected while HCCL built its links)``:
    the hint's first clause, to keep ``mfctl jobs`` readable."""
    found = [a for a in alerts if a.get("kind") in CANN_KINDS]
    if not found:
        return None
    consequences = {row["code"] for row in ROWS if row["consequence"] and row["code"]}

    def rank(a: Mapping[str, Any]) -> int:
        if a.get("kind") == "device_oom":
            return 0
        if not a.get("code"):
            return 3
        return 2 if a.get("code") in consequences else 1

    best = min(found, key=rank)  # min is stable: the earliest of the best
    message = str(best.get("message") or best.get("kind"))
    label = best.get("summary")
    if label and label in message:  # "rank 3: EI0006 socket build timeout", without the log's words
        message = message[:message.index(label) + len(label)]
    hint = str(best.get("hint") or "")
    # The hint's first clause (what it usually means); status, watch and the report give it whole.
    short = hint.split(":")[0].strip()
    return f"{message} ({short})" if short else message
