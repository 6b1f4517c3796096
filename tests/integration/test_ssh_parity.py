"""OpenSSH parity: for each client setup, mfctl connects exactly when ``ssh`` does.

Every setup is an ssh_config, a known_hosts file (and maybe more files, keys, certificates, an
ssh-agent) written into a fresh directory twice: once for ``ssh -F cfg -o BatchMode=yes alias true``,
once for mfctl's connect path (``open_transport`` + ``run``, what ``mfctl check`` and ``launch`` use),
so accept-new writes by one cannot help the other. Each row states the verdict we expect from
ssh, so a broken fixture cannot make both agree by failing alike. A refusal by mfctl must be one
line, an mfctl error, never a traceback. A few rows also go through the ``mfctl check`` CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mfctl.cluster.hostfile import HostEntry
from mfctl.errors import MfctlError
from mfctl.remote import knownhosts
from mfctl.remote.base import NodeUnreachable
from mfctl.remote.connect import SshOptions, open_transport
from tests.conftest import run_mfctl_process

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

# Appended to every config: first value wins, so a setup's own lines come first. Isolates each run
# from this machine's ~/.ssh and /etc/ssh (no default keys, no agent, no system known_hosts).
TAIL = """
Host *
    UserKnownHostsFile {d}/known_hosts
    GlobalKnownHostsFile {d}/global_known_hosts
    IdentityFile {d}/none
    IdentityAgent none
    StrictHostKeyChecking yes
    ConnectTimeout 5
    BatchMode yes
