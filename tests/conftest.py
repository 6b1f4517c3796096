from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture(autouse=True)
def _private_mfctl_home(tmp_path_factory, monkeypatch):
    """Every test gets its own job database."""
    home = tmp_path_factory.mktemp("mfctl-home")
    monkeypatch.setenv("MFCTL_HOME", str(home))
    return home


@pytest.fixture
def mfctl(capsys, monkeypatch):
    """Run mfctl in-process as a user would from a shell: exit code, stdout, stderr."""
    from mfctl.cli import main

    def run(*args: str, cwd: Path | None = None, columns: int = 200) -> Result:
        from mfctl.cli import views

        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()
        monkeypatch.setenv("COLUMNS", str(columns))
        # The consoles were made when mfctl.cli.views was first imported: give them this terminal's width.
        for console in (views.out, views.err):
            monkeypatch.setattr(console, "_width", columns)
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return run


def run_mfctl_process(*args: str, cwd: Path | None = None, env: dict | None = None,
                      timeout: float = 600) -> Result:
    """mfctl as a separate process (for commands that start detached work)."""
    proc = subprocess.run([sys.executable, "-m", "mfctl", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "COLUMNS": "200", **(env or {})})
    return Result(proc.returncode, proc.stdout, proc.stderr)
