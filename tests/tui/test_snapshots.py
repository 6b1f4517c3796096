"""What the dashboard looks like: a few deterministic SVG snapshots (pytest-textual-snapshot).

Deterministic by construction: a fixed terminal size, a frozen clock, synthetic node names, no
focused text input (so no blinking cursor). Regenerate after an intended change with
``pytest tests/tui/test_snapshots.py --snapshot-update`` and look at the SVGs before committing.
"""

from __future__ import annotations

import time
from typing import Any

from mfctl.tui.app import DashboardApp, make_app
from tests.fakes.dashboard import StaticSource, synthetic_snapshot

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


def dashboard(logs: dict[int, list[str]] | None = None) -> DashboardApp:
    # Steps 1..STEP played into the source: the plots show the band of the 16 ranks over the run
    # and the selected rank's line (rank 0), as ``mfctl watch`` keeps them.
    snaps = [synthetic_snapshot(16, step, stragglers=[3] if step > 20 else [],
                                stalled={9: "no step line for 95 s"} if step > 30 else None,
                                failed={5: "worker exited with code 1: RuntimeError: Socket timed out"}
                                if step == STEP else None,
                                alerts=ALERTS if step == STEP else ())
             for step in range(1, STEP + 1)]
    source = StaticSource(snaps, logs=logs)
    source.advance(STEP - 1)
    return make_app(source, job=JOB, clock=lambda: 1_600.0, refresh_s=1.0)


def test_dashboard_with_a_failed_a_stalled_and_a_straggling_rank(snap_compare: Any) -> None:
    assert snap_compare(dashboard(), terminal_size=SIZE)


def test_plots_follow_the_selected_rank_with_log_loss(snap_compare: Any) -> None:
    # The straggler (rank 3) selected: its step time runs along the top of the band.
    assert snap_compare(dashboard(), press=["down", "down", "down", "y"], terminal_size=SIZE)


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
