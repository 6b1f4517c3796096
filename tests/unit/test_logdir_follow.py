"""Following a local log directory while it grows: the real msrun logs written into a tmp dir in
pieces (half lines, files appearing late, a log truncated and rewritten) must end in the same
state as reading the finished directory once."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mfctl.cli import app as cli_app
from mfctl.live.collector import MetricsCollector
from mfctl.live.logdir_follow import LogDirFollower
from mfctl.live.sources import LogDirSource
from mfctl.metrics.logdir import load_log_dir
from mfctl.metrics.state import ClusterState
from mfctl.metrics.types import LogLine

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples" / "mindformers-1.9.0-cpu-msrun-dp2"
NAMES = ("worker_0.log", "worker_1.log", "scheduler.log")


def frozen_state() -> ClusterState:
    return ClusterState(world_size=None, seq_length=64, clock=lambda: 0.0)


def read_once(directory: Path) -> list[dict]:
    state = frozen_state()
    load_log_dir(directory, state)
    return state.snapshot(1.0)["ranks"]


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[LogLine]] = []

    def __call__(self, batch: list[LogLine]) -> None:
        self.batches.append(list(batch))

    @property
    def lines(self) -> list[LogLine]:
        return [line for batch in self.batches for line in batch]


def test_growing_logs_end_as_read_once(tmp_path):
    """Every sample file written in 7 uneven pieces that cut lines in half, worker_1 and the
    scheduler appearing only after the follower started: the followed state is the read-once one."""
    data = {name: (SAMPLES / name).read_bytes() for name in NAMES}
    collector = MetricsCollector(frozen_state(), clock=lambda: 0.0)
    follower = LogDirFollower(tmp_path, collector.feed, scan_s=0.0)
    follower.poll()  # nothing there yet
    assert follower.files == {}
    cuts = [0, 1, 997, 5000, 20011, 41000, 77777]
    for i in range(len(cuts)):
        for name, content in data.items():
            if name != "worker_0.log" and i < 3:
                continue  # appears later
            path = tmp_path / name
            have = path.stat().st_size if path.exists() else 0
            end = cuts[i + 1] if i + 1 < len(cuts) else len(content)
            if end > have:
                append(path, content[have:end])
        follower.poll()
        for name in follower.files:
            # A partial last line is never handed on: the offset stays on a line boundary.
            text = Path(name).read_bytes()[: follower.offsets[name]]
            assert text == b"" or text.endswith(b"\n")
    follower.poll()
    assert [Path(p).name for p in follower.files] == ["worker_0.log", "worker_1.log", "scheduler.log"]
    followed = collector.state.snapshot(1.0)["ranks"]
    assert followed == read_once(tmp_path)
    assert [(r["rank"], r["step"], r["loss"]) for r in followed] == [(0, 32, 6.641791), (1, 32, 6.731889)]


def test_lines_come_once_in_batches_with_rank_from_the_file_name(tmp_path):
    sink = Recorder()
    follower = LogDirFollower(tmp_path, sink, scan_s=0.0)
    sub = tmp_path / "node1"
    sub.mkdir()
    append(sub / "worker_12.log", b"a\nb\r\nc")
    append(tmp_path / "scheduler.log", b"s1\n")
    append(tmp_path / "notes.txt", b"not a log\n")
    follower.poll()
    assert len(sink.batches) == 1  # one pass, one batch
    assert [(l.rank, l.text) for l in sink.lines] == [(12, "a"), (12, "b"), (None, "s1")]  # workers first
    follower.poll()
    assert len(sink.batches) == 1  # nothing new: nothing handed on
    append(sub / "worker_12.log", b"d\n")
    follower.poll()
    assert [(l.rank, l.text) for l in sink.batches[-1]] == [(12, "cd")]
    assert all(l.node is None for l in sink.lines)


def test_truncated_and_replaced_logs_are_read_from_their_start(tmp_path):
    sink = Recorder()
    follower = LogDirFollower(tmp_path, sink, scan_s=0.0)
    log = tmp_path / "worker_0.log"
    append(log, b"first run line 1\nfirst run line 2\n")
    follower.poll()
    log.write_bytes(b"second\n")  # truncated in place (shorter than the offset)
    follower.poll()
    assert sink.batches[-1][0].text == "second"
    # Rotated: the old file renamed away and a new one, longer than the old offset, in its place.
    os.rename(log, tmp_path / "worker_0.log.1")
    append(log, b"third run, a longer first line than before\n")
    follower.poll()
    assert [l.text for l in sink.batches[-1]] == ["third run, a longer first line than before"]
    assert follower.stats.rotations == 2


def test_a_big_existing_log_is_caught_up_in_bounded_batches(tmp_path):
    sink = Recorder()
    lines = [f"line {i} " + "x" * 60 for i in range(30000)]
    (tmp_path / "worker_3.log").write_text("\n".join(lines) + "\n")
    follower = LogDirFollower(tmp_path, sink, batch_lines=10000)
    follower.poll()
    assert [l.text for l in sink.lines] == lines
    assert [len(b) for b in sink.batches] == [10000, 10000, 10000]


def test_the_thread_follows_until_stopped(tmp_path):
    source = LogDirSource(tmp_path, 64, 1, follow=True, interval_s=0.05).start()
    try:
        content = (SAMPLES / "worker_1.log").read_bytes()
        half = content.index(b"step:[   16/")
        append(tmp_path / "worker_1.log", content[:half])
        wait_for(lambda: rank_step(source, 1) == 15)
        append(tmp_path / "worker_1.log", content[half:])
        wait_for(lambda: rank_step(source, 1) == 32)
        assert [p.name for p in map(Path, source.files)] == ["worker_1.log"]
        # The plots' series are fed too: the rank's own loss line has every step.
        assert [s for s, _ in source.history(1)["rank"]["loss"]] == list(range(1, 33))
    finally:
        source.close()
    assert not source.follower.is_alive()


def rank_step(source, rank: int):
    return next((r["step"] for r in source.snapshot()["ranks"] if r["rank"] == rank), None)


def wait_for(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail("timed out")
        time.sleep(0.02)


def test_once_json_after_growth_shows_every_rank_at_its_last_step(tmp_path):
    for name in NAMES:
        shutil.copy(SAMPLES / name, tmp_path / name)
    res = CliRunner().invoke(cli_app, ["watch", "--logs", str(tmp_path), "--once", "--json"])
    assert res.exit_code == 0, res.output
    ranks = json.loads(res.stdout)["ranks"]
    assert [(r["rank"], r["step"], r["state"]) for r in ranks] == [(0, 32, "finished"), (1, 32, "finished")]


def test_files_in_new_and_old_subdirectories_are_picked_up(tmp_path):
    sink = Recorder()
    follower = LogDirFollower(tmp_path, sink, scan_s=0.0)
    (tmp_path / "node0").mkdir()
    append(tmp_path / "node0" / "worker_0.log", b"r0\n")
    follower.poll()
    for _ in range(3):
        follower.poll()  # nothing moved: no rescan needed, nothing handed on
    append(tmp_path / "node0" / "worker_1.log", b"r1\n")  # a new file in a known directory
    (tmp_path / "node1" / "rank_2").mkdir(parents=True)  # a new directory tree
    append(tmp_path / "node1" / "rank_2" / "info.log", b"r2\n")
    follower.poll()
    assert [(l.rank, l.text) for l in sink.lines] == [(0, "r0"), (1, "r1"), (2, "r2")]
