"""Follow a job's logs: one connection per node streaming new lines of every worker log.

Each node runs ``node/logtail.py`` over a single channel; lines arrive tagged with their file
and end offset. After a disconnect the follower reconnects and resumes from the offsets it has,
so no line is lost and none is counted twice. Lines are handed on in batches (every ~100 ms),
never one by one, so a busy cluster cannot flood the consumer.
"""

from __future__ import annotations

import posixpath
import shlex
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Callable

from mfctl.cluster.hostfile import HostEntry
from mfctl.metrics.logdir import rank_of_path
from mfctl.remote.base import Transport


@dataclass(frozen=True, slots=True)
class LogLine:
    node: str | None  # None: a local log directory that is not one node's
    rank: int | None  # None: scheduler.log, msrun's own output
    text: str


@dataclass
class FollowStats:
    lines: int = 0
    reconnects: int = 0
    connected: bool = False
    last_error: str | None = None
    last_seen: float = 0.0


#: msrun's own output (worker exits, teardown) lands in the launch script's output file.
MSRUN_OUT = "launch.out"


def logtail_command(python: str, setup: str | None, log_dir: str, offsets: dict[str, int],
                    all_lines: bool = False, once: bool = False, job_dir: str | None = None) -> str:
    script = resources.files("mfctl.node").joinpath("logtail.py").read_text(encoding="utf-8")
    argv = [python, "-u", "-c", script, log_dir]
    if job_dir is not None:
        argv.append(f"--extra={MSRUN_OUT}={posixpath.join(job_dir, 'run', MSRUN_OUT)}")
    argv += [f"--offset={name}={pos}" for name, pos in sorted(offsets.items())]
    if all_lines:
        argv.append("--all")
    if once:
        argv.append("--once")
    command = shlex.join(argv)
    if setup:
        command = f"{setup} >/dev/null 2>&1; exec {command}"
    return command


def resolve_log_dir(node: dict) -> str:
    log_dir = node["log_dir"]
    return log_dir if log_dir.startswith("/") else posixpath.join(node["job_dir"], log_dir)


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
            except Exception:  # noqa: BLE001 - closing races with the reader: best effort
                pass

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self._transport = self._connect()
                self._stream(self._transport)
            except Exception as exc:  # noqa: BLE001 - any failure means: reconnect
                self.stats.last_error = str(exc) or type(exc).__name__
            finally:
                self.stats.connected = False
                if self._transport is not None:
                    try:
                        self._transport.close()
                    except Exception:  # noqa: BLE001
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
                if raw and raw[0] != "#":
                    name, _, rest = raw.partition("\t")
                    pos, _, text = rest.partition("\t")
                    if not pos.isdigit():
                        continue
                    offset = int(pos)
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
    def for_record(cls, record, sink: Callable[[list[LogLine]], None],
                   offsets: dict[str, dict[str, int]] | None = None,
                   retry_s: float = 1.0) -> "JobFollower":
        from mfctl.jobs.status import entries_of
        from mfctl.remote.connect import SshOptions, open_transport

        opts = SshOptions.from_json(record.ssh)
        entries = {e.label: e for e in entries_of(record)}
        python = record.spec.get("python", "python3")
        setup = record.spec.get("setup")
        out = cls()
        for node in record.plan["nodes"]:
            entry: HostEntry = entries[node["host"]]
            out.followers.append(NodeFollower(
                node["host"], lambda e=entry: open_transport(e, record.job_dir, opts), python, setup,
                resolve_log_dir(node), sink, retry_s=retry_s, offsets=(offsets or {}).get(node["host"]),
                job_dir=node["job_dir"]))
        return out

    def start(self) -> None:
        for f in self.followers:
            f.start()

    def stop(self) -> None:
        for f in self.followers:
            f.stop()
        for f in self.followers:
            f.join(timeout=5)
