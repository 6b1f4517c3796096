"""Reading a log in blocks: wherever a read ends, the state is the state of reading the file whole,
and no block parts a step line from its progress line (the chunk path's fast way needs the pair)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mfctl.live.collector import MetricsCollector
from mfctl.live.logdir_follow import LogDirFollower
from mfctl.metrics import logdir
from mfctl.metrics.logdir import feed_file, load_log_dir, pair_cut
from mfctl.metrics.state import ClusterState

ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples" / "mindformers-1.9.0-cpu-msrun-dp2"
SAMPLE = SAMPLES / "worker_0.log"
STEP, PROGRESS = b"Epoch:[", b"samples/s/p"


def new_state() -> ClusterState:
    return ClusterState(world_size=1, clock=lambda: 1000.0)


def seen(state: ClusterState) -> tuple:
    """What a user can see of the state: the snapshot, every rank's history and step times."""
    return (state.snapshot(1000.0), {r: list(t.history) for r, t in state.ranks.items()},
            {r: list(t.recent_step_ms) for r, t in state.ranks.items()})


def spied(state: ClusterState) -> list[bytes]:
    """The blocks ``state`` is fed, recorded (and fed)."""
    blocks: list[bytes] = []
    feed = state.feed_chunk

    def spy(rank, data, node=None):
        blocks.append(data)
        feed(rank, data, node)

    state.feed_chunk = spy  # type: ignore[method-assign]
    return blocks


def pair_at(data: bytes, nth: int) -> tuple[int, int]:
    """(start, end) of the ``nth`` step line and the progress line after it, newlines included."""
    start = -1
    for _ in range(nth):
        start = data.index(STEP, start + 1)
    start = data.rfind(b"\n", 0, start) + 1
    end = data.index(b"\n", data.index(PROGRESS, start)) + 1
    return start, end


def assert_pairs_whole(blocks: list[bytes]) -> None:
    for block in blocks[:-1]:
        last = block[block.rfind(b"\n", 0, len(block) - 1) + 1:]
        assert STEP not in last, "a block ends with a step line: its progress line went to the next block"
    for block in blocks[1:]:
        assert PROGRESS not in block[:block.find(b"\n")], "a block starts with a progress line alone"


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"])
def test_a_read_ending_at_every_offset_of_a_step_and_progress_pair_gives_the_whole_read(tmp_path,
                                                                                        line_end) -> None:
    data = SAMPLE.read_bytes()
    if line_end != b"\n":
        data = data.replace(b"\n", line_end)
    path = tmp_path / "worker_0.log"
    path.write_bytes(data)
    whole = new_state()
    whole.feed_chunk(0, data.replace(b"\r\n", b"\n"))
    expected = seen(whole)
    assert whole.ranks[0].step == 32
    start, end = pair_at(data, 5)  # the fifth step's pair, past the header
    for offset in range(start, end + 1):  # the first read ends at each byte of the pair
        state = new_state()
        blocks = spied(state)
        assert feed_file(path, state, 0, block_bytes=offset) == len(data)
        assert seen(state) == expected, offset
        assert_pairs_whole(blocks)
        assert b"".join(blocks) == data.replace(b"\r\n", b"\n")  # every byte fed once, in order


def test_a_long_log_is_fed_in_blocks_that_keep_every_pair(tmp_path) -> None:
    # Many pairs in a file several blocks long: each block boundary falls wherever it may.
    data = SAMPLE.read_bytes()
    path = tmp_path / "worker_0.log"
    path.write_bytes(data)
    whole = new_state()
    whole.feed_chunk(0, data)
    for block_bytes in (4096, 5000, 7777, 10007):
        state = new_state()
        blocks = spied(state)
        feed_file(path, state, 0, block_bytes=block_bytes)
        assert len(blocks) > 4
        assert_pairs_whole(blocks)
        assert seen(state) == seen(whole)


def test_pair_cut() -> None:
    step = b"2026 - INFO - { Epoch:[  1/  1], step:[    2/   32], loss:[6.9/6.9], per_step_time: 138ms\n"
    progress = b"2026 - INFO -    6.2% |###  | 28.82787 samples/s/p  0:00:04 }\n"
    assert pair_cut(step + progress) == len(step + progress)
    assert pair_cut(progress + step) == len(progress)  # the step line waits for its progress line
    assert pair_cut(progress + step + b"2026 - INF") == len(progress)
    assert pair_cut(progress + b"2026 - INF") == len(progress)  # a partial line waits
    assert pair_cut(step) == len(step)  # nothing before it: fed (a block is never held back whole)
    assert pair_cut(b"no newline") == 0


