"""Behaviour of the ``mfctl watch`` dashboard, driven headless through Textual's pilot.

Every app here reads a scripted ``StaticSource`` (the test moves it on with ``advance()``) and a
frozen clock, so what the screen shows follows only from the snapshots given.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mfctl.tui.app import DashboardApp, make_app
from mfctl.tui.format import fmt_duration, fmt_rate
from mfctl.tui.panels import ConfirmScreen, HeaderBar, HelpScreen, LogScreen
from mfctl.tui.plots import braille_plot
from mfctl.tui.rows import RankFilter, row_cells, sort_ranks
from mfctl.tui.source import DashboardSource
from mfctl.tui.table import RankTable
from tests.fakes.dashboard import FakeStopSource, StaticSource, synthetic_snapshot

JOB = {"id": "j-0001", "name": "tiny", "model": "llama2_7b", "nodes": 2, "devices_per_node": 8,
       "world_size": 16, "started_at": 900.0}
NOW = 1234.0  # the frozen clock: 334 s after started_at
FAILED = {5: "exit code 1: RuntimeError: HCCL init failed"}


def clock() -> float:
    return NOW


def scripted(steps: int = 6, world: int = 16, **kwargs: Any) -> list[dict]:
    return [synthetic_snapshot(world, s, **kwargs) for s in range(1, steps + 1)]


def run(app: DashboardApp, body: Callable[[Any], Awaitable[None]], size: tuple[int, int] = (200, 50)) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await body(pilot)
    asyncio.run(main())


async def until(pilot: Any, condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the app run until ``condition()`` holds (a tick, a worker, a dismissed screen)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.02)


def app_for(source: DashboardSource, **kwargs: Any) -> DashboardApp:
    kwargs.setdefault("refresh_s", 0.05)
    return make_app(source, job=JOB, clock=clock, **kwargs)


def table(pilot: Any) -> RankTable:
    return pilot.app.query_one(RankTable)


def header(pilot: Any) -> str:
    return str(pilot.app.query_one(HeaderBar).render())


# --------------------------------------------------------------------------------------------------
# The live view
# --------------------------------------------------------------------------------------------------

def test_source_protocol_is_met_by_the_scripted_sources() -> None:
    assert isinstance(StaticSource(scripted(1)), DashboardSource)
    assert isinstance(FakeStopSource(scripted(1)), DashboardSource)


def test_header_shows_job_step_tokens_and_elapsed_from_the_snapshot() -> None:
    snaps = scripted(3)
    source = StaticSource(snaps)
    cluster = snaps[0]["cluster"]

    async def body(pilot: Any) -> None:
        text = header(pilot)
        assert "job j-0001" in text and "llama2_7b" in text and "2 nodes x 8 devices" in text
        assert f"step {cluster['step']}/1000" in text
        assert f"tokens/s {fmt_rate(cluster['tokens_per_s'])}" in text
        assert "elapsed 0:05:34" in text
        source.advance(2)
        await until(pilot, lambda: "step 3/1000" in header(pilot))
        assert f"tokens/s {fmt_rate(snaps[2]['cluster']['tokens_per_s'])}" in header(pilot)

    run(app_for(source), body)


def test_rows_update_when_the_source_advances() -> None:
    snaps = scripted(3)
    source = StaticSource(snaps)

    async def body(pilot: Any) -> None:
        t = table(pilot)
        assert t.visible_ranks == list(range(16))
        assert t.row_texts(7) == row_cells(snaps[0]["ranks"][7])[0]
        source.advance()
        await until(pilot, lambda: t.row_texts(7) == row_cells(snaps[1]["ranks"][7])[0])
        assert t.row_texts(7)[2] == "2/1000"

    run(app_for(source), body)


def test_a_failed_rank_row_shows_its_state_and_reason() -> None:
    source = StaticSource(scripted(2, failed=FAILED, stragglers=[3]))

    async def body(pilot: Any) -> None:
        cells = table(pilot).row_texts(5)
        assert cells[-2:] == ("failed", FAILED[5])
        assert table(pilot).row_texts(3)[-2] == "straggler"
        assert "FAILED" in header(pilot) and "1 failed" in header(pilot)
        # The reason is drawn on screen, not only kept.
        line = table(pilot).render_line(1 + table(pilot).visible_ranks.index(5))
        assert "HCCL init failed" in line.text

    run(app_for(source), body)


def test_alerts_are_listed_newest_first() -> None:
    alerts = [{"kind": "stalled", "rank": 2, "message": "no step for 120 s", "step": 4, "time": NOW - 600},
              {"kind": "failed", "rank": 5, "message": "exit code 1", "step": 5, "time": NOW - 30}]
    source = StaticSource([synthetic_snapshot(16, 5, alerts=alerts)])

    async def body(pilot: Any) -> None:
        lines = str(pilot.app.query_one("#alerts").render()).splitlines()
        assert lines[0].startswith("30s ago failed") and "rank 5" in lines[0]
        assert lines[1].strip() == "exit code 1"
        assert lines[2].startswith("10m00s ago stalled") and "rank 2" in lines[2]
        assert pilot.app.query_one("#alerts-pane").border_title == "alerts (2)"

    run(app_for(source), body)


def test_alerts_are_grouped_by_kind_newest_first_and_one_event_names_its_ranks() -> None:
    every = list(range(1024))
    alerts = [
        {"kind": "error", "rank": 3, "ranks": [3], "count": 1, "message": "rank 3: disk full", "step": 7,
         "time": NOW - 300},
        {"kind": "global_norm_spike", "rank": None, "ranks": every, "count": 1024, "step": 15,
         "message": "ranks 0-1023 (1024): global_norm 5.9 at step 15 is 9.80x its running mean 0.6",
         "time": NOW - 120, "last_time": NOW - 119},
        {"kind": "error", "rank": None, "ranks": [3, 17, *range(200, 208)], "count": 10, "step": 16,
         "message": "ranks 3, 17, 200-207 (10): HCCL error", "time": NOW - 60},
    ]
    source = StaticSource([synthetic_snapshot(16, 5, alerts=alerts)])

    async def body(pilot: Any) -> None:
        lines = str(pilot.app.query_one("#alerts").render()).splitlines()
        headings = [line for i, line in enumerate(lines) if i % 2 == 0]
        assert [h.split()[2] for h in headings] == ["error", "error", "global_norm_spike"]
        assert headings[0] == "1m00s ago error  ranks 3, 17, 200-207 (10)  step 16"
        assert lines[1].strip() == "HCCL error"
        assert headings[1].startswith("5m00s ago error  rank 3  step 7") and lines[3].strip() == "disk full"
        assert headings[2] == "1m59s ago global_norm_spike  ranks 0-1023 (1024)  step 15"
        assert lines[5].strip() == "global_norm 5.9 at step 15 is 9.80x its running mean 0.6"
        assert pilot.app.query_one("#alerts-pane").border_title == "alerts (3)"

    run(app_for(source), body)


# --------------------------------------------------------------------------------------------------
# Filter and sort
# --------------------------------------------------------------------------------------------------

def test_slash_filter_narrows_rows_and_escape_clears_it() -> None:
    source = StaticSource(scripted(2, failed=FAILED))

    async def body(pilot: Any) -> None:
        await pilot.press("slash", *"failed", "enter")
        assert table(pilot).visible_ranks == [5]
        assert table(pilot).has_focus

        await pilot.press("slash", *["backspace"] * 6, *"node-01")
        assert table(pilot).visible_ranks == list(range(8, 16))
        await pilot.press("escape")
        assert table(pilot).visible_ranks == list(range(16))
        assert not pilot.app.query_one("#filter").display

        await pilot.press("slash", *"0-2 9", "enter")
        assert table(pilot).visible_ranks == [0, 1, 2, 9]
        assert "filter '0-2 9'" in pilot.app.query_one("#ranks-pane").border_title

    run(app_for(source), body)


def test_typing_q_in_the_filter_does_not_quit() -> None:
    source = StaticSource(scripted(1))

    async def body(pilot: Any) -> None:
        await pilot.press("slash", "q")
        await pilot.pause()
        assert pilot.app.is_running
        assert pilot.app.query_one("#filter").value == "q"

    run(app_for(source), body)


def test_o_cycles_the_sort_column_and_shift_o_reverses_it() -> None:
    snaps = scripted(3, stragglers=[3])
    source = StaticSource(snaps)
    ranks = snaps[0]["ranks"]

    async def body(pilot: Any) -> None:
        t = table(pilot)
        await pilot.press("o")
        assert t.sort_column == "node"
        await pilot.press("o", "o", "o")  # node -> step -> loss -> step ms
        assert t.sort_column == "step_ms" and t.sort_descending
        by_time = sorted(range(16), key=lambda r: -ranks[r]["step_time_ms"])
        assert t.visible_ranks == by_time
        assert t.visible_ranks[0] == 3  # the straggler is the slowest
        await pilot.press("O")
        assert t.visible_ranks == sorted(range(16), key=lambda r: ranks[r]["step_time_ms"])
        # The order follows the values as they change: no new sort needed.
        source.advance()
        later = snaps[1]["ranks"]
        by_step_time = sorted(range(16), key=lambda r: later[r]["step_time_ms"])
        await until(pilot, lambda: t.visible_ranks == by_step_time)

    run(app_for(source), body)


def test_clicking_a_column_header_sorts_by_it() -> None:
    source = StaticSource(scripted(2, failed=FAILED))

    async def body(pilot: Any) -> None:
        t = table(pilot)
        state_x = 1 + sum(w + 1 for w in (5, 14, 11, 8, 8, 10, 9, 6)) + 1  # inside the "state" header
        await pilot.click(RankTable, offset=(state_x, 0))
        assert t.sort_column == "state"
        assert t.visible_ranks[0] == 5  # failed first
        await pilot.click(RankTable, offset=(state_x, 0))
        assert t.sort_column == "state" and t.sort_descending
        assert t.visible_ranks[-1] == 5

    run(app_for(source), body)


def test_the_cursor_stays_on_its_rank_when_the_order_changes() -> None:
    source = StaticSource(scripted(3))

    async def body(pilot: Any) -> None:
        t = table(pilot)
        await pilot.press("down", "down")
        assert t.selected_rank() == 2
        await pilot.press("o", "o", "o", "o")  # step ms: a new order
        assert t.selected_rank() == 2
        assert t.visible_ranks[t.cursor_row] == 2

    run(app_for(source), body)


# --------------------------------------------------------------------------------------------------
# Log, stop, help, quit
# --------------------------------------------------------------------------------------------------

def test_l_shows_the_selected_ranks_log_fetched_off_the_ui_thread() -> None:
    logs = {2: [f"rank 2 line {i}" for i in range(50)], 0: ["rank 0 only line"]}
    source = StaticSource(scripted(2), logs=logs)

    async def body(pilot: Any) -> None:
        await pilot.press("down", "down", "l")
        assert isinstance(pilot.app.screen, LogScreen)
        log = pilot.app.screen.query_one("#log-lines")
        await until(pilot, lambda: log.line_count == 50)
        assert log.lines[-1] == "rank 2 line 49"
        rank, lines, thread = source.log_requests[0]
        assert rank == 2 and lines > 0
        assert thread != threading.main_thread().name
        await pilot.press("s", "o")  # the dashboard's keys wait until the dialog is closed
        assert isinstance(pilot.app.screen, LogScreen)
        assert table(pilot).sort_column == "rank"
        await pilot.press("escape")
        assert not isinstance(pilot.app.screen, LogScreen)
        assert pilot.app.is_running

    run(app_for(source), body)


def test_a_log_that_cannot_be_read_says_so() -> None:
    def broken(rank: int, lines: int) -> list[str]:
        raise ConnectionError("node-00: connection refused")

    source = StaticSource(scripted(1), logs=broken)

    async def body(pilot: Any) -> None:
        await pilot.press("l")
        status = pilot.app.screen.query_one("#log-status")
        await until(pilot, lambda: "connection refused" in str(status.render()))
        assert pilot.app.is_running

    run(app_for(source), body)


def test_s_then_y_stops_the_job_exactly_once() -> None:
    source = FakeStopSource(scripted(2), outcome="stopped on 2/2 nodes", hold=True)
    app = app_for(source)
    told: list[str] = []
    app.notify = lambda message, **kw: told.append(str(message))  # type: ignore[method-assign]

    async def body(pilot: Any) -> None:
        await pilot.press("s")
        assert isinstance(pilot.app.screen, ConfirmScreen)
        await pilot.press("y")
        await until(pilot, lambda: source.stop_calls == 1)
        # While the stop is still running, another `s` does not start a second one.
        await pilot.press("s")
        assert not isinstance(pilot.app.screen, ConfirmScreen)
        source.release()
        await until(pilot, lambda: "stopped on 2/2 nodes" in told)
        assert source.stop_calls == 1
        assert source.stop_threads[0] != threading.main_thread().name

    run(app, body)


@pytest.mark.parametrize("answer", ["n", "escape"])
def test_s_then_n_does_not_stop(answer: str) -> None:
    source = FakeStopSource(scripted(2))

    async def body(pilot: Any) -> None:
        await pilot.press("s", answer)
        await pilot.pause(0.1)
        assert source.stop_calls == 0
        assert not isinstance(pilot.app.screen, ConfirmScreen)
        assert pilot.app.is_running

    run(app_for(source), body)


def test_a_failed_stop_is_reported_and_can_be_retried() -> None:
    source = FakeStopSource(scripted(1), error=RuntimeError("node-01: unreachable"))
    app = app_for(source)
    told: list[str] = []
    app.notify = lambda message, **kw: told.append(str(message))  # type: ignore[method-assign]

    async def body(pilot: Any) -> None:
        await pilot.press("s", "y")
        await until(pilot, lambda: any("unreachable" in m for m in told))
        assert pilot.app.is_running
        await pilot.press("s", "y")
        await until(pilot, lambda: source.stop_calls == 2)

    run(app, body)


def test_question_mark_shows_help_and_escape_closes_it() -> None:
    async def body(pilot: Any) -> None:
        await pilot.press("question_mark")
        assert isinstance(pilot.app.screen, HelpScreen)
        assert "stop the job" in str(pilot.app.screen.query_one("#help-text").render())
        await pilot.press("escape")
        assert not isinstance(pilot.app.screen, HelpScreen)

    run(app_for(StaticSource(scripted(1))), body)


def test_q_quits() -> None:
    async def body(pilot: Any) -> None:
        await pilot.press("q")
        await until(pilot, lambda: not pilot.app.is_running)

    app = app_for(StaticSource(scripted(1)))
    run(app, body)
    assert app.return_value is None


@pytest.mark.parametrize("final, kwargs", [("finished", {"finished": True}), ("failed", {"failed": FAILED})])
def test_exit_when_done_exits_by_itself_with_the_final_state(final: str, kwargs: dict) -> None:
    source = StaticSource([*scripted(2), synthetic_snapshot(16, 3, **kwargs)])
    app = app_for(source, exit_when_done=True, done_pause_s=0.1)

    async def body(pilot: Any) -> None:
        await pilot.pause(0.2)
        assert pilot.app.is_running  # still running while the job is
        source.advance(2)
        await until(pilot, lambda: not pilot.app.is_running)

    run(app, body)
    assert app.return_value == final


def test_without_exit_when_done_a_finished_job_stays_on_screen() -> None:
    source = StaticSource([synthetic_snapshot(16, 3, finished=True)])

    async def body(pilot: Any) -> None:
        await pilot.pause(0.3)
        assert pilot.app.is_running
        assert "FINISHED" in header(pilot)

    run(app_for(source, done_pause_s=0.05), body)


# --------------------------------------------------------------------------------------------------
# Scale
# --------------------------------------------------------------------------------------------------

def test_1024_ranks_render_and_a_tick_with_every_rank_changed_completes() -> None:
    snaps = [synthetic_snapshot(1024, s, stragglers=[77]) for s in (1, 2)]
    source = StaticSource(snaps)
    app = app_for(source, refresh_s=60)  # ticks only when the test asks

    async def body(pilot: Any) -> None:
        t = table(pilot)
        assert len(t.visible_ranks) == 1024
        source.advance()
        start = time.perf_counter()
        pilot.app.refresh_data()
        await pilot.pause()
        elapsed = time.perf_counter() - start
        assert t.last_changed_rows == 1024
        assert t.row_texts(512) == row_cells(snaps[1]["ranks"][512])[0]
        assert elapsed < 2.0, f"a 1024-rank refresh took {elapsed:.2f} s"
        await pilot.press("end")
        assert t.selected_rank() == 1023
        bottom = t.render_line(t.size.height - 1).text
        assert "1023" in bottom
        await pilot.press("slash", *"1000", "enter")
        assert t.visible_ranks == [1000]

    run(app, body, size=(200, 60))


# --------------------------------------------------------------------------------------------------
# Pure pieces
# --------------------------------------------------------------------------------------------------

RANK = {"rank": 12, "node": "gpu-node-03", "state": "running"}


@pytest.mark.parametrize("text, rank, straggler, shown", [
    ("", RANK, False, True),
    ("12", RANK, False, True),
    ("13", RANK, False, False),
    ("8-15", RANK, False, True),
    ("15-8", RANK, False, True),
    ("16-20", RANK, False, False),
    ("running", RANK, False, True),
    ("failed", RANK, False, False),
    ("straggler", RANK, True, True),
    ("slow", RANK, False, False),
    ("running", RANK, True, True),  # a straggler is still running
    ("node-03", RANK, False, True),
    ("NODE-03", RANK, False, True),
    ("node-04", RANK, False, False),
    ("node-04, 12", RANK, False, True),  # any term
    ("node:03", RANK, False, True),
    ("rank:12", RANK, False, True),
    ("state:running", RANK, False, True),
])
def test_rank_filter(text: str, rank: dict, straggler: bool, shown: bool) -> None:
    assert RankFilter.parse(text).matches(rank, straggler) is shown


def test_sort_ranks_puts_unknown_values_last_in_both_directions() -> None:
    ranks = [{"rank": 0, "step_time_ms": 500.0}, {"rank": 1, "step_time_ms": None},
             {"rank": 2, "step_time_ms": 300.0}, {"rank": 3, "step_time_ms": 500.0}]
    assert sort_ranks(ranks, "step_ms", descending=True) == [0, 3, 2, 1]
    assert sort_ranks(ranks, "step_ms", descending=False) == [2, 0, 3, 1]


@pytest.mark.parametrize("value, text", [(None, "-"), (812.34, "812.3"), (45_210, "45.2k"),
                                         (1_234_567, "1.23M")])
def test_fmt_rate(value: Any, text: str) -> None:
    assert fmt_rate(value) == text


@pytest.mark.parametrize("value, text", [(None, "-"), (-5, "-"), (45, "45s"), (725, "12m05s"),
                                         (11220, "3h07m"), (187200, "2d04h")])
def test_fmt_duration(value: Any, text: str) -> None:
    assert fmt_duration(value) == text


def test_braille_plot_has_the_requested_size_and_a_continuous_line() -> None:
    lines = braille_plot([(0, 10.0), (100, 0.0)], width=10, height=3)
    assert len(lines) == 3 and all(len(line) == 10 for line in lines)
    # A falling line: every cell column holds at least one dot.
    assert all(any(line[c] != "\u2800" for line in lines) for c in range(10))
    assert braille_plot([], 4, 2) == ["\u2800" * 4] * 2


def test_static_source_advances_derives_history_and_tails_logs() -> None:
    snaps = scripted(3)
    source = StaticSource(snaps, logs={1: ["a", "b", "c"]}, advance_on_call=True)
    assert source.snapshot()["cluster"]["step"] == 1
    assert source.snapshot()["cluster"]["step"] == 2
    assert [p[0] for p in source.history()["loss"]] == [1, 2]
    source.snapshot()
    assert source.snapshot()["cluster"]["step"] == 3  # stays on the last one
    assert source.done
    assert source.rank_log(1, 2) == ["b", "c"]
    assert source.rank_log(9, 10) == []
    with pytest.raises(ValueError):
        StaticSource([])


@pytest.mark.parametrize("width, side_shown", [(100, False), (160, True)])
def test_narrow_terminals_give_the_side_panel_room_to_the_table(width: int, side_shown: bool) -> None:
    async def body(pilot: Any) -> None:
        assert pilot.app.query_one("#side").display is side_shown
        assert table(pilot).visible_ranks == list(range(16))

    run(app_for(StaticSource(scripted(1))), body, size=(width, 30))
