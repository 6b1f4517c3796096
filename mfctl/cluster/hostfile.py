"""Hosts files: one node per line, in rank order.

Accepted forms (``#`` starts a comment, blank lines are skipped)::

    node1                 # a host name, address or ssh_config alias
    ml@node2              # with a user
    ml@node3:2222         # and a port
    node4 slots=8         # DeepSpeed style: slots = devices on that node

Pure: parses text handed to it, so tests and the CLI share one path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mfctl.errors import BadInput

LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})

_HOST_RE = re.compile(
    r"^(?:(?P<user>[A-Za-z_][A-Za-z0-9._-]*)@)?"
    r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>[^\s]+))?$"
)


@dataclass(frozen=True, slots=True)
class HostEntry:
    """One node as the hosts file names it."""

    host: str
    user: str | None = None
    port: int | None = None
    slots: int | None = None
    line: int = 0

    @property
    def label(self) -> str:
        """How the node is shown: the host as written, with user and port if given."""
        text = self.host
        if self.user:
            text = f"{self.user}@{text}"
        if self.port:
            text = f"{text}:{self.port}"
        return text

    @property
    def is_local(self) -> bool:
        return self.host in LOCAL_NAMES and self.user is None and self.port is None


def parse_hostfile(text: str, filename: str) -> list[HostEntry]:
    """Parse a hosts file; raise ``BadInput`` naming ``file:line`` on the first problem."""
    entries: list[HostEntry] = []
    seen: dict[tuple[str, int | None], int] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        match = _HOST_RE.match(fields[0])
        if match is None or len(fields) > 2:
            raise BadInput(
                f"{filename}:{lineno}: cannot read {line!r}; write one node per line as 'host', "
                "'user@host', 'user@host:port' or 'host slots=N'")
        slots: int | None = None
        if len(fields) == 2:
            key, sep, value = fields[1].partition("=")
            if key != "slots" or not sep:
                raise BadInput(
                    f"{filename}:{lineno}: unknown option {fields[1]!r}; only 'slots=N' may follow the host")
            if not value.isdigit() or int(value) < 1:
                raise BadInput(f"{filename}:{lineno}: slots must be a positive integer, got {value!r}")
            slots = int(value)
        port: int | None = None
        if match["port"] is not None:
            if not match["port"].isdigit() or not 1 <= int(match["port"]) <= 65535:
                raise BadInput(
                    f"{filename}:{lineno}: port must be a number from 1 to 65535, got {match['port']!r}")
            port = int(match["port"])
        host = match["host"].strip("[]")
        key_ = (host.lower(), port)
        if key_ in seen:
            raise BadInput(
                f"{filename}:{lineno}: host {host!r} is listed twice (lines {seen[key_]} and {lineno}); "
                "list each node once")
        seen[key_] = lineno
        entries.append(HostEntry(host=host, user=match["user"], port=port, slots=slots, line=lineno))
    if not entries:
        raise BadInput(f"{filename}: no nodes listed; write one host per line, e.g. 'node1 slots=8'")
    with_slots = [e for e in entries if e.slots is not None]
    if with_slots:
        first = with_slots[0]
        for entry in entries:
            if entry.slots is None:
                raise BadInput(
                    f"{filename}:{entry.line}: {entry.host!r} has no slots but line {first.line} has "
                    f"slots={first.slots}; give every node the same slots=N")
            if entry.slots != first.slots:
                raise BadInput(
                    f"{filename}:{entry.line}: {entry.host!r} has slots={entry.slots} but line "
                    f"{first.line} has slots={first.slots}; msrun needs the same number of devices on "
                    "every node")
    local = [e for e in entries if e.is_local]
    if local and len(entries) > 1:
        raise BadInput(
            f"{filename}:{local[0].line}: 'localhost' can only be the single node of a cluster; use "
            "each node's real address when listing several")
    return entries


def localhost_entries(slots: int | None = None) -> list[HostEntry]:
    """The embedded default cluster: this machine alone."""
    return [HostEntry(host="localhost", slots=slots, line=0)]
