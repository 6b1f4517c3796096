"""The project's rules, checked as CI checks them: the layer contract, lint, types, module sizes
and the README's layout section.

The tools come with the ``test`` extra (``pip install -e .[test]``) and are configured in
pyproject.toml; each test runs one exactly as a developer would from the checkout, so a failure
here reads the same as on a terminal.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGE = ROOT / "mfctl"
MAX_LINES = 400
#: A module bigger than MAX_LINES says why in its docstring, on a line starting "Size:".
SIZE_REASON = re.compile(r"^\s*Size:\s*\S", re.MULTILINE)


def run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def passes(proc: subprocess.CompletedProcess[str]) -> None:
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(proc.args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}",
                    pytrace=False)


def tool(name: str) -> str:
    """A console script of the test extra, installed next to this python."""
    path = Path(sys.executable).with_name(name)
    assert path.exists(), f"{name} is not installed next to {sys.executable}; pip install -e .[test]"
    return str(path)


def test_layer_contract_holds() -> None:
    # pyproject.toml [tool.importlinter]: cli > tui | live > jobs > records | remote | render |
    # presets | data > cluster > jobspec | metrics > errors, plus the forbidden imports.
    passes(run([tool("lint-imports"), "--no-cache"]))


def test_ruff_is_clean() -> None:
    passes(run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
                "mfctl", "tests", "bench"]))


def test_mypy_is_clean_on_the_core_and_live() -> None:
    # The packages are [tool.mypy] files; the cache (in the temp dir, outside the checkout) keeps
    # a second run to a few seconds.
    cache = Path(tempfile.gettempdir()) / "mfctl-mypy-cache"
    passes(run([sys.executable, "-m", "mypy", "--cache-dir", str(cache)], timeout=300))


def module_docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""


def test_no_module_over_400_lines_unless_its_docstring_says_why() -> None:
    too_big = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES and not SIZE_REASON.search(module_docstring(path)):
            too_big.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert too_big == [], (f"modules over {MAX_LINES} lines: split them, or say why in the module "
                           "docstring on a line 'Size: ...'\n" + "\n".join(too_big))


def readme_layout() -> list[str]:
    """The lines of the README's "Layout of the code" block."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Layout of the code", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    return [ln for ln in block.splitlines()[1:] if ln.strip()]


def test_readme_layout_names_every_package_and_only_what_exists() -> None:
    named = [ln.split()[0] for ln in readme_layout()]
    # Every package (a folder with __init__.py) and every top-level module of mfctl/ is named.
    wanted = [f"mfctl/{p.name}/" for p in sorted(PACKAGE.iterdir()) if (p / "__init__.py").exists()]
    wanted += [f"mfctl/{p.name}" for p in sorted(PACKAGE.glob("*.py"))
               if p.name not in ("__init__.py", "__main__.py")]
    missing = [w for w in wanted if w not in named]
    assert missing == [], f"README 'Layout of the code' does not name {missing}"
    # And everything it names exists.
    stale = [n for n in named if not (ROOT / n).exists()]
    assert stale == [], f"README 'Layout of the code' names what is not in the tree: {stale}"
