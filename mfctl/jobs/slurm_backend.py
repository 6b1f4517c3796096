"""The Slurm backend: Slurm chooses the nodes and starts one msrun per node; mfctl renders, submits,
looks and stops through Slurm's own tools.

The job dir (where ``mfctl.yaml`` is) must be on the filesystem the nodes share. Node rank N keeps
what an SSH node keeps in its job dir (bundle, run files, msrun logs, checkpoints) in
``<job dir>/nodes/nodeN``; the batch script and its output are in ``<job dir>/slurm/``. Every file
is written and read on the machine that runs ``sbatch`` (this one, or the login node): logs come
from the shared job dir through one connection, never one per node.

Statuses combine what Slurm says (``scontrol -o show job``: pending with its reason, running on
which nodes, ended with which exit code) with the run files each node writes (its exit code, the
node it ran on, a failed preflight's reason); once Slurm forgets a job (``MinJobAge``) the run
files and mfctl's record remain.

Size: one backend behind one interface (launch, status, stop, logs), kept in one module as the
hosts backend is.
"""

from __future__ import annotations

import posixpath
import shlex
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

from mfctl.cluster.health import NodeStatus, ProcInfo
from mfctl.cluster.plan import LaunchPlan, NodePlan
from mfctl.cluster.preflight import Context
from mfctl.cluster.slurm import NETWORK_FS, NODES_DIR, SLURM_DIR, SlurmJob, partition_problem, sbatch_argv
from mfctl.errors import BadInput, OperationFailed
from mfctl.jobs.backend import Files, NodeLogs
from mfctl.jobs.nodeops import (
    NodeCheck,
    bundle_files,
    logtail_command,
    preflight_context,
    push_bundle,
    set_env_args,
    tail_command,
)
from mfctl.jobspec.schema import SPEC_FILE, JobSpec, SlurmSpec
from mfctl.metrics.logdir import rank_of_path
from mfctl.metrics.types import LogLine
from mfctl.node.logtail import split_tagged
from mfctl.records.record import JobRecord
from mfctl.remote.connect import SshOptions
from mfctl.remote.group import NodeResults
from mfctl.remote.slurm import SlurmClient
from mfctl.render import render_template

#: How long a stop waits for the job to leave Slurm's active states after the KILL.
END_WAIT_S = 20.0


def batch_script(spec: JobSpec, plan: LaunchPlan, job_id: str, job_dir: str, ctx: Context | None = None) -> str:
    """The batch script ``sbatch`` runs (see templates/slurm-batch.sh.j2); ``ctx``: the preflight's."""
    assert spec.slurm is not None
    ctx = ctx or preflight_context(plan, spec)
    return render_template("slurm-batch.sh.j2", {
        "npu_args": shlex.join(["1" if ctx.ascend else "0", ",".join(map(str, ctx.devices)), *set_env_args(ctx)]),
        "job_id": job_id, "job_name": spec.name, "job_dir": job_dir, "nodes_dir": NODES_DIR,
        "node_count": len(plan.nodes), "devices": plan.nodes[0].local_worker_num,
        "sbatch": shlex.join(sbatch_argv(spec.slurm, spec.name, output_path(job_dir, job_id),
                                         script_path(job_dir, job_id))),
        "log_dir": plan.nodes[0].log_dir, "python": spec.python, "dataset": spec.dataset,
        "master_port": plan.master_port, "setup": spec.setup or "",
        "mf_home": spec.mindformers_home if spec.launcher == "mindformers" else "",
        "stopped_marker": stopped_path(job_dir, job_id),
    })


def script_path(job_dir: str, job_id: str) -> str:
    return posixpath.join(job_dir, SLURM_DIR, f"{job_id}.sh")


def output_path(job_dir: str, job_id: str) -> str:
    return posixpath.join(job_dir, SLURM_DIR, f"{job_id}-%j.out")