"""

N1 = "    HostName {a1}\n    User {u1}\n"
N2 = "    HostName {a2}\n    User {u2}\n"


@dataclass
class Setup:
    name: str
    connects: bool  # what `ssh` does with it (checked), and therefore what mfctl must do
    config: str
    known_hosts: str = "{a1} {hk1}\n"
    alias: str = "t"
    files: dict[str, str] = field(default_factory=dict)
    user: str | None = None  # as a hosts file's user@alias gives it (ssh -l)
    loose: tuple[str, ...] = ()  # files made readable by others (mode 0644)
    agent_env: bool = False  # SSH_AUTH_SOCK points at the agent (which holds the authorized key)
    partition_node2: bool = False


SETUPS = [
    Setup("plain alias", True, "Host t\n" + N1 + "    IdentityFile {key}\n"),
    Setup("Include", True, "Include {d}/conf.d/*.conf\n",
          files={"conf.d/nodes.conf": "Host t\n" + N1 + "    IdentityFile {key}\n"}),
    Setup("private key readable by others (ssh ignores it)", False,
          "Host t\n" + N1 + "    IdentityFile {d}/loose_key\n", files={"loose_key": "{key_text}"},
          loose=("loose_key",)),
    Setup("Host negation, included name", True,
          "Host t* !tx\n" + N1 + "    IdentityFile {key}\n", alias="t1"),
    Setup("Host negation, excluded name (no HostName: cannot resolve)", False,
          "Host t* !tx\n" + N1 + "    IdentityFile {key}\n", alias="tx"),
    Setup("Match originalhost + Match user", True,
          "Match originalhost t\n" + N1 + "Match user {u1}\n    IdentityFile {key}\n"),
    Setup("Match exec", True, "Match exec \"test -e {d}/flag\"\n" + N1 + "    IdentityFile {key}\n",
          files={"flag": ""}),
    Setup("%r and %n tokens in IdentityFile", True,
          "Host t\n" + N1 + "    IdentityFile {d}/keys/%r/%n\n", files={"keys/{u1}/t": "{key_text}"}),
    Setup("HostKeyAlias with known_hosts keyed by the alias", True,
          "Host t\n" + N1 + "    IdentityFile {key}\n    HostKeyAlias lab-node-1\n",
          known_hosts="lab-node-1 {hk1}\n"),
    Setup("HostKeyAlias, known_hosts keyed by the address only", False,
          "Host t\n" + N1 + "    IdentityFile {key}\n    HostKeyAlias lab-node-1\n"),
    Setup("hashed known_hosts", True, "Host t\n" + N1 + "    IdentityFile {key}\n",
          known_hosts="{hashed_a1} {hk1}\n"),
    Setup("wildcard pattern in known_hosts, junk lines skipped", True,
          "Host t\n" + N1 + "    IdentityFile {key}\n",
          known_hosts="# comment\nnot a valid line\n{net}.* {hk1} lab\n"),
    Setup("negated pattern excludes the host", False, "Host t\n" + N1 + "    IdentityFile {key}\n",
          known_hosts="*,!{a1} {hk1}\n"),
    Setup("[host]:22 entry does not match port 22", False,
          "Host t\n" + N1 + "    Port 22\n    IdentityFile {key}\n", known_hosts="[{a1}]:22 {hk1}\n"),
    Setup("key in the second UserKnownHostsFile", True,
          "Host t\n" + N1 + "    IdentityFile {key}\n    UserKnownHostsFile {d}/empty {d}/second\n",
          known_hosts="", files={"empty": "", "second": "{a1} {hk1}\n"}),
    Setup("key in GlobalKnownHostsFile only", True, "Host t\n" + N1 + "    IdentityFile {key}\n",
          known_hosts="", files={"global_known_hosts": "{a1} {hk1}\n"}),
    Setup("@revoked key, also listed as known", False, "Host t\n" + N1 + "    IdentityFile {key}\n",
          known_hosts="{a1} {hk1}\n@revoked * {hk1}\n"),
    Setup("@revoked in the global file", False, "Host t\n" + N1 + "    IdentityFile {key}\n",
          files={"global_known_hosts": "@revoked {a1} {hk1}\n"}),
    Setup("@cert-authority line only (node presents a plain key)", False,
          "Host t\n" + N1 + "    IdentityFile {key}\n", known_hosts="@cert-authority * {ca_pub}\n"),
    Setup("@cert-authority line only, StrictHostKeyChecking accept-new", True,
          "Host t\n" + N1 + "    IdentityFile {key}\n    StrictHostKeyChecking accept-new\n",
          known_hosts="@cert-authority * {ca_pub}\n"),
    Setup("changed host key", False, "Host t\n" + N1 + "    IdentityFile {key}\n",
          known_hosts="{a1} {bad_hk}\n"),
    Setup("unknown host, StrictHostKeyChecking yes", False,
          "Host t\n" + N1 + "    IdentityFile {key}\n", known_hosts=""),
    Setup("unknown host, StrictHostKeyChecking ask (BatchMode)", False,
          "Host t\n" + N1 + "    IdentityFile {key}\n    StrictHostKeyChecking ask\n", known_hosts=""),
    Setup("unknown host, StrictHostKeyChecking accept-new", True,
          "Host t\n" + N1 + "    IdentityFile {key}\n    StrictHostKeyChecking accept-new\n",
          known_hosts=""),
    Setup("changed host key, StrictHostKeyChecking accept-new", False,
          "Host t\n" + N1 + "    IdentityFile {key}\n    StrictHostKeyChecking accept-new\n",
          known_hosts="{a1} {bad_hk}\n"),
    Setup("unknown host, StrictHostKeyChecking no", True,
          "Host t\n" + N1 + "    IdentityFile {key}\n    StrictHostKeyChecking no\n", known_hosts=""),
    Setup("changed host key, StrictHostKeyChecking no", True,
          "Host t\n" + N1 + "    IdentityFile {key}\n    StrictHostKeyChecking no\n",
          known_hosts="{a1} {bad_hk}\n"),
    Setup("wrong user", False, "Host t\n    HostName {a1}\n    User {u2}\n    IdentityFile {key}\n"),
    Setup("no key at all", False, "Host t\n" + N1 + "    IdentityFile {d}/missing\n"),
    Setup("a key the node does not accept", False, "Host t\n" + N1 + "    IdentityFile {other}\n"),
    Setup("agent holds the key (IdentityAgent)", True,
          "Host t\n" + N1 + "    IdentityFile {other}\n    IdentityAgent {agent}\n"),
    Setup("agent from SSH_AUTH_SOCK", True, "Host t\n" + N1 + "    IdentityFile {other}\n"
          "    IdentityAgent SSH_AUTH_SOCK\n", agent_env=True),
    Setup("IdentitiesOnly: agent key named by a .pub IdentityFile", True,
          "Host t\n" + N1 + "    IdentityFile {d}/pubonly\n    IdentitiesOnly yes\n    IdentityAgent {agent}\n",
          files={"pubonly.pub": "{key_pub}"}),
    Setup("IdentitiesOnly: agent key not named", False,
          "Host t\n" + N1 + "    IdentityFile {other}\n    IdentitiesOnly yes\n    IdentityAgent {agent}\n"),
    Setup("user certificate (<key>-cert.pub), CA trusted by the node", True,
          "Host t\n" + N1 + "    IdentityFile {certkey}\n"),
    Setup("CertificateFile, CA trusted by the node", True,
          "Host t\n" + N1 + "    IdentityFile {certkey2}\n    CertificateFile {cert2}\n"),
    Setup("user certificate, CA not trusted by the node", False,
          "Host t\n" + N2 + "    IdentityFile {certkey}\n", known_hosts="{a2} {hk2}\n"),
    Setup("ProxyJump through node2", True,
          "Host t\n" + N1 + "    IdentityFile {key}\n    ProxyJump j\nHost j\n" + N2 + "    IdentityFile {key}\n",
          known_hosts="{a1} {hk1}\n{a2} {hk2}\n"),
    Setup("ProxyJump chain of two hops, user@host:port form", True,
          "Host t\n" + N1 + "    IdentityFile {key}\n    ProxyJump j,{u2}@{a2}:22\nHost j\n" + N2
          + "    IdentityFile {key}\nHost {a2}\n    IdentityFile {key}\n",
          known_hosts="{a1} {hk1}\n{a2} {hk2}\n"),
    Setup("ProxyJump hop with an unknown host key", False,
          "Host t\n" + N1 + "    IdentityFile {key}\n    ProxyJump j\nHost j\n" + N2 + "    IdentityFile {key}\n"),
    Setup("ProxyJump hop refuses the connection", False,
          "Host t\n" + N1 + "    IdentityFile {key}\n    ProxyJump j\nHost j\n" + N2 + "    Port 2\n"
          "    IdentityFile {key}\n", known_hosts="{a1} {hk1}\n[{a2}]:2 {hk2}\n"),
    Setup("ProxyJump hop cannot reach the node's port", False,
          "Host t\n" + N1 + "    Port 3\n    IdentityFile {key}\n    ProxyJump j\nHost j\n" + N2
          + "    IdentityFile {key}\n", known_hosts="[{a1}]:3 {hk1}\n{a2} {hk2}\n"),
    Setup("ProxyCommand with %h %p, [host]:port known_hosts", True,
          "Host t\n" + N1 + "    Port 2222\n    IdentityFile {key}\n    ProxyCommand ssh -F {d}/ssh_config -W %h:22 j\n"
          "Host j\n" + N2 + "    IdentityFile {key}\n", known_hosts="[{a1}]:2222 {hk1}\n{a2} {hk2}\n"),
    Setup("hashed [host]:port entry (Port 2222 through ProxyCommand)", True,
          "Host t\n" + N1 + "    Port 2222\n    IdentityFile {key}\n    ProxyCommand ssh -F {d}/ssh_config -W %h:22 j\n"
          "Host j\n" + N2 + "    IdentityFile {key}\n", known_hosts="{hashed_a1_2222} {hk1}\n{a2} {hk2}\n"),
    Setup("ProxyCommand with shell syntax (redirection, variable)", True,
          "Host t\n" + N1 + "    IdentityFile {key}\n    ProxyCommand ssh -F $MFCTL_PARITY_CFG -W %h:%p j 2>/dev/null\n"
          "Host j\n" + N2 + "    IdentityFile {key}\n", known_hosts="{a1} {hk1}\n{a2} {hk2}\n"),
    Setup("ProxyCommand that fails", False, "Host t\n" + N1 + "    IdentityFile {key}\n    ProxyCommand false\n"),
    Setup("wrong port (connection refused)", False, "Host t\n" + N1 + "    Port 2\n    IdentityFile {key}\n",
          known_hosts="[{a1}]:2 {hk1}\n"),
    Setup("ConnectTimeout to a dropped port", False,
          "Host t\n" + N2 + "    IdentityFile {key}\n    ConnectTimeout 2\n", known_hosts="{a2} {hk2}\n",
          partition_node2=True),
    Setup("@revoked key, StrictHostKeyChecking no", True,
          "Host t\n" + N1 + "    IdentityFile {key}\n    StrictHostKeyChecking no\n",
          known_hosts="{a1} {hk1}\n@revoked * {hk1}\n"),
    Setup("UserKnownHostsFile none, key in the global file", True,
          "Host t\n" + N1 + "    IdentityFile {key}\n    UserKnownHostsFile none\n",
          known_hosts="", files={"global_known_hosts": "{a1} {hk1}\n"}),
    Setup("HostKeyAlgorithms without the node's key type", False,
          "Host t\n" + N1 + "    IdentityFile {key}\n    HostKeyAlgorithms ecdsa-sha2-nistp256\n"),
    Setup("KexAlgorithms and Ciphers restricted", True,
          "Host t\n" + N1 + "    IdentityFile {key}\n    KexAlgorithms curve25519-sha256@libssh.org\n"
          "    Ciphers aes256-ctr\n"),
    Setup("PubkeyAuthentication no", False, "Host t\n" + N1 + "    IdentityFile {key}\n    PubkeyAuthentication no\n"),
    Setup("passphrase-protected key, no agent (batch mode cannot ask)", False,
          "Host t\n" + N1 + "    IdentityFile {enc}\n"),
    Setup("passphrase-protected key held by the agent, IdentitiesOnly, no .pub", True,
          "Host t\n" + N1 + "    IdentityFile {enc}\n    IdentitiesOnly yes\n    IdentityAgent {agent}\n"),
    Setup("user from the hosts file (user@alias), Match user", True,
          "Host t\n    HostName {a1}\nMatch user {u1}\n    IdentityFile {key}\n", user="{u1}"),
    Setup("wrong user from the hosts file", False, "Host t\n" + N1 + "    IdentityFile {key}\n", user="{u2}"),
    Setup("agent holds a user certificate (ssh-add of key + -cert.pub)", True,
          "Host t\n" + N1 + "    IdentityFile {d}/missing\n    IdentityAgent {agent2}\n"),
    Setup("CertificateFile whose private key is only in the agent (ssh 9.2 does not pair them)", False,
          "Host t\n" + N1 + "    IdentityFile {d}/missing\n    CertificateFile {cert2}\n"
          "    IdentitiesOnly yes\n    IdentityAgent {agent2}\n"),
    Setup("agent with certified keys only, CA not trusted by node2", False,
          "Host t\n" + N2 + "    IdentityFile {d}/missing\n    IdentityAgent {agent2}\n",
          known_hosts="{a2} {hk2}\n"),
    Setup("KnownHostsCommand with %H supplies the key", True,
          "Host t\n" + N1 + "    IdentityFile {key}\n    KnownHostsCommand /bin/grep -hF %H {d}/khc\n",
          known_hosts="", files={"khc": "{a2} {hk2}\n{a1} {hk1}\n"}),
    Setup("RevokedHostKeys lists the host key", False,
          "Host t\n" + N1 + "    IdentityFile {key}\n    RevokedHostKeys {d}/revoked\n",
          files={"revoked": "{hk1}\n"}),
    Setup("RevokedHostKeys lists another key", True,
          "Host t\n" + N1 + "    IdentityFile {key}\n    RevokedHostKeys {d}/revoked\n",
          files={"revoked": "# old\n{bad_hk}\n"}),
    Setup("RevokedHostKeys file missing", False,
          "Host t\n" + N1 + "    IdentityFile {key}\n    RevokedHostKeys {d}/no-such-file\n"),
    Setup("PubkeyAcceptedAlgorithms excludes the key's type", False,
          "Host t\n" + N1 + "    IdentityFile {key}\n    PubkeyAcceptedAlgorithms -ssh-ed25519\n"),
    Setup("PubkeyAcceptedAlgorithms allows the certificate only", True,
          "Host t\n" + N1 + "    IdentityFile {certkey}\n"
          "    PubkeyAcceptedAlgorithms ssh-ed25519-cert-v01@openssh.com\n"),
    Setup("bad ssh_config line", False, "Host t\n" + N1 + "    IdentityFile {key}\n    NoSuchOption yes\n"),
]


def sh(*argv: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=True, timeout=60, **kw)


@pytest.fixture(scope="module")
def lab(netns_cluster, tmp_path_factory) -> Iterator[dict[str, str]]:
    """The cluster plus keys, a user CA trusted by node1 only, and an ssh-agent holding the key."""
    cluster = netns_cluster(2)
    n1, n2 = cluster.nodes[:2]
    keys = tmp_path_factory.mktemp("parity-keys")
    for name in ("other", "ca", "certkey", "certkey2", "badhost"):
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(keys / name))
    shutil.copy(cluster.key_path, keys / "enc")  # the authorized key, with a passphrase, no .pub
    sh("ssh-keygen", "-q", "-p", "-P", "", "-N", "not-asked-for", "-f", str(keys / "enc"))
    for name, principal in (("certkey", n1.user), ("certkey2", n1.user)):
        sh("ssh-keygen", "-q", "-s", str(keys / "ca"), "-I", name, "-n", f"{principal},{n2.user}",
           str(keys / f"{name}.pub"))
    # certkey2's certificate lives elsewhere: only CertificateFile can find it.
    shutil.move(keys / "certkey2-cert.pub", keys / "cert2.pub")
    cluster.trust_user_ca(n1, (keys / "ca.pub").read_text())
    hk = {n.name: (cluster.node_dir(n) / "ssh_host_ed25519_key.pub").read_text().split()[:2] for n in (n1, n2)}
    hashed = keys / "hashed"
    hashed.write_text(f"{n1.address} {' '.join(hk[n1.name])}\n[{n1.address}]:2222 {' '.join(hk[n1.name])}\n")
    sh("ssh-keygen", "-q", "-H", "-f", str(hashed))
    agents = []
    for sock in ("agent.sock", "agent2.sock"):
        out = sh("ssh-agent", "-s", "-a", str(keys / sock)).stdout
        agents.append(int(out.split("SSH_AGENT_PID=")[1].split(";")[0]))
    agent_sock = keys / "agent.sock"
    try:
        sh("ssh-add", "-q", str(cluster.key_path), env={**os.environ, "SSH_AUTH_SOCK": str(agent_sock)})
        # agent2: certkey with its certificate (ssh-add loads <key>-cert.pub too), certkey2 bare.
        for name in ("certkey", "certkey2"):
            sh("ssh-add", "-q", str(keys / name), env={**os.environ, "SSH_AUTH_SOCK": str(keys / "agent2.sock")})
        yield {
            "a1": n1.address, "u1": n1.user, "a2": n2.address, "u2": n2.user,
            "hk1": " ".join(hk[n1.name]), "hk2": " ".join(hk[n2.name]),
            "bad_hk": " ".join((keys / "badhost.pub").read_text().split()[:2]),
            "ca_pub": " ".join((keys / "ca.pub").read_text().split()[:2]),
            "hashed_a1": hashed.read_text().split()[0],
            "hashed_a1_2222": hashed.read_text().splitlines()[1].split()[0],
            "net": n1.address.rsplit(".", 1)[0],
            "key": str(cluster.key_path), "key_text": cluster.key_path.read_text(),
            "key_pub": cluster.key_path.with_suffix(".pub").read_text(),
            "other": str(keys / "other"), "certkey": str(keys / "certkey"),
            "certkey2": str(keys / "certkey2"), "cert2": str(keys / "cert2.pub"),
            "agent": str(agent_sock), "agent2": str(keys / "agent2.sock"), "_node2": n2.name, "enc": str(keys / "enc"),
        }
    finally:
        for pid in agents:
            os.kill(pid, signal.SIGTERM)
        cluster.trust_user_ca(n1, "")


def materialize(setup: Setup, lab: dict[str, str], d: Path) -> Path:
    d.mkdir(parents=True)
    values = dict(lab, d=str(d))
    for rel, text in setup.files.items():
        path = d / rel.format(**values)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(**values))
        path.chmod(0o644 if rel in setup.loose or path.name == "flag" else 0o600)
    (d / "known_hosts").write_text(setup.known_hosts.format(**values))
    if not (d / "global_known_hosts").exists():
        (d / "global_known_hosts").write_text("")
    cfg = d / "ssh_config"
    cfg.write_text(setup.config.format(**values) + TAIL.format(**values))
    return cfg


def ssh_verdict(setup: Setup, cfg: Path, env: dict[str, str], lab: dict[str, str]) -> tuple[bool, str]:
    user = ["-l", setup.user.format(**lab)] if setup.user else []
    proc = subprocess.run(["ssh", "-F", str(cfg), "-o", "BatchMode=yes", *user, setup.alias, "true"],
                          capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
    return proc.returncode == 0, proc.stderr.strip()


def mfctl_verdict(setup: Setup, cfg: Path, tmp: Path, lab: dict[str, str]) -> tuple[bool, str]:
    """mfctl's connect path, as `mfctl check` takes it: open_transport, then a command."""
    entry = HostEntry(setup.alias, user=setup.user.format(**lab) if setup.user else None)
    try:
        transport = open_transport(entry, str(tmp), SshOptions(ssh_config=str(cfg)))
        try:
            result = transport.run("true", timeout=60)
        finally:
            transport.close()
    except (NodeUnreachable, MfctlError) as e:
        message = str(e)
        assert "\n" not in message.strip() and "Traceback" not in message, message
        return False, message
    return result.ok, f"exit {result.exit_code}"


