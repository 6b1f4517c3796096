"""MFU: a rank's TFLOPS over its chip's published dense BF16/FP16 peak, and the chip names npu-smi
prints mapped to the peak table's rows."""

from __future__ import annotations

import json
import math

import pytest

from mfctl.metrics.chips import CHIPS
from mfctl.metrics.mfu import chip_from_preflight, find_chip, mfu, with_mfu
from mfctl.metrics.state import ClusterState

STEP = ("2026-11-28 06:14:50,171 - mindformers/output/log[mindformers/core/callback/callback.py:747] - INFO - "
        "{{ Epoch:[  1/  1], step:[{step:5d}/  100], loss: 10.437, per_step_time: 710ms, lr: 0.0001, overflow "
        "cond: False, loss_scale: 1.0, global_norm: [0.77], train_throughput_per_npu: {tflops:.3f}T")


@pytest.mark.parametrize(("name", "hbm_mb", "chip", "peak"), [
    # npu-smi's Name column (tests/data/... and ../shared fixtures: 910B2, 910B4, A3 "Ascend910", a first-
    # generation board shown as "910B" with 32 GB), CANN's SoC names, and what a user may type
    ("910B1", None, "910B1", 414.0),
    ("910B2", 65536, "910B2", 376.0),
    ("Ascend910B2C", None, "910B2", 376.0),
    ("910B3", None, "910B3", 313.0),
    ("Ascend910B3", 65536, "910B3", 313.0),
    ("ascend 910b3", None, "910B3", 313.0),
    ("910B4", 32768, "910B4", 280.0),
    ("Ascend910B4-1", None, "910B4", 280.0),
    ("910B", 32768, "910A", 256.0),
    ("910ProB", 32768, "910A", 256.0),
    ("910A", None, "910A", 256.0),
    ("Ascend910", 65536, "A3 (910_93)", 376.0),
    ("Ascend910", None, "A3 (910_93)", 376.0),
    ("Ascend910", 32768, "910A", 256.0),
    ("Ascend910_9391", None, "A3 (910_93)", 376.0),
    ("910_9382", None, "A3 (910_93)", 376.0),
    ("A3", None, "A3 (910_93)", 376.0),
])
def test_chip_names_map_to_their_row(name, hbm_mb, chip, peak) -> None:
    row = find_chip(name, hbm_mb)
    assert row is not None and row["chip"] == chip and row["tflops"] == peak


@pytest.mark.parametrize("name", ["", None, "910B", "310P3", "H100", "910B9"])
def test_unknown_or_ambiguous_names_have_no_row(name) -> None:
    hbm = 65536 if name == "910B" else None  # a 64 GB "910B": an A2 chip whose variant is not given
    assert find_chip(name, hbm) is None


def test_every_peak_has_its_source() -> None:
    for row in CHIPS:
        assert row["tflops"] > 0 and len(row["source"]) > 20
        for figure, source in row["others"]:
            assert figure > 0 and source


def test_mfu_is_tflops_over_the_published_peak() -> None:
    assert mfu(156.5, "910B3") == pytest.approx(156.5 / 313.0)
    assert mfu(188.0, "910B2") == pytest.approx(0.5)
    assert mfu(128.0, "910B") == pytest.approx(0.5)
    assert mfu(None, "910B3") is None
    assert mfu(100.0, None) is None
    assert mfu(100.0, "unknown") is None
    assert mfu(float("nan"), "910B3") is None


def test_the_snapshot_carries_rank_mfu_and_the_clusters_chip_and_peak() -> None:
    s = ClusterState(world_size=2, clock=lambda: 10.0, chip="Ascend910B3")
    s.feed(0, STEP.format(step=5, tflops=156.5))
    s.feed(1, STEP.format(step=5, tflops=93.9))
    snap = s.snapshot(10.0)
    by_rank = {r["rank"]: r for r in snap["ranks"]}
    assert by_rank[0]["tflops"] == 156.5
    assert by_rank[0]["mfu"] == pytest.approx(0.5)
    assert by_rank[1]["mfu"] == pytest.approx(0.3)
    assert snap["cluster"]["chip"] == "910B3" and snap["cluster"]["peak_tflops"] == 313.0
    assert snap["cluster"]["mfu"] == pytest.approx(0.4)
    assert json.loads(json.dumps(snap))["ranks"][0]["mfu"] == pytest.approx(0.5)


def test_without_a_chip_or_tflops_mfu_is_null_not_zero() -> None:
    s = ClusterState(world_size=1, clock=lambda: 10.0)
    s.feed(0, STEP.format(step=1, tflops=100.0))
    snap = s.snapshot(10.0)
    assert snap["ranks"][0]["mfu"] is None
    assert snap["cluster"]["chip"] is None and snap["cluster"]["peak_tflops"] is None
    snap = with_mfu({"ranks": [{"rank": 0, "tflops": None, "state": "running"}], "cluster": {}}, "910B3")
    assert snap["ranks"][0]["mfu"] is None and snap["cluster"]["mfu"] is None
    assert not math.isnan(snap["cluster"]["peak_tflops"])


def test_the_chip_a_job_records_comes_from_every_nodes_preflight() -> None:
    # check --json's npu.chips of two nodes, as npu-smi names them (A3: "Ascend910" per die, 64 GB)
    a3 = [{"id": i, "name": "Ascend910", "hbm_total_mb": 65536} for i in range(4)]
    assert chip_from_preflight(a3 + a3) == "A3 (910_93)"
    b3 = [{"id": 0, "name": "910B3", "hbm_total_mb": 65536}]
    assert chip_from_preflight(b3 * 8) == "910B3"
    first_gen = [{"id": 0, "name": "910B", "hbm_total_mb": 32768}]
    assert chip_from_preflight(first_gen) == "910A"
    assert chip_from_preflight(b3 + [{"id": 1, "name": "910B2", "hbm_total_mb": 65536}]) is None  # mixed
    assert chip_from_preflight([{"id": 0, "name": "310P3", "hbm_total_mb": None}]) is None
    assert chip_from_preflight([]) is None
