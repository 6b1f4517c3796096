"""Feed a directory of msrun / MindFormers logs into a ``ClusterState`` (the file-reading adapter).

Layout it understands, at any depth under the directory:

- ``worker_N.log``: msrun's log of global rank N (stdout + stderr of the worker);
- ``scheduler.log``: msrun's scheduler log (rank ``None``);
- ``rank_N/info.log``: MindFormers' own file log of rank N, read only when there is no
  ``worker_N.log`` for N (it repeats what the worker log says, in the other logger format).

Worker logs are read before the scheduler's so the pid -> rank map (from the worker logs) is
known when msrun's "Worker process <pid> exit with exception" is read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Union

from mfctl.metrics.parser import STEP_MARK
from mfctl.metrics.state import ClusterState

__all__ = ["feed_file", "find_logs", "load_log_dir", "pair_cut", "rank_of_path", "ranks_of_files"]

_WORKER_RE = re.compile(r"worker_(\d{1,9})\.log")
_RANK_DIR_RE = re.compile(r"rank_(\d{1,9})")

# Big reads, few calls: each chunk (up to its last newline) is fed in one feed_chunk.
CHUNK_BYTES = 1 << 22

_STEP_MARK = STEP_MARK.encode()

PathLike = Union[str, "os.PathLike[str]"]


def rank_of_path(path: PathLike) -> int | None:
    """``worker_N.log`` -> N, ``rank_N/info.log`` -> N; ``scheduler.log`` (and anything else) -> None."""
    p = Path(path)
    m = _WORKER_RE.fullmatch(p.name)
    if m is not None:
        return int(m.group(1))
    if p.name == "info.log":
        m = _RANK_DIR_RE.fullmatch(p.parent.name)
        if m is not None:
            return int(m.group(1))
    return None


def pair_cut(block: bytes, lo: int = 0, hi: int | None = None) -> int:
    """Where to end the block ``block[lo:hi]``: just after its last
    newline, or before its last line when that line holds a step mark. A step line is followed by
    its progress line, and the chunk path reads the two as one pair: a block that ends between
    them loses the fast path (for itself and for the next block, which starts with a progress line
    alone), and on a long run every 4 MiB block would end so half the time. The line carried over
    goes with the next block. ``lo``: no complete line in the block yet."""
    hi = len(block) if hi is None else hi
    end = block.rfind(b"\n", lo, hi) + 1
    if end > lo:
        start = block.rfind(b"\n", lo, end - 1) + 1
        if start > lo and block.find(_STEP_MARK, start, end) >= 0:
            return start
        return end
    return lo


def feed_file(path: PathLike, state: ClusterState, rank: int | None, node: str | None = None,
              block_bytes: int | None = None) -> int:
    """Feed one log file as ``rank``; returns the number of bytes read.

    Fed whole blocks of ``block_bytes`` (default ``CHUNK_BYTES``) at a time, as bytes
    (``ClusterState.feed_chunk``): most of a log is never decoded. Each block ends at a line that
    does not part a step line from its progress line (``pair_cut``); the rest goes with the next
    block. Blocks are read at their offsets (``os.pread``), each once, up to that line: each byte
    is copied once, into its block (as cheap as mapping the file, and a read loop that slices
    and joins its blocks costs 10% of the command). The file is not mapped: one truncated while
    mapped (a job restarted over its logs while they are read) would end the process (SIGBUS);
    a read of a file that shrank returns less, and the rest is read as it is then;
    line ends are read as text mode reads them ("\r\n" and "\r" end a line too: a file with a
    "\r" is read from there on through reads and replaces). (Not a line count: counting newlines
    costs a quarter of the parsing.)
    """
    step = block_bytes or CHUNK_BYTES
    with open(path, "rb") as handle:
        size = _feed_blocks(handle.fileno(), state, rank, node, step)  # a pipe: none (its size is 0)
        if size:
            handle.seek(size)
        rest = b""
        while True:
            chunk = handle.read(step)
            if not chunk:
                break
            size += len(chunk)
            if rest:
                chunk = rest + chunk
            tail = b""
            if b"\r" in chunk:
                if chunk.endswith(b"\r"):  # may be the first half of "\r\n"
                    tail, chunk = b"\r", chunk[:-1]
                chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            cut = pair_cut(chunk)
            rest = chunk[cut:] + tail if cut < len(chunk) else tail
            if cut:
                state.feed_chunk(rank, chunk[:cut] if cut < len(chunk) else chunk, node)
    if rest:
        state.feed_chunk(rank, rest.replace(b"\r", b"\n"), node)
    return size


# The last bytes of a block searched first for where to end it (``pair_cut``), so that the block
# is read once, to that end: many lines of any log.
_PROBE = 1 << 16


def _feed_blocks(fd: int, state: ClusterState, rank: int | None, node: str | None, step: int) -> int:
    """``feed_file``'s blocks, each read once (``os.pread``) up to where ``pair_cut`` ends it (found
    in the block's last bytes); the end of the file is fed whole, a partial last line too.
    Returns where it stopped: the end, or the start of the first block holding a "\r", of a
    line longer than the probe, or of what the file no longer holds (the caller reads on from
    there)."""
    size = os.fstat(fd).st_size
    a = 0
    while a < size:
        b = a + step
        if b < size:
            lo = max(a, b - _PROBE)
            probe = os.pread(fd, b - lo, lo)
            if len(probe) < b - lo:  # the file shrank
                return a
            end = probe.rfind(b"\n") + 1
            start = probe.rfind(b"\n", 0, end - 1) + 1 if end else 0
            if start:  # the block's last whole line is in the probe: pair_cut's answer
                b = lo + (start if probe.find(_STEP_MARK, start, end) >= 0 else end)
            elif lo == a:  # the probe is the block
                b = a + pair_cut(probe)
            if b == a or (not start and lo > a):  # a line longer than the block or the probe
                return a
        else:
            b = size
        data = os.pread(fd, b - a, a)
        if len(data) < b - a or b"\r" in data:
            return a
        state.feed_chunk(rank, data, node)
        a = b
    return size


def find_logs(directory: PathLike) -> list[tuple[Path, int | None]]:
    """The logs under ``directory`` in reading order, as (path, rank): worker logs by rank, then
    each ``rank_N/info.log`` whose rank has no worker log, then the scheduler logs (rank None).
    The one rule of which file is which rank, for reading a directory once and for following it."""
    workers: list[tuple[int, Path]] = []
    schedulers: list[Path] = []
    infos: list[tuple[int, Path]] = []
    for dirpath, _dirnames, filenames in os.walk(directory):
        for name in filenames:
            path = Path(dirpath) / name
            if name == "scheduler.log":
                schedulers.append(path)
                continue
            rank = rank_of_path(path)
            if rank is None:
                continue
            (infos if name == "info.log" else workers).append((rank, path))
    have = {rank for rank, _ in workers}
    ordered: list[tuple[Path, int | None]] = [
        (path, rank) for rank, path in sorted(workers) + sorted(i for i in infos if i[0] not in have)]
    ordered.extend((path, None) for path in sorted(schedulers))
    return ordered


def load_log_dir(directory: PathLike, state: ClusterState, node: str | None = None) -> dict[str, int | None]:
    """Feed every log under ``directory`` into ``state``; returns {path: rank} of the files read."""
    read: dict[str, int | None] = {}
    for path, rank in find_logs(directory):
        feed_file(path, state, rank, node)
        read[str(path)] = rank
    return read


def ranks_of_files(files: dict[str, int | None]) -> list[int]:
    """The ranks a {path: rank} map of logs holds: a scheduler log (rank None) is no device, and
    a rank with both a worker log and an info.log is one."""
    return sorted({rank for rank in files.values() if rank is not None})
