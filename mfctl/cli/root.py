"""The typer app every command registers on, and its root options (``--version``).

A module of its own so that the command modules (``job``, ``run``, ``watch``, ``data``) import the
app from here while the package, ``mfctl.cli``, imports them to register their commands: nothing in
the package imports ``mfctl.cli`` itself, so there is no import circle (a pyproject.toml
import-linter contract keeps it so).
"""

from __future__ import annotations

import typer

from mfctl import __version__
from mfctl.cli.views import out

app = typer.Typer(
    name="mfctl",
    help="Pretrain LLMs with MindSpore + MindFormers on a cluster from one machine: create a job, "
    "render its configs, launch msrun on every node over SSH, and watch every rank live.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # SSH secrets may sit in locals
    add_completion=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        out.print(f"mfctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """mfctl: a cluster manager for MindFormers pretraining."""
