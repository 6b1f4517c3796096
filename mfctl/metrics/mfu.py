"""MFU: a rank's model TFLOPS over its chip's dense BF16/FP16 peak.

A rank's TFLOPS is what MindFormers prints (``train_throughput_per_npu: XT`` in 1.4 and later, the
1.9 PyNative trainer's ``throughput: XT``): the model's FLOPs per step over the step time, per
device. Its FLOPs convention changed across versions (README, "MFU"), so the same run can show a
different MFU under two MindFormers versions; the peak is ``mfctl.metrics.chips``' figure for the
chip, with its source.

``find_chip(name)`` maps a chip name as ``npu-smi info`` prints it (``910B3``, ``Ascend910B3``,
``910B``, ``Ascend910`` on an A3, ``Ascend910_9391``) or as a user types it to a row of that
table; ``mfu(tflops, chip)`` is the fraction (0..1, not clipped: a figure above 1 says the FLOPs
count or the peak is wrong); ``with_mfu(snapshot, chip)`` adds ``mfu`` to each rank row and
``chip`` / ``peak_tflops`` to the cluster view.

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from mfctl.metrics.chips import CHIPS, Chip

__all__ = ["chip_from_preflight", "chip_names", "find_chip", "mfu", "mfu_summary", "with_mfu"]

_BY_NAME: dict[str, Chip] = {n.lower(): c for c in CHIPS for n in c["names"]}
_A3 = next(c for c in CHIPS if "910_93" in c["names"])
_FIRST_GEN = next(c for c in CHIPS if "910A" in c["names"])
_A3_SOC = re.compile(r"910_93\d*")
_SMALL_HBM_MB = 40 * 1024  # first-generation 910 boards have 32 GB; A2 and A3 devices 64 GB (910B4: 32)


def chip_names() -> list[str]:
    """The chip names the table knows, for help texts and errors."""
    return [c["chip"] for c in CHIPS]


def find_chip(name: str | None, hbm_mb: float | None = None) -> Chip | None:
    """The table's row for a chip name (case and an ``Ascend`` prefix do not matter); ``hbm_mb``,
    one device's HBM as npu-smi reports it, tells ``910B`` and ``Ascend910`` apart (see
    ``mfctl.metrics.chips``). None for an unknown or ambiguous name."""
    if not name:
        return None
    raw = re.sub(r"[\s]+", "", str(name)).lower()
    short = raw[6:] if raw.startswith("ascend") else raw
    small = hbm_mb is not None and hbm_mb <= _SMALL_HBM_MB
    if raw == "ascend910":  # npu-smi's name for an A3 die; the first generation's family name
        return _FIRST_GEN if small else _A3
    if short == "910b" and hbm_mb is not None and not small:
        return None  # a 64 GB "910B": an A2 chip whose variant is not given
    if _A3_SOC.fullmatch(short):
        return _A3
    row = _BY_NAME.get(short) or _BY_NAME.get(raw)
    if row is None and short.endswith("-1"):
        row = _BY_NAME.get(short[:-2])
    return row


def chip_from_preflight(chips: Iterable[Mapping[str, Any]]) -> str | None:
    """The table row's name for the chips the nodes' preflight found (``check --json``'s
    ``npu.chips`` entries of every node: ``{"name", "hbm_total_mb", ...}``), what a job records
    for its MFU; None when they are not all one known chip (mixed chips fail preflight anyway)."""
    rows = {(row["chip"] if row else None)
            for c in chips for row in (find_chip(c.get("name"), c.get("hbm_total_mb")),)}
    if len(rows) != 1:
        return None
    return next(iter(rows))


def mfu(tflops: float | None, chip: Chip | str | None) -> float | None:
    """``tflops`` over the chip's peak (a fraction, 0..1 for sane figures); None when either is
    unknown or the figure is not a finite positive number."""
    row = find_chip(chip) if isinstance(chip, str) else chip
    if row is None or tflops is None:
        return None
    try:
        value = float(tflops)
    except (TypeError, ValueError):
        return None
    if not (value >= 0.0) or value == float("inf"):
        return None
    return value / row["tflops"]


def with_mfu(snapshot: Any, chip: Chip | str | None) -> Any:
    """``snapshot`` (``ClusterState.snapshot``'s dict) with each rank's ``mfu`` and the cluster's
    ``chip``, ``peak_tflops`` and ``mfu`` (the mean over the ranks that report one and have not
    failed); None where the chip or the figures are not known. Changes it in place, returns it."""
    row = find_chip(chip) if isinstance(chip, str) else chip
    known: list[float] = []
    for r in snapshot.get("ranks", ()):
        r["mfu"] = value = mfu(r.get("tflops"), row)
        if value is not None and r.get("state") != "failed":
            known.append(value)
    cluster = snapshot.get("cluster")
    if isinstance(cluster, dict):
        cluster["chip"] = row["chip"] if row else None
        cluster["peak_tflops"] = row["tflops"] if row else None
        cluster["mfu"] = sum(known) / len(known) if known else None
    return snapshot


def mfu_summary(snapshot: Any) -> dict[str, Any] | None:
    """What a job record keeps of a snapshot's MFU (``mfctl report`` shows it): the chip, its
    peak and the peak's source, the cluster's MFU and each rank's TFLOPS and MFU
    (``{"ranks": [[rank, tflops, mfu], ...]}``). None when there is no chip or no figure yet."""
    cluster = snapshot.get("cluster") or {}
    row = find_chip(cluster.get("chip")) if cluster.get("chip") else None
    if row is None or cluster.get("mfu") is None:
        return None
    ranks = [[r.get("rank"), r.get("tflops"), r.get("mfu")] for r in snapshot.get("ranks", ())
             if r.get("mfu") is not None]
    return {"chip": row["chip"], "peak_tflops": row["tflops"], "source": row["source"],
            "mfu": cluster.get("mfu"), "step": cluster.get("step"), "ranks": ranks}
