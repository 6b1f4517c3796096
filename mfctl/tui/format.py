"""How the dashboard writes a figure: throughput, loss, step time, step, durations.

Pure functions of a snapshot's values (any JSON value: None, a bool, a number, nan/inf), each
returning a short fixed-meaning string and ``-`` for "unknown", so the table, the header and the
plots agree on what a missing figure looks like. No textual here: tested without an app.
"""

from __future__ import annotations

import math
from typing import Any


def as_number(value: Any) -> float | None:
    """``value`` as a float when it is a real number (not a bool, not a string), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def fmt_rate(value: Any) -> str:
    """A throughput figure in at most 7 characters: ``812.3``, ``45.2k``, ``1.23M``."""
    v = as_number(value)
    if v is None or math.isnan(v):
        return "-"
    a = abs(v)
    if a < 1_000:
        return f"{v:.1f}"
    if a < 1_000_000:
        return f"{v / 1_000:.1f}k"
    if a < 1_000_000_000:
        return f"{v / 1_000_000:.2f}M"
    return f"{v / 1_000_000_000:.2f}G"


def fmt_loss(value: Any) -> str:
    v = as_number(value)
    if v is None:
        return "-"
    if math.isnan(v) or math.isinf(v):
        return str(v)
    return f"{v:.4f}"


def fmt_ms(value: Any) -> str:
    v = as_number(value)
    return "-" if v is None or math.isnan(v) else f"{v:.0f}"


def fmt_step(step: Any, total: Any) -> str:
    if step is None:
        return "-"
    return f"{step}/{total}" if total else str(step)


def fmt_duration(seconds: Any) -> str:
    """``45s``, ``12m05s``, ``3h07m``, ``2d04h``; ``-`` when unknown or negative."""
    v = as_number(seconds)
    if v is None or math.isnan(v) or math.isinf(v) or v < 0:
        return "-"
    s = int(v)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def fmt_clock(seconds: Any) -> str:
    """Elapsed time as ``H:MM:SS`` (``-`` when unknown)."""
    v = as_number(seconds)
    if v is None or math.isnan(v) or v < 0:
        return "-"
    s = int(v)
    return f"{s // 3600}:{(s % 3600) // 60:02d}:{s % 60:02d}"


def fmt_mfu(value: Any) -> str:
    """An MFU fraction as a percentage in at most 6 characters: ``41.2%``, ``0.35%``; ``-`` unknown."""
    v = as_number(value)
    if v is None or math.isnan(v) or v < 0:
        return "-"
    pct = 100.0 * v
    if 0 < pct < 1:
        return f"{pct:.2f}%"
    return f"{pct:.1f}%" if pct < 1000 else ">999%"
