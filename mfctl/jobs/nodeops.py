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

from mfctl.cluster.health import NodeStatus, parse_procs
from mfctl.cluster.hostfile import HostEntry
from mfctl.cluster.plan import BUNDLE_DIR, LAUNCH_SCRIPT, RUN_DIR, LaunchPlan, NodePlan
from mfctl.errors import OperationFailed
from mfctl.remote.base import NodeUnreachable, Transport
from mfctl.remote.connect import SshOptions, open_transport
from mfctl.remote.group import NodeResults, run_on_all

T = TypeVar("T")

#: Files of mfctl's node side shipped in every bundle (``bundle/node/``).
NODE_FILES = ("train.py", "cpu_compat.py")
#: ``bundle/cpu_site/``: name on the node -> file of ``mfctl/node``.
CPU_SITE_FILES = {"sitecustomize.py": "cpu_sitecustomize.py", "cpu_compat.py": "cpu_compat.py"}


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

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "node_rank": self.node_rank, "ok": self.ok,
                "facts": self.facts, "problems": self.problems}


MIN_FREE_KB = 1024 * 1024  # 1 GiB for bundle, logs and a tiny model's checkpoints


def preflight(plan: LaunchPlan, spec, transports: dict[str, Transport], fanout: int = 64,
              check_dataset: bool = True) -> list[NodeCheck]:
    """Check every node in one round trip each; compare framework versions across nodes."""

    by_host = {n.host: n for n in plan.nodes}

    def check(t: Transport) -> dict[str, str]:
        node = by_host[t.host]
        workdir = node.job_dir if plan.local else spec.workdir
        mf_home = spec.mindformers_home if plan.launcher == "mindformers" else None
        cmd = in_one_piece(inline("preflight.sh", spec.python, spec.dataset, workdir, str(plan.master_port),
                                  "1" if node.node_rank == 0 else "0", spec.name, spec.setup or "",
                                  node.job_dir, mf_home or "", *(spec.ascend.set_env or ())))
        res = t.run(cmd, timeout=60)
        facts: dict[str, str] = {}
        for line in res.stdout.splitlines():
            key, _, value = line.partition(" ")
            facts[key] = value.strip()
        if "done" not in facts:
            facts["error"] = (res.stderr.strip().splitlines() or ["preflight did not finish"])[-1]
        return facts

    results = on_all(transports, check, fanout)
    checks: list[NodeCheck] = []
    for node in plan.nodes:
        nc = NodeCheck(node.host, node.node_rank)
        if node.host in results.failed:
            nc.problems.append(describe_error(results.failed[node.host]))
            checks.append(nc)
            continue
        f = nc.facts = results.ok[node.host]
        if "error" in f:
            nc.problems.append(f"preflight failed: {f['error']}")
        if f.get("setup_failed"):
            nc.problems.append(f"the setup line failed: {spec.setup!r}; fix 'setup' in mfctl.yaml")
        if f.get("python") in (None, "MISSING") or f.get("python_broken"):
            nc.problems.append(f"python {spec.python!r} not found; install it or set --python / 'python'")
        else:
            for pkg in ("mindspore", "mindformers"):
                if f.get(pkg) == "MISSING":
                    nc.problems.append(f"{pkg} is not installed for {spec.python}; pip install {pkg}")
            if f.get("msrun") == "MISSING":
                nc.problems.append("msrun not found next to python or on PATH; it ships with mindspore")
        if plan.launcher == "mindformers":
            nc.problems.extend(_checkout_problems(spec, f))
        if check_dataset and f.get("dataset") == "missing":
            nc.problems.append(f"dataset {spec.dataset} not found; copy it there or use --sync-dataset")
        elif check_dataset and f.get("dataset") == "unreadable":
            nc.problems.append(f"dataset {spec.dataset} is not readable by the node's user; "
                               "chmod it or use --sync-dataset")
        free = f.get("disk_free_kb", "")
        if free.isdigit() and int(free) < MIN_FREE_KB:
            nc.problems.append(f"only {int(free) // 1024} MiB free in the work dir; free some space")
        if f.get("port") == "busy":
            nc.problems.append(f"master port {plan.master_port} is in use on the master; stop what "
                               "uses it or set --master-port")
        if f.get("set_env_missing"):
            # ascend.set_env: the launch script would refuse to start without it.
            nc.problems.append(f"ascend.set_env {f['set_env_missing']} is not there (or not readable); "
                               "install CANN there or fix ascend.set_env in mfctl.yaml")
        if f.get("stale", "0") not in ("0", ""):
            nc.problems.append(f"{f['stale']} process(es) of an earlier {spec.name} job still run; "
                               "'mfctl stop' it first")
        checks.append(nc)
    versions = {(c.facts.get("mindspore"), c.facts.get("mindformers")) for c in checks if c.facts
                and c.facts.get("mindspore") not in (None, "MISSING")}
    if len(versions) > 1:
        for c in checks:
            c.problems.append("mindspore/mindformers versions differ across nodes: "
                              + ", ".join(f"{a}/{b}" for a, b in sorted(versions, key=str))
                              + "; install the same on every node")
    return checks


def _checkout_problems(spec, facts: dict[str, str]) -> list[str]:
    """What is wrong with the node's MindFormers checkout (launcher 'mindformers')."""
    home = spec.mindformers_home
    if facts.get("mf_home") == "missing":
        version = facts.get("mindformers", "")
        tag = f" at tag v{version}" if version not in ("", "MISSING") else ""
        return [f"mindformers_home {home} is not a directory; clone MindFormers' sources there"
                f"{tag} or fix mindformers_home"]
    missing = facts.get("mf_home_missing")
    if missing:
        return [f"mindformers_home {home} has no {' and no '.join(missing.split())}; it must be a "
                "MindFormers source checkout"]
    checkout, installed = facts.get("mf_home_version", "unknown"), facts.get("mindformers")
    if installed in (None, "MISSING"):
        return []  # reported above
    if checkout != installed:
        return [f"mindformers_home {home} is MindFormers {checkout} but {spec.python} has "
                f"mindformers {installed}; check out v{installed} there or install "
                f"mindformers=={checkout}"]
    return []


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
