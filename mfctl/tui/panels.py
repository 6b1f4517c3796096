"""The dashboard's panels around the rank table, and its dialogs.

Panels: the header bar (the job, then where it stands), the alerts panel (grouped by kind, newest
first) and the ``/`` filter box. ``header_text`` and ``alerts_text`` are pure functions of the
snapshot's ``cluster`` and ``alerts`` (``mfctl.metrics.types``) and of the app's clock, so tests
check what they say without an app; the widgets only hold the text the app gives them.

Dialogs: a rank's log (read from the source in a thread worker: it may go over SSH), the "stop the
job?" question (focus on "no") and the help.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Log, Static
from textual.worker import Worker, WorkerState

from mfctl.metrics.ranks import rank_label
from mfctl.metrics.types import AlertView, ClusterView
from mfctl.tui.format import as_number, fmt_clock, fmt_duration, fmt_loss, fmt_mfu, fmt_rate, fmt_step
from mfctl.tui.rows import STATE_STYLE, STRAGGLER
from mfctl.tui.source import DashboardSource

_CLUSTER_STYLE = {"failed": STATE_STYLE["failed"], "stalled": "bold " + STATE_STYLE["stalled"],
                  "finished": "bold " + STATE_STYLE["finished"], "running": "bold", "starting": "dim"}


def header_text(job: Mapping[str, Any], cluster: ClusterView | Mapping[str, Any],
                elapsed_s: float | None, scheduler: str | None = None) -> Text:
    """Two lines: what the job is, then where it stands (with what the scheduler says of it, e.g.
    a Slurm job still pending and why)."""
    nodes = job.get("nodes", "?")
    devices = job.get("devices_per_node", "?")
    world = cluster.get("world_size") or job.get("world_size", "?")
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("job ", style="dim").append(str(job.get("id", "?")), style="bold")
    if job.get("name"):
        text.append(f"  {job['name']}")
    text.append("  model ", style="dim").append(str(job.get("model", "?")), style="bold")
    text.append("  ", style="dim").append(f"{nodes} nodes x {devices} devices", style="bold")
    text.append(f" = {world} ranks", style="dim")
    if scheduler:
        text.append("  " + scheduler, style="bold yellow" if "pending" in scheduler else "dim")
    text.append("\n")

    state = str(cluster.get("state") or "starting")
    text.append(state.upper(), style=_CLUSTER_STYLE.get(state, "bold"))
    step, total = cluster.get("step"), cluster.get("total_steps")
    text.append("  step ", style="dim").append(fmt_step(step, total), style="bold")
    done, whole = as_number(step), as_number(total)
    if done is not None and whole:
        text.append(f" ({100.0 * done / whole:.1f}%)", style="dim")
    text.append("  ETA ", style="dim").append(fmt_duration(cluster.get("eta_s")), style="bold")
    text.append("  tokens/s ", style="dim").append(fmt_rate(cluster.get("tokens_per_s")), style="bold")
    text.append("  samples/s ", style="dim").append(fmt_rate(cluster.get("samples_per_s")), style="bold")
    text.append("  loss ", style="dim").append(fmt_loss(cluster.get("loss")), style="bold")
    if cluster.get("chip"):  # MFU: the ranks' mean, against the chip's dense BF16/FP16 peak
        text.append("  MFU ", style="dim").append(fmt_mfu(cluster.get("mfu")), style="bold")
        peak = as_number(cluster.get("peak_tflops"))
        text.append(f" of {peak:g} TFLOPS ({cluster['chip']})" if peak else f" ({cluster['chip']})", style="dim")
    text.append("  elapsed ", style="dim").append(fmt_clock(elapsed_s), style="bold")
    stragglers = len(cluster.get("stragglers") or ())
    failed = len(cluster.get("failed_ranks") or ())
    finished = len(cluster.get("finished_ranks") or ())
    if stragglers:
        text.append(f"  {stragglers} straggler{'s' if stragglers != 1 else ''}", style=STATE_STYLE[STRAGGLER])
    if failed:
        text.append(f"  {failed} failed", style=STATE_STYLE["failed"])
    if finished:
        text.append(f"  {finished} finished", style=STATE_STYLE["finished"])
    return text


ALERT_STYLE = {"failed": STATE_STYLE["failed"], "error": STATE_STYLE["failed"],
               "cann_error": STATE_STYLE["failed"], "device_oom": STATE_STYLE["failed"],
               "stalled": STATE_STYLE["stalled"], "straggler": STATE_STYLE[STRAGGLER],
               "overflow": STATE_STYLE["stalled"], "finished": STATE_STYLE["finished"]}


def _alert_time(a: AlertView) -> float:
    """When an alert last grew (a grouped alert gains ranks after it is raised)."""
    times = [t for t in (as_number(a.get("time")), as_number(a.get("last_time"))) if t is not None]
    return max(times) if times else 0.0


def _alert_ranks(a: AlertView) -> str:
    """``rank 5`` / ``ranks 0-1023 (1024)`` (the state's own label), or "" for a launcher alert."""
    ranks = a.get("ranks")
    if isinstance(ranks, (list, tuple)) and len(ranks) > 1:
        return rank_label(ranks)
    if a.get("rank") is not None:
        return f"rank {a['rank']}"
    if isinstance(ranks, (list, tuple)) and ranks:
        return f"rank {ranks[0]}"
    return ""


def alerts_text(alerts: Sequence[AlertView], now: float, limit: int) -> Text:
    """The newest ``limit`` alerts grouped by kind: kinds in the order of their newest alert, each
    kind's alerts newest first; ages relative to ``now`` (the app's clock).

    Each alert is a heading line (age, kind, its ranks, step) and its message on the next line
    (without the ranks, which the heading names), which the panel wraps: the panel is narrow and
    the message is the part worth reading whole. A grouped alert (one event on many ranks) is one
    entry: ``ranks 0-1023 (1024)``.
    """
    newest = sorted(alerts, key=_alert_time, reverse=True)[:limit]
    kind_order: dict[str, int] = {}
    for a in newest:
        kind_order.setdefault(str(a.get("kind") or "alert"), len(kind_order))
    newest.sort(key=lambda a: kind_order[str(a.get("kind") or "alert")])  # stable: newest first per kind
    text = Text()
    if not newest:
        return text.append("no alerts", style="dim")
    for i, a in enumerate(newest):
        t = _alert_time(a) if a.get("time") is not None or a.get("last_time") is not None else None
        age = fmt_duration(now - t) if t is not None else "-"
        kind = str(a.get("kind") or "alert")
        text.append(f"{age} ago ", style="dim")
        text.append(kind, style=ALERT_STYLE.get(kind) or "bold")
        ranks = _alert_ranks(a)
        if ranks:
            text.append(f"  {ranks}", style="bold")
        if a.get("step") is not None:
            text.append(f"  step {a['step']}", style="dim")
        text.append("\n")
        message = str(a.get("message") or "")
        if ranks and message.startswith(ranks + ": "):
            message = message[len(ranks) + 2:]
        text.append(f"  {message}")
        if a.get("hint"):  # a CANN failure named by its code: what it usually means, what to check
            text.append(f"\n  check: {a['hint']}", style="dim")
        if i < len(newest) - 1:
            text.append("\n")
    return text


class HeaderBar(Static):
    """The job line and the cluster line."""


class AlertsPanel(Static):
    """Alerts, newest first (the app caps how many)."""


class FilterInput(Input):
    """The ``/`` filter box. Escape clears it and gives the focus back to the table."""

    BINDINGS = [Binding("escape", "cancel", "clear filter", show=False)]

    class Cancelled(Message):
        pass

    def action_cancel(self) -> None:
        self.value = ""
        self.post_message(self.Cancelled())


# --------------------------------------------------------------------------------------------------
# Dialogs: a rank's log, the stop question, the help
# --------------------------------------------------------------------------------------------------

LOG_LINES = 2000  # how much of a rank's log the log screen asks for


class LogLoaded(Message):
    def __init__(self, rank: int, lines: tuple[str, ...]) -> None:
        super().__init__()
        self.rank = rank
        self.lines = lines


class LogScreen(ModalScreen[None]):
    """One rank's recent log, fetched in a thread worker."""

    BINDINGS = [
        Binding("escape", "dismiss", "close"),
        Binding("q", "dismiss", "close", show=False),
        Binding("r", "reload", "reload"),
    ]

    def __init__(self, source: DashboardSource, rank: int, lines: int = LOG_LINES) -> None:
        super().__init__()
        self.source = source
        self.rank = rank
        self.lines = lines

    def compose(self) -> ComposeResult:
        with Vertical(id="log-dialog") as dialog:
            dialog.border_title = f"rank {self.rank} log"
            dialog.border_subtitle = "escape: close · r: reload"
            yield Static(f"reading the last {self.lines} lines of rank {self.rank}'s log...", id="log-status")
            yield Log(id="log-lines", highlight=False, max_lines=self.lines)

    def on_mount(self) -> None:
        self.query_one("#log-lines", Log).focus()
        self.fetch()

    @work(thread=True, exclusive=True, exit_on_error=False, group="log")
    def fetch(self) -> None:
        lines = self.source.rank_log(self.rank, self.lines)
        self.post_message(LogLoaded(self.rank, tuple(lines)))

    def on_log_loaded(self, message: LogLoaded) -> None:
        log = self.query_one("#log-lines", Log)
        log.clear()
        log.write_lines(message.lines)
        shown = len(message.lines)
        self.query_one("#log-status", Static).update(
            f"rank {message.rank}: last {shown} line{'s' if shown != 1 else ''}" if shown
            else f"rank {message.rank}: no log lines yet")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "log" and event.state == WorkerState.ERROR:
            self.query_one("#log-status", Static).update(
                Text(f"could not read rank {self.rank}'s log: {event.worker.error}",
                     style=STATE_STYLE["failed"]))

    def action_reload(self) -> None:
        self.query_one("#log-status", Static).update(f"reloading rank {self.rank}'s log...")
        self.fetch()


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; the focus starts on "no" so a stray enter does nothing harmful."""

    BINDINGS = [
        Binding("y", "answer(True)", "yes"),
        Binding("n", "answer(False)", "no"),
        Binding("escape", "answer(False)", "no", show=False),
    ]
    AUTO_FOCUS = "#no"

    def __init__(self, question: str | Text) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Static(self.question, id="confirm-question")
            with Horizontal(id="confirm-buttons"):
                yield Button("Yes, stop (y)", id="yes", variant="error")
                yield Button("No (n)", id="no", variant="primary")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")


HELP = """\
[b]Keys[/b]

  [b]↑ ↓ PgUp PgDn[/b]  move through the ranks
  [b]o[/b]              sort by the next column (rank, node, step, loss, step ms, samples/s, tokens/s, state)
  [b]O[/b]              reverse the sort order      (clicking a column header sorts by it too)
  [b]/[/b]              filter rows: a rank [dim]12[/dim], a range [dim]8-15[/dim], a state
                 [dim]failed stalled straggler starting running finished[/dim], or part of a node name;
                 several terms show rows matching any of them. enter keeps it, escape clears it
  [b]l[/b]              open the selected rank's log (escape closes it, r reloads)
                 the plots draw the selected rank's line over the band of all ranks
                 (min..max shaded, median inside): move the cursor to follow another rank
  [b]y[/b]              loss plot: logarithmic / linear y axis
  [b]s[/b]              stop the job on every node (asks first: y / n)
  [b]?[/b]              this help
  [b]q[/b]              quit the dashboard (the job keeps running)

[b]Row colours[/b]  """ + "  ".join(f"[{STATE_STYLE[s]}]{s}[/]" if STATE_STYLE[s] else s for s in
                                   ("starting", "running", STRAGGLER, "stalled", "finished", "failed")) + "\n"


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", "close"),
        Binding("q", "dismiss", "close", show=False),
        Binding("question_mark", "dismiss", "close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog") as dialog:
            dialog.border_title = "mfctl watch"
            dialog.border_subtitle = "escape: close"
            yield Static(HELP, id="help-text")
