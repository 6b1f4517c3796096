"""Where a job's nodes run, behind one interface: everything above asks the backend, never which
backend it is.

``Backend`` is about the job, not about transports: render the job into its directory, check the
nodes, push, start, look at every node (``NodeStatus``es for ``judge``), stop, read the logs once,
and say where the logs are to follow. ``HostsBackend`` is the one backend today: a list of hosts
reached over the local transport (this machine) or SSH. A Slurm backend (``sbatch`` a rendered
script, ``squeue``/``sacct`` for the statuses, ``scancel``, logs on the shared filesystem) plugs in
beside it.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mfctl.cluster.health import NodeStatus
from mfctl.cluster.hostfile import HostEntry
from mfctl.cluster.plan import LaunchPlan, NodePlan
from mfctl.jobs.nodeops import (
    NodeCheck,
    bundle_files,
    close_all,
    describe_error,
    failed_look,
    logtail_command,
    node_status,
    on_all,
    preflight,
    push_bundle,
    start_command,
    stop_all,
    tail_command,
)
from mfctl.jobspec.schema import JobSpec
from mfctl.metrics.logdir import rank_of_path
from mfctl.metrics.types import LogLine
from mfctl.node.logtail import split_tagged
from mfctl.records.record import JobRecord
from mfctl.remote.base import Transport
from mfctl.remote.connect import SshOptions, open_transport
from mfctl.remote.group import NodeResults, freeze_heap_once

Files = dict[str, tuple[bytes, int]]  # bundle-relative path -> (content, mode)


@dataclass(frozen=True)
class NodeLogs:
    """Where one node's logs are, for a follower: connect, then run ``command(offsets)``."""

    host: str
    connect: Callable[[], Transport]
    python: str
    setup: str | None
    log_dir: str
    job_dir: str


