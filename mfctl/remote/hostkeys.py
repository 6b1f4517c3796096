"""Host-key verification as ``ssh -o BatchMode=yes`` does it, and the algorithms ssh would offer.

Takes a ``ResolvedHost`` (the options ``ssh -G`` printed), so the known_hosts files,
KnownHostsCommand, RevokedHostKeys and StrictHostKeyChecking are exactly the ones ssh would use.
mfctl never asks a question: ``ask`` behaves as ``yes`` (like BatchMode); ``no`` connects like ssh
does and always warns on stderr.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shlex
import subprocess
import sys
import threading

import paramiko
from paramiko.client import MissingHostKeyPolicy, SSHClient
from paramiko.ssh_exception import SSHException

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


_OPTION = {"hostkeyalgorithms": "HostKeyAlgorithms", "kexalgorithms": "KexAlgorithms", "ciphers": "Ciphers",
           "macs": "MACs"}


def restrict_algorithms(r: ResolvedHost, transport: paramiko.Transport) -> None:
    """Offer only what ssh would offer (its order), of what paramiko implements.

    Through ``SecurityOptions``, paramiko's public setters for the lists a Transport offers.
    """
    opts = transport.get_security_options()
    offer = {"hostkeyalgorithms": list(opts.key_types), "kexalgorithms": list(opts.kex),
             "ciphers": list(opts.ciphers), "macs": list(opts.digests)}
    for key, wanted in r.algorithms:
        have = offer[key]
        common = [a for a in wanted if a in have]
        if not common:
            option = _OPTION[key]
            raise SSHException(
                f"{option} allows only {','.join(wanted)}, none of which mfctl (paramiko) implements "
                f"({','.join(have)}); add one of those to {option} for this host")
        offer[key] = common
    restricted = {key for key, _ in r.algorithms}
    if "kexalgorithms" in restricted:
        opts.kex = offer["kexalgorithms"]
    if "ciphers" in restricted:
        opts.ciphers = offer["ciphers"]
    if "macs" in restricted:
        opts.digests = offer["macs"]
    opts.key_types = preferred_host_key_types(r, offer["hostkeyalgorithms"])
