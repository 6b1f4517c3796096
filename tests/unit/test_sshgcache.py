"""``ssh -G`` answers kept across runs (mfctl/remote/sshgcache.py): reused only while nothing they
depend on changed. Runs the real OpenSSH client; a "new run" is an empty in-process cache."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from mfctl.remote import sshconfig

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="the OpenSSH client is not installed")


@dataclass
class Cache:
    dir: Path
    calls: list[list[str]]  # the `ssh -G` runs

    def empty(self) -> bool:
        return not self.dir.exists() or not list(self.dir.iterdir())


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cache:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MFCTL_SSH_G_CACHE", raising=False)
    calls: list[list[str]] = []
    real = sshconfig._run_ssh_g

    def counting(argv: list[str], what: str) -> dict[str, list[str]]:
        calls.append(argv)
        return real(argv, what)

    monkeypatch.setattr(sshconfig, "_run_ssh_g", counting)
    monkeypatch.setattr(sshconfig, "_cache", {})
    return Cache(tmp_path / "cache" / "mfctl" / "ssh-G", calls)


def write_config(path: Path, text: str, age_s: float = 60) -> Path:
    path.write_text(text)
    past = time.time() - age_s  # older than the 2 s a just-written file is not trusted for
    os.utime(path, (past, past))
    return path


def new_run() -> None:
    sshconfig._cache.clear()


def test_a_second_run_reuses_the_answer_until_the_config_changes(cache: Cache, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "ssh_config", "Host node1\n    HostName 10.1.1.1\n    User alice\n")
    assert sshconfig.resolve("node1", cfg).hostname == "10.1.1.1"
    new_run()
    again = sshconfig.resolve("node1", cfg)
    assert (again.hostname, again.user) == ("10.1.1.1", "alice")
    assert len(cache.calls) == 1
    write_config(cfg, "Host node1\n    HostName 10.2.2.2\n    User alice\n", age_s=30)
    new_run()
    assert sshconfig.resolve("node1", cfg).hostname == "10.2.2.2"
    assert len(cache.calls) == 2


def test_an_included_file_is_followed(cache: Cache, tmp_path: Path) -> None:
    inc = write_config(tmp_path / "inc.conf", "Host node1\n    Port 2200\n")
    cfg = write_config(tmp_path / "ssh_config", f"Include {inc}\n")
    assert sshconfig.resolve("node1", cfg).port == 2200
    write_config(inc, "Host node1\n    Port 2300\n", age_s=30)
    new_run()
    assert sshconfig.resolve("node1", cfg).port == 2300


@pytest.mark.parametrize("line", ["Match exec \"true\"\n    User bob\n", "Host *\n    IdentityFile ${HOME}/k\n",
                                  "CanonicalizeHostname yes\n"])
def test_configs_that_look_at_the_world_are_never_kept(cache: Cache, tmp_path: Path, line: str) -> None:
    cfg = write_config(tmp_path / "ssh_config", line)
    sshconfig.resolve("node1", cfg)
    new_run()
    sshconfig.resolve("node1", cfg)
    assert len(cache.calls) == 2
    assert cache.empty()


def test_a_just_written_config_is_not_trusted_yet(cache: Cache, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "ssh_config", "Host node1\n    User alice\n", age_s=0)
    sshconfig.resolve("node1", cfg)
    assert cache.empty()


def test_an_entry_others_can_write_is_ignored(cache: Cache, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "ssh_config", "Host node1\n    HostName 10.1.1.1\n")
    sshconfig.resolve("node1", cfg)
    (entry,) = cache.dir.iterdir()
    entry.chmod(0o666)
    new_run()
    sshconfig.resolve("node1", cfg)
    assert len(cache.calls) == 2


def test_switched_off_by_the_environment(cache: Cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MFCTL_SSH_G_CACHE", "0")
    cfg = write_config(tmp_path / "ssh_config", "Host node1\n    HostName 10.1.1.1\n")
    sshconfig.resolve("node1", cfg)
    assert cache.empty() and len(cache.calls) == 1
