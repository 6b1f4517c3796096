"""`mfctl watch --logs DIR --once --json` on a 1024-rank run: an alert is an event, not a line per rank."""

from __future__ import annotations

import json
import re
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples" / "mindformers-1.9.0-cpu-msrun-dp2"
WORLD = 1024
SPIKE_STEP = 15


def real_lines() -> tuple[list[str], str, str]:
    """The sample worker log's start (up to its first step), its first step line and progress line."""
    lines = (SAMPLES / "worker_0.log").read_text(encoding="utf-8").split("\n")
    first = next(i for i, line in enumerate(lines) if "step:[" in line)
    progress = next(line for line in lines if "samples/s/p" in line)
    return lines[:first], lines[first], progress


def write_run(directory: Path, steps: int = 20) -> None:
    """Every rank the same global norm (data parallel), ten times higher at SPIKE_STEP."""
    head, step_line, progress = real_lines()
    directory.mkdir()
    for rank in range(WORLD):
        out = list(head)
        for step in range(1, steps + 1):
            norm = "5.9495854" if step == SPIKE_STEP else "0.59495854"
            line = re.sub(r"step:\[\s*\d+/\s*\d+\]", "step:[%5d/%5d]" % (step, steps), step_line)
            out.append(re.sub(r"global_norm: \[[^\]]*\]", f"global_norm: [{norm}]", line))
            out.append(progress)
        (directory / f"worker_{rank}.log").write_text("\n".join(out) + "\n", encoding="utf-8")
    (directory / "scheduler.log").write_bytes((SAMPLES / "scheduler.log").read_bytes())


def test_a_spike_on_every_rank_is_one_alert_naming_them_all(mfctl, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    write_run(logs)
    r = mfctl("watch", "--logs", logs, "--once", "--json")
    assert r.exit_code == 0, r.stderr
    snap = json.loads(r.stdout)
    assert len(snap["ranks"]) == WORLD and all(row["state"] == "finished" for row in snap["ranks"])
    spikes = [a for a in snap["alerts"] if a["kind"] == "global_norm_spike"]
    assert len(spikes) == 1, [a["message"][:80] for a in snap["alerts"]]
    spike = spikes[0]
    assert spike["ranks"] == list(range(WORLD)) and spike["count"] == WORLD and spike["step"] == SPIKE_STEP
    assert spike["message"].startswith(f"ranks 0-1023 (1024): global_norm 5.94959 at step {SPIKE_STEP} is ")
    assert snap["alerts"] == [spike]  # nothing else happened in this run


def test_the_text_view_prints_the_alert_once(mfctl, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    write_run(logs)
    r = mfctl("watch", "--logs", logs, "--once", columns=300)
    assert r.exit_code == 0, r.stderr
    alert_lines = [line for line in r.stdout.splitlines() if line.startswith("alert ")]
    assert len(alert_lines) == 1 and "ranks 0-1023 (1024)" in alert_lines[0]
