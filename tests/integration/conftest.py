"""Integration fixtures: a real SSH cluster in network namespaces (root only).

``netns_cluster(n)`` returns the session's cluster with at least ``n`` nodes (use
``cluster.nodes[:n]``), healthy: partitions healed and killed sshds restarted since the last test.
The cluster takes a free prefix/subnet slot (``NetnsCluster.claim``) so parallel sessions do not
collide, and is torn down at the end of the session.

``slurm_cluster()`` returns the session's real Slurm lab (tests/lab/slurm_cluster.py) on the first
2 of those nodes, healthy: dead slurmds restarted, every job cancelled, both nodes idle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.lab import NetnsCluster
from tests.lab.slurm_cluster import SlurmCluster, slurm_unavailable_reason


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


@pytest.fixture(scope="session")
def slurm_cluster(netns_cluster: Callable[[int], NetnsCluster]) -> Iterator[Callable[[], SlurmCluster]]:
    reason = slurm_unavailable_reason()
    if reason:
        pytest.skip(f"real Slurm test cluster unavailable: {reason}")
    lab: SlurmCluster | None = None

    def get() -> SlurmCluster:
        nonlocal lab
        # netns_cluster(n) may have rebuilt the namespaces for a bigger cluster: reset() then
        # restarts the slurmds on the new ones (same names and addresses).
        nodes = netns_cluster(2)
        if lab is None or not lab.nodes:
            lab = SlurmCluster(nodes)
            lab.up(2)
        else:
            lab.reset()
        return lab

    try:
        yield get
    finally:
        if lab is not None:
            lab.down()
