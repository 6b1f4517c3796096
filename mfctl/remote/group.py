"""The same operation on many nodes at once, one outcome per node.

Like Fabric's ``GroupResult``: every host gets its own entry, a result or the exception it
raised (``NodeResults.ok`` / ``.failed``), so one unreachable node never hides what happened on the
others. Parallelism is bounded
(``fanout`` threads): SSH work is I/O bound, but a thousand simultaneous handshakes would trip
sshd's MaxStartups and the controller's file-descriptor limit.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from mfctl.remote.base import Transport

T = TypeVar("T", bound=Transport)
R = TypeVar("R")

DEFAULT_FANOUT = 64
_frozen = False
#: Only a process that is nothing but one mfctl command may freeze its heap: the console script
#: turns this on (``mfctl.cli.entry``); a library caller (tests, an embedding program) keeps the
#: collector as it set it.
_freeze_allowed = False


def allow_heap_freeze() -> None:
    """This process is one mfctl command: ``freeze_heap_once`` may act."""
    global _freeze_allowed
    _freeze_allowed = True


def freeze_heap_once() -> None:
    """Take what the process holds before its first fan-out out of the garbage collector's scans.

    By then the modules (paramiko, fabric, rich, pydantic...), the job and the plan are loaded
    and live as long as the process; the per-node work that follows allocates enough to trigger
    full collections, and each one walked that whole heap again: ~2 ms of CPU per node for
    ``mfctl check`` in a fresh process (measured with the collector off). ``gc.freeze`` is the
    standard library's answer (objects frozen once are only never *collected*: the cost is that
    garbage already pending at this moment stays; it happens once per process).
    """
    global _frozen
    if _freeze_allowed and not _frozen:
        _frozen = True
        gc.freeze()


class NodeResults(Mapping[str, "R | Exception"], Generic[R]):
    """One outcome per host, in the order the hosts were given: ``ok`` (host -> result) and
    ``failed`` (host -> the exception it raised). As a mapping it holds both, so a caller that
    reports every host reads it in one loop."""

    def __init__(self, ok: dict[str, R], failed: dict[str, Exception], order: list[str]) -> None:
        self.ok = ok
        self.failed = failed
        self._order = order

    def __getitem__(self, host: str) -> R | Exception:
        if host in self.ok:
            return self.ok[host]
        return self.failed[host]

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def __repr__(self) -> str:
        return f"NodeResults(ok={self.ok!r}, failed={self.failed!r})"


def run_on_all(
    transports: Iterable[T], fn: Callable[[T], R], fanout: int = DEFAULT_FANOUT
) -> NodeResults[R]:
    """Call ``fn(transport)`` for every transport, at most ``fanout`` at a time.

    Returns every host's outcome, in the input order: ``.ok`` the results, ``.failed`` the
    ``Exception``s raised (``KeyboardInterrupt`` and friends propagate).
    Each transport is used by one thread only, as the Transport contract requires.
    """
    items = list(transports)
    hosts = [t.host for t in items]
    dupes = sorted(h for h, n in Counter(hosts).items() if n > 1)
    if dupes:
        raise ValueError(f"run_on_all: duplicate hosts {', '.join(dupes)}: results are keyed by host")
    if fanout < 1:
        raise ValueError(f"run_on_all: fanout must be >= 1, got {fanout}")
    ok: dict[str, R] = {}
    failed: dict[str, Exception] = {}
    if not items:
        return NodeResults(ok, failed, hosts)
    freeze_heap_once()
    with ThreadPoolExecutor(max_workers=min(fanout, len(items)), thread_name_prefix="mfctl-node") as pool:
        futures = [(t.host, pool.submit(fn, t)) for t in items]
        for host, future in futures:
            try:
                ok[host] = future.result()
            except Exception as e:  # one host's failure is that host's outcome
                failed[host] = e
    return NodeResults(ok, failed, hosts)
