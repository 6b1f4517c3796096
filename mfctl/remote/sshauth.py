"""Host-key verification and public-key authentication as ``ssh -o BatchMode=yes`` does them.

Both take a ``ResolvedHost`` (the options ``ssh -G`` printed), so the key files, the agent, the
known_hosts files and StrictHostKeyChecking are exactly the ones ssh would use. mfctl never asks
a question: ``ask`` behaves as ``yes`` (like BatchMode), passwords and passphrases are never
prompted for (an encrypted key is usable only through the agent).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shlex
import socket
import subprocess
import sys
import threading
from typing import Iterator

import paramiko
from paramiko.agent import AgentSSH
from paramiko.client import MissingHostKeyPolicy, SSHClient
from paramiko.ssh_exception import AuthenticationException, SSHException

from mfctl.remote import knownhosts
from mfctl.remote.sshconfig import ResolvedHost, expand

_warned: set[str] = set()
_warn_lock = threading.Lock()


def warn(message: str) -> None:
    """A security warning on stderr, once per message: never silent, never repeated per node op."""
    with _warn_lock:
        if message in _warned:
            return
        _warned.add(message)
    print(f"mfctl: WARNING: {message}", file=sys.stderr, flush=True)


def fingerprint(blob: bytes) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


class HostKeyRefused(SSHException):
    """The host key check failed; the message is the one line the user sees."""


def _scan_hint(r: ResolvedHost, path: str) -> str:
    port = f"-p {r.port} " if r.port != 22 else ""
    if r.host_key_alias:  # ssh-keyscan writes the host name; the line must carry the alias
        sub = shlex.quote("s/^[^ ]*/" + r.host_key_alias + "/")
        return f"`ssh-keyscan {port}{shlex.quote(r.hostname)} | sed {sub} >> {shlex.quote(path)}`"
    return f"`ssh-keyscan {port}-H {shlex.quote(r.hostname)} >> {shlex.quote(path)}`"


class HostKeyCheck(MissingHostKeyPolicy):
    """Every host key goes through here (the client's own host-key tables stay empty)."""

    def __init__(self, r: ResolvedHost, accept_new: bool = False, *, hop: bool = False) -> None:
        self.r = r
        self.hop = hop
        strict = r.strict_host_key_checking
        # --accept-new-hosts relaxes "yes" to OpenSSH's accept-new; it never tightens "no".
        self.strict = "accept-new" if accept_new and strict == "yes" else strict

    @property
    def files(self) -> list[str]:
        return list(self.r.user_known_hosts) + list(self.r.global_known_hosts)

    def missing_host_key(self, client: SSHClient, hostname: str, key: paramiko.PKey) -> None:
        r, name = self.r, self.r.known_hosts_name
        keytype, blob = key.get_name(), key.asbytes()
        now = f"{keytype} {fingerprint(blob)}"
        if r.revoked_host_keys:  # checked before known_hosts, whatever StrictHostKeyChecking says
            self._check_revoked_file(r.revoked_host_keys, name, blob, now)
        extra = self._known_hosts_command(name, key, keytype, blob) if r.known_hosts_command else []
        v = knownhosts.verdict(self.files, name, keytype, blob, extra)
        if v.status == "ok":
            return
        try:
            self._refuse_or_accept(v, name, keytype, key, now)
        except HostKeyRefused as e:
            if self.hop:  # name the hop: the node itself was never reached
                raise HostKeyRefused(f"ProxyJump hop {r.alias}: {e}") from None
            raise

    def _check_revoked_file(self, path: str, name: str, blob: bytes, now: str) -> None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise HostKeyRefused(f"RevokedHostKeys {path} cannot be read ({e.strerror or e}); ssh refuses "
                                 "every host then too: fix the path or remove the option") from None
        if data.startswith(b"SSHKRL\n"):
            raise HostKeyRefused(f"RevokedHostKeys {path} is a binary KRL, which mfctl cannot read; "
                                 "list the revoked keys as plain public-key lines instead")
        for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
            fields = line.split()
            if len(fields) >= 2 and not fields[0].startswith("#"):
                try:
                    if base64.b64decode(fields[1], validate=True) == blob:
                        raise HostKeyRefused(f"host key of {name} ({now}) is revoked by RevokedHostKeys "
                                             f"{path}:{n}; refusing to connect: get the host's new key "
                                             "from its administrator")
                except ValueError:
                    continue

    def _known_hosts_command(self, name: str, key: paramiko.PKey, keytype: str,
                             blob: bytes) -> list[knownhosts.Entry]:
        """KnownHostsCommand's lines, run like ssh runs it (argv split, then tokens, no shell)."""
        tokens = dict(self.r.tokens)
        tokens.update({"H": name, "I": "HOSTNAME", "K": key.get_base64(), "t": keytype,
                       "f": fingerprint(blob)})
        argv = [expand(a, tokens) for a in shlex.split(self.r.known_hosts_command or "")]
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                                 stdin=subprocess.DEVNULL).stdout
        except (OSError, subprocess.TimeoutExpired, ValueError):
            return []  # ssh goes on with the files alone
        return list(knownhosts.parse(out, "KnownHostsCommand output"))

    def _refuse_or_accept(self, v: knownhosts.Verdict, name: str, keytype: str, key: paramiko.PKey,
                          now: str) -> None:
        r = self.r
        if v.status == "revoked":
            assert v.entry is not None
            msg = (f"host key of {name} ({now}) is marked @revoked in {v.entry.path}:{v.entry.line}")
            if self.strict != "no":
                raise HostKeyRefused(f"{msg}; refusing to connect: get the host's new key from its "
                                     "administrator and replace the revoked one")
            warn(f"{r.alias}: {msg}; connecting anyway because StrictHostKeyChecking is no")
            return
        if v.status == "changed":
            e = v.entry
            assert e is not None
            msg = (f"host key of {name} has CHANGED (now {now}, {e.path}:{e.line} has "
                   f"{fingerprint(e.key)})")
            if self.strict != "no":
                raise HostKeyRefused(
                    f"{msg}; refusing to connect: this may be an attack. If the host was reinstalled, "
                    f"remove the old key with `ssh-keygen -R {shlex.quote(name)} -f {shlex.quote(e.path)}`")
            warn(f"{r.alias}: {msg}; connecting anyway because StrictHostKeyChecking is no")
            return
        # A new host.
        write_to = r.user_known_hosts[0] if r.user_known_hosts else os.path.expanduser("~/.ssh/known_hosts")
        if self.strict == "yes":
            ca = ""
            if v.ca_lines:
                where = ", ".join(f"{e.path}:{e.line}" for e in v.ca_lines)
                ca = (f"; only @cert-authority line(s) match ({where}) and the host presented a plain "
                      "key, not a certificate (mfctl cannot verify host certificates either)")
            searched = ", ".join(self.files) or "no known_hosts file"
            raise HostKeyRefused(
                f"host key of {name} is not known ({now}; searched {searched}){ca}; check it and add "
                f"it with {_scan_hint(r, write_to)}, or set StrictHostKeyChecking accept-new, or "
                "re-run with --accept-new-hosts")
        try:
            knownhosts.record(write_to, name, keytype, key.get_base64(), hashed=r.hash_known_hosts)
        except OSError as e:
            warn(f"{r.alias}: could not record the host key of {name} in {write_to}: {e.strerror or e}")
        if self.strict == "no":
            warn(f"{r.alias}: StrictHostKeyChecking no: accepted the unverified host key of {name} "
                 f"({now}) and added it to {write_to}")


