"""The metrics core stays pure: importing it pulls in no UI, SSH or CLI library."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
FORBIDDEN = ["textual", "fabric", "paramiko", "typer", "rich", "invoke"]


def test_metrics_core_imports_no_ui_or_transport():
    code = (
        "import json, sys\n"
        "import mfctl.metrics.parser, mfctl.metrics.state\n"
        f"print(json.dumps(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_spec_and_cluster_core_import_no_ui_or_transport():
    code = (
        "import json, sys\n"
        "import mfctl.jobspec.schema, mfctl.jobspec.presets, mfctl.cluster.hostfile, mfctl.cluster.layout,"
        " mfctl.cluster.plan\n"
        f"print(json.dumps(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
