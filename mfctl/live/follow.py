"""Follow a job's logs: one connection per node streaming new lines of every worker log.

Each node runs ``node/logtail.py`` over a single channel; lines arrive tagged with their file
and end offset. After a disconnect the follower reconnects and resumes from the offsets it has,
so no line is lost and none is counted twice. Lines are handed on in batches (every ~100 ms),
never one by one, so a busy cluster cannot flood the consumer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mfctl.jobs.backend import NodeLogs
from mfctl.jobs.nodeops import logtail_command
from mfctl.metrics.logdir import rank_of_path
from mfctl.metrics.types import LogLine
from mfctl.node.logtail import split_tagged
from mfctl.remote.base import Transport


@dataclass
class FollowStats:
    lines: int = 0
    reconnects: int = 0
    connected: bool = False
    last_error: str | None = None
    last_seen: float = 0.0


class NodeFollower(threading.Thread):
    """Streams one node's log lines into ``sink`` (called with a list of LogLine) until stopped."""

    def __init__(self, host: str, connect: Callable[[], Transport], python: str, setup: str | None,
                 log_dir: str, sink: Callable[[list[LogLine]], None], retry_s: float = 1.0,
                 offsets: dict[str, int] | None = None, job_dir: str | None = None) -> None:
        super().__init__(name=f"follow-{host}", daemon=True)
        self.host = host
        self._connect = connect
        self._python = python
        self._setup = setup
        self._log_dir = log_dir
        self._job_dir = job_dir
        self._sink = sink
        self._retry_s = retry_s
        self.offsets: dict[str, int] = dict(offsets or {})
        self.stats = FollowStats()
        self._halt = threading.Event()
        self._transport: Transport | None = None

    def stop(self) -> None:
        self._halt.set()
        t = self._transport
        if t is not None:
            try:
                t.close()
            except Exception:  # closing races with the reader: best effort
                pass

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self._transport = self._connect()
                self._stream(self._transport)
            except Exception as exc:  # any failure means: reconnect
                self.stats.last_error = str(exc) or type(exc).__name__
            finally:
                self.stats.connected = False
                if self._transport is not None:
                    try:
                        self._transport.close()
                    except Exception:
                        pass
                    self._transport = None
            if self._halt.wait(self._retry_s):
                break
            self.stats.reconnects += 1

    def _stream(self, transport: Transport) -> None:
        cmd = logtail_command(self._python, self._setup, self._log_dir, self.offsets, job_dir=self._job_dir)
        batch: list[LogLine] = []
        ranks: dict[str, int | None] = {}  # file name -> rank, worked out once per file
        last_flush = time.monotonic()
        try:
            for raw in transport.stream(cmd):
                self.stats.connected = True
                self.stats.last_seen = time.time()
                if self._halt.is_set():
                    break
                tagged = split_tagged(raw) if raw and raw[0] != "#" else None
                if tagged is not None:
                    name, offset, text = tagged
                    if offset <= self.offsets.get(name, 0):
                        continue  # already seen before a reconnect
                    self.offsets[name] = offset
                    rank = ranks.get(name, -1)
                    if rank == -1:
                        rank = ranks[name] = rank_of_path(name)
                    batch.append(LogLine(self.host, rank, text))
                now = time.monotonic()
                if batch and (now - last_flush >= 0.1 or len(batch) >= 5000):
                    self._sink(batch)
                    self.stats.lines += len(batch)
                    batch = []
                    last_flush = now
        finally:
            # The offsets already cover these lines: they must reach the sink even when the
            # connection dies mid-batch, or they would be skipped after the reconnect.
            if batch:
                self._sink(batch)
                self.stats.lines += len(batch)
        self.stats.last_error = self.stats.last_error or "stream ended"


@dataclass
class JobFollower:
    """Followers for every node of a job record."""

    followers: list[NodeFollower] = field(default_factory=list)

    @classmethod
    def for_sources(cls, sources: Sequence[NodeLogs], sink: Callable[[list[LogLine]], None],
                    offsets: dict[str, dict[str, int]] | None = None,
                    retry_s: float = 1.0) -> JobFollower:
        """One follower per node the backend names (``Backend.log_sources()``)."""
        return cls([NodeFollower(src.host, src.connect, src.python, src.setup, src.log_dir, sink,
                                 retry_s=retry_s, offsets=(offsets or {}).get(src.host), job_dir=src.job_dir)
                    for src in sources])

    def start(self) -> None:
        for f in self.followers:
            f.start()

    def stop(self) -> None:
        for f in self.followers:
            f.stop()
        for f in self.followers:
            f.join(timeout=5)
