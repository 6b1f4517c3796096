"""Test helpers that need this machine's privileges (root): a real SSH cluster in network namespaces."""

from __future__ import annotations

from mfctl.testing.netns_cluster import ClusterBusy, ClusterError, NetnsCluster, Node, Proc

__all__ = ["ClusterBusy", "ClusterError", "NetnsCluster", "Node", "Proc"]
