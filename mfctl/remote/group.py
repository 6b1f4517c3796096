"""The same operation on many nodes at once, one outcome per node.

Like Fabric's ``GroupResult``: every host gets its own entry, a result or the exception it
raised, so one unreachable node never hides what happened on the others. Parallelism is bounded
(``fanout`` threads): SSH work is I/O bound, but a thousand simultaneous handshakes would trip
sshd's MaxStartups and the controller's file-descriptor limit.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Mapping, TypeVar

from mfctl.remote.base import Transport

T = TypeVar("T", bound=Transport)
R = TypeVar("R")

DEFAULT_FANOUT = 64


def run_on_all(
    transports: Iterable[T], fn: Callable[[T], R], fanout: int = DEFAULT_FANOUT
) -> dict[str, R | Exception]:
    """Call ``fn(transport)`` for every transport, at most ``fanout`` at a time.

    Returns ``{transport.host: result or exception}`` in the input order. ``Exception``
    subclasses are captured per host; ``KeyboardInterrupt`` and friends propagate.
    Each transport is used by one thread only, as the Transport contract requires.
    """
    items = list(transports)
    hosts = [t.host for t in items]
    dupes = sorted({h for h in hosts if hosts.count(h) > 1})
    if dupes:
        raise ValueError(f"run_on_all: duplicate hosts {', '.join(dupes)}: results are keyed by host")
    if fanout < 1:
        raise ValueError(f"run_on_all: fanout must be >= 1, got {fanout}")
    if not items:
        return {}
    results: dict[str, R | Exception] = {}
    with ThreadPoolExecutor(max_workers=min(fanout, len(items)), thread_name_prefix="mfctl-node") as pool:
        futures = [(t.host, pool.submit(fn, t)) for t in items]
        for host, future in futures:
            try:
                results[host] = future.result()
            except Exception as e:  # noqa: BLE001 - one host's failure is that host's outcome
                results[host] = e
    return results


def failures(results: Mapping[str, R | Exception]) -> dict[str, Exception]:
    """The hosts whose outcome is an exception."""
    return {host: r for host, r in results.items() if isinstance(r, Exception)}
