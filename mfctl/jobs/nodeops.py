"""Node operations over any transport: preflight, push, start, status, stop, read logs.

Every operation fans out to all nodes at once (bounded by ``fanout``) and returns one outcome per
node (``NodeResults``), so a failure on one node never hides what happened on the others. The
commands each builds are quoted with ``shlex``; ``HostsBackend`` (``backend.py``) puts them together.
"""

from __future__ import annotations

import functools
import hashlib
import posixpath
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from mfctl.cluster import npu
from mfctl.cluster.health import NodeStatus, parse_procs
from mfctl.cluster.hostfile import HostEntry
from mfctl.cluster.plan import BUNDLE_DIR, LAUNCH_SCRIPT, RUN_DIR, LaunchPlan, NodePlan
from mfctl.cluster.preflight import Context, NodeFacts, judge, read_facts
from mfctl.errors import OperationFailed
from mfctl.remote.base import NodeUnreachable, Transport
from mfctl.remote.connect import SshOptions, open_transport
from mfctl.remote.group import NodeResults, run_on_all

T = TypeVar("T")

#: Files of mfctl's node side shipped in every bundle (``bundle/node/``).
NODE_FILES = ("train.py", "cpu_compat.py", "cpu_train.py")
#: ``bundle/cpu_site/``: name on the node -> file of ``mfctl/node``.
CPU_SITE_FILES = {"sitecustomize.py": "cpu_sitecustomize.py", "cpu_train.py": "cpu_train.py"}


@functools.cache
def node_script(name: str) -> str:
    """One of mfctl's node scripts (read once per process: every node gets the same text)."""
    return resources.files("mfctl.node").joinpath(name).read_text(encoding="utf-8")


def inline(script_name: str, *args: str) -> str:
    """A command that runs one of mfctl's node scripts without it being on the node."""
    return shlex.join(["sh", "-c", node_script(script_name), script_name.removesuffix(".sh"), *args])


def in_one_piece(command: str) -> str:
    """``command`` with its stdout sent back in one piece when it ends, for a command whose output
    is read whole. A line printed on its own travels as its own SSH packet, and every packet costs
    the controller ~0.1-0.2 ms of CPU (paramiko decrypts, checks and dispatches it in Python): the
    preflight's ~15 lines were a third of ``mfctl check``'s cost per node. Trailing newlines are
    dropped (``$(...)``): fine for ``key value`` lines."""
    return f'o=$({command}); r=$?; printf "%s\\n" "$o"; exit "$r"'


def on_all(transports: dict[str, Transport], fn: Callable[[Transport], T],
           fanout: int = 64) -> NodeResults[T]:
    """``fn`` on every node, at most ``fanout`` at once; exceptions are returned, not raised."""
    return run_on_all(transports.values(), fn, fanout)


def describe_error(exc: Exception) -> str:
    if isinstance(exc, NodeUnreachable):
        return f"unreachable: {exc.reason}"
    if isinstance(exc, OperationFailed):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def open_all(entries: list[HostEntry], local_dir: str, opts: SshOptions) -> dict[str, Transport]:
    return {e.label: open_transport(e, local_dir, opts) for e in entries}


def close_all(transports: dict[str, Transport]) -> None:
    for t in transports.values():
        try:
            t.close()
        except Exception:  # closing is best effort
            pass


# --------------------------------------------------------------------------- preflight

@dataclass
class NodeCheck:
    host: str
    node_rank: int
    facts: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: ``check --json``'s ``npu`` (chips, links, versions) when the NPU rows applied.
    npu: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        out = {"host": self.host, "node_rank": self.node_rank, "ok": self.ok,
               "facts": self.facts, "problems": self.problems, "warnings": self.warnings}
        if self.npu is not None:
            out["npu"] = self.npu
        return out


def _set_env(spec) -> tuple[str, ...] | None:
    """The spec's ``ascend.set_env`` (None: unset, the defaults; [] sources nothing)."""
    value = spec.ascend.set_env
    return None if value is None else tuple(value)


def job_devices(spec, plan: LaunchPlan) -> tuple[int, ...]:
    """The device ids the job's workers use on each node: the spec's list, else 0..N-1."""
    if spec.devices:
        return tuple(spec.devices)
    return tuple(range(plan.nodes[0].local_worker_num if plan.nodes else spec.devices_per_node))


