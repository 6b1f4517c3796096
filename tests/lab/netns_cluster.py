"""A cluster of real OpenSSH nodes on this machine: one network namespace, user and sshd per node.

Why namespaces and not several sshd ports on localhost: msrun decides that a node is the master
when ``master_addr`` is one of the node's own addresses, and two schedulers on one address collide.
A real cluster has one address per node, so each simulated node gets its own namespace with its
own address on a private bridge, its own unix user (so processes, homes and ``ps`` are per node,
as they are on separate machines) and its own sshd. The controller stays in the root namespace and
reaches the nodes through the bridge's address, exactly as it would reach real hosts.

What it writes into ``state_dir``: the client key (``id_ed25519``), ``ssh_config`` (Host node1 ...,
StrictHostKeyChecking yes), ``known_hosts`` with every node's host key, ``hosts.txt`` (one alias
per line) and per node its sshd config, host key, pid file and log under ``nodes/<alias>/``.

Everything created carries ``prefix`` (namespaces and users ``<prefix>1``.., the bridge
``<prefix>br0``, host-side veths ``<prefix>1h``..; users also carry a GECOS marker), so ``down()``
finds and removes what a crashed run left behind without touching anything else. A per-prefix
``flock`` marks a cluster that a live process owns: ``up``/``down`` of the same prefix from
another process refuse instead of tearing it down. Parallel sessions use different prefixes and
subnets (``NetnsCluster.claim`` picks a free pair).

Needs root, iproute2, OpenSSH (server and ssh-keygen), shadow's useradd/userdel, and nftables for
``partition`` (without nft it falls back to taking the node's link down). Nodes share this
machine's filesystem: give them programs they can run (Debian's python3 or a venv made from it,
not a pyenv build inside root's 0700 home).
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

#: GECOS comment of the users we create; ``down`` deletes only users that carry it.
USER_MARKER = "mfctl test cluster node"
_NFT_TABLE = "mfctl_partition"
_PREFIX_RE = re.compile(r"^[a-z](?:[a-z0-9]{0,7}[a-z])?$")
_SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd")
_READY_TIMEOUT = 10.0


class ClusterError(RuntimeError):
    """Bringing the test cluster up or down failed; the message names the step and the output."""


class ClusterBusy(ClusterError):
    """Another live process owns a cluster with this prefix."""


@dataclass(frozen=True, slots=True)
class Node:
    """One simulated node. ``name`` is its Host alias in the generated ssh_config."""

    name: str
    netns: str
    address: str
    user: str
    home: str
    index: int


class Proc(NamedTuple):
    """One process of a node's user, as ``ps -o pid=,stat=,args=`` shows it."""

    pid: int
    stat: str
    cmdline: str


