"""``mfctl watch``'s collector keeps the plots' data from real MindFormers logs: each rank's line
and the band over the ranks, per step."""

from __future__ import annotations

import re

from tests.sample_job import SAMPLES, SEQ_LENGTH


def test_collector_history_has_each_ranks_line_and_the_band_from_the_logs() -> None:
    from mfctl.live.collector import MetricsCollector
    from mfctl.metrics.state import MetricsState
    from mfctl.metrics.types import LogLine

    collector = MetricsCollector(MetricsState(world_size=2, pipeline_stage=1, seq_length=SEQ_LENGTH))
    logged: dict[int, list[tuple[int, float, float]]] = {}
    for rank in (0, 1):
        text = (SAMPLES / f"worker_{rank}.log").read_text()
        logged[rank] = [(int(s), float(loss), float(ms)) for s, loss, ms in re.findall(
            r"step:\[\s*(\d+)/\s*\d+\], loss:\[([\d.]+)/[\d.]+\], per_step_time: (\d+)ms", text)]
        for line in text.splitlines():  # one batch per line, as a follower delivers a live job
            collector.feed([LogLine("localhost", rank, line)])
    assert len(logged[0]) == len(logged[1]) == 32
    history = collector.history(1)
    own = history["rank"]
    assert own["rank"] == 1
    assert own["loss"] == [(s, loss) for s, loss, _ in logged[1]]
    assert own["step_time_ms"] == [(s, ms) for s, _, ms in logged[1]]
    assert len(own["tokens_per_s"]) == 32 and all(v > 0 for _, v in own["tokens_per_s"])
    band = {b[0]: b[1:] for b in history["bands"]["loss"]}
    for (s, a, _), (_, b, _) in zip(logged[0], logged[1]):
        assert band[s] == (min(a, b), (a + b) / 2, max(a, b))
    assert collector.history()["rank"] is None


def test_a_log_directory_read_at_once_fills_the_plots() -> None:
    # mfctl watch --logs DIR: the files are read into the state before the dashboard asks.
    from mfctl.live.sources import LogDirSource

    source = LogDirSource(SAMPLES, SEQ_LENGTH, 1)
    text = (SAMPLES / "worker_0.log").read_text()
    losses = [float(x) for x in re.findall(r"loss:\[([\d.]+)/", text)]
    history = source.history(0)
    assert [v for _, v in history["rank"]["loss"]] == losses
    assert len(history["bands"]["loss"]) == len(losses) == 32


def test_plots_are_built_only_for_a_reader_that_draws_them() -> None:
    # watch --once prints the snapshot alone: no series, and no steps kept for them.
    from mfctl.live.logdir_source import LogDirSource

    once = LogDirSource(SAMPLES, SEQ_LENGTH, 1, plots=False)
    assert [r["step"] for r in once.snapshot()["ranks"]] == [32, 32]
    assert once.collector.series.ranks == {} and not once.collector.state.keep_steps
    drawn = LogDirSource(SAMPLES, SEQ_LENGTH, 1)
    assert drawn.collector.series.ranks == {}  # built when the plots first ask
    assert len(drawn.history(1)["rank"]["loss"]) == 32 and set(drawn.collector.series.ranks) == {0, 1}


def test_the_plots_are_the_same_however_the_lines_arrive() -> None:
    """Line by line with the plots drawn after every line (a live job), or every log in one block
    and the plots drawn once (attaching to a finished run): the same points."""
    from mfctl.live.collector import MetricsCollector
    from mfctl.metrics.state import MetricsState
    from mfctl.metrics.types import LogLine

    def collector() -> MetricsCollector:
        return MetricsCollector(MetricsState(world_size=2, pipeline_stage=1, seq_length=SEQ_LENGTH))

    live, block = collector(), collector()
    texts = {rank: (SAMPLES / f"worker_{rank}.log").read_text() for rank in (0, 1)}
    lines = {rank: text.splitlines() for rank, text in texts.items()}
    for i in range(max(map(len, lines.values()))):  # the two ranks' lines interleaved, as they print
        for rank in (0, 1):
            if i < len(lines[rank]):
                live.feed([LogLine("localhost", rank, lines[rank][i])])
                live.history(rank)
    for rank in (0, 1):
        block.feed_block(rank, texts[rank].encode(), "localhost")
    for rank in (0, 1, None):
        assert live.history(rank) == block.history(rank)
    assert len(block.history(0)["bands"]["loss"]) == 32
