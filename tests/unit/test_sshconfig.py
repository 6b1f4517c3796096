"""ssh_config resolution through OpenSSH's own `ssh -G` (no network: -G only prints options)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mfctl.errors import BadInput
from mfctl.remote import sshconfig

needs_ssh = pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH client not installed")


@pytest.mark.parametrize("spec, expected", [
    ("host", (None, "host", None)),
    ("bob@host", ("bob", "host", None)),
    ("bob@host:2222", ("bob", "host", 2222)),
    ("ssh://bob@host:2222", ("bob", "host", 2222)),
    ("[fe80::1]:22", (None, "fe80::1", 22)),
])
def test_parse_jump(spec: str, expected: tuple) -> None:
    assert sshconfig.parse_jump(spec) == expected


def test_expand_tokens_and_tilde() -> None:
    tokens = {"h": "10.0.0.1", "r": "bob", "p": "22", "d": "/home/me", "n": "node1"}
    assert sshconfig.expand("~/.ssh/id_%r_%n", tokens) == "/home/me/.ssh/id_bob_node1"
    assert sshconfig.expand("nc %h %p %%x", tokens, tilde=False) == "nc 10.0.0.1 22 %x"


def test_missing_ssh_client_is_one_line_naming_the_package(monkeypatch, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    cfg.write_text("Host n1\n  HostName 10.0.0.1\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BadInput, match="openssh-client") as err:
        sshconfig.resolve("n1", cfg)
    assert "\n" not in str(err.value)


@needs_ssh
def test_resolution_is_openssh_s(tmp_path: Path) -> None:
    (tmp_path / "inc.conf").write_text("Host web-*\n  User deploy\n  IdentityFile ~/.ssh/k_%n_%r\n")
    cfg = tmp_path / "cfg"
    cfg.write_text(
        f"Include {tmp_path}/inc.conf\n"
        "Host web-* !web-old\n  HostName %h.example\n  Port 2200\n  ProxyCommand nc %h %p\n"
        "Match originalhost web-old\n  HostName legacy.example\n  HostKeyAlias old\n"
        "Host *\n  StrictHostKeyChecking ask\n  UserKnownHostsFile ~/kh ~/kh2\n")
    r = sshconfig.resolve("web-1", cfg)
    assert (r.hostname, r.user, r.port) == ("web-1.example", "deploy", 2200)
    assert r.identity_files[0].endswith("/.ssh/k_web-1_deploy")
    assert r.proxy_command == "nc web-1.example 2200"
    assert r.strict_host_key_checking == "yes"  # ask is yes: mfctl never asks
    assert r.known_hosts_name == "[web-1.example]:2200" and len(r.user_known_hosts) == 2
    old = sshconfig.resolve("web-old", cfg, user="ops", port=22)
    assert (old.hostname, old.user, old.host_key_alias, old.known_hosts_name) == (
        "legacy.example", "ops", "old", "old")


@needs_ssh
def test_a_config_ssh_rejects_names_file_line_and_option(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    cfg.write_text("Host n1\n  HostName 10.0.0.1\n  Port twenty-two\n")
    with pytest.raises(BadInput, match=r"cfg:3: .*fix Port there") as err:
        sshconfig.resolve("n1", cfg)
    assert "\n" not in str(err.value)
