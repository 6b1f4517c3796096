"""What the dashboard looks like: a few deterministic SVG snapshots (pytest-textual-snapshot).

Deterministic by construction: a fixed terminal size, a frozen clock, synthetic node names, no
focused text input (so no blinking cursor). Regenerate after an intended change with
``pytest tests/tui/test_snapshots.py --snapshot-update`` and look at the SVGs before committing.
"""

from __future__ import annotations

import math
import time
from typing import Any

from mfctl.tui.app import DashboardApp, make_app
from mfctl.tui.sources import StaticSource, synthetic_snapshot

SIZE = (180, 45)
JOB = {"id": "j-20261128-0042", "name": "llama-70b-pretrain", "model": "llama3_70b", "nodes": 2,
       "devices_per_node": 8, "world_size": 16, "started_at": 1_000.0}
STEP = 40
ALERTS = [
    {"kind": "straggler", "rank": 3, "message": "step time 1.6x the cluster median", "step": 31,
     "time": 1_400.0},
    {"kind": "stalled", "rank": 9, "message": "no step line for 95 s", "step": 35, "time": 1_520.0},
    {"kind": "failed", "rank": 5, "message": "worker exited with code 1: RuntimeError: Socket timed out",
     "step": 37, "time": 1_580.0},
]


def history() -> dict:
    loss = [(s, 2.0 + 8.0 / (1.0 + s / 8.0) + 0.15 * math.sin(s)) for s in range(1, STEP + 1)]
    tokens = [(s, 520_000 + 30_000 * math.sin(s / 3.0) - (60_000 if s > 30 else 0)) for s in range(1, STEP + 1)]
    return {"loss": loss, "tokens_per_s": tokens}


def dashboard(logs: dict[int, list[str]] | None = None) -> DashboardApp:
    snap = synthetic_snapshot(16, STEP, stragglers=[3], stalled={9: "no step line for 95 s"},
                              failed={5: "worker exited with code 1: RuntimeError: Socket timed out"},
                              alerts=ALERTS)
    source = StaticSource([snap], history=history(), logs=logs)
    return make_app(source, job=JOB, clock=lambda: 1_600.0, refresh_s=1.0)


def test_dashboard_with_a_failed_a_stalled_and_a_straggling_rank(snap_compare: Any) -> None:
    assert snap_compare(dashboard(), terminal_size=SIZE)


def test_filtered_to_one_node_and_sorted_by_step_time(snap_compare: Any) -> None:
    keys = ["slash", *"node-00", "enter", "o", "o", "o", "o"]
    assert snap_compare(dashboard(), press=keys, terminal_size=SIZE)


def test_log_of_the_failed_rank(snap_compare: Any) -> None:
    lines = [f"2026-11-28 06:14:{10 + i:02d},171 - mindformers - INFO - {{ Epoch:[  1/  1], "
             f"step:[{30 + i:5d}/ 1000], loss:[4.{812 - i:03d}/4.{830 - i:03d}], per_step_time: 431ms, "
             f"lr: 0.0001 }}" for i in range(6)]
    lines += ["Traceback (most recent call last):", '  File "run_mindformer.py", line 262, in <module>',
              "RuntimeError: Socket timed out"]

    async def open_log(pilot: Any) -> None:
        await pilot.press("down", "down", "down", "down", "down", "l")  # rank 5
        log = pilot.app.screen.query_one("#log-lines")
        deadline = time.monotonic() + 10
        while log.line_count < len(lines) and time.monotonic() < deadline:
            await pilot.pause(0.05)

    assert snap_compare(dashboard(logs={5: lines}), run_before=open_log, terminal_size=SIZE)
