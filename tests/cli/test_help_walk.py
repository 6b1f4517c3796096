"""`--help` of every command, found by walking the typer app (so a new command is covered the day it
is added): it exits 0, prints a usage line with the command's path, says what the command does, and
names and explains every option and argument."""

from __future__ import annotations

import re

import pytest
import typer.main

from mfctl.cli import app


def _walk(command, path: tuple[str, ...] = ()):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _walk(sub, (*path, name))


COMMANDS = dict(_walk(typer.main.get_command(app)))


def _flat(text: str) -> str:
    """The help as words: rich's box lines and line wrapping removed."""
    return re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", text)).strip()


def test_the_walk_finds_every_command_and_group():
    names = {" ".join(path) for path in COMMANDS}
    assert {"init", "render", "plan", "check", "launch", "supervise", "jobs", "status", "stop", "logs",
            "watch", "export", "report", "demo", "data", "data prepare"} <= names


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda p: " ".join(p) or "mfctl")
def test_help(mfctl, path):
    command = COMMANDS[path]
    r = mfctl(*path, "--help")
    assert r.exit_code == 0, r.stderr
    assert r.stderr == ""
    text = _flat(r.stdout)
    assert text.startswith(f"Usage: {' '.join(('mfctl', *path))} ["), r.stdout[:300]

    description = (command.help or "").strip()
    assert description, f"mfctl {' '.join(path)} has no description"
    first_paragraph = _flat(description.split("\n\n")[0])
    assert first_paragraph in text

    # The parent lists this command with the start of its description.
    if path:
        parent = _flat(mfctl(*path[:-1], "--help").stdout)
        assert f"{path[-1]} {first_paragraph[:40]}" in parent

    params = [p for p in command.params if p.name != "help"]
    for param in params:
        help_text = (getattr(param, "help", None) or "").strip()
        assert help_text, f"mfctl {' '.join(path)}: {param.opts[0]} has no help text"
        shown = param.opts[0] if param.param_type_name == "option" else param.name
        assert shown in text, f"{shown} not in the help of mfctl {' '.join(path)}"
        assert _flat(help_text) in text, f"the help of {shown} is not shown in mfctl {' '.join(path)} --help"
    if path and not getattr(command, "commands", None):
        assert "--help" in text
