"""SshTransport and run_on_all against real sshd nodes (network namespaces, root only)."""

from __future__ import annotations

import shlex
import subprocess
import threading
import time
from pathlib import Path

import pytest

from mfctl.remote.base import NodeUnreachable, RunResult
from mfctl.remote.group import run_on_all
from mfctl.remote.ssh import SshTransport, resolve_address
from tests.lab import NetnsCluster, Node

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


def ssh(cluster: NetnsCluster, node: Node, **kwargs: object) -> SshTransport:
    return SshTransport(node.name, ssh_config_path=cluster.ssh_config_path, **kwargs)  # type: ignore[arg-type]


def live(cluster: NetnsCluster, node: Node, needle: str) -> list[int]:
    """Pids of the node user's live (non-zombie) processes whose command line contains ``needle``."""
    return [p.pid for p in cluster.processes_of(node) if needle in p.cmdline and not p.stat.startswith("Z")]


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def config_with_known_hosts(cluster: NetnsCluster, node: Node, tmp_path: Path, known_hosts: Path) -> Path:
    """An ssh_config for ``node`` whose UserKnownHostsFile is ``known_hosts``."""
    path = tmp_path / "ssh_config"
    path.write_text(
        f"Host target\n    HostName {node.address}\n    User {node.user}\n"
        f"    IdentityFile {cluster.key_path}\n    UserKnownHostsFile {known_hosts}\n"
    )
    return path


def test_run_put_stream(netns_cluster, tmp_path):
    cluster = netns_cluster(2)
    for node in cluster.nodes[:2]:
        with ssh(cluster, node) as t:
            r = t.run("id -un; hostname -I; echo oops >&2; exit 3")
            assert r.host == node.name and r.exit_code == 3 and not r.ok
            assert r.stdout.split() == [node.user, node.address]  # its own user and namespace
            assert r.stderr == "oops\n"
            assert t.run("pwd").stdout.strip() == node.home  # relative paths start in the home

            src = tmp_path / "payload.txt"
            src.write_text("line one\nline two\n")
            t.put(str(src), "payload.txt", mode=0o640)
            assert t.run("stat -c %a payload.txt; cat payload.txt").stdout == "640\nline one\nline two\n"
            with pytest.raises(FileNotFoundError, match=node.name):
                t.put(str(src), "no/such/dir/payload.txt")

            arrivals = []
            for line in t.stream("for i in 1 2 3; do echo line$i; echo noise >&2; sleep 0.4; done"):
                arrivals.append((time.monotonic(), line))
            assert [line for _, line in arrivals] == ["line1", "line2", "line3"]
            # Lines come as they are printed, not all at the end.
            assert arrivals[-1][0] - arrivals[0][0] > 0.6
            assert t.address == node.address == resolve_address(node.name, cluster.ssh_config_path)


def test_detached_process_survives_the_session(netns_cluster):
    cluster = netns_cluster(2)
    node = cluster.nodes[1]
    with ssh(cluster, node) as t:
        start = time.monotonic()
        r = t.run(
            "cd /tmp; nohup setsid sh -c 'echo $$ > \"$HOME/detached.pid\"; exec sleep 60' "
            "> \"$HOME/detached.log\" 2>&1 < /dev/null &",
            timeout=15,
        )
        assert r.ok
        assert time.monotonic() - start < 5  # returned at once, not after 60 s
    assert wait_until(lambda: Path(node.home, "detached.pid").exists())
    with ssh(cluster, node) as t:
        pid = int(t.run("cat detached.pid").stdout)
        stat = t.run(f"ps -o stat= -p {pid}").stdout.strip()
        assert stat and not stat.startswith("Z"), "the detached process died with the session"
        assert pid in live(cluster, node, "sleep 60")
        assert t.run(f"kill -TERM -{pid}").ok  # its pgid is its pid (dash: no `--`)
    assert wait_until(lambda: pid not in live(cluster, node, "sleep 60"))


def test_timed_out_command_is_killed_on_the_node(netns_cluster):
    cluster = netns_cluster(2)
    node = cluster.nodes[0]
    with ssh(cluster, node) as t:
        with pytest.raises(NodeUnreachable, match="did not finish within 1s"):
            t.run("sleep 47; touch timed-out-marker", timeout=1)
        assert wait_until(lambda: not live(cluster, node, "sleep 47"))
        assert t.run("echo still usable").stdout == "still usable\n"
    assert not Path(node.home, "timed-out-marker").exists()


def test_closing_a_stream_stops_the_remote_command(netns_cluster):
    cluster = netns_cluster(2)
    node = cluster.nodes[0]
    with ssh(cluster, node) as t:
        t.run("echo first > followed.log")
        lines = t.stream("tail -n +1 -F followed.log")
        assert next(lines) == "first"
        t.run("echo second >> followed.log")
        assert next(lines) == "second"
        assert live(cluster, node, "tail -n +1 -F")
        threading.Timer(0.3, t.close).start()
        assert list(lines) == []  # ends quietly after close()
    assert wait_until(lambda: not live(cluster, node, "tail -n +1 -F"))


