"""LocalTransport (this machine as a node) and run_on_all's per-host outcomes."""

from __future__ import annotations

import os
import shlex
import stat
import threading
import time
from pathlib import Path

import pytest

from mfctl.remote.base import NodeUnreachable, RunResult
from mfctl.remote.group import run_on_all
from mfctl.remote.local import LocalTransport

pytestmark = pytest.mark.timeout(60)


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_run_captures_exit_code_and_output_in_base_dir(tmp_path):
    t = LocalTransport(tmp_path)
    r = t.run("pwd; echo oops >&2; exit 3")
    assert r == RunResult("localhost", 3, f"{tmp_path}\n", "oops\n")
    assert not r.ok
    assert t.run("true").ok


def test_run_timeout_raises_and_kills_the_whole_group(tmp_path):
    t = LocalTransport(tmp_path)
    start = time.monotonic()
    # The background sleep keeps stdout open: without killing the group, this would hang 30 s.
    with pytest.raises(NodeUnreachable, match=r"within 0\.5s") as err:
        t.run("sleep 30 & echo $! > bg.pid; sleep 30", timeout=0.5)
    assert time.monotonic() - start < 5
    assert err.value.host == "localhost"
    assert wait_until(lambda: not pid_alive(int((tmp_path / "bg.pid").read_text())))


def test_detached_process_returns_at_once_and_survives(tmp_path):
    t = LocalTransport(tmp_path)
    start = time.monotonic()
    r = t.run("nohup setsid sh -c 'echo $$ > pidfile; exec sleep 60' > log 2>&1 < /dev/null &", timeout=10)
    assert r.ok and time.monotonic() - start < 5
    assert wait_until(lambda: (tmp_path / "pidfile").exists() and (tmp_path / "pidfile").read_text().strip() != "")
    pid = int((tmp_path / "pidfile").read_text())
    try:
        assert pid_alive(pid)
        assert os.getpgid(pid) == pid
    finally:
        os.killpg(pid, 15)
    assert wait_until(lambda: not pid_alive(pid))


def test_put_copies_with_mode_relative_to_base_dir(tmp_path):
    src = tmp_path / "src.txt"
    src.write_text("hello\n")
    base = tmp_path / "node"
    base.mkdir()
    t = LocalTransport(base)
    t.put(str(src), "copy.txt", mode=0o600)
    assert (base / "copy.txt").read_text() == "hello\n"
    assert stat.S_IMODE((base / "copy.txt").stat().st_mode) == 0o600
    t.put(str(src), "copy.txt", mode=0o644)  # an existing file takes the new mode
    assert stat.S_IMODE((base / "copy.txt").stat().st_mode) == 0o644
    t.put(str(src), str(tmp_path / "absolute.txt"))
    assert (tmp_path / "absolute.txt").read_text() == "hello\n"
    with pytest.raises(FileNotFoundError):
        t.put(str(src), "missing-dir/copy.txt")


def test_stream_yields_lines_as_they_come(tmp_path):
    t = LocalTransport(tmp_path)
    arrivals = []
    for line in t.stream("for i in 1 2 3; do echo line$i; echo noise >&2; sleep 0.3; done; printf tail"):
        arrivals.append((time.monotonic(), line))
    assert [line for _, line in arrivals] == ["line1", "line2", "line3", "tail"]
    assert arrivals[2][0] - arrivals[0][0] > 0.4


def test_close_stops_a_stream_and_its_command(tmp_path):
    t = LocalTransport(tmp_path)
    (tmp_path / "f.log").write_text("first\n")
    lines = t.stream("echo $$ > tail.pid; exec tail -n +1 -F f.log")
    assert next(lines) == "first"
    pid = int((tmp_path / "tail.pid").read_text())
    threading.Timer(0.2, t.close).start()
    assert list(lines) == []
    assert wait_until(lambda: not pid_alive(pid))


def test_abandoned_stream_kills_its_command(tmp_path):
    t = LocalTransport(tmp_path)
    lines = t.stream("echo $$ > loop.pid; while :; do echo tick; sleep 0.05; done")
    assert next(lines) == "tick"
    pid = int((tmp_path / "loop.pid").read_text())
    lines.close()  # what a consumer breaking out of a for loop does
    assert wait_until(lambda: not pid_alive(pid))


@pytest.mark.parametrize(
    "value",
    ["a; touch MARK", "$(touch MARK)", "`touch MARK`", "'; touch MARK; '", "two  spaces", "new\nline", "", "-n"],
)
def test_quoted_values_are_data_not_code(tmp_path, value):
    t = LocalTransport(tmp_path)
    assert t.run(shlex.join(["printf", "%s", value])).stdout == value
    assert not (tmp_path / "MARK").exists()


class FakeTransport:
    def __init__(self, host: str) -> None:
        self.host = host


def test_run_on_all_keeps_every_hosts_outcome():
    def fn(t: FakeTransport) -> str:
        if t.host == "b":
            raise NodeUnreachable("b", "connection refused")
        if t.host == "c":
            raise ValueError("bad output")
        return t.host.upper()

    results = run_on_all([FakeTransport(h) for h in "abcd"], fn)  # type: ignore[type-var]
    assert list(results) == ["a", "b", "c", "d"]
    assert results["a"] == "A" and results["d"] == "D"
    assert isinstance(results["b"], NodeUnreachable) and isinstance(results["c"], ValueError)
    assert set(results.failed) == {"b", "c"}


def test_run_on_all_runs_in_parallel_within_fanout():
    barrier = threading.Barrier(8, timeout=10)
    results = run_on_all([FakeTransport(f"h{i}") for i in range(8)], lambda t: barrier.wait() >= 0)  # type: ignore[type-var]
    assert all(r is True for r in results.values())

    active = peak = 0
    lock = threading.Lock()

    def counted(t: FakeTransport) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.02)
        with lock:
            active -= 1

    run_on_all([FakeTransport(f"h{i}") for i in range(20)], counted, fanout=3)  # type: ignore[type-var]
    assert 1 <= peak <= 3


def test_run_on_all_rejects_duplicate_hosts_and_handles_empty():
    with pytest.raises(ValueError, match="duplicate hosts a"):
        run_on_all([FakeTransport("a"), FakeTransport("a")], lambda t: None)  # type: ignore[type-var]
    assert run_on_all([], lambda t: None) == {}