def stopped_path(job_dir: str, job_id: str) -> str:
    """Written by ``stop`` before it kills the step: the batch script then cancels the job."""
    return posixpath.join(job_dir, SLURM_DIR, f"{job_id}.stopped")


def id_path(job_dir: str, job_id: str) -> str:
    return posixpath.join(job_dir, SLURM_DIR, f"{job_id}.slurm_id")


def _status_command(nodes: tuple[NodePlan, ...]) -> str:
    """One round trip: every node's run files and the tails of its logs (nodectl.sh status without
    the process scan: Slurm says which tasks run)."""
    parts = []
    for n in nodes:
        d, logs = shlex.quote(n.job_dir), shlex.quote(n.log_dir)
        parts.append(
            f"echo node {n.node_rank}; if cd {d} 2>/dev/null; then "
            "for k in exit_code started_at node_name preflight_failed job_id; do "
            "[ -f run/$k ] && echo \"$k $(head -n 1 run/$k)\"; done; "
            f"for f in {logs}/worker_*.log {logs}/scheduler.log; do [ -f \"$f\" ] || continue; "
            "echo \"log $(basename \"$f\") $(wc -c < \"$f\")\"; "
            "tail -c 262144 \"$f\" | grep -a -e 'step:\\[' -e 'samples/s/p' -e 'Training Over' "
            "-e 'Traceback' -e 'Error' -e 'exit with exception' | tail -n 6 | "
            "sed \"s#^#line $(basename \"$f\") #\"; done; cd /; fi")
    return "\n".join(parts)


