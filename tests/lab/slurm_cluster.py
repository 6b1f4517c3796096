"""A real Slurm cluster on this machine: one ``slurmctld`` and one ``slurmd`` per network namespace.

It sits on a :class:`~tests.lab.NetnsCluster`: the Slurm nodes are the SSH lab's nodes (same
names, namespaces and addresses), so a test may reach a node over SSH and through Slurm. The
controller runs in the root namespace on the bridge address, as a login/head node would; every
``slurmd`` runs inside its node's namespace, so a job's tasks see that node's address only, as on
separate machines. The filesystem is shared by every node (as NFS/Lustre is on real clusters).

What it writes into ``lab_dir`` (default ``<tmp>/mfctl-slurmlab-<prefix>``, world-readable because
tasks may run as any user): ``slurm.conf``, ``cgroup.conf``, ``state/`` (slurmctld), ``spool/<node>/``,
daemon logs and pid files, ``lab.json`` and ``shared/`` (mode 1777) for the jobs' files.

Parallel sessions: the prefix/subnet claim of the NetnsCluster is reused, and the controller's port
pair is derived from the subnet (unique among live clusters), so two labs never share a port,
a state directory or a node. ``KillWait`` stays at Slurm's default (30 s): a stop that waits it out is
a stop that is too slow, and the tests should see it. The munge daemon is shared by every lab and is
left running by ``down`` (it holds no state of ours).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from tests.lab import ClusterError, NetnsCluster
from tests.lab.netns_cluster import _kill_pids, _proc_alive

_TOOLS = ("slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scontrol", "scancel", "srun", "munge", "unmunge")
_MUNGED = "/usr/sbin/munged"
_READY_TIMEOUT = 30.0
_PORT_BASE = 17000


class SlurmNode(NamedTuple):
    name: str     # NodeName in slurm.conf, also the SSH lab's Host alias
    address: str  # NodeAddr: the namespace's address (names do not resolve here)
    netns: str


class JobRow(NamedTuple):
    """One line of ``squeue -h --states=all -o '%i|%T|%r|%N'``."""

    job_id: str
    state: str
    reason: str
    nodes: str


def slurm_unavailable_reason() -> str | None:
    """Why this machine cannot run the Slurm lab, or None (cheap: no daemon is started)."""
    if os.geteuid() != 0:
        return "needs root (slurmd per network namespace, munge)"
    missing = [t for t in _TOOLS if shutil.which(t) is None and not os.access(f"/usr/sbin/{t}", os.X_OK)]
    if not os.access(_MUNGED, os.X_OK):
        missing.append("munged")
    if missing:
        return f"missing {', '.join(missing)} (apt-get install slurmctld slurmd slurm-client munge)"
    return None


def parse_scontrol_line(line: str) -> dict[str, str]:
    """``scontrol -o show job|node`` prints ``Key=value`` pairs on one line; values may hold spaces."""
    keys = list(re.finditer(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/.]*)=", line))
    out: dict[str, str] = {}
    for k, m in enumerate(keys):
        end = keys[k + 1].start() if k + 1 < len(keys) else len(line)
        out[m.group(1)] = line[m.end():end].strip()
    return out


def _pids_where(pred: Callable[[int], bool]) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if pred(int(entry.name)):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class SlurmCluster:
    """Slurm on the first ``n`` nodes of ``netns`` (see the module docstring).

    ``lab = SlurmCluster(netns); lab.up(2); lab.run(["sinfo"]); lab.down()``. ``env`` holds
    ``SLURM_CONF`` for the Slurm commands; ``run`` passes it.
    """

    def __init__(
        self,
        netns: NetnsCluster,
        *,
        lab_dir: str | os.PathLike[str] | None = None,
        partition: str = "lab",
        cpus: int = 2,
        real_memory_mb: int = 2000,
    ) -> None:
        self.netns = netns
        self.prefix = netns.prefix
        self.lab_dir = Path(lab_dir) if lab_dir else Path(tempfile.gettempdir()) / f"mfctl-slurmlab-{netns.prefix}"
        self.partition = partition
        self.cpus = cpus
        self.real_memory_mb = real_memory_mb
        net = netns.subnet.network_address.packed
        # Unique among live labs: NetnsCluster refuses a subnet already in use, and claim() slots
        # differ in the third octet. slurmd ports only need to differ per namespace, but follow.
        self.ctld_port = _PORT_BASE + 2 * ((net[1] * 256 + net[2]) % 4000)
        self.slurmd_port = self.ctld_port + 1
        self.nodes: list[SlurmNode] = []
        self.last_up_seconds: float | None = None
        self.last_down_seconds: float | None = None

    # ----- paths and environment ---------------------------------------------------------------
    @property
    def conf_path(self) -> Path:
        return self.lab_dir / "slurm.conf"

    @property
    def shared_dir(self) -> Path:
        """World-writable (1777) directory for job scripts and outputs, seen by every node."""
        return self.lab_dir / "shared"

    @property
    def env(self) -> dict[str, str]:
        """What a shell needs to talk to this lab: ``SLURM_CONF``."""
        return {"SLURM_CONF": str(self.conf_path)}

    @property
    def controller_address(self) -> str:
        return self.netns.host_address

    def log_path(self, daemon: str) -> Path:
        """``slurmctld`` or a node name."""
        return self.lab_dir / ("slurmctld.log" if daemon == "slurmctld" else f"slurmd.{daemon}.log")

    # ----- commands ----------------------------------------------------------------------------
    def run(self, argv: Sequence[str], *, user: str | None = None, check: bool = True,
            timeout: float = 30, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a Slurm command (as ``user`` via runuser, else as root) with this lab's SLURM_CONF."""
        full = (["runuser", "-u", user, "--"] if user else []) + list(argv)
        proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                              stdin=subprocess.DEVNULL, env={**os.environ, **self.env})
        if check and proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip()[-1500:]
            raise ClusterError(f"`{' '.join(full)}` failed (exit {proc.returncode}): {tail}")
        return proc

    def sbatch(self, args: Sequence[str], *, user: str | None = None, cwd: str | None = None) -> str:
        """``sbatch --parsable ARGS``; returns the job id."""
        out = self.run(["sbatch", "--parsable", *args], user=user, cwd=cwd or str(self.shared_dir)).stdout
        return out.strip().split(";")[0]

    def squeue(self) -> list[JobRow]:
        out = self.run(["squeue", "-h", "--states=all", "-o", "%i|%T|%r|%N"]).stdout
        return [JobRow(*line.split("|", 3)) for line in out.splitlines() if line.count("|") >= 3]

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol -o show job ID`` as a dict (JobState, Reason, ExitCode, NodeList, ...)."""
        return parse_scontrol_line(self.run(["scontrol", "-o", "show", "job", job_id]).stdout.strip())

    def wait_job(self, job_id: str, states: Sequence[str], timeout: float = 30) -> dict[str, str]:
        """Poll until the job's JobState is one of ``states``; returns its scontrol fields."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.job(job_id)
            if info.get("JobState") in states:
                return info
            if time.monotonic() > deadline:
                raise ClusterError(f"job {job_id} not in {list(states)} after {timeout:g}s: {info}")
            time.sleep(0.2)

    def node_states(self) -> dict[str, str]:
        out = self.run(["sinfo", "-h", "-N", "-p", self.partition, "-o", "%N|%T"], check=False).stdout
        return dict(line.split("|", 1) for line in out.splitlines() if "|" in line)

    def busy(self, n: int | None = None, *, seconds: int = 3600) -> str:
        """Occupy every CPU of ``n`` nodes (default all) with a sleeping job; returns its id once RUNNING.

        A job submitted afterwards that needs those nodes stays PENDING (reason Resources or Priority).
        """
        n = len(self.nodes) if n is None else n
        job = self.sbatch(["-J", "lab-busy", "-N", str(n), "--ntasks-per-node=1", f"--cpus-per-task={self.cpus}",
                           "-o", "/dev/null", "--wrap", f"exec sleep {int(seconds)}"])
        self.wait_job(job, ("RUNNING",))
        return job

    def cancel_all(self, timeout: float = 45) -> None:
        """Cancel every job and wait until none is left and every node is idle again."""
        self.run(["scancel", "--partition", self.partition], check=False)
        self.wait_idle(timeout)

    def wait_idle(self, timeout: float = _READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        want = {n.name for n in self.nodes}
        while True:
            states = self.node_states()
            active = [r for r in self.squeue()
                      if r.state in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED")]
            if not active and set(states) == want and all(s == "idle" for s in states.values()):
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"Slurm lab {self.prefix!r}: nodes not idle after {timeout:g}s: {states}, "
                                   f"jobs {active}; see {self.lab_dir}/*.log")
            time.sleep(0.2)

    # ----- up ----------------------------------------------------------------------------------
    def up(self, n: int = 2) -> None:
        """Start the controller and a slurmd on the first ``n`` NetnsCluster nodes; wait until all are idle."""
        if len(self.netns.nodes) < n:
            raise ClusterError(f"NetnsCluster {self.prefix!r} has {len(self.netns.nodes)} nodes, Slurm lab wants {n}")
        self.down()  # a crashed run's leftovers of this prefix
        start = time.monotonic()
        self.nodes = [SlurmNode(nd.name, nd.address, nd.netns) for nd in self.netns.nodes[:n]]
        try:
            self._check_port_free()
            for d in (self.lab_dir, self.lab_dir / "state", self.lab_dir / "spool"):
                d.mkdir(parents=True, exist_ok=True)
                d.chmod(0o755)
            self.shared_dir.mkdir(exist_ok=True)
            self.shared_dir.chmod(0o1777)
            self._write_conf()
            ensure_munge()
            self._daemon(["slurmctld", "-f", str(self.conf_path)], "slurmctld")
            self._wait_ctld()
            for node in self.nodes:
                self._start_slurmd(node)
            self.wait_idle()
            (self.lab_dir / "lab.json").write_text(json.dumps({
                "prefix": self.prefix, "conf": str(self.conf_path), "partition": self.partition,
                "nodes": [n._asdict() for n in self.nodes], "ctld_port": self.ctld_port}, indent=2) + "\n")
        except BaseException:
            self.down()
            raise
        self.last_up_seconds = time.monotonic() - start

    def _write_conf(self) -> None:
        lab = self.lab_dir
        host = socket.gethostname().split(".")[0]  # slurmctld exits "not a valid controller" otherwise
        lines = [
            f"# Slurm test lab {self.prefix!r}; generated by tests/lab/slurm_cluster.py",
            f"ClusterName=lab{self.prefix}",
            f"SlurmctldHost={host}({self.controller_address})",
            f"SlurmctldPort={self.ctld_port}", f"SlurmdPort={self.slurmd_port}",
            "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/munge", "CredType=cred/munge",
            f"StateSaveLocation={lab}/state", f"SlurmdSpoolDir={lab}/spool/%n",
            f"SlurmctldPidFile={lab}/slurmctld.pid", f"SlurmdPidFile={lab}/slurmd.%n.pid",
            f"SlurmctldLogFile={lab}/slurmctld.log", f"SlurmdLogFile={lab}/slurmd.%n.log",
            # No cgroups: linuxproc tracks a job's processes by parentage, enough on one machine.
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
            "ReturnToService=2", "MpiDefault=none", "MailProg=/bin/true",
            "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none", "SchedulerType=sched/backfill",
            # Short enough that a dead slurmd shows as DOWN within a test; not so short that a
            # loaded 2-core machine flaps. KillWait and MinJobAge keep Slurm's defaults on purpose.
            "SlurmdTimeout=20", "InactiveLimit=0",
            "SlurmctldDebug=info", "SlurmdDebug=info",
        ]
        for node in self.nodes:
            lines.append(f"NodeName={node.name} NodeAddr={node.address} CPUs={self.cpus} "
                         f"RealMemory={self.real_memory_mb} State=UNKNOWN")
        lines.append(f"PartitionName={self.partition} Nodes={','.join(n.name for n in self.nodes)} "
                     "Default=YES MaxTime=INFINITE State=UP")
        self.conf_path.write_text("\n".join(lines) + "\n")
        # Slurm 22.05's slurmd exits "No filesystem mounted on /sys/fs/cgroup" without this.
        (lab / "cgroup.conf").write_text("CgroupPlugin=cgroup/v1\nCgroupAutomount=no\n")

    def _check_port_free(self) -> None:
        with socket.socket() as s:
            # As slurmctld does: connections of a previous lab in TIME_WAIT do not block the port.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0", self.ctld_port))
            except OSError as e:
                raise ClusterError(f"port {self.ctld_port} for slurmctld of lab {self.prefix!r} is taken: {e}") from e

    def _daemon(self, argv: list[str], what: str, netns: str | None = None) -> None:
        # Both daemons fork into the background; the parent returns once its config is read.
        full = (["ip", "netns", "exec", netns] if netns else []) + argv
        proc = subprocess.run(full, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise ClusterError(f"{what} did not start (exit {proc.returncode}): {proc.stderr.strip()[-800:]} "
                               f"{self._log_tail(what)}")

    def _start_slurmd(self, node: SlurmNode) -> None:
        (self.lab_dir / "spool" / node.name).mkdir(exist_ok=True)
        self._daemon(["slurmd", "-f", str(self.conf_path), "-N", node.name], node.name, node.netns)

    def _log_tail(self, what: str) -> str:
        try:
            return "log: " + self.log_path(what).read_text()[-800:]
        except OSError:
            return "(no log)"

    def _wait_ctld(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.run(["scontrol", "ping"], check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise ClusterError(f"slurmctld of lab {self.prefix!r} did not answer in {_READY_TIMEOUT:g}s; "
                           f"{self._log_tail('slurmctld')}")

    # ----- health between tests ----------------------------------------------------------------
    def slurmd_pid(self, node: SlurmNode) -> int | None:
        pids = self._daemon_pids("slurmd", node.name)
        return pids[0] if pids else None

    def reset(self) -> None:
        """Restart slurmds that died (e.g. their namespace was recreated), cancel every job, wait idle."""
        for node in self.nodes:
            if self.slurmd_pid(node) is None:
                self._start_slurmd(node)
        self.cancel_all()

    # ----- down --------------------------------------------------------------------------------
    def _daemon_pids(self, comm: str, node: str | None = None) -> list[int]:
        conf = str(self.conf_path).encode()

        def match(pid: int) -> bool:
            if _read(f"/proc/{pid}/comm").strip() != comm.encode() or not _proc_alive(pid):
                return False
            args = _read(f"/proc/{pid}/cmdline").split(b"\0")
            return conf in args and (node is None or node.encode() in args)
        return _pids_where(match)

    def _job_pids(self) -> list[int]:
        """slurmstepd and every task process inside this lab's node namespaces."""
        pids: list[int] = []
        for ns in self.netns._leftover_namespaces():
            out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
            for pid in (int(p) for p in out.split() if p.isdigit()):
                try:
                    if (_read(f"/proc/{pid}/comm").strip() == b"slurmstepd"
                            or b"\0SLURM_JOB_ID=" in b"\0" + _read(f"/proc/{pid}/environ")):
                        pids.append(pid)
                except OSError:
                    pass
        return pids

    def down(self) -> None:
        """Kill this prefix's Slurm daemons and jobs, remove the lab dir. Idempotent; cleans crashed runs."""
        self.netns._require_lock()  # another live process's lab of this prefix is not ours to remove
        start = time.monotonic()
        # slurmd first so that no step is restarted or reported while we kill the jobs.
        _kill_pids(self._daemon_pids("slurmd"))
        _kill_pids(self._job_pids(), grace=0)  # test jobs: no need to let them clean up
        _kill_pids(self._daemon_pids("slurmctld"))
        shutil.rmtree(self.lab_dir, ignore_errors=True)
        self.nodes = []
        self.last_down_seconds = time.monotonic() - start


def ensure_munge(timeout: float = 10.0) -> None:
    """Start the machine's munged unless one answers already (it is shared by every lab; never stopped)."""
    def ok() -> bool:
        cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
        return cred.returncode == 0 and subprocess.run(
            ["unmunge"], input=cred.stdout, capture_output=True, timeout=10).returncode == 0
    if ok():
        return
    run_dir = Path("/run/munge")
    run_dir.mkdir(mode=0o755, exist_ok=True)
    shutil.chown(run_dir, "munge", "munge")
    # A concurrent session may win the race: munged then exits "pid ... bound to socket"; fine if ok().
    start = subprocess.run(["runuser", "-u", "munge", "--", _MUNGED], capture_output=True, text=True, timeout=30)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(0.1)
    raise ClusterError(f"munged did not start: {start.stderr.strip()[-500:]}")

