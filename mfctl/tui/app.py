"""The ``mfctl watch`` dashboard.

The app renders snapshot dicts (the shape ``mfctl.metrics`` produces) from a ``DashboardSource``;
it never looks inside the metrics core. The refresh loop is dolphie's: a thread worker takes
``snapshot()`` and ``history()`` and posts them in one ``Polled`` message; the UI thread patches the
screen and only then re-arms a one-shot timer for the next poll, so one poll is in flight at a time
and a slow source (a collector busy ingesting, a loaded machine) spaces the polls out instead of
queueing them. Taking the snapshot off the UI thread keeps the event loop free for keys and paints
while the collector builds it (tens of ms at 1024 ranks). The other calls that may block (a rank's
full log, stopping the job) run in thread workers too, so no handler, ``compose`` or ``on_mount``
ever waits on the network.

``make_app`` is the only way to build the app, for ``mfctl watch`` and for the tests alike; the
clock is injected so the elapsed time (and alert ages) are deterministic under test.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Footer, Input
from textual.worker import Worker, WorkerState

from mfctl.metrics.types import History, Snapshot
from mfctl.tui.format import fmt_loss, fmt_ms, fmt_rate
from mfctl.tui.gcpace import GcPacer
from mfctl.tui.panels import (
    AlertsPanel,
    ConfirmScreen,
    FilterInput,
    HeaderBar,
    HelpScreen,
    LogScreen,
    alerts_text,
    header_text,
)
from mfctl.tui.plots import SeriesPlot
from mfctl.tui.source import DashboardSource
from mfctl.tui.table import RankTable

ALERTS_SHOWN = 100  # the alerts panel keeps the newest this many
DONE_STATES = ("finished", "failed")


# --------------------------------------------------------------------------------------------------
# Messages posted by thread workers
# --------------------------------------------------------------------------------------------------

class Polled(Message):
    """One poll of the source, taken off the UI thread: the snapshot and the plots' data for
    ``rank`` (the rank under the table's cursor when the poll started)."""

    def __init__(self, snapshot: Snapshot, history: History, rank: int | None) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.history = history
        self.rank = rank


class StopFinished(Message):
    def __init__(self, outcome: str) -> None:
        super().__init__()
        self.outcome = outcome


# --------------------------------------------------------------------------------------------------
# The app
# --------------------------------------------------------------------------------------------------

def _epoch(value: Any) -> float | None:
    """``started_at`` as epoch seconds: a number, an ISO-8601 string, or a datetime."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


class DashboardApp(App[str | None]):
    """Returns the cluster state it exited on when ``exit_when_done`` ended it, else None."""

    CSS_PATH = "mfctl.tcss"
    TITLE = "mfctl watch"
    ENABLE_COMMAND_PALETTE = False
    # Below 130 columns the plots and alerts give their room to the rank table (see mfctl.tcss).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (130, "-wide")]
    BINDINGS = [
        Binding("q", "quit", "quit"),
        Binding("slash", "filter", "filter"),
        Binding("o", "cycle_sort", "sort"),
        Binding("O", "reverse_sort", "reverse", show=False),
        Binding("l", "open_log", "log"),
        Binding("y", "toggle_log", "log y"),
        Binding("s", "stop", "stop job"),
        Binding("question_mark", "help", "help"),
    ]

    def __init__(self, source: DashboardSource, *, job: Mapping[str, Any], clock: Callable[[], float],
                 refresh_s: float, exit_when_done: bool, done_pause_s: float) -> None:
        super().__init__()
        self.source = source
        self.job = dict(job)
        self.clock = clock
        self.refresh_s = refresh_s
        self.exit_when_done = exit_when_done
        self.done_pause_s = done_pause_s
        self.started_at = _epoch(self.job.get("started_at"))
        self.last_snapshot: Snapshot | dict[str, Any] = {}
        self._stopping = False
        self._exit_armed = False
        self._header: Text | None = None
        self._alerts: Text | None = None
        self.gc_pacer = GcPacer()

    #: The app owns the process (``mfctl watch``): it decides when full collections run (see
    #: ``gcpace``). Process-wide, so not for tests that build many apps.
    freeze_heap = False
    _heap_frozen = False

    # The dashboard's own keys do nothing while a dialog is open (no stop prompt over a log view).
    _MAIN_ACTIONS = frozenset({"filter", "cycle_sort", "reverse_sort", "open_log", "stop", "help",
                               "toggle_log"})

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in self._MAIN_ACTIONS and isinstance(self.screen, ModalScreen))

    # -- layout --------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        with Horizontal(id="body"):
            with Vertical(id="ranks-pane"):
                yield FilterInput(placeholder="filter: 12  8-15  failed  stalled  straggler  node name",
                                  id="filter")
                yield RankTable(id="ranks")
            with Vertical(id="side"):
                yield SeriesPlot("loss", fmt_loss, id="loss-plot")
                yield SeriesPlot("tokens/s", fmt_rate, id="tokens-plot")
                yield SeriesPlot("step ms", fmt_ms, id="steptime-plot")
                with VerticalScroll(id="alerts-pane") as pane:
                    pane.border_title = "alerts"
                    yield AlertsPanel(id="alerts")
        yield Footer()

    def on_mount(self) -> None:
        # Held once: the tick runs every second and must not search the DOM (or fail during shutdown).
        self._header_bar = self.query_one(HeaderBar)
        self._table = self.query_one(RankTable)
        self._loss_plot = self.query_one("#loss-plot", SeriesPlot)
        self._tokens_plot = self.query_one("#tokens-plot", SeriesPlot)
        self._steptime_plot = self.query_one("#steptime-plot", SeriesPlot)
        self._alerts_panel = self.query_one(AlertsPanel)
        self._alerts_pane = self.query_one("#alerts-pane")
        self._ranks_pane = self.query_one("#ranks-pane")
        self.query_one("#filter", FilterInput).display = False
        self._table.focus()
        self._poll_timer: Timer | None = None
        self._polling = False
        # The first frame shows data, not an empty table; every later poll runs in the worker.
        self.refresh_data()
        self._arm_poll()

    # -- the refresh loop ----------------------------------------------------------------------

    def _arm_poll(self) -> None:
        self._poll_timer = self.set_timer(self.refresh_s, self._poll, name="poll")

    def _poll(self) -> None:
        if self._polling:
            return  # one poll in flight at a time
        self._polling = True
        self._poll_worker(self._table.selected_rank())  # the cursor is read here, on the UI thread

    @work(thread=True, exclusive=True, exit_on_error=False, group="poll")
    def _poll_worker(self, rank: int | None) -> None:
        self.post_message(Polled(self.source.snapshot(), self.source.history(rank), rank))

    def on_polled(self, message: Polled) -> None:
        try:
            self.apply_poll(message.snapshot, message.history, message.rank)
        finally:
            self._polling = False
            self._arm_poll()
        if self.freeze_heap and not self._heap_frozen and message.snapshot.get("ranks"):
            self._heap_frozen = True
            self.call_after_refresh(self.gc_pacer.take_over)
        elif self.gc_pacer.polled():
            self.set_timer(self.refresh_s / 2, gc.collect, name="full gc")

    def on_unmount(self) -> None:
        self.gc_pacer.release()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        group = event.worker.group
        if group == "poll" and event.state == WorkerState.ERROR:
            # The next poll may succeed (a source between two states): say so and keep polling.
            self._polling = False
            self.notify(f"could not read the job's state: {event.worker.error}", title="refresh",
                        severity="error", timeout=5)
            self._arm_poll()
        elif group == "stop" and event.state == WorkerState.ERROR:
            self._stopping = False
            self.notify(f"stopping failed: {event.worker.error}", title="stop", severity="error", timeout=15)

    def refresh_data(self) -> None:
        """Take one snapshot and its plots' data on the calling thread and show them (the first
        frame, and tests and benchmarks that want a frame on demand)."""
        rank = self._table.selected_rank()
        self.apply_poll(self.source.snapshot(), self.source.history(rank), rank)

    def apply_poll(self, snap: Snapshot, history: History, rank: int | None) -> None:
        """Patch whatever changed on screen (UI thread)."""
        self.last_snapshot = snap
        now = self.clock()
        cluster = snap.get("cluster") or {}

        elapsed = None if self.started_at is None else now - self.started_at
        header = header_text(self.job, cluster, elapsed, snap.get("scheduler"))
        if header != self._header:
            self._header = header
            self._header_bar.update(header, layout=False)  # fixed height: no relayout

        self._table.show(snap.get("ranks") or [], cluster.get("stragglers") or ())
        self._describe_table()

        if rank == self._table.selected_rank():
            self._show_history(history, rank)
        # else: the cursor moved while polling; the selection already drew the new rank's line.

        self._show_alerts(snap.get("alerts") or [], now)

        if self.exit_when_done and not self._exit_armed and cluster.get("state") in DONE_STATES:
            self._exit_armed = True
            state = cluster.get("state")
            self.set_timer(self.done_pause_s, lambda: self.exit(state))

    def _show_alerts(self, alerts: list, now: float) -> None:
        text = alerts_text(alerts, now, ALERTS_SHOWN)
        if text == self._alerts:
            return
        # A relayout repaints the whole screen: only ask for one when the panel's height changes.
        grew = self._alerts is None or len(text.plain.splitlines()) != len(self._alerts.plain.splitlines())
        self._alerts = text
        self._alerts_panel.update(text, layout=grew)
        pane = self._alerts_pane
        title = f"alerts ({len(alerts)})"
        if pane.border_title != title:
            pane.border_title = title

    def _show_history(self, history: History, rank: int | None) -> None:
        """The plots: the band of all ranks and ``rank``'s own line."""
        unit = history.get("throughput") or "tokens/s"
        plot = self._tokens_plot
        if plot.title != unit:
            plot.title = plot.border_title = unit  # set_series fills in the figures when they change
        bands = history.get("bands")
        plots: tuple[tuple[SeriesPlot, Literal["loss", "tokens_per_s", "step_time_ms"]], ...] = (
            (self._loss_plot, "loss"), (self._tokens_plot, "tokens_per_s"),
            (self._steptime_plot, "step_time_ms"))
        if bands is None:  # cluster lines only
            for plot, metric in plots:
                plot.set_points(history.get(metric) or [])
            return
        own = history.get("rank") or {}
        for plot, metric in plots:
            plot.set_series(bands.get(metric) or [], own.get(metric) or [], rank)

    def on_rank_table_selected(self, _: RankTable.Selected) -> None:
        # Answered at once, not at the next poll: history() is cheap by contract (bounded series).
        if hasattr(self, "_steptime_plot"):  # mounted
            rank = self._table.selected_rank()
            self._show_history(self.source.history(rank), rank)

    def action_toggle_log(self) -> None:
        self._loss_plot.set_log(not self._loss_plot.log_scale)

    def _describe_table(self) -> None:
        pane = self._ranks_pane
        text = self._table.describe()
        if pane.border_title != text:
            pane.border_title = text

    # -- table: sort and filter ----------------------------------------------------------------

    def action_cycle_sort(self) -> None:
        self._table.cycle_sort()
        self._describe_table()

    def action_reverse_sort(self) -> None:
        self._table.reverse_sort()
        self._describe_table()

    def on_rank_table_sort_changed(self, _: RankTable.SortChanged) -> None:
        self._describe_table()

    def action_filter(self) -> None:
        box = self.query_one("#filter", FilterInput)
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self._table.set_filter(event.value)
            self._describe_table()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            if not event.value.strip():
                event.input.display = False
            self._table.focus()

    def on_filter_input_cancelled(self, _: FilterInput.Cancelled) -> None:
        box = self.query_one("#filter", FilterInput)
        box.display = False
        table = self._table
        table.set_filter("")
        table.focus()
        self._describe_table()

    # -- log, stop, help -----------------------------------------------------------------------

    def action_open_log(self) -> None:
        rank = self._table.selected_rank()
        if rank is None:
            self.notify("no rank selected", severity="warning")
            return
        self.push_screen(LogScreen(self.source, rank))

    def action_stop(self) -> None:
        if self._stopping:
            self.notify("the job is already being stopped", severity="warning")
            return
        nodes = self.job.get("nodes", "?")
        world = self.job.get("world_size", "?")
        question = Text.assemble("Stop job ", (str(self.job.get("id", "?")), "bold"), "?\n",
                                 f"This ends all {world} ranks on {nodes} node{'s' if nodes != 1 else ''}.")
        self.push_screen(ConfirmScreen(question), self._on_stop_answer)

    def _on_stop_answer(self, yes: bool | None) -> None:
        if not yes:
            return
        self._stopping = True
        self.notify(f"stopping job {self.job.get('id', '?')}...")
        self.stop_in_background()

    @work(thread=True, exclusive=True, exit_on_error=False, group="stop")
    def stop_in_background(self) -> None:
        self.post_message(StopFinished(self.source.stop_job()))

    def on_stop_finished(self, message: StopFinished) -> None:
        self._stopping = False
        self.notify(message.outcome, title="stop")

    def action_help(self) -> None:
        self.push_screen(HelpScreen())


def make_app(source: DashboardSource, *, job: Mapping[str, Any], clock: Callable[[], float] = time.time,
             refresh_s: float = 1.0, exit_when_done: bool = False, done_pause_s: float = 2.0,
             freeze_heap: bool = False) -> DashboardApp:
    """The dashboard over ``source`` for ``job`` (``id, name, model, nodes, devices_per_node,
    world_size, started_at``). ``clock`` gives "now" for the elapsed time and alert ages. With
    ``exit_when_done`` the app exits ``done_pause_s`` after the cluster reaches finished or failed,
    returning that state. ``freeze_heap``: the app owns the process (``mfctl watch``), see
    ``DashboardApp.freeze_heap``."""
    if refresh_s <= 0:
        raise ValueError(f"refresh_s must be positive, got {refresh_s!r}")
    app = DashboardApp(source, job=job, clock=clock, refresh_s=refresh_s, exit_when_done=exit_when_done,
                       done_pause_s=done_pause_s)
    app.freeze_heap = freeze_heap
    return app