def test_unknown_host_key_is_refused_with_a_hint(netns_cluster, tmp_path):
    cluster = netns_cluster(2)
    node = cluster.nodes[0]
    known = tmp_path / "known_hosts"
    known.write_text("")
    config = config_with_known_hosts(cluster, node, tmp_path, known)
    with SshTransport("target", ssh_config_path=config) as t, pytest.raises(NodeUnreachable) as err:
        t.run("true")
    reason = err.value.reason
    assert err.value.host == "target"
    assert f"ssh-keyscan -H {node.address} >> {known}" in reason
    assert "--accept-new-hosts" in reason and "SHA256:" in reason
    assert known.read_text() == ""


def test_accept_new_hosts_records_the_key(netns_cluster, tmp_path):
    cluster = netns_cluster(2)
    node = cluster.nodes[0]
    known = tmp_path / "sub" / "known_hosts"  # created, with its directory, like OpenSSH does
    config = config_with_known_hosts(cluster, node, tmp_path, known)
    with SshTransport("target", ssh_config_path=config, accept_new_hosts=True) as t:
        assert t.run("id -un").stdout.strip() == node.user
    expected = [line for line in cluster.known_hosts_path.read_text().splitlines()
                if line.startswith(node.address + " ")]
    assert known.read_text().splitlines() == expected
    with SshTransport("target", ssh_config_path=config) as t:  # now known: strict mode connects
        assert t.run("true").ok
    with SshTransport("target", ssh_config_path=config, accept_new_hosts=True) as t:
        assert t.run("true").ok
    assert known.read_text().splitlines() == expected  # recorded once


