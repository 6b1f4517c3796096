"""The CANN / HCCL failure table: what a code usually means and what to check. Data only.

One row per failure ``mfctl.metrics.cann`` can name. A row is found by its ``code`` in a log line
(``EI0006: ...``, ``Get_Socket_Timeout(EI0006): ...``, ``module_name=EE9999``, ``Ascend Error
Message:EI0002: ...``) or, for lines that carry no code, by one of its ``texts`` (substrings of the
messages CANN, HCCL and MindSpore print with that failure). The first row whose ``texts`` match
wins over a code: ``EE9999`` with ``halMemAlloc failed`` is the device being out of memory, not
the runtime's generic inner error.

Fields of a row:
- ``code``: the CANN error code (``None``: a failure MindSpore reports without one);
- ``kind``: the alert kind (``device_oom`` is its own kind, every other row ``cann_error``);
- ``summary``: what happened, in a few words;
- ``hint``: what the code usually means and what to check, one sentence or two;
- ``texts``: substrings that identify the failure in a line without its code;
- ``consequence``: True when the failure is usually another rank's failure seen from here (a
  peer that never connected, a collective that never completed): the job's cause prefers the
  other rows.

Sources: the codes and messages are those of the tests' real excerpts (``tests/data/ascend/``,
each file names its source: MindSpore's "CANN Common Error Analysis" tutorial, public issues of
projects running on Ascend). ``PREFIXES`` names the CANN module behind a code's first two
characters (the tutorial: ``EE`` runtime, ``EI``/``EJ`` HCCL/HCCP, ``EZ`` AI Core operators,
``E3`` AICPU operators, ``EK`` profiling) for codes without a row.
"""

from __future__ import annotations

from typing import Final, TypedDict

__all__ = ["FALLBACK_HINT", "HCCL_ROW", "PREFIXES", "ROWS", "Row"]


class Row(TypedDict):
    code: str | None
    kind: str
    summary: str
    hint: str
    texts: tuple[str, ...]
    consequence: bool


_OOM_HINT = ("the device memory is full: either another process holds the chip (npu-smi info lists "
             "each chip's processes and HBM use: stop it or pick other devices), or the layout does "
             "not fit (more pipeline or model parallelism, recompute, a smaller micro batch or "
             "sequence length, context.max_device_memory within the chip's HBM)")

