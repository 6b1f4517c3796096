"""``ssh -G``'s answers kept across mfctl runs, for as long as nothing they depend on changed.

Starting the ``ssh`` binary costs the controller ~4-5 ms of CPU per destination (``ssh -V``
costs the same: it is the process start, not the resolution), which was the largest per-node
cost of ``mfctl check``. Its output is a pure function of the argv, the ssh binary, the config
files it reads (with their ``Include``s), a few facts of the local user and machine (home, user,
uid, host name: the ``%`` tokens) and the agent socket, except where the config asks ssh to look
at the world: ``Match`` (exec, localnetwork, canonical, ...), ``CanonicalizeHostname`` (DNS) and
``${VAR}`` expansions. So an answer is reused only when

* no config file read (the ``-F`` file or the user and system files, and everything they
  ``Include``) contains ``Match``, ``CanonicalizeHostname`` or ``${``;
* every one of those files, the ``Include`` globs' matches and the ssh binary have the same path,
  inode, size, mtime and ctime as when the answer was stored, and the user facts are the same;
* the entry was stored when none of those files had changed in the last 2 s (a file rewritten
  within the file system's timestamp granularity cannot pass as unchanged: git's "racy clean" rule);
* the cache directory and entry belong to this user and nobody else can write them (an entry
  decides which known_hosts files are trusted).

Anything else (or ``MFCTL_SSH_G_CACHE=0``) runs ``ssh -G`` as before. Entries live in
``$XDG_CACHE_HOME/mfctl/ssh-G`` (default ``~/.cache``), one small JSON file per destination.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import socket
import stat
import time

from mfctl.remote.filestamp import RACY_S, stat_stamp

_UNCACHEABLE = ("match", "canonicalizehostname")
_MAX_FILES = 64  # an Include tree larger than this is not worth tracking: no caching


def _dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mfctl", "ssh-G")


def enabled() -> bool:
    return os.environ.get("MFCTL_SSH_G_CACHE", "1") not in ("0", "no", "false", "off")


def _stamp(path: str) -> tuple[str, int, int, int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (path, 0, -1, 0, 0)  # absent: a file appearing later changes the key
    return (path, *stat_stamp(st))


Found = tuple[list[str], list[list[str]], bool]  # files, Include globs with matches, cacheable
_memo: dict[str | None, tuple[list[tuple[str, int, int, int, int]], Found]] = {}


def _config_files(cfg: str | None) -> Found:
    """``_read_config_files``, read once per process while the files stay the same (a cluster's
    config can have a Host block per node: reading it again for every node would be quadratic)."""
    hit = _memo.get(cfg)
    if hit is not None and all(_stamp(s[0]) == s for s in hit[0]):
        return hit[1]
    found = _read_config_files(cfg)
    dirs = [os.path.dirname(g[0]) for g in found[1]]  # a file added to an Include glob's folder
    _memo[cfg] = ([_stamp(p) for p in [*found[0], *dirs]], found)
    return found


def _read_config_files(cfg: str | None) -> Found:
    """Every config file ssh reads (following Include), each Include glob's matches, and False
    when one of them makes the answer depend on more than the files (see the module docstring)."""
    home = os.path.expanduser("~")
    roots = [(cfg, os.path.join(home, ".ssh"))] if cfg else [
        (os.path.join(home, ".ssh", "config"), os.path.join(home, ".ssh")), ("/etc/ssh/ssh_config", "/etc/ssh")]
    files: list[str] = []
    globs: list[list[str]] = []
    todo = list(roots)
    while todo:
        path, rel = todo.pop(0)
        if path in files:
            continue
        files.append(path)
        if len(files) > _MAX_FILES:
            return files, globs, False
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except FileNotFoundError:
            continue
        except OSError:
            return files, globs, False
        if "${" in text:
            return files, globs, False
        for line in text.splitlines():
            words = line.replace("=", " ", 1).split()
            if not words or words[0].startswith("#"):
                continue
            word = words[0].lower()
            if word in _UNCACHEABLE:
                return files, globs, False
            if word == "include":
                for pattern in words[1:]:
                    pattern = os.path.expanduser(pattern)
                    if not os.path.isabs(pattern):
                        pattern = os.path.join(rel, pattern)
                    matches = sorted(glob.glob(pattern))
                    globs.append([pattern, *matches])
                    todo.extend((m, rel) for m in matches)
    return files, globs, True


def _safe(path: str, is_dir: bool) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    kind = stat.S_ISDIR(st.st_mode) if is_dir else stat.S_ISREG(st.st_mode)
    return kind and st.st_uid == os.getuid() and not st.st_mode & 0o022


class Entry:
    """One destination's cache slot: ``load()`` its stored answer, or ``store()`` a fresh one."""

    def __init__(self, argv: list[str], cfg: str | None) -> None:
        self.path: str | None = None
        self._stamps: list[tuple[str, int, int, int, int]] = []
        if not enabled():
            return
        files, globs, cacheable = _config_files(cfg)
        if not cacheable:
            return
        self._stamps = [_stamp(p) for p in [argv[0], *files]]
        facts = [os.path.expanduser("~"), os.getuid(), os.environ.get("USER"), os.environ.get("LOGNAME"),
                 os.environ.get("SSH_AUTH_SOCK"), socket.gethostname(), os.getcwd()]
        key = json.dumps([argv, facts, self._stamps, globs], sort_keys=True, default=str)
        self.path = os.path.join(_dir(), hashlib.sha256(key.encode()).hexdigest() + ".json")

    def load(self) -> dict[str, list[str]] | None:
        if self.path is None or not _safe(os.path.dirname(self.path), True) or not _safe(self.path, False):
            return None
        try:
            with open(self.path, encoding="utf-8") as f:
                opts = json.load(f)
        except (OSError, ValueError):
            return None
        return opts if isinstance(opts, dict) else None

    def store(self, opts: dict[str, list[str]]) -> None:
        if self.path is None:
            return
        now = time.time()
        if any(now - s[3] / 1e9 < RACY_S for s in self._stamps):  # mtime (ctime is in the key)
            return  # racy: a file changed just now could change again within the same timestamp
        directory = os.path.dirname(self.path)
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            if not _safe(directory, True):
                return
            tmp = f"{self.path}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(opts, f)
            os.replace(tmp, self.path)
        except OSError:
            pass  # a cache that cannot be written only costs the next run an `ssh -G`