def preflight_context(plan: LaunchPlan, spec, ascend: bool = False, check_dataset: bool = True) -> Context:
    """What the preflight's rows need to know of the job (also shipped to a Slurm job's nodes)."""
    return Context(python=spec.python, dataset=spec.dataset, setup=spec.setup or "",
                   master_port=plan.master_port, job_name=spec.name, launcher=plan.launcher,
                   mindformers_home=spec.mindformers_home or "", check_dataset=check_dataset,
                   ascend=ascend, devices=job_devices(spec, plan), set_env=_set_env(spec))


def preflight_args(spec, ctx: Context, workdir: str, is_master: bool, job_dir: str) -> list[str]:
    """``node/preflight.sh``'s arguments."""
    mf_home = ctx.mindformers_home if ctx.launcher == "mindformers" else ""
    return [spec.python, spec.dataset, workdir, str(ctx.master_port), "1" if is_master else "0", spec.name,
            spec.setup or "", job_dir, mf_home, "1" if ctx.ascend else "0",
            ",".join(str(d) for d in ctx.devices), *set_env_args(ctx)]


def set_env_args(ctx: Context) -> list[str]:
    """``preflight.sh``'s last arguments: ``1`` and the configured CANN scripts, or ``0`` (unset:
    the default locations)."""
    return ["0"] if ctx.set_env is None else ["1", *ctx.set_env]


def judged(facts: list[NodeFacts], ctx: Context) -> list[NodeCheck]:
    """The table's verdict on every node (``mfctl.cluster.preflight``), as ``NodeCheck``s."""
    checks = []
    for f, v in zip(facts, judge(facts, ctx)):
        values = {} if "unreachable" in f.values else dict(f.values)
        checks.append(NodeCheck(f.host, f.node_rank, values, list(v.problems), list(v.warnings),
                                f.npu_json(ctx.devices) if ctx.ascend else None))
    return checks


def preflight(plan: LaunchPlan, spec, transports: dict[str, Transport], fanout: int = 64,
              check_dataset: bool = True, ascend: bool = False, network: bool = False) -> list[NodeCheck]:
    """Gather every node's facts in one round trip each, then judge them with the table (and,
    with ``network``, ping each device's peer on the next node: a second round trip)."""
    ctx = preflight_context(plan, spec, ascend, check_dataset)
    by_host = {n.host: n for n in plan.nodes}

    def gather(t: Transport) -> str:
        node = by_host[t.host]
        workdir = node.job_dir if plan.local else spec.workdir
        cmd = in_one_piece(inline("preflight.sh", *preflight_args(spec, ctx, workdir, node.node_rank == 0,
                                                                 node.job_dir)))
        res = t.run(cmd, timeout=120)
        text = res.stdout
        if "\ndone 1" not in "\n" + text:
            text += "\nerror " + (res.stderr.strip().splitlines() or ["preflight did not finish"])[-1]
        return text

    results = on_all(transports, gather, fanout)
    facts = []
    for node in plan.nodes:
        if node.host in results.failed:
            why = describe_error(results.failed[node.host])
            facts.append(NodeFacts(node.host, node.node_rank, {"unreachable": why}))
        else:
            facts.append(read_facts(node.host, node.node_rank, results.ok[node.host]))
    checks = judged(facts, ctx)
    if network and ascend and len(facts) > 1:
        _ping_peers(plan, transports, facts, checks, ctx, fanout)
    return checks