class Backend(Protocol):
    """One job's nodes. Not shared between threads (open one per thread, as transports are)."""

    plan: LaunchPlan

    def preflight(self, spec: JobSpec, check_dataset: bool = True, ascend: bool = False,
                  network: bool = False) -> list[NodeCheck]:
        """Check every node (the table of ``mfctl.cluster.preflight``); ``ascend``: the rendered
        config targets Ascend (the NPU rows apply); ``network``: also ping the device peers."""
        ...

    def bundle_size(self, rendered: Path, extra: Files) -> int:
        """How many files ``push`` copies to one node (for a progress bar)."""
        ...

    def push(self, rendered: Path, extra: Files, on_file: Callable[[], None]) -> NodeResults[int]:
        """The job's bundle (rendered config and launch scripts, mfctl's node files, ``extra``)
        onto every node; returns the files copied per node."""
        ...

    def start(self, job_id: str) -> dict[str, str]:
        """Start the job on every node; returns {node: why it did not start} (empty: all did)."""
        ...

    def statuses(self, job_id: str, timeout: float = 60) -> list[NodeStatus]: ...

    def stop(self, job_id: str, grace: float, hosts: list[str] | None = None) -> dict[str, int | str]:
        """Stop the job everywhere (or on ``hosts``): {node: processes left (0: clean), or why
        it could not}."""
        ...

    def read_logs(self, every_line: bool = False) -> NodeResults[list[LogLine]]:
        """Every node's metric lines, read once from the start."""
        ...

    def rank_log(self, rank: int | None, lines: int) -> tuple[NodePlan, str, bool, str]:
        """The last ``lines`` of ``rank``'s log (None: node 0's scheduler log): (node, path, ok, text)."""
        ...

    def follow_log(self, rank: int | None, lines: int) -> Iterator[str]:
        """The last ``lines`` of ``rank``'s log, then every new line until closed."""
        ...

    def log_sources(self) -> list[NodeLogs]: ...

    def list_checkpoints(self, output_dir: str) -> NodeResults[list[str]]: ...

    def describe(self, job_id: str) -> str | None:
        """What a scheduler says about the job in one phrase ("pending (Resources)"); None when no
        scheduler runs it."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Backend: ...

    def __exit__(self, *exc: object) -> None: ...


class HostsBackend:
    """Nodes named by a hosts file, reached over the local transport or SSH."""

    def __init__(self, plan: LaunchPlan, entries: list[HostEntry], local_dir: str, opts: SshOptions,
                 python: str = "python3", setup: str | None = None,
                 transports: dict[str, Transport] | None = None) -> None:
        """``transports``: already open ones, one per node (else each is opened on first use)."""
        self.plan = plan
        self.entries = {e.label: e for e in entries}
        self.local_dir = local_dir
        self.opts = opts
        self.python = python
        self.setup = setup
        self._transports: dict[str, Transport] | None = transports

    @classmethod
    def for_record(cls, record: JobRecord) -> HostsBackend:
        return cls(record.plan, record.entries, record.job_dir, SshOptions.from_json(record.ssh),
                   record.python, record.setup)

    @property
    def fanout(self) -> int:
        return self.opts.fanout

    def connect(self, host: str) -> Transport:
        """A new transport to one node (the caller closes it)."""
        return open_transport(self.entries[host], self.local_dir, self.opts)

    @property
    def transports(self) -> dict[str, Transport]:
        """One open transport per node, opened on first use."""
        if self._transports is None:
            freeze_heap_once()  # before the per-node allocations start (see remote/group.py)
            self._transports = {n.host: self.connect(n.host) for n in self.plan.nodes}
        return self._transports

    def _on_all(self, fn: Callable[[Transport], Any]) -> NodeResults[Any]:
        return on_all(self.transports, fn, self.fanout)

    def close(self) -> None:
        if self._transports is not None:
            close_all(self._transports)
            self._transports = None

    def __enter__(self) -> HostsBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- launch

    def preflight(self, spec: JobSpec, check_dataset: bool = True, ascend: bool = False,
                  network: bool = False) -> list[NodeCheck]:
        return preflight(self.plan, spec, self.transports, self.fanout, check_dataset=check_dataset,
                         ascend=ascend, network=network)

    def push(self, rendered: Path, extra: Files, on_file: Callable[[], None]) -> NodeResults[int]:
        per_node = {n.host: {**bundle_files(rendered, n.node_rank), **extra} for n in self.plan.nodes}
        return self._on_all(lambda t: push_bundle(t, self.plan.node(t.host).job_dir, per_node[t.host], on_file))

    def bundle_size(self, rendered: Path, extra: Files) -> int:
        return len(bundle_files(rendered, 0)) + len(extra)

    def start(self, job_id: str) -> dict[str, str]:
        def start(t: Transport):
            node = self.plan.node(t.host)
            return t.run(start_command(node.job_dir, node.log_dir, job_id), timeout=60)

        started = self._on_all(start)
        problems = {h: describe_error(e) for h, e in started.failed.items()}
        problems.update({h: r.stderr.strip() or "did not start" for h, r in started.ok.items()
                         if not r.ok or "started" not in r.stdout})
        return problems

    # -- status and stop

    def statuses(self, job_id: str, timeout: float = 60) -> list[NodeStatus]:
        got = self._on_all(lambda t: node_status(t, job_id, self.plan.node(t.host), timeout))
        return [got.ok[n.host] if n.host in got.ok else failed_look(n, got.failed[n.host])
                for n in self.plan.nodes]

    def stop(self, job_id: str, grace: float, hosts: list[str] | None = None) -> dict[str, int | str]:
        transports = self.transports
        if hosts is not None:
            transports = {h: transports[h] for h in hosts}
        left = stop_all(transports, job_id, grace, self.fanout,
                        job_dirs={n.host: n.job_dir for n in self.plan.nodes})
        return {h: (r if isinstance(r, int) else describe_error(r)) for h, r in left.items()}

    # -- logs

    def read_logs(self, every_line: bool = False) -> NodeResults[list[LogLine]]:
        def read(t: Transport) -> list[LogLine]:
            node = self.plan.node(t.host)
            res = t.run(logtail_command(self.python, self.setup, node.log_dir_path, {}, all_lines=every_line,
                                        once=True, job_dir=node.job_dir), timeout=120)
            out = []
            for raw in res.stdout.splitlines():
                tagged = split_tagged(raw)
                if tagged is not None:
                    out.append(LogLine(t.host, rank_of_path(tagged[0]), tagged[2]))
            return out

        return self._on_all(read)

    def rank_log(self, rank: int | None, lines: int) -> tuple[NodePlan, str, bool, str]:
        node = self.plan.nodes[0] if rank is None else self.plan.node_of_rank(rank)
        path = node.log_path(rank)
        t = self.connect(node.host)
        try:
            res = t.run(tail_command(path, lines, False), timeout=60)
        finally:
            t.close()
        return node, path, res.ok, res.stdout if res.ok else res.stderr.strip()

    def follow_log(self, rank: int | None, lines: int) -> Iterator[str]:
        """Yield the last ``lines`` of ``rank``'s log, then every new line (``logs --follow``)."""
        node = self.plan.nodes[0] if rank is None else self.plan.node_of_rank(rank)
        t = self.connect(node.host)
        try:
            yield from t.stream(tail_command(node.log_path(rank), lines, True))
        finally:
            t.close()

    def log_sources(self) -> list[NodeLogs]:
        return [NodeLogs(n.host, (lambda h=n.host: self.connect(h)), self.python, self.setup,
                         n.log_dir_path, n.job_dir) for n in self.plan.nodes]

    def describe(self, job_id: str) -> str | None:
        return None  # no scheduler: the nodes' processes are the whole story

    def list_checkpoints(self, output_dir: str) -> NodeResults[list[str]]:
        """Per node, the checkpoint files under ``<job dir>/<output_dir>/checkpoint`` as
        ``rank_N/<file>.ckpt``."""
        def listing(t: Transport) -> list[str]:
            where = posixpath.join(self.plan.node(t.host).job_dir, output_dir, "checkpoint")
            res = t.run(f"cd {shlex.quote(where)} 2>/dev/null && ls -d rank_*/*.ckpt 2>/dev/null", timeout=30)
            return res.stdout.split()

        return self._on_all(listing)
