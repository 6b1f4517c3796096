"""Stand-ins for Ascend's ``npu-smi`` and ``hccn_tool`` at their real paths, answering per node.

The lab's nodes share this machine's filesystem, so one program at ``/usr/local/sbin/npu-smi``
serves every node: it finds the node it runs on by the node's address (each node has its own
network namespace and address, on SSH and on Slurm alike) and replays the outputs recorded for
that node under ``DATA_ROOT/<address>/``:

    npu-smi-info          ``npu-smi info``
    health.N              ``npu-smi info -t health -i N -c 0`` (else ``health``)
    link.N, net_health.N, ip.N, ping.N
                          ``hccn_tool -i N -link -g`` ... (else ``link``, ``net_health``, ...)

A node with no data (this machine itself, or a stand-in left behind after a crash) gets "no NPU
here" and exit 127, as if the tool were absent: nothing else on the machine changes behaviour.
``MFCTL_FAKE_ASCEND_DIR`` names the data directory directly (unit tests, no root needed).

The outputs are the real ones of ``tests/data/ascend`` (each file's first line names its source).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

NPU_SMI = Path("/usr/local/sbin/npu-smi")
HCCN_TOOL = Path("/usr/local/Ascend/driver/tools/hccn_tool")
DATA_ROOT = Path("/tmp/mfctl-fake-ascend")
MARKER = "mfctl test stand-in"
DATA = Path(__file__).resolve().parent.parent / "data" / "ascend"

_FIND_DIR = f"""# {MARKER} (tests/lab/ascend.py): replays recorded outputs of the node it runs on.
d=${{MFCTL_FAKE_ASCEND_DIR:-}}
if [ -z "$d" ]; then
    for a in $( (/usr/sbin/ip -o -4 addr show || /sbin/ip -o -4 addr show || ip -o -4 addr show) \\
                2>/dev/null | awk '{{split($4, x, "/"); print x[1]}}'); do
        if [ -d {DATA_ROOT}/"$a" ]; then d={DATA_ROOT}/"$a"; break; fi
    done
fi
if [ -z "$d" ] || [ ! -d "$d" ]; then echo "$0: no NPU here (no stand-in data for this node)" >&2; exit 127; fi
answer() {{ if [ -f "$d/$1.$2" ]; then cat "$d/$1.$2"; elif [ -f "$d/$1" ]; then cat "$d/$1"; else exit 2; fi; }}
"""

NPU_SMI_SCRIPT = "#!/bin/sh\n" + _FIND_DIR + """case "$*" in
    "info") cat "$d/npu-smi-info" ;;
    "info -t health -i "*" -c "*) answer health "$5" ;;
    *) echo "npu-smi stand-in: unsupported: $*" >&2; exit 2 ;;
esac
"""

HCCN_SCRIPT = "#!/bin/sh\n" + _FIND_DIR + """dev=$2
[ "$1" = "-i" ] || { echo "hccn_tool stand-in: unsupported: $*" >&2; exit 2; }
case "$3" in
    -link|-net_health|-ip|-ping) answer "${3#-}" "$dev" ;;
    *) echo "hccn_tool stand-in: unsupported: $*" >&2; exit 2 ;;
esac
"""


def recorded(name: str) -> str:
    """A real output of ``tests/data/ascend`` without its source line."""
    return (DATA / name).read_text(encoding="utf-8").split("\n", 1)[1]


def section(name: str, start: str, end: str | None = None) -> str:
    """The lines of a recorded file from the line after ``start`` up to the line before ``end``."""
    lines = recorded(name).splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(start)) + 1
    j = next((k for k in range(i, len(lines)) if end is not None and lines[k].startswith(end)), len(lines))
    return "\n".join(lines[i:j]).strip("\n") + "\n"


HEALTH_OK = section("npu-smi_doc_example_23.0.5_info_health_ecc_board_usages.txt",
                    "/usr/local/bin/npu-smi info -i 0 -c 0 -t health", "/usr/local/bin/npu-smi info -i 0 -t ecc")
_HCCN_DOC = "hccn_tool_doc_example_net_health_link_optical_tls_fec_ip_stat.txt"
_TOOLS = "/usr/local/Ascend/driver/tools/hccn_tool -i 0"
LINK_UP = section(_HCCN_DOC, f"{_TOOLS} -link -g", f"{_TOOLS} -optical")
NET_INIT = section(_HCCN_DOC, f"{_TOOLS} -net_health -g", f"{_TOOLS} -link")
NET_SUCCESS = section("hccn_tool_net_health_Fault_Success_link_down_recovery.txt",
                      "## --- mind-cluster: output after recovery", "## ---")
NET_FAULT = section("hccn_tool_net_health_Fault_Success_link_down_recovery.txt",
                    "## --- mind-cluster: output after fault injection", "## ---")
IP_SET = section("hccn_tool_ping_ip_route_status_and_npu-smi_common_usages_memory.txt",
                 "> hccn_tool -i 3 -ip -g", "> hccn_tool -i 3 -route -g")
PING_OK = section("hccn_tool_ping_ip_route_status_and_npu-smi_common_usages_memory.txt",
                  "> hccn_tool -i 3 -ping -g address", "```")


def ip_of(device: int, node: int) -> str:
    """Device ``device``'s NIC address on node ``node``: the recorded output, its address changed."""
    return IP_SET.replace("10.20.11.24", f"10.20.{node}.{device + 10}")


def node_outputs(npu_smi_info: str, devices: int = 8, node: int = 1, **over: str) -> dict[str, str]:
    """A healthy node's answers (the recorded ones), with ``over`` in place (file name -> text)."""
    files = {"npu-smi-info": npu_smi_info, "health": HEALTH_OK, "link": LINK_UP, "net_health": NET_SUCCESS,
             "ping": PING_OK}
    files.update({f"ip.{d}": ip_of(d, node) for d in range(devices)})
    files.update(over)
    return files


def write_node(directory: Path, files: Mapping[str, str]) -> None:
    """One node's data directory (world-readable: the node users read it)."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    directory.chmod(0o755)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
        (directory / name).chmod(0o644)


def install_scripts(npu_smi: Path = NPU_SMI, hccn_tool: Path = HCCN_TOOL) -> list[Path]:
    """Put the stand-ins in place; returns what was created (files, then new directories), for
    ``remove``. Refuses to overwrite a real tool."""
    created: list[Path] = []
    for path, text in ((npu_smi, NPU_SMI_SCRIPT), (hccn_tool, HCCN_SCRIPT)):
        if path.exists() and MARKER not in path.read_text(encoding="utf-8", errors="replace"):
            raise RuntimeError(f"{path} exists and is not mfctl's stand-in: not replacing a real tool")
        missing = [p for p in reversed(path.parents) if not p.exists()]
        for p in missing:
            p.mkdir()
            p.chmod(0o755)
        created.extend(reversed(missing))
        path.write_text(text, encoding="utf-8")
        path.chmod(0o755)
        created.insert(0, path)
    return created


def remove(created: list[Path]) -> None:
    """Undo ``install_scripts`` (files first, then the directories it made, if empty) and drop
    the data."""
    for p in created:
        try:
            if p.is_dir():
                p.rmdir()
            elif p.exists() and MARKER in p.read_text(encoding="utf-8", errors="replace"):
                p.unlink()
        except OSError:
            pass
    shutil.rmtree(DATA_ROOT, ignore_errors=True)


def stand_in_env(directory: Path) -> dict[str, str]:
    """The environment that points the stand-ins at ``directory`` (no address lookup)."""
    return {**os.environ, "MFCTL_FAKE_ASCEND_DIR": str(directory)}
