"""known_hosts as OpenSSH reads it (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT"), and its verdict.

paramiko's ``HostKeys`` stops at the first ``@revoked`` or ``@cert-authority`` line with a
traceback and knows neither negation nor wildcards, so this is our own reader. What it follows
from OpenSSH's hostfile.c / sshconnect.c:

* A line is ``[@marker] patterns keytype base64 [comment]``; lines that do not parse are skipped
  (as ssh does), never fatal. Patterns are a comma list with ``*``/``?`` wildcards and ``!``
  negation (a matching negated pattern excludes the line), compared case-insensitively; or one
  hashed name ``|1|salt|hmac-sha1``.
* The name looked up is HostKeyAlias when set, else the host name, as ``[host]:port`` when the port
  is not 22 (``ResolvedHost.known_hosts_name``). User and global files are searched together.
* A key listed ``@revoked`` is refused even if also listed as known; otherwise any line with the
  same key makes the host known; a line of the same key type with another key means the key
  CHANGED; no line of that type means the host is new. ``@cert-authority`` lines only vouch for
  host certificates, which mfctl (paramiko) cannot verify: for a plain host key they are ignored,
  exactly as ssh ignores them, and the verdict says so.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import fnmatch
import hashlib
import hmac
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from mfctl.remote.filestamp import settled, stat_stamp

_lock = threading.Lock()


@dataclass(frozen=True)
class Entry:
    path: str
    line: int
    marker: str  # "", "revoked" or "cert-authority"
    patterns: str
    keytype: str
    key: bytes  # the decoded public key blob


@dataclass(frozen=True)
class Verdict:
    status: str  # "ok", "new", "changed", "revoked"
    entry: Entry | None = None  # the line that decided it (the stale one when changed)
    ca_lines: tuple[Entry, ...] = ()  # @cert-authority lines that matched the name


def plain_type(keytype: str) -> str:
    """Key type family: rsa-sha2-* signatures use ssh-rsa keys."""
    return "ssh-rsa" if keytype.startswith("rsa-sha2") else keytype


def read(paths: Iterable[str]) -> Iterator[Entry]:
    for path in paths:
        parsed = _file(path)
        if parsed is not None:
            yield from parsed.entries


@dataclass(frozen=True)
class _Parsed:
    """One known_hosts file, parsed, with its plain host names indexed: a cluster's file has a
    line per node, and scanning (fnmatch) every line for every node would be quadratic."""

    entries: tuple[Entry, ...]
    exact: dict[str, tuple[int, ...]]  # lowercased plain name -> positions of its lines
    other: tuple[int, ...]  # lines with wildcards, negation or hashed names: always tested

    def candidates(self, name: str) -> list[Entry]:
        return [self.entries[i] for i in sorted(self.exact.get(name.lower(), ()) + self.other)]


_parsed: dict[str, tuple[tuple[int, int, int, int], _Parsed]] = {}


def _file(path: str) -> _Parsed | None:
    """``path`` parsed, reused while its inode, size, mtime and ctime stay the same (and it was
    not modified in the last 2 s, within which a rewrite could keep the same timestamp)."""
    try:
        st = os.stat(path)
        stamp = stat_stamp(st)
        hit = _parsed.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError):
        return None  # ssh skips files it cannot read
    entries = tuple(parse(text, path))
    exact: dict[str, list[int]] = {}
    other: list[int] = []
    for i, e in enumerate(entries):
        plain = not any(c in e.patterns for c in "*?!|")
        for name in e.patterns.split(",") if plain else ():
            exact.setdefault(name.lower(), []).append(i)
        if not plain:
            other.append(i)
    parsed = _Parsed(entries, {k: tuple(v) for k, v in exact.items()}, tuple(other))
    if settled(st):
        _parsed[path] = (stamp, parsed)
    return parsed


def parse(text: str, source: str) -> Iterator[Entry]:
    """known_hosts lines from a file or a KnownHostsCommand; ``source`` names them in messages."""
    for n, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = ""
        if fields[0].startswith("@"):
            marker = fields[0][1:]
            if marker not in ("revoked", "cert-authority"):
                continue
            fields = fields[1:]
        if len(fields) < 3:
            continue
        try:
            blob = base64.b64decode(fields[2], validate=True)
        except (binascii.Error, ValueError):
            continue
        yield Entry(source, n, marker, fields[0], fields[1], blob)


def _hashed_match(pattern: str, name: str) -> bool:
    parts = pattern.split("|")
    if len(parts) != 4 or parts[1] != "1":
        return False
    try:
        salt, want = base64.b64decode(parts[2]), base64.b64decode(parts[3])
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), want)


def matches(patterns: str, name: str) -> bool:
    """OpenSSH's match_hostname: True if a positive pattern matches and no negated one does."""
    if patterns.startswith("|"):
        return _hashed_match(patterns, name)
    name = name.lower()
    found = False
    for pat in patterns.split(","):
        negated = pat.startswith("!")
        pat = pat[1:] if negated else pat
        pat = pat.lower()
        if "*" in pat or "?" in pat:
            # fnmatchcase with [ escaped: known_hosts patterns only know * and ?, and
            # "[host]:port" must match literally.
            hit = fnmatch.fnmatchcase(name, pat.replace("[", "[[]"))
        else:
            hit = name == pat  # a plain name (fnmatch would compile a pattern per node name)
        if hit:
            if negated:
                return False
            found = True
    return found


def lookup(paths: Iterable[str], name: str, extra: Iterable[Entry] = ()) -> list[Entry]:
    """The lines for ``name``, in file order (files in the order given, then ``extra``)."""
    found: list[Entry] = []
    for path in paths:
        parsed = _file(path)
        if parsed is not None:
            found.extend(e for e in parsed.candidates(name) if matches(e.patterns, name))
    return found + [e for e in extra if matches(e.patterns, name)]


def verdict(paths: Iterable[str], name: str, keytype: str, blob: bytes,
            extra: Iterable[Entry] = ()) -> Verdict:
    """The verdict over the files plus ``extra`` lines (KnownHostsCommand's), as ssh reaches it."""
    entries = lookup(paths, name, extra)
    for e in entries:
        if e.marker == "revoked" and e.key == blob:
            return Verdict("revoked", e)
    cas = tuple(e for e in entries if e.marker == "cert-authority")
    stale: Entry | None = None
    for e in entries:
        if e.marker:
            continue
        if e.key == blob:
            return Verdict("ok", e)
        if stale is None and plain_type(e.keytype) == plain_type(keytype):
            stale = e
    if stale is not None:
        return Verdict("changed", stale, cas)
    return Verdict("new", None, cas)


def known_types(paths: Iterable[str], name: str) -> list[str]:
    """Key types listed (not revoked, not CA) for ``name``: ssh prefers these host key algorithms."""
    out: list[str] = []
    for e in lookup(paths, name):
        if not e.marker and e.keytype not in out:
            out.append(e.keytype)
    return out


def hashed_name(name: str) -> str:
    salt = os.urandom(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def record(path: str, name: str, keytype: str, b64: str, *, hashed: bool = False) -> None:
    """Append the key for ``name`` like ssh's accept-new, once, safe against parallel writers."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    blob = base64.b64decode(b64)
    with _lock:  # threads of this process; flock below covers other processes
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "r+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            if verdict([path], name, keytype, blob).status == "ok":
                return  # another connection recorded it meanwhile
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:
                f.seek(f.tell() - 1)
                if f.read(1) != "\n":
                    f.write("\n")
            f.write(f"{hashed_name(name) if hashed else name} {keytype} {b64}\n")
