"""No module of mfctl, the node side included, patches a library: no assignment into a third-party
module or class, no ``setattr``/``delattr`` on one, no ``__class__`` swap.

Read from the source (AST), over the whole package. Besides names imported from a library, a
module object reached another way counts too: ``sys.modules[...]`` / ``sys.modules.get(...)``,
``importlib.import_module(...)``, ``__import__(...)``, and the ``module`` an import loader's
``exec_module`` receives.

One exception is declared, with its reason where it lives: ``cpu_train.route_barrier`` points
MindFormers' deprecated barrier at MindSpore's CPU-capable one (no setting avoids the call;
tests/integration/test_train_msrun.py pins the call sites it answers). The exceptions found must
be exactly the declared ones, so a new patch fails here and a removed one must leave the list.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mfctl

PACKAGE = Path(mfctl.__file__).resolve().parent

#: (file under the package, enclosing function): the declared exceptions.
DECLARED = {("node/cpu_train.py", "route_barrier")}

_MODULE_GETTERS = {"import_module", "__import__"}


def _root(node: ast.expr) -> ast.expr:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node


def _is_module_lookup(value: ast.expr | None) -> bool:
    """``sys.modules[...]``, ``sys.modules.get(...)``, ``importlib.import_module(...)``, ``__import__(...)``."""
    if value is None:
        return False
    if isinstance(value, ast.Call):
        func = value.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in _MODULE_GETTERS:
            return True
        value = func
    text = ast.unparse(value)
    return "sys.modules" in text


def _third_party_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names if not a.name.startswith("mfctl")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and not node.module.startswith("mfctl"):
            names |= {a.asname or a.name for a in node.names}
    return names


def _module_aliases(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _is_module_lookup(node.value):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and _is_module_lookup(node.value) \
                and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.For, ast.comprehension)) and "sys.modules" in ast.unparse(node.iter):
            names |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.FunctionDef) and node.name == "exec_module":
            names |= {a.arg for a in node.args.args[1:]}
    return names


def library_patches(path: Path) -> list[tuple[int, str]]:
    """(line, enclosing function) of every assignment into a library in one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    foreign = _third_party_names(tree) | _module_aliases(tree)
    enclosing: dict[int, str] = {}
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(fn):
                if hasattr(inner, "lineno"):
                    enclosing[inner.lineno] = fn.name  # innermost wins: walk order is outer first

    def into_library(target: ast.expr) -> bool:
        if not isinstance(target, ast.Attribute):
            return False
        return target.attr == "__class__" or is_foreign(_root(target))

    def is_foreign(root: ast.expr) -> bool:
        return (isinstance(root, ast.Name) and root.id in foreign) or _is_module_lookup(root)

    found = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        hit = any(into_library(t) for t in targets)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("setattr", "delattr") and node.args):
            hit = hit or is_foreign(_root(node.args[0]))
        if hit:
            found.append((node.lineno, enclosing.get(node.lineno, "<module>")))
    return sorted(found)


def package_patches() -> set[tuple[str, int, str]]:
    return {(path.relative_to(PACKAGE).as_posix(), line, fn)
            for path in sorted(PACKAGE.rglob("*.py")) for line, fn in library_patches(path)}


def test_no_module_assigns_into_a_library_or_swaps_a_class() -> None:
    found = package_patches()
    undeclared = sorted(f"mfctl/{f}:{line} (in {fn})" for f, line, fn in found if (f, fn) not in DECLARED)
    assert undeclared == []
    assert {(f, fn) for f, _, fn in found} == DECLARED, "a declared exception is gone: drop it from DECLARED"


def test_the_scan_sees_each_way_of_patching(tmp_path: Path) -> None:
    """The forms mfctl's node side used before (each one must be caught), and what is no patch."""
    src = tmp_path / "m.py"
    src.write_text(
        "import sys, importlib\n"
        "from mindspore.nn import TrainOneStepWithLossScaleCell\n"
        "import paramiko.util\n"
        "def a():\n    TrainOneStepWithLossScaleCell.get_overflow_status = None\n"
        "def b():\n    for name in ('x',):\n        module = sys.modules.get(name)\n        module.barrier = None\n"
        "class L:\n    def exec_module(self, module):\n        module.build_context = None\n"
        "def c():\n    paramiko.util.constant_time_bytes_eq = None\n"
        "def d(obj):\n    obj.__class__ = int\n"
        "def e():\n    setattr(importlib.import_module('x'), 'y', 1)\n"
        "def f():\n    m = importlib.import_module('x')\n    del m.y\n"
        "def ok(spec, cfg):\n    spec.loader = None\n    cfg['type'] = 'X'\n    self_like = object()\n"
    )
    assert [fn for _, fn in library_patches(src)] == ["a", "b", "exec_module", "c", "d", "e", "f"]
