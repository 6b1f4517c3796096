"""Public-key authentication as ``ssh -o BatchMode=yes`` does it.

Takes a ``ResolvedHost`` (the options ``ssh -G`` printed), so the key files, certificates, the
agent and IdentitiesOnly are exactly the ones ssh would use. Passwords and passphrases are never
prompted for (an encrypted key is usable only through the agent). Host keys: ``hostkeys``.
"""

from __future__ import annotations

import base64
import os
import shlex
import socket
from collections.abc import Iterator

import paramiko
from paramiko.agent import AgentSSH
from paramiko.ssh_exception import AuthenticationException, SSHException

from mfctl.remote.filestamp import settled, stat_stamp
from mfctl.remote.sshconfig import ResolvedHost


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


_keys: dict[str, tuple[tuple[int, ...], paramiko.PKey]] = {}


def _load(path: str, fresh: bool = False) -> paramiko.PKey | None:
    """The private key in ``path``, parsed once per process while the file stays the same (a
    launch connects to every node with the same IdentityFile). ``fresh``: a new object, for a
    caller that attaches a certificate to it."""
    try:
        st = os.stat(path)
        if st.st_uid == os.getuid() and st.st_mode & 0o077:
            return None  # ssh ignores a private key others can read ("UNPROTECTED PRIVATE KEY FILE")
    except OSError:
        return None
    stamp = (*stat_stamp(st), st.st_mode, st.st_uid)
    hit = _keys.get(path)
    if hit is not None and hit[0] == stamp and not fresh:
        return hit[1]
    try:
        key = paramiko.PKey.from_path(path)
    except (paramiko.PasswordRequiredException, paramiko.ssh_exception.SSHException, OSError,
            ValueError, TypeError):
        return None  # encrypted (never prompted for), unsupported (sk) or unreadable: ssh skips too
    # from_path also attaches ``<path>-cert.pub`` when there is one; the plain key is offered
    # plain (``KeyAuth.candidates`` pairs certificates itself: the certificate first, then this).
    key.public_blob = None
    if not fresh and settled(st):
        _keys[path] = (stamp, key)
    return key


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
                    with_cert = _load(path, fresh=True)
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
