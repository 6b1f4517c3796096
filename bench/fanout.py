"""Fan-out benchmark: ``mfctl check``'s per-node work over 1, 4 and 16 nodes at once, and over 16 in a row.

Each measurement opens fresh connections (the handshake is most of a check's cost), runs exactly
the command ``mfctl check`` sends each node (mfctl/node/preflight.sh: python and framework
versions from package metadata, msrun, dataset, free disk, master port, leftovers) and closes.
The sequential run over 16 nodes is the baseline printed beside the parallel figures; the goal is
parallel(16) / parallel(1) <= 1.5.

    python bench/fanout.py                      # brings up a 16-node test cluster (root) and removes it
    python bench/fanout.py --ssh-config F --hosts hosts.txt   # any cluster reachable over SSH

Columns: wall time (median and min over the repeats), the controller's CPU time, and the CPU
time of the whole machine (Linux /proc/stat; with a local test cluster that includes the nodes'
sshd and commands, and anything else running) with the cores it kept busy.

The measuring functions take a transport factory, so the same core can time ``mfctl check`` or
any other per-node operation later.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make `mfctl` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mfctl.jobs.nodeops import in_one_piece, inline
from mfctl.remote.base import RunResult, Transport
from mfctl.remote.group import run_on_all

# What `mfctl check` runs on each node (the master also checks its port), with the python the
# test cluster's nodes can run.
PREFLIGHT = in_one_piece(inline("preflight.sh", sys.executable, "/tmp", "mfctl-jobs", "8118", "1", "bench", ""))

TransportFactory = Callable[[str], Transport]


def preflight(transport: Transport) -> RunResult:
    result = transport.run(PREFLIGHT, timeout=60)
    if not result.ok or "done 1" not in result.stdout:
        raise RuntimeError(f"{transport.host}: preflight exited {result.exit_code}: {result.stderr.strip()}")
    return result


@dataclass(frozen=True)
class Sample:
    wall: float  # seconds
    cpu: float  # controller CPU seconds (this process), to tell local crypto from waiting
    machine_cpu: float | None  # CPU seconds of the whole machine (with a local test cluster: nodes too)


def _machine_cpu() -> float | None:
    """Busy CPU seconds of the whole machine so far (Linux), or None."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def measure(
    make: TransportFactory,
    hosts: Sequence[str],
    *,
    parallel: bool,
    work: Callable[[Transport], object] = preflight,
    fanout: int = 64,
) -> Sample:
    """Connect to ``hosts``, run ``work`` on each (all at once or one after another), close."""
    wall0, cpu0, machine0 = time.perf_counter(), time.process_time(), _machine_cpu()
    transports = [make(h) for h in hosts]
    try:
        if parallel:
            results = run_on_all(transports, work, fanout=fanout)
        else:
            results = {}
            for t in transports:
                try:
                    results[t.host] = work(t)
                except Exception as e:
                    results[t.host] = e
    finally:
        for t in transports:
            t.close()
    failed = {h: r for h, r in results.items() if isinstance(r, Exception)}  # serial: a plain dict
    if failed:
        raise RuntimeError("; ".join(f"{h}: {e}" for h, e in failed.items()))
    wall, cpu, machine1 = time.perf_counter() - wall0, time.process_time() - cpu0, _machine_cpu()
    return Sample(wall, cpu, machine1 - machine0 if machine0 is not None and machine1 is not None else None)


