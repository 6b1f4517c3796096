"""``LocalTransport``: this machine as a node, for the embedded default cluster and for tests.

Same contract as the SSH transport: ``sh -c`` commands, relative paths under ``base_dir`` (the
stand-in for a login directory), a timeout that leaves nothing behind. Each command runs in its
own process group so a timeout or a closed stream can kill everything it started (except what it
detached with ``setsid``, exactly as on an SSH node).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from mfctl.remote.base import NodeUnreachable, RunResult


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class LocalTransport:
    """This machine, with ``base_dir`` as the working directory of every command."""

    def __init__(self, base_dir: str | os.PathLike[str], host: str = "localhost") -> None:
        self.host = host
        self.base_dir = Path(base_dir)
        self._streams: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()

    def _path(self, remote_path: str) -> Path:
        return self.base_dir / os.path.expanduser(remote_path)

    def run(self, command: str, timeout: float | None = None) -> RunResult:
        proc = subprocess.Popen(
            ["sh", "-c", command], cwd=self.base_dir, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # Kill the whole group: a grandchild holding the pipes would block communicate() forever.
            _kill_group(proc)
            proc.communicate()
            raise NodeUnreachable(self.host, f"command did not finish within {timeout:g}s") from None
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
        return RunResult(
            self.host, proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        )

    def put(self, local_path: str, remote_path: str, mode: int | None = None) -> None:
        target = self._path(remote_path)
        with open(local_path, "rb") as src:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if mode is not None else 0o666)
            with os.fdopen(fd, "wb") as dst:
                if mode is not None:
                    os.fchmod(dst.fileno(), mode)  # an existing file keeps its old mode otherwise
                while chunk := src.read(1 << 16):
                    dst.write(chunk)

    def stream(self, command: str) -> Iterator[str]:
        proc = subprocess.Popen(
            ["sh", "-c", command], cwd=self.base_dir, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        with self._lock:
            self._streams.add(proc)
        return self._lines(proc)

    def _lines(self, proc: subprocess.Popen[bytes]) -> Iterator[str]:
        assert proc.stdout is not None
        try:
            for raw in proc.stdout:  # readline-based: yields each line as soon as it is written
                yield raw.decode("utf-8", "replace").rstrip("\n").rstrip("\r")
        except ValueError:
            pass  # stdout closed by close() from another thread
        finally:
            if proc.poll() is None:
                _kill_group(proc)
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
            with self._lock:
                self._streams.discard(proc)

    def close(self) -> None:
        """Stop open streams (their commands and everything they started in their group)."""
        with self._lock:
            streams = list(self._streams)
        for proc in streams:
            _kill_group(proc)

    def __repr__(self) -> str:
        return f"LocalTransport({str(self.base_dir)!r})"