def _run(
    argv: Sequence[str],
    *,
    check: bool = True,
    input: str | None = None,
    timeout: float = 60,
    cwd: str | None = None,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(argv), input=input, capture_output=True, text=True, timeout=timeout, cwd=cwd,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise ClusterError(
            f"`{shlex.join(argv)}` failed (exit {proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
        )
    return proc


def _proc_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (a zombie has already died)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The state follows the ")" that closes the command name (which may itself contain ")").
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X", b"")


def _proc_comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _pids_of_uid(uid: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
            except FileNotFoundError:
                pass
    return pids


def _kill_pids(pids: Sequence[int], grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL what is still alive after ``grace`` seconds; wait until all are dead."""
    live = [p for p in set(pids) if p > 1 and p != os.getpid() and _proc_alive(p)]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in live:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while live and time.monotonic() < deadline:
            live = [p for p in live if _proc_alive(p)]
            if live:
                time.sleep(0.02)
        if not live:
            return
    raise ClusterError(f"processes {live} survived SIGKILL")


def _wait_port(address: str, port: int, timeout: float) -> bool:
    """Wait until an SSH server answers on address:port with its banner."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=0.5) as s:
                s.settimeout(1.0)
                if s.recv(4).startswith(b"SSH-"):
                    return True
        except OSError:
            pass
        time.sleep(0.02)
    return False


class NetnsCluster:
    """N real sshd nodes on this machine (see the module docstring).

    ``cluster = NetnsCluster(); cluster.up(4); ...; cluster.down()``, or as a context manager
    after ``up``. ``nodes`` is empty until ``up``.
    """

    def __init__(
        self,
        prefix: str = "mft",
        subnet: str = "10.77.0.0/24",
        state_dir: str | os.PathLike[str] | None = None,
        *,
        alias_prefix: str = "node",
        home_root: str = "/home",
        login_shell: str = "/bin/bash",
        sshd_path: str | None = None,
        lock_dir: str = "/run/lock",
    ) -> None:
        if not _PREFIX_RE.match(prefix):
            # Ends with a letter so that "<prefix><index>" never collides with another prefix's
            # names ("mft" + "12" vs "mft1" + "2"); short so interface names fit in 15 bytes.
            raise ValueError(f"prefix {prefix!r}: use 1-9 lowercase letters/digits, starting and ending with a letter")
        net = ipaddress.ip_network(subnet, strict=True)
        if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen > 29:
            raise ValueError(f"subnet {subnet!r}: need an IPv4 network of /29 or larger")
        self.prefix = prefix
        self.subnet = net
        self.state_dir = Path(state_dir) if state_dir else Path(tempfile.gettempdir()) / f"mfctl-testcluster-{prefix}"
        self.alias_prefix = alias_prefix
        self.home_root = home_root
        self.login_shell = login_shell
        self.sshd_path = sshd_path
        self.lock_path = Path(lock_dir) / f"mfctl-testcluster-{prefix}.lock"
        self.nodes: list[Node] = []
        #: Wall time of the last ``up`` / ``down`` in seconds (for reports and benchmarks).
        self.last_up_seconds: float | None = None
        self.last_down_seconds: float | None = None
        self._lock_fd: int | None = None

    # ----- paths -------------------------------------------------------------------------------
    @property
    def ssh_config_path(self) -> Path:
        return self.state_dir / "ssh_config"

    @property
    def known_hosts_path(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def hosts_file(self) -> Path:
        return self.state_dir / "hosts.txt"

    @property
    def key_path(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br0"

    @property
    def host_address(self) -> str:
        """The controller's address on the bridge (the nodes see connections coming from it)."""
        return str(next(self.subnet.hosts()))

    def node_dir(self, node: Node) -> Path:
        return self.state_dir / "nodes" / node.name

    def sshd_log(self, node: Node) -> Path:
        return self.node_dir(node) / "sshd.log"

    def _node(self, index: int) -> Node:
        address = str(self.subnet.network_address + 1 + index)
        return Node(
            name=f"{self.alias_prefix}{index}",
            netns=f"{self.prefix}{index}",
            address=address,
            user=f"{self.prefix}{index}",
            home=f"{self.home_root}/{self.prefix}{index}",
            index=index,
        )

    # ----- environment checks ------------------------------------------------------------------
    def _find_sshd(self) -> str | None:
        if self.sshd_path:
            return self.sshd_path if os.access(self.sshd_path, os.X_OK) else None
        for cand in _SSHD_CANDIDATES:
            if os.access(cand, os.X_OK):
                return cand
        return None

    def unavailable_reason(self) -> str | None:
        """Why this machine cannot host the cluster, or None. Cheap: one throwaway namespace."""
        if os.geteuid() != 0:
            return "needs root (network namespaces, useradd, sshd)"
        missing = [t for t in ("ip", "ssh-keygen", "useradd", "userdel", "ps") if shutil.which(t) is None]
        if missing:
            return f"missing tools: {', '.join(missing)} (apt-get install iproute2 openssh-client passwd procps)"
        if self._find_sshd() is None:
            return "no sshd found (apt-get install openssh-server)"
        probe = f"mfprobe{os.getpid()}"
        made = _run(["ip", "netns", "add", probe], check=False)
        if made.returncode != 0:
            return f"`ip netns add` does not work here: {made.stderr.strip()}"
        _run(["ip", "netns", "del", probe], check=False)
        return None

    # ----- ownership lock ----------------------------------------------------------------------
    def try_lock(self) -> bool:
        """Take the per-prefix lock (held until ``down`` or process exit); False if another process holds it."""
        if self._lock_fd is not None:
            return True
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            # The releasing owner unlinks the file; if that happened between our open and flock,
            # we hold a lock on a dead inode: start over on the current file.
            try:
                same = os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        return True

    def _require_lock(self) -> None:
        if not self.try_lock():
            try:
                owner = self.lock_path.read_text().strip()
            except OSError:
                owner = "?"
            raise ClusterBusy(
                f"test cluster prefix {self.prefix!r} is in use by process {owner} "
                f"(lock {self.lock_path}); use another prefix and subnet"
            )

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            self.lock_path.unlink(missing_ok=True)  # while still holding it; see try_lock
            os.close(self._lock_fd)
            self._lock_fd = None

    @classmethod
    def claim(cls, base: str = "mfp", *, second_octet: int = 77, **kwargs: object) -> NetnsCluster:
        """A cluster object with a prefix/subnet no live process owns (locked for this process).

        Slots are ``<base>a``..``<base>z`` with subnets 10.<second_octet>.10.0/24 .. .35.0/24, so
        parallel test sessions never share names or addresses.
        """
        for k, letter in enumerate(string.ascii_lowercase):
            cluster = cls(prefix=base + letter, subnet=f"10.{second_octet}.{10 + k}.0/24", **kwargs)  # type: ignore[arg-type]
            if cluster.try_lock():
                return cluster
        raise ClusterBusy(f"all 26 test-cluster slots {base}a..{base}z are in use")

    # ----- up ----------------------------------------------------------------------------------
    def up(self, n: int) -> None:
        """Bring up ``n`` nodes (replacing any cluster or leftovers with this prefix)."""
        max_nodes = self.subnet.num_addresses - 3  # network, bridge address, broadcast
        if not 1 <= n <= max_nodes:
            raise ValueError(f"n={n}: subnet {self.subnet} holds 1..{max_nodes} nodes")
        sshd = self._find_sshd()
        if sshd is None:
            raise ClusterError("no sshd found (apt-get install openssh-server)")
        self._require_lock()
        self.down(_keep_lock=True)
        start = time.monotonic()
        nodes = [self._node(i) for i in range(1, n + 1)]
        try:
            self._check_subnet_free()
            self._check_users_free(nodes)
            self.state_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(self.state_dir, 0o700)
            (self.state_dir / "nodes").mkdir(exist_ok=True)
            self._keygen(self.key_path, comment=f"mfctl-testcluster-{self.prefix}")
            self._make_network(nodes)
            pubkey = self.key_path.with_suffix(".pub").read_text()
            for node in nodes:
                self._make_user(node, pubkey)
            # Privilege separation directory; a standard system path that openssh-server also
            # creates, shared with other sshds, so it is left in place by down().
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
            for node in nodes:
                self._write_sshd_files(node)
                self._start_sshd(node, sshd)
            for node in nodes:
                self._wait_sshd(node)
            self._write_client_files(nodes)
        except BaseException:
            self.nodes = nodes
            try:
                self.down(_keep_lock=True)
            finally:
                self.nodes = []
            raise
        self.nodes = nodes
        self.last_up_seconds = time.monotonic() - start

    def _check_subnet_free(self) -> None:
        out = _run(["ip", "-j", "-4", "addr", "show"]).stdout
        for link in json.loads(out or "[]"):
            for info in link.get("addr_info", []):
                if ipaddress.ip_address(info["local"]) in self.subnet:
                    raise ClusterError(
                        f"subnet {self.subnet} is already in use on {link.get('ifname')} "
                        f"({info['local']}); choose another subnet"
                    )

    def _check_users_free(self, nodes: Sequence[Node]) -> None:
        for node in nodes:
            try:
                entry = pwd.getpwnam(node.user)
            except KeyError:
                continue
            if USER_MARKER not in entry.pw_gecos:
                raise ClusterError(
                    f"user {node.user} already exists and is not a test-cluster user; choose another prefix"
                )

    @staticmethod
    def _keygen(path: Path, comment: str) -> None:
        for p in (path, path.with_suffix(".pub")):
            p.unlink(missing_ok=True)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])

    def _make_network(self, nodes: Sequence[Node]) -> None:
        plen = self.subnet.prefixlen
        root = [
            f"link add {self.bridge} type bridge",
            f"addr add {self.host_address}/{plen} dev {self.bridge}",
            f"link set {self.bridge} up",
        ]
        for node in nodes:
            veth = f"{node.netns}h"
            root += [
                f"netns add {node.netns}",
                # The peer is created directly inside the namespace, so it can be called eth0.
                f"link add {veth} type veth peer name eth0 netns {node.netns}",
                f"link set {veth} master {self.bridge} up",
            ]
        _run(["ip", "-batch", "-"], input="\n".join(root) + "\n")
        for node in nodes:
            inner = [f"addr add {node.address}/{plen} dev eth0", "link set eth0 up", "link set lo up"]
            _run(["ip", "-n", node.netns, "-batch", "-"], input="\n".join(inner) + "\n")

    def _make_user(self, node: Node, pubkey: str) -> None:
        argv = [
            "useradd", "-m", "-d", node.home, "-s", self.login_shell,
            "-c", f"{USER_MARKER} ({self.prefix})",
            # '*' instead of the default '!': with UsePAM no, sshd refuses a '!'-locked account.
            "-p", "*", node.user,
        ]
        for attempt in range(20):
            proc = _run(argv, check=False)
            if proc.returncode == 0:
                break
            # 1 and 10: /etc/passwd or /etc/group is locked by a concurrent useradd.
            if proc.returncode not in (1, 10) or attempt == 19:
                raise ClusterError(f"`{shlex.join(argv)}` failed (exit {proc.returncode}): {proc.stderr.strip()}")
            time.sleep(0.1)
        entry = pwd.getpwnam(node.user)
        ssh_dir = Path(node.home) / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        auth = ssh_dir / "authorized_keys"
        auth.write_text(pubkey)
        auth.chmod(0o600)
        for p in (ssh_dir, auth):
            os.chown(p, entry.pw_uid, entry.pw_gid)

    def _write_sshd_files(self, node: Node) -> None:
        d = self.node_dir(node)
        d.mkdir(parents=True, exist_ok=True)
        self._keygen(d / "ssh_host_ed25519_key", comment=f"{node.name}")
        config = f"""\
# sshd for test-cluster node {node.name} (namespace {node.netns}); generated by tests.lab
ListenAddress {node.address}:22
HostKey {d / 'ssh_host_ed25519_key'}
PidFile {d / 'sshd.pid'}
UsePAM no
AllowUsers {node.user}
PermitRootLogin no
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes yes
UseDNS no
PrintMotd no
X11Forwarding no
AllowTcpForwarding yes
Subsystem sftp internal-sftp
# Empty until trust_user_ca(): no CA is trusted unless a test asks for one (read at each login).
TrustedUserCAKeys {d / 'trusted_user_ca_keys'}
MaxStartups 256
MaxSessions 256
LogLevel VERBOSE
"""
        (d / "sshd_config").write_text(config)
        (d / "trusted_user_ca_keys").write_text("")

    def _start_sshd(self, node: Node, sshd: str) -> None:
        d = self.node_dir(node)
        (d / "sshd.pid").unlink(missing_ok=True)
        # sshd daemonizes; the parent returns before the listener is up, hence _wait_sshd.
        _run(["ip", "netns", "exec", node.netns, sshd, "-f", str(d / "sshd_config"), "-E", str(d / "sshd.log")])

    def _wait_sshd(self, node: Node) -> None:
        if not _wait_port(node.address, 22, _READY_TIMEOUT):
            try:
                log = self.sshd_log(node).read_text()[-1500:]
            except OSError:
                log = "(no log)"
            raise ClusterError(f"sshd of {node.name} ({node.address}) did not come up in {_READY_TIMEOUT:g}s: {log}")

    def _write_client_files(self, nodes: Sequence[Node]) -> None:
        known = []
        blocks = [f"# Test cluster {self.prefix!r}: {len(nodes)} nodes on {self.subnet}; generated by tests.lab\n"]
        for node in nodes:
            keytype, b64 = (self.node_dir(node) / "ssh_host_ed25519_key.pub").read_text().split()[:2]
            known.append(f"{node.address} {keytype} {b64}\n")
            blocks.append(
                f"Host {node.name}\n"
                f"    HostName {node.address}\n"
                f"    User {node.user}\n"
                f"    Port 22\n"
                f"    IdentityFile {self.key_path}\n"
                f"    IdentitiesOnly yes\n"
                f"    UserKnownHostsFile {self.known_hosts_path}\n"
                f"    StrictHostKeyChecking yes\n"
                f"    ConnectTimeout 5\n"
                f"    BatchMode yes\n"
            )
        self.known_hosts_path.write_text("".join(known))
        self.ssh_config_path.write_text("\n".join(blocks))
        self.hosts_file.write_text("".join(f"{node.name}\n" for node in nodes))
        state = {"prefix": self.prefix, "subnet": str(self.subnet), "nodes": [asdict(n) for n in nodes]}
        (self.state_dir / "cluster.json").write_text(json.dumps(state, indent=2) + "\n")

    # ----- down --------------------------------------------------------------------------------
    def _leftover_namespaces(self) -> list[str]:
        out = _run(["ip", "netns", "list"], check=False).stdout
        pat = re.compile(rf"^{re.escape(self.prefix)}\d+$")
        return [line.split()[0] for line in out.splitlines() if line.split() and pat.match(line.split()[0])]

    def _leftover_users(self) -> list[pwd.struct_passwd]:
        pat = re.compile(rf"^{re.escape(self.prefix)}\d+$")
        return [e for e in pwd.getpwall() if pat.match(e.pw_name) and USER_MARKER in e.pw_gecos]

    def _leftover_links(self) -> list[str]:
        out = _run(["ip", "-o", "link", "show"], check=False).stdout
        pat = re.compile(rf"^(?:{re.escape(self.prefix)}br0|{re.escape(self.prefix)}\d+h)$")
        names = []
        for line in out.splitlines():
            parts = line.split(":", 2)
            if len(parts) >= 2:
                name = parts[1].strip().split("@")[0]
                if pat.match(name):
                    names.append(name)
        return names

    def down(self, *, _keep_lock: bool = False) -> None:
        """Remove everything with this prefix: processes, namespaces, links, users, homes, files.

        Idempotent; also cleans what a crashed earlier run with the same prefix left behind.
        """
        self._require_lock()
        start = time.monotonic()
        try:
            namespaces = self._leftover_namespaces()
            users = self._leftover_users()
            pids: list[int] = []
            for ns in namespaces:
                out = _run(["ip", "netns", "pids", ns], check=False).stdout
                pids += [int(p) for p in out.split() if p.isdigit()]
            for entry in users:
                pids += _pids_of_uid(entry.pw_uid)
            _kill_pids(pids)
            for ns in namespaces:
                _run(["ip", "netns", "del", ns])
            for link in self._leftover_links():
                _run(["ip", "link", "del", link], check=False)
            for entry in users:
                self._delete_user(entry)
            self._remove_state_files()
            self.nodes = []
        finally:
            if not _keep_lock:
                self._unlock()
        self.last_down_seconds = time.monotonic() - start

    def _delete_user(self, entry: pwd.struct_passwd) -> None:
        proc = _run(["userdel", "-r", entry.pw_name], check=False)
        if proc.returncode == 8:  # "currently used by process": a zombie not yet reaped
            proc = _run(["userdel", "-r", "-f", entry.pw_name], check=False)
        still = True
        try:
            pwd.getpwnam(entry.pw_name)
        except KeyError:
            still = False
        if still:
            raise ClusterError(f"could not delete user {entry.pw_name} (exit {proc.returncode}): {proc.stderr.strip()}")
        # userdel -r leaves the home if it was not owned by the user; ours always is, but be sure.
        home = Path(entry.pw_dir)
        if home.name == entry.pw_name and home.exists():
            shutil.rmtree(home, ignore_errors=True)

    def _remove_state_files(self) -> None:
        d = self.state_dir
        if not d.is_dir():
            return
        for name in ("ssh_config", "known_hosts", "hosts.txt", "id_ed25519", "id_ed25519.pub", "cluster.json"):
            (d / name).unlink(missing_ok=True)
        shutil.rmtree(d / "nodes", ignore_errors=True)
        try:
            d.rmdir()  # only when empty: a user-given --dir may hold other files
        except OSError:
            pass

    # ----- helpers for fault tests -------------------------------------------------------------
    def node(self, name_or_index: str | int) -> Node:
        for node in self.nodes:
            if node.name == name_or_index or node.index == name_or_index:
                return node
        raise KeyError(f"no node {name_or_index!r} in test cluster {self.prefix!r}")

    def exec_in(
        self,
        node: Node,
        argv: Sequence[str],
        *,
        as_user: bool = False,
        check: bool = False,
        timeout: float = 60,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the node's namespace (as root, or as the node's user in its home)."""
        prefix = ["ip", "netns", "exec", node.netns]
        if as_user:
            prefix += ["runuser", "-u", node.user, "--"]
        return _run(prefix + list(argv), check=check, timeout=timeout, input=input,
                    cwd=node.home if as_user else None)

    def trust_user_ca(self, node: Node, public_keys: str) -> None:
        """Make the node's sshd accept user certificates signed by these CA keys ("" trusts none)."""
        (self.node_dir(node) / "trusted_user_ca_keys").write_text(public_keys)

    def sshd_pid(self, node: Node) -> int | None:
        """The listening sshd's pid, or None when it is not running."""
        try:
            pid = int((self.node_dir(node) / "sshd.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _proc_alive(pid) and _proc_comm(pid) == "sshd" else None

    def kill_sshd(self, node: Node, *, sessions: bool = True) -> None:
        """SIGKILL the node's sshd: the listener and, with ``sessions``, every open SSH session too."""
        targets = []
        listener = self.sshd_pid(node)
        if listener:
            targets.append(listener)
        if sessions:
            out = _run(["ip", "netns", "pids", node.netns], check=False).stdout
            targets += [int(p) for p in out.split() if p.isdigit() and _proc_comm(int(p)).startswith("sshd")]
        for pid in set(targets):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while any(_proc_alive(p) for p in targets) and time.monotonic() < deadline:
            time.sleep(0.01)

    def restart_sshd(self, node: Node) -> None:
        """Start the node's sshd again (killing the listener first if it still runs)."""
        if self.sshd_pid(node):
            self.kill_sshd(node, sessions=False)
        sshd = self._find_sshd()
        assert sshd is not None
        self._start_sshd(node, sshd)
        self._wait_sshd(node)

    def partition(self, node: Node, loss: float = 1.0) -> None:
        """Silently drop the node's traffic (all of it, or a random fraction ``loss``) both ways.

        Packets are dropped, not rejected, so peers see timeouts as with a real network partition.
        """
        if not 0 < loss <= 1:
            raise ValueError(f"loss={loss}: must be in (0, 1]")
        if shutil.which("nft") is None:
            if loss < 1:
                raise ClusterError("partial loss needs nftables (apt-get install nftables)")
            self.exec_in(node, ["ip", "link", "set", "eth0", "down"], check=True)
            return
        verdict = "drop" if loss >= 1 else f"numgen random mod 1000 < {int(loss * 1000)} drop"
        rules = (
            f"table inet {_NFT_TABLE}\n"
            f"delete table inet {_NFT_TABLE}\n"
            f"table inet {_NFT_TABLE} {{\n"
            f"  chain input {{ type filter hook input priority -10; policy accept; iifname \"eth0\" {verdict}; }}\n"
            f"  chain output {{ type filter hook output priority -10; policy accept; oifname \"eth0\" {verdict}; }}\n"
            f"}}\n"
        )
        self.exec_in(node, ["nft", "-f", "-"], input=rules, check=True)

    def heal(self, node: Node) -> None:
        """Undo ``partition``."""
        if shutil.which("nft") is not None:
            self.exec_in(node, ["nft", "delete", "table", "inet", _NFT_TABLE])
        self.exec_in(node, ["ip", "link", "set", "eth0", "up"], check=True)

    def is_partitioned(self, node: Node) -> bool:
        if (shutil.which("nft") is not None
                and self.exec_in(node, ["nft", "list", "table", "inet", _NFT_TABLE]).returncode == 0):
            return True
        out = self.exec_in(node, ["ip", "-o", "link", "show", "eth0"]).stdout
        return "state DOWN" in out or ",UP" not in out

    def reset(self) -> None:
        """Heal partitions and restart dead sshds, so the next test starts from a healthy cluster."""
        for node in self.nodes:
            if self.is_partitioned(node):
                self.heal(node)
            if self.sshd_pid(node) is None:
                self.restart_sshd(node)

    def processes_of(self, node: Node) -> list[Proc]:
        """The node user's processes (including its sshd session processes)."""
        uid = pwd.getpwnam(node.user).pw_uid
        out = _run(["ps", "-U", str(uid), "-u", str(uid), "-o", "pid=,stat=,args="], check=False).stdout
        procs = []
        for line in out.splitlines():
            parts = line.split(None, 2)
            if len(parts) >= 2 and parts[0].isdigit():
                procs.append(Proc(int(parts[0]), parts[1], parts[2] if len(parts) > 2 else ""))
        return procs

    # ----- context manager ---------------------------------------------------------------------
    def __enter__(self) -> NetnsCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()



def _status_lines(cluster: NetnsCluster) -> list[str]:
    lines = [
        f"  ssh_config   {cluster.ssh_config_path}",
        f"  hosts file   {cluster.hosts_file}",
        f"  known_hosts  {cluster.known_hosts_path}",
        f"  client key   {cluster.key_path}",
        f"  controller   {cluster.host_address} on bridge {cluster.bridge}",
    ]
    for node in cluster.nodes:
        state = "sshd up" if cluster.sshd_pid(node) else "sshd DOWN"
        lines.append(
            f"  {node.name:<8} {node.address:<15} user {node.user:<8} home {node.home}  netns {node.netns}  {state}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """``testcluster up N | down | status``: the command line of scripts/testcluster."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="testcluster", description="Real sshd nodes in network namespaces on this machine (root)."
    )
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("n", nargs="?", type=int, default=4, help="number of nodes for `up` (default 4)")
    parser.add_argument("--dir", help="state directory (default: <tmp>/mfctl-testcluster-<prefix>)")
    parser.add_argument("--prefix", default="mft", help="name prefix of namespaces, users, bridge (default mft)")
    parser.add_argument("--subnet", default="10.77.0.0/24", help="private subnet (default 10.77.0.0/24)")
    args = parser.parse_args(argv)
    cluster = NetnsCluster(prefix=args.prefix, subnet=args.subnet, state_dir=args.dir)
    try:
        if args.action == "up":
            reason = cluster.unavailable_reason()
            if reason:
                print(f"testcluster: cannot run here: {reason}", file=sys.stderr)
                return 1
            cluster.up(args.n)
            print(f"test cluster {cluster.prefix!r}: {len(cluster.nodes)} nodes up in {cluster.last_up_seconds:.2f} s")
            print("\n".join(_status_lines(cluster)))
            print(f"try:  ssh -F {cluster.ssh_config_path} {cluster.nodes[0].name} hostname -I")
            print("stop: scripts/testcluster down"
                  + (f" --prefix {args.prefix}" if args.prefix != "mft" else "")
                  + (f" --dir {args.dir}" if args.dir else ""))
        elif args.action == "down":
            cluster.down()
            print(f"test cluster {cluster.prefix!r}: down in {cluster.last_down_seconds:.2f} s "
                  f"(nothing left with prefix {cluster.prefix!r})")
        else:
            state_file = cluster.state_dir / "cluster.json"
            if not state_file.exists():
                print(f"no test cluster {cluster.prefix!r} in {cluster.state_dir}")
                return 1
            cluster.nodes = [Node(**n) for n in json.loads(state_file.read_text())["nodes"]]
            print(f"test cluster {cluster.prefix!r}: {len(cluster.nodes)} nodes")
            print("\n".join(_status_lines(cluster)))
    except (ClusterError, ValueError) as e:
        print(f"testcluster: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
