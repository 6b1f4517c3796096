"""When a file read once may be reused: the rule the controller's per-file caches share (parsed
known_hosts files, loaded private keys, ``ssh -G`` answers).

A file is the same while its stamp (inode, size, mtime, ctime) is. A file changed in the last
``RACY_S`` seconds is not cached: a rewrite within the same timestamp tick would keep its stamp.
"""

from __future__ import annotations

import os
import time

RACY_S = 2.0


def stat_stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def settled(st: os.stat_result) -> bool:
    """Whether the file has not changed for ``RACY_S`` seconds (its stamp may be trusted)."""
    return time.time() - max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 > RACY_S
