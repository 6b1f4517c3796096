"""Follow a local directory of msrun logs as it grows: ``mfctl watch --logs DIR`` on a live job.

On a shared filesystem (the log dir of a Slurm job, an NFS mount) the logs are plain local files,
so no SSH channel is needed: one thread polls the directory. It works like the SSH follower
(``follow.py``) and hands the same ``LogLine`` batches to the same sink:

- per-file byte offsets: each pass reads only what was appended since the last one;
- a partial last line (a write caught half-way) stays unread until its newline arrives;
- a file that shrank, or whose inode changed (truncated, rotated, replaced), is read from the start;
- new files are picked up by a rescan every ``scan_s``; which file is which rank is
  ``metrics.logdir.find_logs`` (the rule ``--once`` reads the directory with);
- lines go out in batches, one per pass (every ``interval_s``) or every ``batch_lines`` lines
  while catching up, never one by one; or, with a ``block_sink``, as the bytes read (up to 4 MiB
  of complete lines, cut where no step line is parted from its progress line while more of the
  file is waiting: ``metrics.logdir.pair_cut``), which the metrics state takes whole (its fast
  path: catching up on a long run's logs is then as fast as ``watch --once``).

Polling, not inotify: inotify does not see writes made on another node of a network filesystem,
which is the case this exists for. A pass costs one ``stat`` per file (~2.5 ms per 1024 files).
On NFS what another node wrote shows once this client's attribute cache lets it (``acregmin``,
3 s by default), as for ``tail -f``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mfctl.metrics.logdir import find_logs, pair_cut
from mfctl.metrics.types import LogLine

# Big reads, few calls; a file longer than this is read over several chunks in the same pass.
CHUNK_BYTES = 4 << 20
# The tree is listed again at least this often even when no directory's mtime moved (a filesystem
# whose directory mtimes are coarse or cached).
FULL_SCAN_S = 10.0


@dataclass
class DirFollowStats:
    lines: int = 0  # lines handed to a line sink (a block sink's lines are not counted: it costs)
    bytes: int = 0  # bytes read and handed on
    passes: int = 0
    files: int = 0
    rotations: int = 0
    last_error: str | None = None


@dataclass
class _File:
    rank: int | None
    offset: int = 0  # just after the last complete line handed on
    inode: tuple[int, int] | None = None


class LogDirFollower(threading.Thread):
    """Streams the logs under ``directory`` into ``sink`` (lists of ``LogLine``) until stopped.

    ``poll()`` is one pass and may be called directly (tests, a single catch-up read); ``start()``
    runs passes every ``interval_s`` on a daemon thread. ``node`` labels the lines (None: the
    directory is not one node's)."""

    def __init__(self, directory: str | os.PathLike[str], sink: Callable[[list[LogLine]], None], *,
                 interval_s: float = 0.2, scan_s: float = 1.0, batch_lines: int = 20000,
                 node: str | None = None,
                 block_sink: Callable[[int | None, bytes, str | None], None] | None = None) -> None:
        """``sink``: batches of lines; ``block_sink`` (when given, instead): ``(rank, bytes of
        complete lines, node)`` per block read."""
        super().__init__(name=f"follow-{Path(directory).name}", daemon=True)
        self.directory = Path(directory)
        self._sink = sink
        self._block_sink = block_sink
        self.interval_s = interval_s
        self.scan_s = scan_s
        self.batch_lines = batch_lines
        self.node = node
        self._files: dict[str, _File] = {}
        self._next_scan = 0.0
        self._next_full_scan = 0.0
        self._dir_mtimes: dict[str, int] = {}
        self._halt = threading.Event()
        self._poll_lock = threading.Lock()  # poll() from a test and from the thread never overlap
        self.caught_up = threading.Event()  # set once a pass has read every file to its end
        self.stats = DirFollowStats()

    @property
    def files(self) -> dict[str, int | None]:
        """{path: rank} of the files followed so far, in reading order."""
        return {path: f.rank for path, f in list(self._files.items())}

    @property
    def offsets(self) -> dict[str, int]:
        return {path: f.offset for path, f in list(self._files.items())}

    def _dirs_unchanged(self) -> bool:
        for path, mtime in self._dir_mtimes.items():
            try:
                if os.stat(path).st_mtime_ns != mtime:
                    return False
            except OSError:
                return False
        return bool(self._dir_mtimes)

    def scan(self, force: bool = True) -> None:
        """Pick up files that appeared since the last scan (offsets of known files are kept).

        Unless ``force``d, the directory tree is walked again only when one of its directories'
        mtimes moved (a file or directory was created, renamed or removed in it) or every
        ``FULL_SCAN_S``: one stat per directory instead of listing and matching every file name
        (7 ms a second at 1024 files)."""
        now = time.monotonic()
        self._next_scan = now + self.scan_s
        if not force and now < self._next_full_scan and self._dirs_unchanged():
            return
        self._next_full_scan = now + FULL_SCAN_S
        mtimes = {}
        for dirpath, _dirnames, _filenames in os.walk(self.directory):
            try:  # taken before find_logs lists them: a file created in between moves the mtime
                mtimes[dirpath] = os.stat(dirpath).st_mtime_ns
            except OSError:
                pass
        self._dir_mtimes = mtimes
        found = find_logs(self.directory)
        known = self._files
        if len(found) != len(known) or any(str(p) not in known for p, _ in found):
            # Rebuilt in find_logs' order so that worker logs stay ahead of the scheduler's.
            self._files = {str(p): known.get(str(p)) or _File(rank) for p, rank in found}
            self.stats.files = len(self._files)

    def poll(self) -> int:
        """One pass over every file; returns the number of bytes read and handed on."""
        with self._poll_lock:
            if time.monotonic() >= self._next_scan:
                self.scan(force=False)
            batch: list[LogLine] = []
            before = self.stats.bytes
            for path, f in list(self._files.items()):
                try:
                    st = os.stat(path)
                except OSError:
                    continue  # gone for now (rotated away): it may come back
                inode = (st.st_dev, st.st_ino)
                if st.st_size < f.offset or (f.inode is not None and inode != f.inode):
                    f.offset = 0  # truncated or replaced: the new content from its start
                    self.stats.rotations += 1
                f.inode = inode
                if st.st_size == f.offset:
                    continue
                try:
                    if self._block_sink is not None:
                        self._read_blocks(path, f, st.st_size)
                    else:
                        self._read(path, f, st.st_size, batch)
                except OSError as exc:
                    self.stats.last_error = f"{path}: {exc}"
            self._flush(batch)
            self.stats.passes += 1
            self.caught_up.set()
            return self.stats.bytes - before

    def _read(self, path: str, f: _File, size: int, batch: list[LogLine]) -> None:
        node, rank, append = self.node, f.rank, batch.append
        with open(path, "rb") as handle:
            handle.seek(f.offset)
            while f.offset < size:
                data = handle.read(min(size - f.offset, CHUNK_BYTES))
                if not data:
                    break
                used = data.rfind(b"\n") + 1
                if used == 0:
                    if len(data) < CHUNK_BYTES:
                        break  # a partial last line: wait for its newline
                    lines = [data.decode("utf-8", errors="replace")]  # a line longer than a chunk
                    used = len(data)
                else:
                    text = data[:used].decode("utf-8", errors="replace")
                    if "\r" in text:  # the same line breaks as reading the file in text mode (--once)
                        text = text.replace("\r\n", "\n").replace("\r", "\n")
                    lines = text.split("\n")
                    lines.pop()  # the empty string after the last newline
                f.offset += used
                self.stats.bytes += used
                for line in lines:
                    append(LogLine(node, rank, line))
                    if len(batch) >= self.batch_lines:
                        self._flush(batch[:])  # catching up: the sink holds its lock per batch
                        batch.clear()
                if used < len(data):
                    handle.seek(f.offset)  # re-read the partial tail with the next chunk

    def _read_blocks(self, path: str, f: _File, size: int) -> None:
        sink = self._block_sink
        assert sink is not None
        with open(path, "rb") as handle:
            handle.seek(f.offset)
            while f.offset < size:
                data = handle.read(min(size - f.offset, CHUNK_BYTES))
                if not data:
                    break
                # While more is waiting, a block ends at a pair boundary; at the end of what was
                # written, every complete line goes (a step line's progress line may never come).
                used = pair_cut(data) if f.offset + len(data) < size else data.rfind(b"\n") + 1
                if used == 0:
                    if len(data) < CHUNK_BYTES:
                        break  # a partial last line: wait for its newline
                    used = len(data)  # a line longer than a block
                block = data[:used] if used < len(data) else data
                if b"\r" in block:  # the same line breaks as reading the file in text mode (--once)
                    block = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                f.offset += used
                self.stats.bytes += used
                sink(f.rank, block, self.node)
                if used < len(data):
                    handle.seek(f.offset)  # re-read the rest with the next block

    def _flush(self, batch: list[LogLine]) -> None:
        if batch:
            self._sink(batch)
            self.stats.lines += len(batch)

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.poll()
            except Exception as exc:  # a bad pass must not end the dashboard's feed
                self.stats.last_error = str(exc) or type(exc).__name__
            finally:
                self.caught_up.set()  # as far as it goes: what was read is all there is
            self._halt.wait(self.interval_s)

    def stop(self, timeout: float = 5.0) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout)
