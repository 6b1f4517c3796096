"""mfctl's command line: the one place that prints errors and chooses exit codes.

Known errors (``MfctlError``) print one line to stderr: exit 2 for bad input, 1 for a failed
operation. Anything else keeps its traceback, because it is a bug to report.

Layout: this module holds the typer app, the root options and ``main`` (the error boundary);
``options`` the shared options, ``views`` all rich printing, and the command groups
``job`` (init, render, plan), ``run`` (check, launch, supervise, jobs, status, stop, logs),
``watch`` (watch, export, report) and ``data`` (data prepare, demo) register on ``app``.
May import every layer below it (tui, live, jobs, records, ...); only the entry points import it.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from mfctl import __version__
from mfctl.errors import MfctlError

app = typer.Typer(
    name="mfctl",
    help="Pretrain LLMs with MindSpore + MindFormers on a cluster from one machine: create a job, "
    "render its configs, launch msrun on every node over SSH, and watch every rank live.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # SSH secrets may sit in locals
    add_completion=False,
    rich_markup_mode="rich",
)

# The command groups register on ``app`` when imported; this order is the order of ``mfctl --help``.
from mfctl.cli import data, job, run, watch  # noqa: E402,F401  (after ``app`` exists)
from mfctl.cli.views import err, out  # noqa: E402


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


def _click_exception_types() -> tuple[type, ...]:
    """Click's exception class, as typer ships it (vendored in newer typer) and as click does."""
    types: list[type] = []
    try:
        from typer._click.exceptions import ClickException as Vendored

        types.append(Vendored)
    except ImportError:
        pass
    try:
        from click.exceptions import ClickException

        types.append(ClickException)
    except ImportError:
        pass
    return tuple(types)


def _one_line(text: str) -> str:
    """An error stays one line even when it quotes a value with a newline (a path, say)."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def entry() -> None:
    """The console script and ``python -m mfctl``: this process is one mfctl command, so the
    fan-out may take its long-lived heap out of the collector's scans (see remote/group.py)."""
    from mfctl.remote.group import allow_heap_freeze

    allow_heap_freeze()
    main()


def main(argv: list[str] | None = None) -> None:
    try:
        rc = app(args=argv, standalone_mode=False, prog_name="mfctl")
    except MfctlError as exc:
        # escape: a message quotes user values, and "[/x]" in a path is not rich markup.
        err.print(f"[red]error:[/] {escape(_one_line(exc.message))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # usage errors arrive here with standalone_mode=False
        usage = _click_exception_types()
        if isinstance(exc, usage):
            ctx = getattr(exc, "ctx", None)
            where = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
            err.print(f"[red]error:[/] {escape(_one_line(exc.format_message().rstrip('.')))}{escape(where)}",
                      highlight=False,
                      soft_wrap=True)
            sys.exit(exc.exit_code if exc.exit_code else 2)
        raise
    sys.exit(rc if isinstance(rc, int) else 0)
