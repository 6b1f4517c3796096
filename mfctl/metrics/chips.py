"""The chips' dense BF16/FP16 peak, per device a rank runs on: the denominator of MFU. Data only.

Published peaks differ by source (a launch headline, a vendor datasheet, the figure another MFU
tool uses), so each row keeps its figure, where it comes from, and the other figures seen for the
same chip (``others``: ``(tflops, source)``). ``mfctl.metrics.mfu`` reads this table; change a
figure here, with its source.

``names`` are the names ``npu-smi info`` prints in its Name column and the SoC names CANN uses
(``Ascend910B3``, ``Ascend910_9391``), compared case-insensitively after dropping an ``Ascend``
prefix. Two are ambiguous and are told apart by the chip's HBM when it is known:

- ``910B`` is what npu-smi prints for first-generation Ascend 910 boards (32 GB HBM; the A2
  generation prints ``910B1``..``910B4``);
- ``Ascend910`` is what npu-smi prints for each die of an A3 (Atlas A3, 64 GB per die); it is
  also the first generation's family name, which has 32 GB.

An A3 NPU is two dies, each its own device and rank (CANN 8.5's HCCL guide, "Configuring Resource
Information Through Rank Table", Atlas A3: "each NPU contains two devices (two dies), and each device
is a rank"): its row gives one die's peak.
"""

from __future__ import annotations

from typing import Final, TypedDict

__all__ = ["CHIPS", "Chip"]


class Chip(TypedDict):
    chip: str  # the row's name, as reports show it
    tflops: float  # dense BF16/FP16 peak of one device, in TFLOPS
    source: str
    others: tuple[tuple[float, str], ...]
    hbm_gb: int  # HBM of one device, what disambiguates 910B / Ascend910
    names: tuple[str, ...]


_A2_HEADLINE = ("Huawei's per-variant FP16 figure for the Atlas 800T A2's 910B chips as spec tables "
                "republish it (no first-party datasheet is public)")
_VERL = ("verl's MFU counter (volcengine/verl, verl/utils/flops_counter.py) uses 354 TFLOPS for "
         "every device whose name holds 910B")

CHIPS: Final[tuple[Chip, ...]] = (
    {"chip": "910B1", "tflops": 414.0, "source": _A2_HEADLINE, "others": ((354.0, _VERL),),
     "hbm_gb": 64, "names": ("910B1",)},
    {"chip": "910B2", "tflops": 376.0, "source": _A2_HEADLINE, "others": ((354.0, _VERL),),
     "hbm_gb": 64, "names": ("910B2", "910B2C")},
    {"chip": "910B3", "tflops": 313.0, "source": _A2_HEADLINE,
     "others": ((295.0, "a vendor file's figure (about 294.9 TFLOPS: 20 cube cores at 1.8 GHz)"),
                (354.0, _VERL)),
     "hbm_gb": 64, "names": ("910B3",)},
    {"chip": "910B4", "tflops": 280.0, "source": _A2_HEADLINE, "others": ((354.0, _VERL),),
     "hbm_gb": 32, "names": ("910B4", "910B4-1")},
    {"chip": "910A", "tflops": 256.0,
     "source": ("Huawei, Ascend 910 launch and Hot Chips 31 (2019), 'DaVinci: A Scalable Architecture "
                "for Neural Network Computing': 256 TFLOPS FP16"),
     "others": (),
     "hbm_gb": 32, "names": ("910A", "910", "910B", "910ProA", "910ProB", "910PremiumA")},
    {"chip": "A3 (910_93)", "tflops": 376.0,
     "source": ("Huawei, 'Serving Large Language Models on Huawei CloudMatrix384' (arXiv 2506.12708, "
                "2025): an Ascend 910C package is two dies of about 376 dense BF16/FP16 TFLOPS each"),
     "others": ((752.0, "the same paper: one 910C package, both dies (two devices, two ranks)"),),
     "hbm_gb": 64,
     "names": ("910_93", "910_9391", "910_9392", "910_9381", "910_9382", "910_9372", "910_9362",
               "910C", "A3")},
)