def _ping_peers(plan: LaunchPlan, transports: dict[str, Transport], facts: list[NodeFacts],
                checks: list[NodeCheck], ctx: Context, fanout: int) -> None:
    """``check --network``: each device pings the same device on the next node (the last node the
    first); the pairs that lost packets fail both nodes."""
    order = [f for f in facts if f.get("hccn_tool") not in (None, "MISSING")]
    targets: dict[str, list[tuple[int, str, str]]] = {}
    for i, f in enumerate(order):
        peer = order[(i + 1) % len(order)]
        if peer is f:
            continue
        for d in ctx.devices:
            ip = peer.net(d).ip
            if ip:
                targets.setdefault(f.host, []).append((d, peer.host, ip))
    hccn = {f.host: f.get("hccn_tool") or "hccn_tool" for f in facts}

    def ping(t: Transport) -> str:
        parts = [f"{shlex.quote(hccn[t.host])} -i {d} -ping -g address {shlex.quote(ip)} 2>&1 | "
                 f"sed 's/^/@ping.{d} /'" for d, _, ip in targets.get(t.host, [])]
        return t.run(in_one_piece("; ".join(parts) or "true"), timeout=120).stdout

    pinged = on_all({h: transports[h] for h in targets}, ping, fanout)
    by_host = {c.host: c for c in checks}
    for host, pairs in targets.items():
        got = read_facts(host, 0, pinged.ok.get(host, ""))
        for d, peer, ip in pairs:
            result = npu.parse_ping(got.text(f"ping.{d}"))
            if host in pinged.failed:
                why = describe_error(pinged.failed[host])
            elif result is None:
                said = next((x for x in got.raw.get(f"ping.{d}", []) if x.strip()), "nothing")
                why = f"hccn_tool said {said[:120]!r}"
            elif result.lost:
                why = f"{result.sent - result.received} of {result.sent} packets lost"
            else:
                continue
            problem = (f"NPU {d} -> {peer} NPU {d} ({ip}): {why}; check the device network between them "
                       "(cables, switch, hccn_tool -i N -ip -g / -netdetect)")
            for h in (host, peer):
                by_host[h].problems.append(problem)


# --------------------------------------------------------------------------- push

def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bundle_files(rendered: Path, node_rank: int) -> dict[str, tuple[bytes, int]]:
    """Bundle-relative path -> (content, mode) for one node."""
    files: dict[str, tuple[bytes, int]] = {
        "config.yaml": ((rendered / "config.yaml").read_bytes(), 0o644),
        "launch.sh": ((rendered / f"launch-node{node_rank}.sh").read_bytes(), 0o755),
    }
    for name in NODE_FILES:
        files[f"node/{name}"] = (resources.files("mfctl.node").joinpath(name).read_bytes(), 0o644)
    # Put on PYTHONPATH only with launcher 'mindformers' on CPU (the launch script decides).
    for name, source in CPU_SITE_FILES.items():
        files[f"cpu_site/{name}"] = (resources.files("mfctl.node").joinpath(source).read_bytes(), 0o644)
    return files


def push_bundle(t: Transport, job_dir: str, files: dict[str, tuple[bytes, int]],
                on_file: Callable[[], None] | None = None) -> int:
    """Copy the files whose checksum differs on the node; return how many were copied."""
    import tempfile

    bundle = posixpath.join(job_dir, BUNDLE_DIR)
    paths = [posixpath.normpath(posixpath.join(bundle, rel)) for rel in files]
    dirs = sorted({posixpath.dirname(p) for p in paths})
    prep = (f"umask 077; mkdir -p {' '.join(shlex.quote(d) for d in dirs)} "
            f"{shlex.quote(posixpath.join(job_dir, RUN_DIR))} && chmod 700 {shlex.quote(job_dir)} && "
            f"(sha256sum {' '.join(shlex.quote(p) for p in paths)} 2>/dev/null; true)")
    res = t.run(prep, timeout=60)
    if not res.ok:
        raise OperationFailed(f"{t.host}: cannot create {job_dir}: {res.stderr.strip() or res.stdout.strip()}")
    remote_sums = {}
    for line in res.stdout.splitlines():
        digest, _, path = line.partition("  ")
        remote_sums[path.strip()] = digest
    copied = 0
    for (content, mode), path in zip(files.values(), paths):
        if remote_sums.get(path) != _sha256(content):
            with tempfile.NamedTemporaryFile(delete=True) as tmp:
                tmp.write(content)
                tmp.flush()
                t.put(tmp.name, path, mode=mode)
            copied += 1
        if on_file:
            on_file()
    return copied


# --------------------------------------------------------------------------- start / stop / status

