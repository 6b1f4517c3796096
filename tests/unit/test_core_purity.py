"""The pure core stays pure: importing it pulls in no UI, SSH, CLI or template library.

Every module of ``mfctl/jobspec``, ``mfctl/cluster`` and ``mfctl/metrics`` (found by globbing, so
a new module is covered) is imported in a fresh interpreter, which then lists what it loaded.
The import-linter contract (tests/unit/test_rules.py) checks the same statically; this checks
what really gets imported, including through third-party packages.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
FORBIDDEN = ["textual", "fabric", "paramiko", "invoke", "typer", "rich", "jinja2"]
CORE = ["jobspec", "cluster", "metrics"]


def modules(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / "mfctl" / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


@pytest.mark.parametrize("package", CORE)
def test_core_package_imports_no_ui_transport_cli_or_templates(package: str) -> None:
    names = modules(package)
    assert len(names) > 1, f"mfctl/{package} has no modules"
    code = (
        "import importlib, json, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [], f"importing mfctl.{package} loads these"


def test_node_scripts_load_only_the_standard_library_until_they_run() -> None:
    # They are copied to nodes and run there by the nodes' python: importing them (e.g. for
    # --help) must not need mindspore/mindformers, nor any other part of mfctl.
    code = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        "import mfctl.node.train, mfctl.node.logtail\n"
        "print(json.dumps(sorted(m for m in set(sys.modules) - before\n"
        "                        if m.split('.')[0] in ('mindspore', 'mindformers', 'mfctl')\n"
        "                        and not m.startswith('mfctl.node'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) in ([], ["mfctl"]), "the node scripts import these at load time"
