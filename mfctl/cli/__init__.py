"""mfctl's command line: the one place that prints errors and chooses exit codes.

Known errors (``MfctlError``) print one line to stderr: exit 2 for bad input, 1 for a failed
operation. Anything else keeps its traceback, because it is a bug to report.

Layout: this module holds ``entry`` and ``main`` (the error boundary) and imports the command
groups so that they register; ``root`` holds the typer app and the root options (``--version``),
``options`` the shared options, ``views`` all rich printing, and the command groups ``job``
(init, render, plan), ``run`` (check, launch, supervise, jobs, status, stop, logs), ``watch``
(watch, export, report) and ``data`` (data prepare, demo) register on ``root.app``. The command
modules import ``root``, never this package: no import circle. May import every layer below it
(tui, live, jobs, records, ...); only the entry points import it.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

# The command groups register on ``app`` when imported; this order is the order of ``mfctl --help``.
from mfctl.cli import data, job, run, watch  # noqa: F401
from mfctl.cli.root import app
from mfctl.cli.views import err
from mfctl.errors import MfctlError

__all__ = ["app", "entry", "main"]


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
