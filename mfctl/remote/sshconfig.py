"""Where and how to connect to a host, as OpenSSH's own ``ssh -G`` resolves it.

ssh_config(5) is large (Host patterns and negation, ``Match`` with exec/user/originalhost,
``Include``, ``%`` tokens, canonicalisation, first-value-wins) and a private re-implementation
drifts from what ``ssh node1`` does. So every host is resolved by the installed OpenSSH client:
``ssh -G [-F file] [-l user] [-p port] alias`` prints the final options, one lowercase
``key value`` per line, and we only parse that output. There is no fallback resolver: without
``ssh`` on the controller the error says what to install.

``ssh -G`` leaves some values unexpanded (IdentityFile, CertificateFile, ProxyCommand); their
``%`` tokens are expanded here with the values OpenSSH itself computed: we ask for them through
``-o ControlPath=<every token>`` (an option mfctl never uses), which ``ssh -G`` prints expanded.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from mfctl.errors import BadInput
from mfctl.remote import sshgcache

# Tokens whose values OpenSSH reports through ControlPath (see the module docstring).
_TOKENS = ("d", "u", "l", "L", "h", "r", "p", "n", "k", "C", "i")
_SEP = "\x1f"  # unit separator: cannot occur in a home, user or host name
_PROBE = _SEP.join("%" + t for t in _TOKENS)
_MULTI = frozenset({"identityfile", "certificatefile"})
_cache: dict[tuple[object, ...], ResolvedHost] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class ResolvedHost:
    """The options of one destination that decide where and how mfctl connects."""

    alias: str  # the name as given (OpenSSH's %n)
    hostname: str
    user: str
    port: int
    identity_files: tuple[str, ...]  # expanded; may not exist (OpenSSH lists its defaults too)
    certificate_files: tuple[str, ...]
    identities_only: bool
    identity_agent: str | None  # a socket path, or None for no agent
    host_key_alias: str | None
    user_known_hosts: tuple[str, ...]
    global_known_hosts: tuple[str, ...]
    strict_host_key_checking: str  # "yes", "no", "accept-new" ("ask" is "yes": mfctl never asks)
    hash_known_hosts: bool
    connect_timeout: float | None
    proxy_jump: tuple[str, ...]  # hop specs "[user@]host[:port]", outermost first
    proxy_command: str | None  # tokens expanded
    pubkey_auth: bool
    config_path: str | None
    #: HostKeyAlgorithms, KexAlgorithms, Ciphers, MACs as ssh would offer them, in its order.
    algorithms: tuple[tuple[str, tuple[str, ...]], ...] = ()
    revoked_host_keys: str | None = None  # RevokedHostKeys file (expanded)
    known_hosts_command: str | None = None  # KnownHostsCommand, tokens not yet expanded
    tokens: tuple[tuple[str, str], ...] = ()  # OpenSSH's own values of %d %u %l %L %h %r %p %n %k %C %i
    pubkey_algorithms: tuple[str, ...] = ()  # PubkeyAcceptedAlgorithms (empty: no restriction known)

    @property
    def known_hosts_name(self) -> str:
        """The name known_hosts is searched for: HostKeyAlias, else host or ``[host]:port``."""
        if self.host_key_alias:
            return self.host_key_alias
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


def _ssh_binary() -> str:
    path = shutil.which("ssh")
    if path is None:
        raise BadInput("the OpenSSH client `ssh` is not installed on this machine: mfctl reads "
                       "ssh_config through `ssh -G`; install it (apt-get install openssh-client)")
    return path


def expand(value: str, tokens: Mapping[str, str], *, tilde: bool = True) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "%" and i + 1 < len(value):
            t = value[i + 1]
            out.append("%" if t == "%" else tokens.get(t, "%" + t))
            i += 2
            continue
        out.append(c)
        i += 1
    text = "".join(out)
    if tilde and (text == "~" or text.startswith("~/")) and tokens.get("d"):
        text = tokens["d"] + text[1:]  # ssh's home (the passwd entry), not $HOME
    elif tilde and text.startswith("~"):
        text = os.path.expanduser(text)
    return text


def _run_ssh_g(argv: list[str], what: str) -> dict[str, list[str]]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BadInput(f"{what}: `ssh -G` did not answer within 30 s (a slow `Match exec` in the "
                       "ssh_config?)") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines()
                 if ln.strip() and not ln.startswith("Pseudo-terminal") and "terminating," not in ln]
        for ln in lines:
            m = re.match(r"^(.*?):? line (\d+): (.*)$", ln)
            if m:  # "<file> line N: <problem>": name the file:line and the option written there
                path, n, problem = m.group(1), int(m.group(2)), m.group(3).rstrip(".")
                option = _option_at(path, n)
                fix = f"fix {option} there" if option else "fix that line"
                raise BadInput(f"{what}: OpenSSH rejects {path}:{n}: {problem}; {fix}")
        reason = "; ".join(lines[:2]) or f"exit {proc.returncode}"
        raise BadInput(f"{what}: OpenSSH rejects the ssh config: {reason}; fix it "
                       "(`ssh -G` shows what ssh makes of it)")
    opts: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        opts.setdefault(key.lower(), []).append(value)
    return opts


def _files(value: str) -> tuple[str, ...]:
    # "none" (one word) means no file, as in ssh_config(5).
    return tuple(os.path.expanduser(p) for p in value.split() if p.lower() != "none")


def _option_at(path: str, n: int) -> str | None:
    try:
        with open(os.path.expanduser(path), encoding="utf-8", errors="replace") as f:
            line = f.read().splitlines()[n - 1]
    except (OSError, IndexError):
        return None
    word = line.strip().split("=")[0].split()
    return word[0] if word else None


def _one(opts: Mapping[str, list[str]], key: str, default: str = "") -> str:
    values = opts.get(key)
    return values[0] if values else default


def resolve(alias: str, config_path: str | os.PathLike[str] | None = None, *,
            user: str | None = None, port: int | None = None) -> ResolvedHost:
    """``alias`` resolved by ``ssh -G`` exactly as ``ssh [-F config] [-l user] [-p port] alias``.

    Cached per (alias, user, port, config file and its modification time).
    """
    cfg = os.path.expanduser(os.fspath(config_path)) if config_path is not None else None
    if cfg is not None and not os.path.isfile(cfg):
        raise BadInput(f"{cfg}: ssh config file not found; check the --ssh-config path")
    stamp = os.stat(cfg).st_mtime_ns if cfg else None
    key = (alias, user, port, cfg, stamp, os.environ.get("SSH_AUTH_SOCK"))
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    argv = [_ssh_binary(), "-G", "-o", "ControlPath=" + _PROBE]
    if cfg is not None:
        argv += ["-F", cfg]
    if user:
        argv += ["-l", user]
    if port:
        argv += ["-p", str(port)]
    argv += ["--", alias]
    where = f"{cfg or '~/.ssh/config'}: Host {alias}"
    entry = sshgcache.Entry(argv, cfg)  # a run before may have asked the same (sshgcache)
    cached = entry.load()
    if cached is None:
        opts = _run_ssh_g(argv, where)
        entry.store(opts)
    else:
        opts = cached
    probe = _one(opts, "controlpath").split(_SEP)
    tokens = dict(zip(_TOKENS, probe)) if len(probe) == len(_TOKENS) else {}
    strict = _one(opts, "stricthostkeychecking", "ask").lower()
    strict = {"true": "yes", "ask": "yes", "false": "no", "off": "no"}.get(strict, strict)
    timeout = _one(opts, "connecttimeout", "none")
    agent_opt = _one(opts, "identityagent")
    if agent_opt.lower() == "none":
        agent: str | None = None
    elif agent_opt and agent_opt != "SSH_AUTH_SOCK":
        agent = os.environ.get(agent_opt[1:]) if agent_opt.startswith("$") else os.path.expanduser(agent_opt)
    else:
        agent = os.environ.get("SSH_AUTH_SOCK") or None
    jump = _one(opts, "proxyjump", "none")
    command = _one(opts, "proxycommand", "none")
    try:
        port_n = int(_one(opts, "port", "22"))
        timeout_s = None if timeout == "none" else float(timeout)
    except ValueError:
        raise BadInput(f"{where}: OpenSSH printed a non-numeric Port or ConnectTimeout; fix it") from None
    resolved = ResolvedHost(
        alias=alias,
        hostname=_one(opts, "hostname", alias),
        user=_one(opts, "user"),
        port=port_n,
        identity_files=tuple(expand(v, tokens) for v in opts.get("identityfile", [])),
        certificate_files=tuple(expand(v, tokens) for v in opts.get("certificatefile", [])),
        identities_only=_one(opts, "identitiesonly", "no") in ("yes", "true"),
        identity_agent=agent,
        host_key_alias=_one(opts, "hostkeyalias") or None,
        user_known_hosts=_files(_one(opts, "userknownhostsfile")),
        global_known_hosts=_files(_one(opts, "globalknownhostsfile")),
        strict_host_key_checking=strict,
        hash_known_hosts=_one(opts, "hashknownhosts", "no") in ("yes", "true"),
        connect_timeout=timeout_s,
        proxy_jump=tuple(h.strip() for h in jump.split(",") if h.strip()) if jump.lower() != "none" else (),
        proxy_command=expand(command, tokens, tilde=False) if command.lower() != "none" else None,
        pubkey_auth=_one(opts, "pubkeyauthentication", "yes") in ("yes", "true", "unbound", "host-bound"),
        config_path=cfg,
        revoked_host_keys=_one(opts, "revokedhostkeys") or None,
        known_hosts_command=(_one(opts, "knownhostscommand")
                             if _one(opts, "knownhostscommand", "none").lower() != "none" else None),
        tokens=tuple(tokens.items()),
        pubkey_algorithms=tuple(a for a in _one(opts, "pubkeyacceptedalgorithms").split(",") if a),
        algorithms=tuple((k, tuple(_one(opts, k).split(","))) for k in
                         ("hostkeyalgorithms", "kexalgorithms", "ciphers", "macs") if _one(opts, k)),
    )
    with _cache_lock:
        _cache[key] = resolved
    return resolved


def parse_jump(spec: str) -> tuple[str | None, str, int | None]:
    """A ProxyJump hop ``[user@]host[:port]`` or ``ssh://[user@]host[:port]`` -> (user, host, port)."""
    text = spec.removeprefix("ssh://")
    user, _, hostport = text.rpartition("@")
    port: int | None = None
    if hostport.startswith("[") and "]" in hostport:
        host, _, rest = hostport[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif hostport.count(":") == 1 and hostport.split(":")[1].isdigit():
        host, p = hostport.split(":")
        port = int(p)
    else:
        host = hostport
    return user or None, host, port


def prefetch(hosts: list[tuple[str, str | None, int | None]],
             config_path: str | os.PathLike[str] | None, workers: int = 16) -> None:
    """Warm the cache for many hosts at once. Errors are left for the caller's own ``resolve``
    of that host, which raises them with the host's name."""
    from concurrent.futures import ThreadPoolExecutor

    def one(item: tuple[str, str | None, int | None]) -> None:
        try:
            resolve(item[0], config_path, user=item[1], port=item[2])
        except BadInput:
            pass

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(hosts)))) as pool:
        list(pool.map(one, hosts))
