"""`mfctl watch --logs DIR --chip NAME`: MFU per rank against the chip's peak, and CANN failures
named by their code in --json and in the text view."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent.parent / "data"
SAMPLES = DATA / "samples" / "mindformers-1.9.0-cpu-msrun-dp2"


def write_logs(directory: Path) -> None:
    """The real 2-rank run; rank 1's log then ends with a real device out-of-memory block."""
    directory.mkdir()
    (directory / "worker_0.log").write_bytes((SAMPLES / "worker_0.log").read_bytes())
    oom = (DATA / "ascend" / "mindspore_EE9999_halMemAlloc_device_oom.log").read_text(encoding="utf-8")
    body = oom.partition("\n")[2]  # without its source line
    (directory / "worker_1.log").write_text((SAMPLES / "worker_1.log").read_text(encoding="utf-8") + body,
                                            encoding="utf-8")


def test_json_has_rank_mfu_and_the_clusters_chip_and_peak(mfctl, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    write_logs(logs)
    r = mfctl("watch", "--logs", logs, "--chip", "Ascend910B3", "--once", "--json")
    assert r.exit_code == 0, r.stderr
    snap = json.loads(r.stdout)
    assert snap["cluster"]["chip"] == "910B3" and snap["cluster"]["peak_tflops"] == 313.0
    for row in snap["ranks"]:
        assert row["tflops"] > 0
        assert row["mfu"] == pytest.approx(row["tflops"] / 313.0)
    oom = [a for a in snap["alerts"] if a["kind"] == "device_oom"]
    assert len(oom) == 1 and oom[0]["code"] == "EE9999" and oom[0]["ranks"] == [1]
    assert "another process holds the chip" in oom[0]["hint"]


def test_without_chip_mfu_is_null(mfctl, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    write_logs(logs)
    snap = json.loads(mfctl("watch", "--logs", logs, "--once", "--json").stdout)
    assert all(row["mfu"] is None for row in snap["ranks"])
    assert snap["cluster"]["chip"] is None and snap["cluster"]["peak_tflops"] is None


def test_the_text_view_shows_mfu_and_what_to_check(mfctl, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    write_logs(logs)
    r = mfctl("watch", "--logs", logs, "--chip", "910B3", "--once", columns=400)
    assert r.exit_code == 0, r.stderr
    assert "chip 910B3 (peak 313 TFLOPS)" in r.stdout and "MFU" in r.stdout
    lines = r.stdout.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("alert device_oom: rank 1: EE9999 device out"))
    assert lines[i + 1].startswith("  check: the device memory is full")


def test_an_unknown_chip_is_refused_with_the_known_ones(mfctl, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    write_logs(logs)
    r = mfctl("watch", "--logs", logs, "--chip", "H100", "--once")
    assert r.exit_code == 2
    assert "--chip H100" in r.stderr and "910B3" in r.stderr and len(r.stderr.strip().splitlines()) == 1
