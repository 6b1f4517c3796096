"""Tables that fit the terminal are laid out by mfctl itself (rich's layout cost ~0.5 ms a row,
a tenth of ``mfctl check``'s CPU per node): what the user sees must be what rich printed."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.text import Text

from mfctl.cli import views

HEADERS = ["node", "rank", "python", "dataset", "result"]
ROWS = {
    "plain": [["node1", "0", "3.11.2", "ok", "[green]ok[/]"], ["node12", "11", "3.11.2", "", "[red]FAIL[/]"]],
    "wide characters": [["節点-1", "0", "3.11.2", "ok", "[green]ok[/]"], ["n2", "1", "-", "データ", "x"]],
    "escaped markup": [[views.escape("[rack-a]node"), "0", "3.11", "ok", "[bold red]FAIL[/]"]],
    "header wider than cells": [["a", "", "", "", ""]],
    "no rows": [],
}


def printed(monkeypatch, width: int, terminal: bool, fn) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=terminal,
                      color_system="standard" if terminal else None)
    monkeypatch.setattr(views, "out", console)
    fn()
    return console.file.getvalue()


@pytest.mark.parametrize("terminal", [False, True], ids=["pipe", "terminal"])
@pytest.mark.parametrize("case", list(ROWS))
def test_own_layout_is_what_rich_prints(monkeypatch, case: str, terminal: bool) -> None:
    rows = ROWS[case]
    ours = printed(monkeypatch, 120, terminal, lambda: views.print_table(HEADERS, rows, keep=(0,)))
    rich = printed(monkeypatch, 120, terminal, lambda: views.out.print(views.table(HEADERS, rows, keep=(0,))))
    assert seen(ours) == seen(rich)


def seen(output: str) -> list[tuple[str, str]]:
    """Each character with the style it is shown in (escape sequences may be split differently)."""
    console = Console(width=200)
    text = Text.from_ansi(output)
    return [(ch, str(text.get_style_at_offset(console, i))) for i, ch in enumerate(text.plain)]


def test_a_table_too_wide_for_the_terminal_still_folds_and_keeps_the_host(monkeypatch) -> None:
    host = "gpu-node-017.rack-a.cluster.invalid"
    rows = [[host, "0", "x" * 60, "y" * 40, "ok"]]
    text = printed(monkeypatch, 80, False, lambda: views.print_table(HEADERS, rows, keep=(0,)))
    assert max(len(line) for line in text.splitlines()) <= 80
    assert any(host in line for line in text.splitlines())
    assert "".join(text.split()).count("x") == 60  # folded, not cut
