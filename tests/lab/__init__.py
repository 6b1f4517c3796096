"""Test labs that need this machine's privileges (root): real SSH nodes in network namespaces
(``netns_cluster``) and a real Slurm cluster on those nodes (``slurm_cluster``).

Used by the integration tests, the benches and ``scripts/testcluster``; not part of the installed package.
"""

from __future__ import annotations

from tests.lab.netns_cluster import ClusterBusy, ClusterError, NetnsCluster, Node, Proc

__all__ = ["ClusterBusy", "ClusterError", "NetnsCluster", "Node", "Proc"]
