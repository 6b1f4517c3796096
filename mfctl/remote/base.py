"""The transport contract: how mfctl reaches a node.

Two implementations: ``LocalTransport`` (this machine, plain subprocesses and file copies) and
``SshTransport`` (Fabric/paramiko). Everything above this layer (launch, status, stop, log
streaming) is written against ``Transport`` only, so the same code drives the embedded default
cluster and a real one.

Commands are shell strings run by ``sh -c`` on the node; callers build them with ``shlex.quote`` /
``shlex.join`` only. Remote paths are strings; a relative one is relative to the login directory
(the user's home on SSH nodes, the given base directory for the local transport).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RunResult:
    """Outcome of one command on one node."""

    host: str
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class NodeUnreachable(Exception):
    """The node could not be reached (connection refused, timeout, auth, host key)."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host}: {reason}")
        self.host = host
        self.reason = reason


class Transport(Protocol):
    """One node. Implementations are not shared between threads."""

    #: The label used in messages and tables: the hostfile's host (or alias).
    host: str

    def run(self, command: str, timeout: float | None = None) -> RunResult:
        """Run ``command`` with ``sh -c``; never raises on a non-zero exit (see ``exit_code``).

        Raises ``NodeUnreachable`` when the node cannot be reached or the timeout expires.
        """
        ...

    def put(self, local_path: str, remote_path: str, mode: int | None = None) -> None:
        """Copy one local file to ``remote_path`` (its directory must exist)."""
        ...

    def stream(self, command: str) -> Iterator[str]:
        """Run a long command and yield its stdout line by line (without newline) as it comes.

        Used for following logs; the iterator ends when the command ends or ``close`` is called.
        """
        ...

    def close(self) -> None:
        ...