def test_changed_host_key_is_always_refused(netns_cluster, tmp_path):
    cluster = netns_cluster(2)
    node = cluster.nodes[0]
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    impostor = (tmp_path / "other.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"{node.address} {impostor[0]} {impostor[1]}\n")
    before = known.read_text()
    config = config_with_known_hosts(cluster, node, tmp_path, known)
    for accept in (False, True):
        with SshTransport("target", ssh_config_path=config, accept_new_hosts=accept) as t, \
                pytest.raises(NodeUnreachable, match=rf"CHANGED.*ssh-keygen -R {node.address} -f {known}"):
            t.run("true")
    assert known.read_text() == before


def proxy_config(cluster: NetnsCluster, tmp_path: Path, jump_known_hosts: Path, how: str) -> Path:
    """``target`` (node 2) reached through node 1, by ProxyJump or by an ``ssh -W`` ProxyCommand."""
    jump, target = cluster.nodes[0], cluster.nodes[1]
    via = "ProxyJump jump" if how == "jump" else f"ProxyCommand ssh -F {cluster.ssh_config_path} -W %h:%p {jump.name}"
    path = tmp_path / f"ssh_config_{how}"
    path.write_text(
        f"Host jump\n    HostName {jump.address}\n    User {jump.user}\n    IdentityFile {cluster.key_path}\n"
        f"    UserKnownHostsFile {jump_known_hosts}\n\n"
        f"Host target\n    HostName {target.address}\n    User {target.user}\n    IdentityFile {cluster.key_path}\n"
        f"    UserKnownHostsFile {cluster.known_hosts_path}\n    {via}\n"
    )
    return path


@pytest.mark.parametrize("how", ["jump", "command"])
def test_proxy_jump_and_proxy_command(netns_cluster, tmp_path, how):
    cluster = netns_cluster(2)
    target = cluster.nodes[1]
    config = proxy_config(cluster, tmp_path, cluster.known_hosts_path, how)
    with SshTransport("target", ssh_config_path=config) as t:
        r = t.run("id -un; hostname -I")
        assert r.stdout.split() == [target.user, target.address]
        assert list(t.stream("echo a; echo b")) == ["a", "b"]


def test_proxy_jump_host_key_is_checked_too(netns_cluster, tmp_path):
    cluster = netns_cluster(2)
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    config = proxy_config(cluster, tmp_path, empty, "jump")
    with SshTransport("target", ssh_config_path=config) as t, \
            pytest.raises(NodeUnreachable, match=f"host key of {cluster.nodes[0].address} is not known"):
        t.run("true")
    assert empty.read_text() == ""


def test_wrong_user_is_an_auth_failure(netns_cluster):
    cluster = netns_cluster(2)
    node, other = cluster.nodes[0], cluster.nodes[1]
    with ssh(cluster, node, user=other.user) as t, \
            pytest.raises(NodeUnreachable, match="authentication failed for user " + other.user):
        t.run("true")


def test_killed_sshd_is_unreachable_fast_and_recovers(netns_cluster):
    cluster = netns_cluster(2)
    node = cluster.nodes[1]
    with ssh(cluster, node) as t:
        assert t.run("true").ok
        cluster.kill_sshd(node)
        start = time.monotonic()
        with pytest.raises(NodeUnreachable, match="connection refused") as err:
            t.run("true")  # the old connection died with sshd; reconnecting is refused
        assert time.monotonic() - start < 3
        assert err.value.host == node.name
        cluster.restart_sshd(node)
        assert t.run("id -un").stdout.strip() == node.user  # the same transport reconnects


def test_partitioned_node_is_unreachable_within_connect_timeout(netns_cluster):
    cluster = netns_cluster(2)
    node = cluster.nodes[1]
    cluster.partition(node)
    try:
        with ssh(cluster, node, connect_timeout=2) as t:
            start = time.monotonic()
            with pytest.raises(NodeUnreachable, match=r"no answer from .* within 2s"):
                t.run("true")
            assert time.monotonic() - start < 4
    finally:
        cluster.heal(node)
    with ssh(cluster, node) as t:
        assert t.run("true").ok


def test_partition_after_connect_is_bounded(netns_cluster):
    cluster = netns_cluster(2)
    node = cluster.nodes[1]
    t = ssh(cluster, node, connect_timeout=2, keepalive=1, dead_peer_timeout=3)
    s = ssh(cluster, node, connect_timeout=2, keepalive=1, dead_peer_timeout=3)
    try:
        assert t.run("true").ok
        ticks = s.stream("while :; do echo tick; sleep 0.2; done")
        assert next(ticks) == "tick"
        cluster.partition(node)
        start = time.monotonic()
        with pytest.raises(NodeUnreachable):
            t.run("echo never", timeout=3)  # opening the channel or the command times out
        assert time.monotonic() - start < 7
        start = time.monotonic()
        with pytest.raises(NodeUnreachable, match="lost while streaming"):
            for _ in ticks:
                pass
        assert time.monotonic() - start < 10  # keepalive + TCP_USER_TIMEOUT, not TCP's ~15 min
    finally:
        cluster.heal(node)
        t.close()
        s.close()


HOSTILE = [
    "a; touch {m}",
    "$(touch {m})",
    "`touch {m}`",
    "'; touch {m}; '",
    '"; touch {m}; "',
    "x && touch {m} || touch {m}",
    "| touch {m}",
    "> {m}",
    "two  spaces\tand a tab",
    "back\\slash \\n \\",
    "new\nline",
    "$HOME ${PATH} $((1+1)) %s %d",
    "* ? [a-z]",
    "ünïcödé ✓",
    "",
    "-n",
]


def test_hostile_values_pass_through_literally(netns_cluster, tmp_path):
    cluster = netns_cluster(2)
    node = cluster.nodes[0]
    marker = Path(node.home) / "injected"
    values = [v.replace("{m}", str(marker)) for v in HOSTILE]
    with ssh(cluster, node) as t:
        for value in values:
            r = t.run(shlex.join(["printf", "%s", value]))
            assert r.ok and r.stdout == value, value
            r = t.run(f"v={shlex.quote(value)}; printf '%s' \"$v\"")
            assert r.stdout == value, value
        remote = "it's a \"file\" $(touch injected) `x`.txt"
        src = tmp_path / "src.txt"
        src.write_text("content\n")
        t.put(str(src), remote)
        assert t.run(f"cat {shlex.quote(remote)}").stdout == "content\n"
        assert list(t.stream(shlex.join(["printf", "%s\\n", values[0]]))) == [values[0]]
    assert not marker.exists(), "a value was executed instead of passed as data"


def test_run_on_all_sixteen_nodes(netns_cluster):
    cluster = netns_cluster(16)
    nodes = cluster.nodes[:16]
    # All 16 calls must be in flight together to pass the barrier: parallelism without timing.
    barrier = threading.Barrier(len(nodes), timeout=60)

    def probe(t: SshTransport) -> RunResult:
        barrier.wait()
        return t.run("id -un; hostname -I")

    transports = [ssh(cluster, n) for n in nodes]
    try:
        results = run_on_all(transports, probe)
    finally:
        for t in transports:
            t.close()
    assert list(results) == [n.name for n in nodes]
    assert results.failed == {}
    for node in nodes:
        r = results[node.name]
        assert isinstance(r, RunResult) and r.ok
        assert r.stdout.split() == [node.user, node.address]

    # One dead node: its entry is the error, every other node still reports its own result.
    dead = nodes[5]
    cluster.kill_sshd(dead)
    active = 0
    peak = 0
    lock = threading.Lock()

    def counted(t: SshTransport) -> RunResult:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            return t.run("id -un")
        finally:
            with lock:
                active -= 1

    transports = [ssh(cluster, n, connect_timeout=3) for n in nodes]
    try:
        results = run_on_all(transports, counted, fanout=4)
    finally:
        for t in transports:
            t.close()
    assert peak <= 4
    assert set(results.failed) == {dead.name}
    assert isinstance(results[dead.name], NodeUnreachable)
    for node in nodes:
        if node is not dead:
            assert results[node.name].stdout.strip() == node.user  # type: ignore[union-attr]