@pytest.fixture
def environment(monkeypatch, lab):
    def apply(setup: Setup) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
        monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
        if setup.agent_env:
            env["SSH_AUTH_SOCK"] = lab["agent"]
            monkeypatch.setenv("SSH_AUTH_SOCK", lab["agent"])
        return env
    return apply


@pytest.mark.parametrize("setup", SETUPS, ids=[s.name for s in SETUPS])
def test_same_verdict_as_openssh(setup: Setup, lab, netns_cluster, environment, monkeypatch,
                                 tmp_path: Path) -> None:
    cluster = netns_cluster(2)
    env = environment(setup)
    node2 = cluster.node(lab["_node2"])
    if setup.partition_node2:
        cluster.partition(node2)
    try:
        # $MFCTL_PARITY_CFG: each run's own config, for the row whose ProxyCommand needs a shell.
        ssh_cfg, mf_cfg = (materialize(setup, lab, tmp_path / who) for who in ("ssh", "mfctl"))
        ssh_ok, ssh_err = ssh_verdict(setup, ssh_cfg, dict(env, MFCTL_PARITY_CFG=str(ssh_cfg)), lab)
        monkeypatch.setenv("MFCTL_PARITY_CFG", str(mf_cfg))
        mf_ok, mf_msg = mfctl_verdict(setup, mf_cfg, tmp_path, lab)
    finally:
        if setup.partition_node2:
            cluster.heal(node2)
    print(f"PARITY | {setup.name} | ssh: {'connects' if ssh_ok else 'refuses'} | "
          f"mfctl: {'connects' if mf_ok else 'refuses'} | {mf_msg}")
    assert ssh_ok == setup.connects, f"ssh did not do what the row expects: {ssh_err}"
    assert mf_ok == ssh_ok, f"ssh {'connects' if ssh_ok else 'refuses'} ({ssh_err}); mfctl: {mf_msg}"
    if not setup.connects:
        assert mf_msg, "a refusal says why"


