"""``scripts/testcluster slurm up [N] | down | status``: the Slurm lab by hand (see slurm_cluster.py)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from tests.lab import ClusterError, NetnsCluster, Node
from tests.lab.slurm_cluster import SlurmCluster, SlurmNode, slurm_unavailable_reason


def main(argv: Sequence[str] | None = None) -> int:
    """``testcluster slurm up [N] | down | status``: the Slurm mode of scripts/testcluster."""
    import argparse

    parser = argparse.ArgumentParser(prog="testcluster slurm",
                                     description="A real Slurm cluster on the test cluster's network "
                                                 "namespaces (root).")
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("n", nargs="?", type=int, default=2, help="number of Slurm nodes for `up` (default 2)")
    parser.add_argument("--prefix", default="mft", help="the SSH test cluster's prefix (default mft)")
    parser.add_argument("--subnet", default="10.77.0.0/24", help="its subnet (default 10.77.0.0/24)")
    parser.add_argument("--dir", help="its state directory (default: <tmp>/mfctl-testcluster-<prefix>)")
    parser.add_argument("--if-any", action="store_true", help=argparse.SUPPRESS)  # plain `testcluster down`
    args = parser.parse_args(argv)
    netns = NetnsCluster(prefix=args.prefix, subnet=args.subnet, state_dir=args.dir)
    lab = SlurmCluster(netns)
    made_marker = lab.lab_dir / "nodes-made-by-slurm-up"
    try:
        state = netns.state_dir / "cluster.json"
        live = set(netns._leftover_namespaces())
        if state.exists():  # an SSH test cluster is up: Slurm goes on its nodes
            netns.nodes = [Node(**n) for n in json.loads(state.read_text())["nodes"]]
            netns.nodes = [n for n in netns.nodes if n.netns in live]
        if args.action == "up":
            reason = slurm_unavailable_reason() or netns.unavailable_reason()
            if reason:
                print(f"testcluster slurm: cannot run here: {reason}", file=sys.stderr)
                return 1
            made = len(netns.nodes) < args.n
            if made:
                netns.up(args.n)
            lab.up(args.n)
            if made:
                made_marker.touch()
            print(f"Slurm lab {lab.prefix!r}: {len(lab.nodes)} nodes idle in {lab.last_up_seconds:.2f} s "
                  f"(controller {lab.controller_address}:{lab.ctld_port}, partition {lab.partition})")
            for node in lab.nodes:
                print(f"  {node.name:<8} NodeAddr {node.address:<15} netns {node.netns}")
            print(f"  shared dir {lab.shared_dir} (mode 1777, seen by every node)")
            print(f"export SLURM_CONF={lab.conf_path}")
            print("try:  sinfo; srun -N 2 hostname -I")
            print("stop: scripts/testcluster slurm down" + (f" --prefix {args.prefix}" if args.prefix != "mft" else ""))
        elif args.action == "down":
            made = made_marker.exists()
            running = lab._daemon_pids("slurmctld") or lab._daemon_pids("slurmd")
            if args.if_any and not (lab.lab_dir.exists() or running):
                return 0
            lab.down()
            if made:
                netns.down()
            print(f"Slurm lab {lab.prefix!r}: down in {lab.last_down_seconds:.2f} s"
                  + (" (and its SSH nodes)" if made else ""))
        else:
            if not (lab.lab_dir / "lab.json").exists():
                print(f"no Slurm lab {lab.prefix!r} in {lab.lab_dir}")
                return 1
            lab.nodes = [SlurmNode(**n) for n in json.loads((lab.lab_dir / "lab.json").read_text())["nodes"]]
            print(f"export SLURM_CONF={lab.conf_path}")
            for name, st in lab.node_states().items():
                print(f"  {name:<8} {st}")
            for row in lab.squeue():
                print(f"  job {row.job_id} {row.state} {row.reason} {row.nodes}")
    except (ClusterError, ValueError) as e:
        print(f"testcluster slurm: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