class SlurmBackend:
    """A job Slurm runs: ``sbatch`` of one batch script, one ``srun`` task per node."""

    def __init__(self, plan: LaunchPlan, slurm: SlurmSpec, job_dir: str, opts: SshOptions,
                 spec: JobSpec | None = None, python: str = "python3", setup: str | None = None) -> None:
        self.plan = plan
        self.slurm = slurm
        self.job_dir = job_dir
        self.opts = opts
        self.spec = spec
        self.python = python
        self.setup = setup
        self._client: SlurmClient | None = None
        self.last_job: SlurmJob | None = None
        self.context: Context | None = None  # the preflight's (set by ``preflight``), for the batch script

    @classmethod
    def for_record(cls, record: JobRecord) -> SlurmBackend:
        spec = JobSpec.model_validate(record.spec)
        assert spec.slurm is not None
        return cls(record.plan, spec.slurm, record.job_dir, SshOptions.from_json(record.ssh), spec,
                   record.python, record.setup)

    @property
    def client(self) -> SlurmClient:
        if self._client is None:
            self._client = SlurmClient.open(self.slurm.login, self.job_dir, self.opts)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> SlurmBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _order(self) -> list[str]:
        return [n.host for n in self.plan.nodes]

    # -- launch

    def preflight(self, spec: JobSpec, check_dataset: bool = True, ascend: bool = False,
                  network: bool = False) -> list[NodeCheck]:
        """What can be known before submitting; anything wrong is bad input (nothing is submitted).
        The nodes' facts are judged by the batch script, with the same table (``--network``: not
        done, the nodes are not known yet)."""
        self.context = preflight_context(self.plan, spec, ascend, check_dataset)
        c = self.client
        c.require_tools()
        where = posixpath.join(self.job_dir, SPEC_FILE)
        part = c.partition(self.slurm.partition, where)
        problem = partition_problem(part, self.slurm.node_count)
        if problem:
            raise BadInput(f"{where}: slurm.{problem}; Slurm would keep the job pending forever "
                           "(PartitionNodeLimit): lower node_count or pick another partition")
        self.check_shared()
        self.check_no_earlier_run(where)
        return [NodeCheck(n.host, n.node_rank, facts={"partition": part.name,
                                                      "partition_nodes": str(part.total_nodes)})
                for n in self.plan.nodes]

    def check_shared(self) -> None:
        """The job dir must be on a filesystem every node sees at the same path: under the declared
        ``slurm.shared_root``, or on a network filesystem. (Each task checks again that it sees its
        files, and fails the job at once with its node's name if not.)"""
        root = self.slurm.shared_root
        job_dir = posixpath.normpath(self.job_dir)
        if root:
            root = posixpath.normpath(root)
            if job_dir == root or job_dir.startswith(root.rstrip("/") + "/"):
                return
            raise BadInput(f"{self.job_dir}: the job dir is not under slurm.shared_root {root}, the "
                           "path the nodes share; move the job there (mfctl init DIR under it)")
        fs = self.client.fs_type(job_dir)
        if fs in NETWORK_FS:
            return
        raise BadInput(f"{self.job_dir}: the job dir is on a {fs or 'unknown'} filesystem, which Slurm's "
                       "nodes may not see; put the job on the cluster's shared filesystem, or declare "
                       "the shared path with --shared-root DIR (slurm.shared_root)")

    def check_no_earlier_run(self, where: str) -> None:
        """An earlier launch of this job dir that Slurm still runs would share the node dirs (run
        files, logs, checkpoints) with this one: refuse, as the SSH path refuses leftovers."""
        res = self.client.t.run(f"cd {shlex.quote(posixpath.join(self.job_dir, SLURM_DIR))} 2>/dev/null && "
                                "for f in *.slurm_id; do [ -f \"$f\" ] && echo \"${f%.slurm_id} $(cat \"$f\")\"; done",
                                timeout=30)
        for line in res.stdout.splitlines():
            earlier, _, sid = line.partition(" ")
            job = self.client.job(sid.strip()) if sid.strip().isdigit() else None
            if job is not None and job.active:
                raise BadInput(f"{where}: job {earlier} (slurm job {sid.strip()}) of this job dir is still "
                               f"{job.state}; 'mfctl stop {earlier}' first")

    def _files(self, rendered: Path, node_rank: int, extra: Files) -> Files:
        files = bundle_files(rendered, node_rank)
        node = resources.files("mfctl.node")
        files["node/preflight.sh"] = (node.joinpath("preflight.sh").read_bytes(), 0o644)
        files["node/preflight_judge.py"] = (node.joinpath("preflight_judge.py").read_bytes(), 0o644)
        # The preflight's table and parsers, as a package of their own for the judge (stdlib only).
        cluster = resources.files("mfctl.cluster")
        files["judge/mfctl/__init__.py"] = files["judge/mfctl/cluster/__init__.py"] = (b"", 0o644)
        files.update({f"judge/mfctl/cluster/{name}": (cluster.joinpath(name).read_bytes(), 0o644)
                      for name in ("preflight.py", "facts.py", "npu.py")})
        if self.context is not None or self.spec is not None:
            ctx = self.context or preflight_context(self.plan, self.spec)
            files["preflight.json"] = (ctx.to_json().encode(), 0o644)
        return {**files, **extra}

    def bundle_size(self, rendered: Path, extra: Files) -> int:
        return len(self._files(rendered, 0, extra))

    def push(self, rendered: Path, extra: Files, on_file: Callable[[], None]) -> NodeResults[int]:
        results: NodeResults[int] = NodeResults({}, {}, self._order())
        for n in self.plan.nodes:
            try:
                results.ok[n.host] = push_bundle(self.client.t, n.job_dir,
                                                 self._files(rendered, n.node_rank, extra), on_file)
            except Exception as exc:  # reported per node, as the hosts backend does
                results.failed[n.host] = exc
        return results

    def _write(self, path: str, text: str, mode: int) -> None:
        res = self.client.t.run(f"mkdir -p {shlex.quote(posixpath.dirname(path))}", timeout=30)
        if not res.ok:
            raise OperationFailed(f"cannot create {posixpath.dirname(path)}: {res.stderr.strip()}")
        with tempfile.NamedTemporaryFile("w", encoding="utf-8") as tmp:
            tmp.write(text)
            tmp.flush()
            self.client.t.put(tmp.name, path, mode=mode)

    def start(self, job_id: str) -> dict[str, str]:
        if self.spec is None:
            raise OperationFailed("a recorded Slurm job is resubmitted by 'mfctl launch --resume'")
        script = batch_script(self.spec, self.plan, job_id, self.job_dir, self.context)
        self._write(script_path(self.job_dir, job_id), script, 0o700)
        argv = sbatch_argv(self.slurm, self.spec.name, output_path(self.job_dir, job_id),
                           script_path(self.job_dir, job_id))
        try:
            slurm_id = self.client.submit(argv)
        except OperationFailed as exc:
            return {"slurm": str(exc)}
        self._write(id_path(self.job_dir, job_id), slurm_id + "\n", 0o644)
        return {}

    # -- status and stop

    def slurm_id(self, job_id: str) -> str | None:
        res = self.client.t.run(f"cat {shlex.quote(id_path(self.job_dir, job_id))}", timeout=30)
        text = res.stdout.strip()
        return text if res.ok and text.isdigit() else None

    def slurm_job(self, job_id: str) -> SlurmJob | None:
        sid = self.slurm_id(job_id)
        self.last_job = self.client.job(sid) if sid else None
        return self.last_job

    def describe(self, job_id: str) -> str | None:
        """What Slurm says about the job, in one phrase (None: it has forgotten it)."""
        sid = self.slurm_id(job_id)
        if sid is None:
            return "never submitted"
        job = self.client.job(sid)
        return f"slurm job {sid}: {job.describe()}" if job else f"slurm job {sid}: ended (Slurm forgot it)"

    def statuses(self, job_id: str, timeout: float = 60) -> list[NodeStatus]:
        job = self.slurm_job(job_id)
        res = self.client.t.run(_status_command(self.plan.nodes), timeout=timeout)
        facts: dict[int, dict[str, str]] = {}
        lines: dict[int, list[tuple[str, str]]] = {}
        logs: dict[int, dict[str, int]] = {}
        current = -1
        for raw in res.stdout.splitlines():
            key, _, rest = raw.partition(" ")
            if key == "node" and rest.isdigit():
                current = int(rest)
                facts[current], lines[current], logs[current] = {}, [], {}
            elif current < 0:
                continue
            elif key == "line":
                name, _, text = rest.partition(" ")
                lines[current].append((name, text))
            elif key == "log":
                name, _, size = rest.partition(" ")
                logs[current][name] = int(size) if size.isdigit() else 0
            else:
                facts[current][key] = rest.strip()
        out = []
        for n in self.plan.nodes:
            f = facts.get(n.node_rank, {})
            mine = f.get("job_id") == job_id  # the run files are this launch's, not an earlier one's
            st = NodeStatus(f.get("node_name") if mine and f.get("node_name") else n.host, n.node_rank,
                            ranks=n.ranks, logs=logs.get(n.node_rank, {}), lines=lines.get(n.node_rank, []))
            code = f.get("exit_code", "") if mine else ""
            if code.lstrip("-").isdigit():
                st.exit_code = int(code)
            if mine and f.get("started_at", "").isdigit():
                st.started_at = float(f["started_at"])
            if mine and f.get("preflight_failed"):
                st.failure = st.note = f"preflight failed: {f['preflight_failed']}"
            if job is not None and job.active and st.exit_code is None:
                # Slurm holds (or waits for) the nodes: the job is alive there unless the node's
                # launch script already wrote its exit code. No process scan: the tasks run on
                # the nodes, not where mfctl asks.
                st.procs = [ProcInfo(0, 0, "S", 0, "-", None, f"slurm job {job.job_id} {job.state}")]
                st.note = st.note or job.describe()
            elif job is not None:
                st.note = st.note or f"slurm job {job.job_id}: {job.describe()}"
            out.append(st)
        if job is not None and not job.active and all(st.exit_code is None for st in out):
            # No node wrote its exit code (cancelled, or killed before msrun ended): Slurm's says.
            code = job.exit_code or (128 + job.signal if job.signal else None)
            if job.state == "COMPLETED":
                code = 0
            for st in out:
                st.exit_code = code
        # The nodes that failed on their own first: the verdict names the node that failed, not
        # the one Slurm stopped because of it.
        out.sort(key=lambda st: 0 if st.exit_code not in (None, 0) else 1)
        return out

    def stop(self, job_id: str, grace: float, hosts: list[str] | None = None) -> dict[str, int | str]:
        """TERM to the job's step, at most ``grace`` seconds for it to end, then KILL to the step
        (Slurm's own cancel would wait out the site's KillWait for tasks that ignore TERM), then
        cancel the job; done when Slurm holds no node for it. Twice is safe."""
        sid = self.slurm_id(job_id)
        if sid is None:
            return {n.host: 0 for n in self.plan.nodes}
        c = self.client
        job = c.job(sid)
        if job is not None and job.active:
            if job.pending:
                c.cancel(sid)
            else:
                self._write(stopped_path(self.job_dir, job_id), "stopped\n", 0o644)
                steps = [s for s in c.steps(sid) if s.split(".")[-1].isdigit()] or [f"{sid}.0"]
                for step in steps:
                    c.signal(step, "TERM")
                deadline = time.monotonic() + grace
                while time.monotonic() < deadline and any(s in c.steps(sid) for s in steps):
                    time.sleep(0.2)
                for step in steps:
                    if step in c.steps(sid):
                        c.signal(step, "KILL")
                c.cancel(sid)
            job = c.wait_ended(sid, END_WAIT_S)
        self.last_job = job
        left: int | str = 0 if job is None or not job.active else \
            f"slurm job {sid} still {job.state} after {END_WAIT_S:.0f} s"
        return {n.host: left for n in self.plan.nodes}

    # -- logs (from the shared job dir)

    def read_logs(self, every_line: bool = False) -> NodeResults[list[LogLine]]:
        results: NodeResults[list[LogLine]] = NodeResults({}, {}, self._order())
        for n in self.plan.nodes:
            try:
                res = self.client.t.run(logtail_command(self.python, self.setup, n.log_dir_path, {},
                                                        all_lines=every_line, once=True, job_dir=n.job_dir),
                                        timeout=120)
                got = []
                for raw in res.stdout.splitlines():
                    tagged = split_tagged(raw)
                    if tagged is not None:
                        got.append(LogLine(n.host, rank_of_path(tagged[0]), tagged[2]))
                results.ok[n.host] = got
            except Exception as exc:  # per node, as the hosts backend does
                results.failed[n.host] = exc
        return results

    def rank_log(self, rank: int | None, lines: int) -> tuple[NodePlan, str, bool, str]:
        node = self.plan.nodes[0] if rank is None else self.plan.node_of_rank(rank)
        path = node.log_path(rank)
        res = self.client.t.run(tail_command(path, lines, False), timeout=60)
        return node, path, res.ok, res.stdout if res.ok else res.stderr.strip()

    def follow_log(self, rank: int | None, lines: int) -> Iterator[str]:
        node = self.plan.nodes[0] if rank is None else self.plan.node_of_rank(rank)
        yield from self.client.t.stream(tail_command(node.log_path(rank), lines, True))

    def log_sources(self) -> list[NodeLogs]:
        return [NodeLogs(n.host, (lambda: SlurmClient.open(self.slurm.login, self.job_dir, self.opts).t),
                         self.python, self.setup, n.log_dir_path, n.job_dir) for n in self.plan.nodes]

    def list_checkpoints(self, output_dir: str) -> NodeResults[list[str]]:
        results: NodeResults[list[str]] = NodeResults({}, {}, self._order())
        for n in self.plan.nodes:
            where = posixpath.join(n.job_dir, output_dir, "checkpoint")
            res = self.client.t.run(f"cd {shlex.quote(where)} 2>/dev/null && ls -d rank_*/*.ckpt 2>/dev/null",
                                    timeout=30)
            results.ok[n.host] = res.stdout.split()
        return results