def test_parity_table_is_large_enough() -> None:
    assert len(SETUPS) >= 20
    assert sum(s.connects for s in SETUPS) >= 8 and sum(not s.connects for s in SETUPS) >= 8


def test_accept_new_records_like_ssh(lab, environment, tmp_path: Path) -> None:
    """accept-new and no write the same known_hosts line as ssh; the next connect needs no flag."""
    for strict in ("accept-new", "no"):
        setup = Setup("rec", True, "Host t\n" + N1 + "    IdentityFile {key}\n"
                      f"    StrictHostKeyChecking {strict}\n", known_hosts="")
        env = environment(setup)
        ssh_dir, mf_dir = tmp_path / strict / "ssh", tmp_path / strict / "mfctl"
        assert ssh_verdict(setup, materialize(setup, lab, ssh_dir), env, lab)[0]
        assert mfctl_verdict(setup, materialize(setup, lab, mf_dir), tmp_path, lab)[0]
        written = [(d / "known_hosts").read_text().split() for d in (ssh_dir, mf_dir)]
        assert written[0] == written[1] == [lab["a1"], *lab["hk1"].split()]
    # HashKnownHosts: both hash the name (random salt, so compare what the line matches).
    setup = Setup("rec", True, "Host t\n" + N1 + "    IdentityFile {key}\n"
                  "    StrictHostKeyChecking accept-new\n    HashKnownHosts yes\n", known_hosts="")
    env = environment(setup)
    dirs = tmp_path / "hashed" / "ssh", tmp_path / "hashed" / "mfctl"
    assert ssh_verdict(setup, materialize(setup, lab, dirs[0]), env, lab)[0]
    assert mfctl_verdict(setup, materialize(setup, lab, dirs[1]), tmp_path, lab)[0]
    for d in dirs:
        name, *key = (d / "known_hosts").read_text().split()
        assert name.startswith("|1|") and knownhosts.matches(name, lab["a1"]) and key == lab["hk1"].split()