# Order matters: rows with ``texts`` are tried first, in this order.
ROWS: Final[tuple[Row, ...]] = (
    {"code": "EE9999", "kind": "device_oom", "summary": "device out of memory",
     "hint": _OOM_HINT,
     "texts": ("halMemAlloc failed", "driver error:out of memory", "Malloc device memory failed"),
     "consequence": False},
    {"code": "EL0004", "kind": "device_oom", "summary": "device memory allocation failed",
     "hint": _OOM_HINT, "texts": ("Memory_Allocation_Failure",), "consequence": False},
    {"code": None, "kind": "device_oom", "summary": "device out of memory",
     "hint": _OOM_HINT,
     "texts": ("Out of Memory!!!", "memory isn't enough and alloc failed"),
     "consequence": False},
    {"code": "EI0006", "kind": "cann_error", "summary": "socket build timeout",
     "hint": ("a peer never connected while HCCL built its links: another rank may have failed first "
              "(look for the earliest error on the other ranks), or a device link or IP is wrong "
              "(hccn_tool -i N -link -g / -ip -g: up, same subnet, TLS alike), or HCCL_CONNECT_TIMEOUT "
              "is too short for the slowest rank to arrive"),
     "texts": ("Getting socket times out", "wait socket establish timeout"),
     "consequence": True},
    {"code": "EI0002", "kind": "cann_error", "summary": "notify wait timeout",
     "hint": ("a rank stopped or hung inside a collective: check the remote rank it names and any rank "
              "with an earlier error; when every rank reports it at once, look for uneven data between "
              "ranks or packet loss, or raise HCCL_EXEC_TIMEOUT"),
     "texts": ("The wait execution of the Notify register times out",),
     "consequence": True},
    {"code": "EJ0001", "kind": "cann_error", "summary": "HCCP initialisation failed",
     "hint": ("the device network could not start: a previous training process may still hold the "
              "devices (npu-smi info; wait about 10 s after stopping it), or a device NIC is down "
              "(hccn_tool -i N -link -g and -net_health -g)"),
     "texts": ("Failed to initialize the HCCP process",),
     "consequence": False},
    {"code": "EE1001", "kind": "cann_error", "summary": "invalid device id",
     "hint": ("an invalid device id or visible-devices setting, an id outside this node's chips: check "
              "ASCEND_RT_VISIBLE_DEVICES, DEVICE_ID and --devices against npu-smi info -l (ids count "
              "from 0 within the visible devices)"),
     "texts": ("Set device failed, invalid device",),
     "consequence": False},
    {"code": "EI0004", "kind": "cann_error", "summary": "invalid rank table",
     "hint": ("the rank table (or the cluster information msrun built) does not match this node: a "
              "device id or IP repeated or wrong, or the device count differs from the node's"),
     "texts": ("The ranktable is invalid",),
     "consequence": False},
    {"code": "EI0005", "kind": "cann_error", "summary": "collective arguments differ between ranks",
     "hint": ("ranks called the same collective with different shapes or counts: the ranks run "
              "different code, configs or data shapes (check that every node has the same config and "
              "code)"),
     "texts": ("arguments for collective communication are inconsistent",),
     "consequence": False},
    {"code": "EI9999", "kind": "cann_error", "summary": "HCCL inner error",
     "hint": ("a collective failed inside HCCL, often a task timeout while waiting for a stuck rank: "
              "look for the earliest error on the other ranks, then the device network"),
     "texts": (), "consequence": True},
    {"code": "EE1002", "kind": "cann_error", "summary": "stream synchronize timeout",
     "hint": ("device work did not finish in time, usually a collective waiting for a stuck or dead "
              "rank: check the other ranks first, then HCCL_EXEC_TIMEOUT and the device network"),
     "texts": (), "consequence": True},
    {"code": "EE9999", "kind": "cann_error", "summary": "runtime inner error",
     "hint": ("the runtime failed a task on the device: the lines after it (its TraceBack) name the "
              "failing call; an operator or a collective failing on another rank are the usual causes"),
     "texts": (), "consequence": False},
    {"code": "EE8888", "kind": "cann_error", "summary": "runtime call failed",
     "hint": "a runtime API call failed: the EE/EZ error logged just before it says why",
     "texts": (), "consequence": True},
    {"code": "EZ9999", "kind": "cann_error", "summary": "AI Core operator failed",
     "hint": ("an operator failed on the device (bad input, out-of-bounds access, overflow): the "
              "lines after it name the kernel; rerun with ASCEND_LAUNCH_BLOCKING=1 to find the op"),
     "texts": (), "consequence": False},
    {"code": "E39999", "kind": "cann_error", "summary": "AICPU operator failed",
     "hint": ("an AICPU operator failed (input mismatch, out-of-bounds, a data pipeline op such as "
              "GetNext): the lines after it name the kernel"),
     "texts": (), "consequence": False},
    {"code": "EK0001", "kind": "cann_error", "summary": "invalid profiling parameter",
     "hint": "the profiler's options are invalid, most often an output path that does not exist or has "
             "characters other than A-Za-z0-9-_.",
     "texts": (), "consequence": False},
)

# A code without a row: the module its first two characters name.
PREFIXES: Final[dict[str, str]] = {
    "EE": "runtime", "EI": "HCCL (collective communication)", "EJ": "HCCP (device network)",
    "EZ": "AI Core operator", "E3": "AICPU operator", "EK": "profiling", "EL": "runtime (ACL)",
}

FALLBACK_HINT: Final = ("a CANN error: look up the code in the CANN error code reference; with several "
                        "ranks failing, the earliest error is usually the cause")

# An HCCL ERROR line that carries no code and matches no row.
HCCL_ROW: Final[Row] = {
    "code": None, "kind": "cann_error", "summary": "HCCL error",
    "hint": ("collective communication failed on this rank: the earliest error across the ranks is "
             "usually the cause; HCCL errors on the others follow from it"),
    "texts": (), "consequence": True,
}
