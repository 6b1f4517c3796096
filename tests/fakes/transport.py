"""A scripted ``Transport`` for unit tests of node operations: no node, no process.

A test gives the replies (``on(pattern, stdout, ...)``: the first rule whose regex is found in the
command answers it; unmatched commands exit 127) and reads back what was asked: the commands run,
the files put (path -> (content, mode)). ``unreachable=True`` makes every call raise
``NodeUnreachable`` as a dead node would. A fake only for unit tests of the pure parts around the
transport; the same operations run against real sshd nodes in tests/integration.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mfctl.remote.base import NodeUnreachable, RunResult

Reply = RunResult | Callable[[str], RunResult]


@dataclass
class ScriptedTransport:
    host: str
    unreachable: bool = False
    rules: list[tuple[re.Pattern[str], Reply]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    files: dict[str, tuple[bytes, int | None]] = field(default_factory=dict)
    streamed: list[str] = field(default_factory=list)
    closed: bool = False

    def on(self, pattern: str, stdout: str = "", exit_code: int = 0, stderr: str = "") -> ScriptedTransport:
        self.rules.append((re.compile(pattern, re.S), RunResult(self.host, exit_code, stdout, stderr)))
        return self

    def on_call(self, pattern: str, reply: Callable[[str], RunResult]) -> ScriptedTransport:
        self.rules.append((re.compile(pattern, re.S), reply))
        return self

    def _check(self) -> None:
        if self.unreachable:
            raise NodeUnreachable(self.host, "connection refused")

    def run(self, command: str, timeout: float | None = None) -> RunResult:
        self._check()
        self.commands.append(command)
        for pattern, reply in self.rules:
            if pattern.search(command):
                return reply(command) if callable(reply) else reply
        return RunResult(self.host, 127, "", f"no scripted reply for: {command[:80]}")

    def put(self, local_path: str, remote_path: str, mode: int | None = None) -> None:
        self._check()
        self.files[remote_path] = (Path(local_path).read_bytes(), mode)

    def stream(self, command: str) -> Iterator[str]:
        self._check()
        self.streamed.append(command)
        yield from self.run(command).stdout.splitlines()

    def close(self) -> None:
        self.closed = True
