"""Integration fixtures: a real SSH cluster in network namespaces (root only).

``netns_cluster(n)`` returns the session's cluster with at least ``n`` nodes (use
``cluster.nodes[:n]``), healthy: partitions healed and killed sshds restarted since the last test.
The cluster takes a free prefix/subnet slot (``NetnsCluster.claim``) so parallel sessions do not
collide, and is torn down at the end of the session.
"""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from mfctl.testing import NetnsCluster


@pytest.fixture(scope="session")
def netns_cluster() -> Iterator[Callable[[int], NetnsCluster]]:
    probe = NetnsCluster()
    reason = probe.unavailable_reason()
    if reason:
        pytest.skip(f"real SSH test cluster unavailable: {reason}")
    cluster = NetnsCluster.claim()

    def get(n: int) -> NetnsCluster:
        if len(cluster.nodes) < n:
            cluster.up(n)  # replaces the smaller cluster (about 50 ms per node)
        else:
            cluster.reset()
        return cluster

    try:
        yield get
    finally:
        cluster.down()