def preferred_host_key_types(r: ResolvedHost, offered: list[str]) -> list[str]:
    """ssh prefers host key algorithms it already knows for the host; so do we."""
    known: list[str] = []
    for t in knownhosts.known_types(list(r.user_known_hosts) + list(r.global_known_hosts),
                                    r.known_hosts_name):
        for alg in (["rsa-sha2-512", "rsa-sha2-256"] if t == "ssh-rsa" else [t]):
            if alg in offered and alg not in known:
                known.append(alg)
    return known + [t for t in offered if t not in known]


_OPTION = {"hostkeyalgorithms": ("key_types", "HostKeyAlgorithms"), "kexalgorithms": ("kex", "KexAlgorithms"),
           "ciphers": ("ciphers", "Ciphers"), "macs": ("digests", "MACs")}


def restrict_algorithms(r: ResolvedHost, transport: paramiko.Transport) -> None:
    """Offer only what ssh would offer (its order), of what paramiko implements."""
    opts = transport.get_security_options()
    for key, wanted in r.algorithms:
        attr, option = _OPTION[key]
        have = list(getattr(opts, attr))
        common = [a for a in wanted if a in have]
        if not common:
            raise SSHException(
                f"{option} allows only {','.join(wanted)}, none of which mfctl (paramiko) implements "
                f"({','.join(have)}); add one of those to {option} for this host")
        setattr(opts, attr, common)
    opts.key_types = preferred_host_key_types(r, list(opts.key_types))