@dataclass(frozen=True)
class Row:
    label: str
    nodes: int
    samples: list[Sample]

    @property
    def median(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    @property
    def cpu(self) -> float:
        return statistics.median(s.cpu for s in self.samples)

    @property
    def machine_cpu(self) -> float | None:
        values = [s.machine_cpu for s in self.samples if s.machine_cpu is not None]
        return statistics.median(values) if values else None


def run_benchmark(make: TransportFactory, hosts: Sequence[str], repeats: int = 5, warmup: bool = True) -> list[Row]:
    """Parallel over 1, 4, len(hosts) (up to 16) nodes, then sequential over the same largest set."""
    sizes = [n for n in (1, 4, 16) if n <= len(hosts)]
    if warmup:  # first connections pay for imports, DNS/ARP and sshd page cache
        measure(make, hosts[: sizes[-1]], parallel=True)
    rows = [Row("parallel (run_on_all)", n, []) for n in sizes]
    rows.append(Row("sequential (baseline)", sizes[-1], []))
    for _ in range(repeats):  # interleaved, so drift hits every scenario alike
        for row in rows:
            row.samples.append(measure(make, hosts[: row.nodes], parallel=row.label.startswith("parallel")))
    return rows


def report(rows: Sequence[Row], goal: float = 1.5) -> str:
    cores = os.cpu_count() or 1
    lines = [
        f"{'scenario':<24}{'nodes':>6}{'median s':>10}{'min s':>8}{'ctl cpu s':>11}{'all cpu s':>11}{'cores busy':>12}"
    ]
    for row in rows:
        machine = row.machine_cpu
        lines.append(
            f"{row.label:<24}{row.nodes:>6}{row.median:>10.3f}{min(s.wall for s in row.samples):>8.3f}{row.cpu:>11.3f}"
            + (f"{machine:>11.3f}{machine / row.median:>9.2f}/{cores}" if machine is not None else "")
        )
    par = {r.nodes: r for r in rows if r.label.startswith("parallel")}
    seq = next(r for r in rows if r.label.startswith("sequential"))
    big = max(par)
    if 1 in par and big > 1:
        ratio = par[big].median / par[1].median
        verdict = "meets" if ratio <= goal else "MISSES"
        lines.append(f"parallel {big} / parallel 1 = {ratio:.2f}x ({verdict} the goal <= {goal}x)")
    lines.append(f"sequential {seq.nodes} / parallel {big} = {seq.median / par[big].median:.1f}x speed-up")
    machine = par[big].machine_cpu
    if machine is not None and machine / par[big].median > 0.75 * cores:
        node_side = (machine - par[big].cpu) / big
        lines.append(
            f"note: parallel {big} kept {machine / par[big].median:.1f} of {cores} cores busy, so it is CPU-bound "
            f"here: with a local test cluster the nodes' sshd and commands run on this machine's cores too "
            f"(~{node_side * 1000:.0f} ms CPU per node, machine-wide, including anything else running), while "
            f"the controller used {par[big].cpu / big * 1000:.0f} ms per node; CPU floor here ~ {machine / cores:.2f} s"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ssh-config", help="ssh_config of an existing cluster (with --hosts)")
    parser.add_argument("--hosts", help="file with one host alias per line (first 16 are used)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    from mfctl.remote.ssh import SshTransport

    cluster = None
    if args.hosts:
        lines = Path(args.hosts).read_text().splitlines()
        hosts = [line.split()[0] for line in lines if line.split() and not line.startswith("#")]
        ssh_config = args.ssh_config
    else:
        from tests.lab import NetnsCluster

        cluster = NetnsCluster.claim(base="mfb", second_octet=82)  # its own subnets: not the tests
        reason = cluster.unavailable_reason()
        if reason:
            print(f"fanout: cannot bring up the test cluster: {reason}; pass --ssh-config/--hosts", file=sys.stderr)
            return 1
        cluster.up(16)
        print(f"test cluster: 16 nodes up in {cluster.last_up_seconds:.2f} s")
        hosts = [n.name for n in cluster.nodes]
        ssh_config = str(cluster.ssh_config_path)
    try:
        rows = run_benchmark(lambda h: SshTransport(h, ssh_config_path=ssh_config), hosts[:16], repeats=args.repeats)
        print(report(rows))
    finally:
        if cluster is not None:
            cluster.down()
            print(f"test cluster: down in {cluster.last_down_seconds:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