def test_the_directory_follower_catches_up_in_blocks_and_hands_on_a_lone_step_line(tmp_path,
                                                                                   monkeypatch) -> None:
    import mfctl.live.logdir_follow as follow

    monkeypatch.setattr(follow, "CHUNK_BYTES", 6000)  # the 61 kB sample in ~10 blocks
    data = SAMPLE.read_bytes()
    lines = data.split(b"\n")
    last_step = max(i for i, line in enumerate(lines) if STEP in line)
    head = b"\n".join(lines[:last_step + 1]) + b"\n"  # ends with a step line, its progress not written yet
    (tmp_path / "worker_0.log").write_bytes(head)
    collector = MetricsCollector(new_state())
    blocks: list[bytes] = []

    def sink(rank, block, node):
        blocks.append(block)
        collector.feed_block(rank, block, node)

    follower = LogDirFollower(tmp_path, collector.feed, scan_s=0.0, block_sink=sink)
    follower.poll()
    assert_pairs_whole(blocks)
    assert b"".join(blocks) == head
    assert collector.state.ranks[0].step == 32  # the lone step line went too: it may be the last
    with open(tmp_path / "worker_0.log", "ab") as handle:
        handle.write(data[len(head):])
    follower.poll()
    assert b"".join(blocks) == data
    reference = new_state()
    load_log_dir(tmp_path, reference)
    assert seen(collector.state) == seen(reference)
    assert follower.stats.bytes == len(data)


def test_the_default_block_size_is_what_feed_file_reads(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(logdir, "CHUNK_BYTES", 9000)
    path = tmp_path / "worker_0.log"
    path.write_bytes(SAMPLE.read_bytes())
    state = new_state()
    blocks = spied(state)
    feed_file(path, state, 0)
    assert len(blocks) >= 61000 // 9000 and max(map(len, blocks)) <= 9000 + 600


def test_a_file_whose_line_ends_change_half_way_is_read_as_text_mode_reads_it(tmp_path) -> None:
    # Mapped blocks up to the first "\r", then reads with line ends replaced.
    data = SAMPLE.read_bytes()
    lines = data.split(b"\n")
    half = len(lines) // 2
    mixed = (b"\n".join(lines[:half]) + b"\n" + b"\r\n".join(lines[half:half + 40]) + b"\r"
             + b"\n".join(lines[half + 40:]))
    path = tmp_path / "worker_0.log"
    path.write_bytes(mixed)
    whole = new_state()
    whole.feed_chunk(0, mixed.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))
    for block_bytes in (3000, 4096, 1 << 20):
        state = new_state()
        blocks = spied(state)
        assert feed_file(path, state, 0, block_bytes=block_bytes) == len(mixed)
        assert seen(state) == seen(whole)
        assert b"".join(blocks) == mixed.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def test_attaching_to_long_logs_shows_every_ranks_last_step_before_the_whole_read(tmp_path,
                                                                                  monkeypatch) -> None:
    """The dashboard's source reads the end of each log first: its first snapshot has every rank
    at its last step; once the follower has read every log whole, the snapshots are the whole
    read's (what ``watch --once`` prints)."""
    import mfctl.live.logdir_source as source_module
    from mfctl.live.logdir_source import LogDirSource

    monkeypatch.setattr(source_module, "PREVIEW_FROM", 1)
    for name in ("worker_0.log", "worker_1.log", "scheduler.log"):
        (tmp_path / name).write_bytes((SAMPLES / name).read_bytes())
    once = LogDirSource(tmp_path, None, 1).snapshot()
    source = LogDirSource(tmp_path, None, 1, follow=True, interval_s=0.05)
    try:
        first = source.snapshot()  # nothing read whole yet: the follower has not started
        assert source.collector.state.ranks == {}
        assert [(r["rank"], r["step"], r["state"]) for r in first["ranks"]] == [
            (0, 32, "finished"), (1, 32, "finished")]
        source.start()
        assert source.follower is not None and source.follower.caught_up.wait(10)
        whole = source.snapshot()
        assert [{k: v for k, v in r.items() if k != "last_update_age_s"} for r in whole["ranks"]] == [
            {k: v for k, v in r.items() if k != "last_update_age_s"} for r in once["ranks"]]
        assert len(source.history(0)["rank"]["loss"]) == 32  # the plots from the whole read
    finally:
        source.close()


