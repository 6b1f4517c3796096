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