def _job(tmp_path: Path, lab) -> Path:
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("t\n")
    job = tmp_path / "job"
    r = run_mfctl_process("init", job, "--model", "tiny-llama", "--nodes", hosts, "--devices-per-node", "1",
                          "--dataset", "/tmp", "--python", sys.executable, "--yes")
    assert r.exit_code == 0, r.stderr
    return job


CLI_ROWS = ["HostKeyAlias with known_hosts keyed by the alias", "Include", "@revoked key, also listed as known",
            "changed host key", "unknown host, StrictHostKeyChecking no", "bad ssh_config line"]


def test_mfctl_check_cli_verdicts(lab, environment, tmp_path: Path) -> None:
    """`mfctl check` itself: reaches the node exactly when ssh does; a refusal is one line, no traceback."""
    job = _job(tmp_path, lab)
    for name in CLI_ROWS:
        setup = next(s for s in SETUPS if s.name == name)
        env = environment(setup)
        cfg = materialize(setup, lab, tmp_path / f"cli-{CLI_ROWS.index(name)}")
        assert ssh_verdict(setup, cfg, env, lab)[0] == setup.connects
        cfg = materialize(setup, lab, tmp_path / f"cli-mfctl-{CLI_ROWS.index(name)}")
        r = run_mfctl_process("check", "--json", "--ssh-config", cfg, "--nodes", tmp_path / "hosts.txt",
                              cwd=job, env=env)
        assert "Traceback" not in r.stdout + r.stderr, r.stderr
        if r.exit_code == 2:  # refused before any connection (the config itself)
            assert not setup.connects and len(r.stderr.splitlines()) == 1, r.stderr
            continue
        report = json.loads(r.stdout)
        node = report["nodes"][0]
        unreachable = [p for p in node["problems"] if p.startswith("unreachable")]
        reached = bool(node["facts"]) and not unreachable
        assert reached == setup.connects, (name, node, r.stderr)
        if not reached:
            assert r.exit_code == 1 and len(r.stderr.splitlines()) == 1, r.stderr
            assert "\n" not in unreachable[0]
        if "StrictHostKeyChecking no" in setup.config:
            assert "WARNING" in r.stderr and "StrictHostKeyChecking no" in r.stderr, r.stderr