def test_short_logs_are_read_whole_from_the_first_snapshot(tmp_path) -> None:
    from mfctl.live.logdir_source import LogDirSource

    (tmp_path / "worker_0.log").write_bytes(SAMPLE.read_bytes())
    source = LogDirSource(tmp_path, None, 1, follow=True)
    assert source.snapshot()["ranks"] == []  # no preview: the follower's first pass reads it all
    source.follower.poll()
    assert source.snapshot()["ranks"][0]["step"] == 32


def test_with_a_preview_the_whole_read_begins_at_the_first_snapshot(tmp_path, monkeypatch) -> None:
    # The dashboard loads while the preview waits; the long read starts once it asks for a frame.
    import mfctl.live.logdir_source as source_module
    from mfctl.live.logdir_source import LogDirSource

    monkeypatch.setattr(source_module, "PREVIEW_FROM", 1)
    (tmp_path / "worker_0.log").write_bytes(SAMPLE.read_bytes())
    source = LogDirSource(tmp_path, None, 1, follow=True, interval_s=0.05).start()
    try:
        assert source.follower is not None and not source.follower.is_alive()
        assert source.snapshot()["ranks"][0]["step"] == 32  # the preview
        assert source.follower.is_alive() and source.follower.caught_up.wait(10)
        assert source.snapshot()["ranks"][0]["step"] == 32  # the whole read
        assert source.collector.state.ranks[0].step == 32
    finally:
        source.close()


def test_watch_logs_once_starts_without_the_dashboard_the_report_or_ssh() -> None:
    # Start-up counts in `watch --logs DIR --once --json`: it imports none of what it does not use.
    import json
    import subprocess
    import sys

    code = ("import sys; sys.argv = ['mfctl', 'watch', '--logs', sys.argv[1], '--once', '--json']\n"
            "from mfctl.cli import entry\n"
            "try:\n    entry()\nfinally:\n"
            "    sys.stderr.write('MODULES ' + ' '.join(sorted(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", code, str(SAMPLES)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [r["step"] for r in json.loads(done.stdout)["ranks"]] == [32, 32]
    modules = {m.split(".")[0] for m in done.stderr.rsplit("MODULES ", 1)[1].split()}
    assert not modules & {"textual", "plotly", "fabric", "paramiko", "invoke", "jinja2"}


@pytest.mark.parametrize("probe", [150, 400, 1000])
def test_blocks_ended_from_their_last_bytes_are_those_of_the_whole_block(tmp_path, monkeypatch, probe) -> None:
    # Where a block ends is found in its last bytes (the probe) when its last line is whole
    # there; lines longer than the probe (the header's) make the reader read on the other way.
    monkeypatch.setattr(logdir, "_PROBE", probe)
    data = SAMPLE.read_bytes()
    path = tmp_path / "worker_0.log"
    path.write_bytes(data)
    whole = new_state()
    whole.feed_chunk(0, data)
    for block_bytes in (4096, 5000, 7777, 10007):
        state = new_state()
        blocks = spied(state)
        assert feed_file(path, state, 0, block_bytes=block_bytes) == len(data)
        assert len(blocks) > 4
        assert_pairs_whole(blocks)
        assert b"".join(blocks) == data  # every byte fed once, in order
        assert seen(state) == seen(whole)


def test_a_log_truncated_while_it_is_read_does_not_end_the_reader(tmp_path) -> None:
    # A job restarted over the logs being read (msrun truncates them): the reader reads what
    # the file holds then, and the command goes on (a mapped file would end it with SIGBUS).
    # In a child process, so that a crash shows as its exit code.
    path = tmp_path / "worker_0.log"
    path.write_bytes(SAMPLE.read_bytes() * 40)  # ~2.4 MB: several blocks
    script = f"""
import os
from mfctl.metrics import logdir
from mfctl.metrics.state import ClusterState
state = ClusterState(world_size=1)
feed = state.feed_chunk
def truncating(rank, data, node=None):
    os.truncate({str(path)!r}, 1000)
    feed(rank, data, node)
state.feed_chunk = truncating
logdir.feed_file({str(path)!r}, state, 0, block_bytes=1 << 18)
print(state.ranks[0].step)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 1  # the first block was read