# ----- authentication ---------------------------------------------------------------------------
def _agent(path: str | None) -> AgentSSH | None:
    if not path:
        return None
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(path)
        agent = AgentSSH()
        agent._connect(sock)  # paramiko's Agent() only reads SSH_AUTH_SOCK; IdentityAgent may differ
        return agent
    except (OSError, SSHException):
        return None  # ssh carries on without an unreachable agent too


def _public_blob(path: str) -> bytes | None:
    try:
        with open(path) as f:
            return base64.b64decode(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _private_file_public_blob(path: str) -> bytes | None:
    """The public key stored unencrypted in an OpenSSH-format private key (ssh reads it there)."""
    try:
        with open(path) as f:
            text = f.read()
        body = text.split("-----BEGIN OPENSSH PRIVATE KEY-----")[1].split("-----END")[0]
        data = base64.b64decode("".join(body.split()))
        if not data.startswith(b"openssh-key-v1\0"):
            return None
        m = paramiko.Message(data[len(b"openssh-key-v1\0"):])
        m.get_string(), m.get_string(), m.get_string()  # cipher, kdf, kdf options
        if m.get_int() < 1:
            return None
        return m.get_binary()
    except (OSError, IndexError, ValueError, TypeError, UnicodeDecodeError):
        return None


def _cert(path: str) -> tuple[paramiko.PublicBlob, bytes] | None:
    """A user certificate file -> (its blob for auth, the plain public key it certifies)."""
    try:
        blob = paramiko.PublicBlob.from_file(path)
        m = paramiko.Message(blob.key_blob)
        cert_type = m.get_text()
        plain_type = cert_type.split("-cert-v01@openssh.com")[0]
        m.get_binary()  # nonce
        plain = paramiko.Message()
        plain.add_string(plain_type)
        if plain_type == "ssh-rsa":
            e, n = m.get_mpint(), m.get_mpint()
            plain.add_mpint(e)
            plain.add_mpint(n)
        elif plain_type.startswith("ecdsa-"):
            plain.add_string(m.get_text())
            plain.add_string(m.get_binary())
        elif plain_type == "ssh-ed25519":
            plain.add_string(m.get_binary())
        else:
            return None
        return blob, plain.asbytes()
    except (OSError, ValueError, IndexError, TypeError, SSHException):
        return None


def _why_not(path: str) -> str:
    try:
        if os.stat(path).st_mode & 0o077 and os.stat(path).st_uid == os.getuid():
            return f"{path} is readable by others and ssh ignores it (chmod 600 {shlex.quote(path)})"
    except OSError:
        pass
    return (f"{path} needs a passphrase (mfctl never asks: add it to ssh-agent) or is not a key "
            "type mfctl can use")


def _load(path: str) -> paramiko.PKey | None:
    try:
        st = os.stat(path)
        if st.st_uid == os.getuid() and st.st_mode & 0o077:
            return None  # ssh ignores a private key others can read ("UNPROTECTED PRIVATE KEY FILE")
    except OSError:
        return None
    try:
        return paramiko.PKey.from_path(path)
    except (paramiko.PasswordRequiredException, paramiko.ssh_exception.SSHException, OSError,
            ValueError, TypeError):
        return None  # encrypted (never prompted for), unsupported (sk) or unreadable: ssh skips too


class KeyAuth:
    """paramiko ``auth_strategy``: the keys OpenSSH would offer, in its order, until one works.

    Agent keys first (with IdentitiesOnly only those matching an IdentityFile), then the
    IdentityFile keys not in the agent. A key with a certificate (CertificateFile, or
    ``<IdentityFile>-cert.pub``) is offered with the certificate first, then plain.
    """

    def __init__(self, r: ResolvedHost) -> None:
        self.r = r
        self.skipped: list[str] = []  # why IdentityFiles that exist were not used

    def candidates(self, agent: AgentSSH | None) -> Iterator[tuple[str, paramiko.PKey]]:
        r = self.r
        files = [p for p in r.identity_files if os.path.exists(p) or os.path.exists(p + ".pub")]
        certs: list[tuple[str, paramiko.PublicBlob, bytes]] = []
        for path in dict.fromkeys(list(r.certificate_files) + [p + "-cert.pub" for p in files]):
            got = _cert(path) if os.path.isfile(path) else None
            if got is not None:
                certs.append((path, *got))
        file_blobs: dict[bytes, int] = {}  # public key -> config order
        loaded: dict[str, paramiko.PKey] = {}
        for i, path in enumerate(files):
            key = _load(path) if os.path.isfile(path) else None
            if key is None and os.path.isfile(path):
                self.skipped.append(_why_not(path))
            if key is not None:
                loaded[path] = key
                file_blobs.setdefault(key.asbytes(), i)
            else:
                blob = (_public_blob(path + ".pub") or _public_blob(path)
                        or _private_file_public_blob(path))
                if blob:
                    file_blobs.setdefault(blob, i)
        agent_blobs: set[bytes] = set()
        if agent is not None:
            agent_keys = list(agent.get_keys())
            # Configured identities held by the agent first, in config order, then the others.
            agent_keys.sort(key=lambda k: file_blobs.get(k.asbytes(), len(files)))
            for k in agent_keys:
                named = k.asbytes() in file_blobs
                if r.identities_only and not named:
                    continue
                agent_blobs.add(k.asbytes())
                # A certificate on disk is paired with a key loaded from its IdentityFile only:
                # OpenSSH 9.2 does not sign a lone CertificateFile with an agent key either (the
                # parity suite checks it); certificates the agent itself holds are agent keys.
                yield f"agent key {k.comment or '?'} ({k.get_name()})", k
        for path in files:
            key = loaded.get(path)
            if key is None:
                continue
            for cert_path, blob, plain in certs:
                if plain == key.asbytes():
                    with_cert = _load(path)
                    if with_cert is not None:
                        with_cert.public_blob = blob
                        yield f"{path} with {cert_path}", with_cert
            if key.asbytes() not in agent_blobs:
                yield path, key

    def accepted(self, key: paramiko.PKey) -> bool:
        """PubkeyAcceptedAlgorithms: ssh does not offer a key whose algorithms it excludes."""
        allowed = self.r.pubkey_algorithms
        if not allowed:
            return True
        blob = getattr(key, "public_blob", None)
        name = blob.key_type if blob is not None else key.get_name()
        if name.startswith("ssh-rsa"):  # an RSA key signs as rsa-sha2-512/256 (or legacy ssh-rsa)
            suffix = name[len("ssh-rsa"):]
            return any(a + suffix in allowed for a in ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"))
        return name in allowed

    def authenticate(self, transport: paramiko.Transport) -> list[str]:
        r = self.r
        if not r.pubkey_auth:
            raise AuthenticationException("PubkeyAuthentication is no and mfctl never asks for a "
                                          "password; enable PubkeyAuthentication for this host")
        self.skipped = []
        agent = _agent(r.identity_agent)
        tried: list[str] = []
        excluded: list[str] = []
        try:
            for desc, key in self.candidates(agent):
                if not self.accepted(key):
                    excluded.append(desc)
                    continue
                try:
                    transport.auth_publickey(r.user, key)
                except AuthenticationException:
                    tried.append(desc)
                    continue
                if transport.is_authenticated():
                    return []
                tried.append(desc)
        finally:
            if agent is not None:
                agent._close()
        if not tried:
            if excluded:
                why = f"PubkeyAcceptedAlgorithms excludes every key ({', '.join(excluded)})"
            elif self.skipped:
                why = "; ".join(dict.fromkeys(self.skipped))
                if not agent and not r.identities_only:
                    why += "; and no ssh-agent is reachable"
            else:
                why = "no IdentityFile exists or loads without a passphrase"
                if r.identities_only and agent:
                    why += " and IdentitiesOnly excludes the agent's keys"
                elif not agent and not r.identities_only:
                    why += " and no ssh-agent is reachable"
            raise AuthenticationException(f"no usable key: {why}")
        raise AuthenticationException(f"the node accepted none of: {', '.join(tried)}")