def start_command(job_dir: str, log_dir: str, job_id: str) -> str:
    """Start the node's launch script detached; an earlier run's logs are kept beside, renamed."""
    log = shlex.quote(log_dir)
    rotate = f"if [ -d {log} ]; then mv {log} {log}.\"$(cat {RUN_DIR}/job_id 2>/dev/null || date +%s)\"; fi\n"
    # The cd is its own statement: backgrounding a '&&' list would keep the session's pipes open.
    # A stop that came first (mfctl killed mid-launch, then 'mfctl stop') wins over this start.
    return (f"cd {shlex.quote(job_dir)} || exit 97\n"
            f"if [ \"$(cat {RUN_DIR}/stopped 2>/dev/null)\" = {shlex.quote(job_id)} ]; "
            "then echo refused stopped; exit 0; fi\n"
            + rotate +
            f"rm -f {RUN_DIR}/exit_code {RUN_DIR}/launch.pid\n"
            f"echo {shlex.quote(job_id)} > {RUN_DIR}/job_id\n"
            # The marker is in the launch shell's own environment, so a stop finds it from its first instant.
            f"MFCTL_JOB={shlex.quote(job_id)} nohup setsid sh {LAUNCH_SCRIPT} "
            f"> {RUN_DIR}/launch.out 2>&1 < /dev/null &\n"
            "echo started $!")


def node_status(t: Transport, job_id: str, node: NodePlan, timeout: float = 60) -> NodeStatus:
    res = t.run(inline("nodectl.sh", "status", job_id, node.job_dir, node.log_dir), timeout=timeout)
    st = NodeStatus(t.host, node.node_rank, procs=parse_procs(res.stdout), ranks=node.ranks)
    for line in res.stdout.splitlines():
        key, _, rest = line.partition(" ")
        if key == "exit_code" and rest.strip().lstrip("-").isdigit():
            st.exit_code = int(rest)
        elif key == "started_at" and rest.strip().isdigit():
            st.started_at = float(rest)
        elif key == "log":
            name, _, size = rest.partition(" ")
            st.logs[name] = int(size) if size.isdigit() else 0
        elif key == "line":
            name, _, text = rest.partition(" ")
            st.lines.append((name, text))
    return st


def stop_node(t: Transport, job_id: str, grace: float = 10.0, job_dir: str | None = None) -> int:
    """Stop every process of the job on one node; return how many are left (0 = clean)."""
    args = ["stop", job_id, str(int(grace))] + ([job_dir] if job_dir else [])
    res = t.run(inline("nodectl.sh", *args), timeout=grace + 20)
    left = [line for line in res.stdout.splitlines() if line.startswith("left ")]
    if not left:
        raise OperationFailed(f"{t.host}: stop did not report: {res.stderr.strip()[:200]}")
    return int(left[-1].split()[1])


def stop_all(transports: dict[str, Transport], job_id: str, grace: float = 10.0,
             fanout: int = 64, job_dirs: dict[str, str] | None = None) -> NodeResults[int]:
    """Stop the job everywhere; ``job_dirs`` (host -> job dir) also blocks starts still on their way."""
    dirs = job_dirs or {}
    return on_all(transports, lambda t: stop_node(t, job_id, grace, dirs.get(t.host)), fanout)


def tail_command(path: str, lines: int, follow: bool) -> str:
    if follow:
        return shlex.join(["tail", "-n", str(lines), "-F", path])
    return shlex.join(["tail", "-n", str(lines), path])


def failed_look(node: NodePlan, exc: Exception) -> NodeStatus:
    """The status of a node whose look raised: unreachable (``NodeUnreachable``: wait and see), or
    a look that failed on a node that answered."""
    return NodeStatus(node.host, node.node_rank, reachable=not isinstance(exc, NodeUnreachable),
                      error=describe_error(exc), ranks=node.ranks)


#: msrun's own output (worker exits, teardown) lands in the launch script's output file.
MSRUN_OUT = "launch.out"


def logtail_command(python: str, setup: str | None, log_dir: str, offsets: dict[str, int],
                    all_lines: bool = False, once: bool = False, job_dir: str | None = None) -> str:
    """``node/logtail.py`` run by the node's python: the metric lines of every msrun log (and of
    msrun's own output under ``job_dir``) from ``offsets`` on, followed or read ``once``."""
    argv = [python, "-u", "-c", node_script("logtail.py"), log_dir]
    if job_dir is not None:
        argv.append(f"--extra={MSRUN_OUT}={posixpath.join(job_dir, RUN_DIR, MSRUN_OUT)}")
    argv += [f"--offset={name}={pos}" for name, pos in sorted(offsets.items())]
    if all_lines:
        argv.append("--all")
    if once:
        argv.append("--once")
    command = shlex.join(argv)
    if setup:
        command = f"{setup} >/dev/null 2>&1; exec {command}"
    return command
