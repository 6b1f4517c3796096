"""Every file under ``configs/`` is read by the mfctl parser that reads it in use.

The files are found by globbing, so a new preset or example is checked without touching this
test; a file no parser claims fails here until it is named like its kind (or this test learns a
new kind). ``templates/`` holds only what mfctl renders.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mfctl.cluster.hostfile import parse_hostfile
from mfctl.jobspec.presets import parse_preset
from mfctl.jobspec.schema import JobSpec, ParallelSpec, TrainSpec, parse_spec
from mfctl.presets import configs_dir, load_presets
from mfctl.remote.sshconfig import resolve

ROOT = Path(__file__).resolve().parent.parent.parent
CONFIGS = ROOT / "configs"
EXAMPLES = CONFIGS / "examples"
ALL_FILES = sorted(p for p in CONFIGS.rglob("*") if p.is_file())
needs_ssh = pytest.mark.skipif(shutil.which("ssh") is None,
                               reason="the OpenSSH client (ssh) is not installed; mfctl needs it")


def kind(path: Path) -> str | None:
    """Which mfctl parser reads ``path``, by where it is and how it is named."""
    rel = path.relative_to(CONFIGS)
    if rel.parts[0] == "presets" and path.suffix == ".yaml":
        return "preset"
    if rel.parts[0] == "examples":
        if path.name.startswith("hosts") and path.suffix == ".txt":
            return "hosts"
        if path.name == "mfctl.yaml" or path.name.endswith(".mfctl.yaml"):
            return "spec"
        if path.name.startswith("ssh_config"):
            return "ssh_config"
    return None


def host_aliases(ssh_config: Path) -> list[str]:
    """The literal names of the ``Host`` lines (patterns with * ? ! are not destinations)."""
    names: list[str] = []
    for line in ssh_config.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) > 1 and words[0].lower() == "host":
            names += [w for w in words[1:] if not set(w) & set("*?!")]
    return names


def test_mfctl_reads_the_configs_of_this_checkout() -> None:
    assert configs_dir() == CONFIGS
    assert ALL_FILES, "configs/ is empty"


@pytest.mark.parametrize("path", ALL_FILES, ids=[str(p.relative_to(CONFIGS)) for p in ALL_FILES])
def test_every_config_file_is_read_by_its_parser(path: Path) -> None:
    rel = f"configs/{path.relative_to(CONFIGS)}"
    what = kind(path)
    assert what is not None, (f"{rel}: no mfctl parser reads this file; name it like its kind "
                              "(presets/*.yaml, examples/hosts*.txt, examples/*mfctl.yaml, "
                              "examples/ssh_config*) or teach tests/unit/test_configs.py")
    text = path.read_text(encoding="utf-8")
    if what == "preset":
        preset = parse_preset(text, rel)
        assert preset.name == path.stem
        # The loader mfctl uses (it checks the name against the file name too).
        assert load_presets()[path.stem] == preset
    elif what == "hosts":
        entries = parse_hostfile(text, rel)
        node_lines = [ln for ln in text.splitlines() if ln.split("#", 1)[0].strip()]
        assert [e.line for e in entries] == [text.splitlines().index(ln) + 1 for ln in node_lines]
    elif what == "spec":
        spec = parse_spec(text, rel)
        assert spec.model in load_presets(), f"{rel}: model {spec.model!r} is not a preset"
    else:
        if shutil.which("ssh") is None:
            pytest.skip("the OpenSSH client (ssh) is not installed; mfctl reads ssh_config through it")
        aliases = host_aliases(path)
        assert aliases, f"{rel}: no Host with a literal name"
        for alias in aliases:
            proc = subprocess.run(["ssh", "-G", "-F", str(path), alias], capture_output=True,
                                  text=True, stdin=subprocess.DEVNULL, timeout=30)
            assert proc.returncode == 0, f"ssh -G -F {rel} {alias}: {proc.stderr}"
            assert resolve(alias, path).hostname != alias, f"{rel}: Host {alias} has no HostName"


def test_annotated_hosts_file_shows_every_accepted_form() -> None:
    entries = parse_hostfile((EXAMPLES / "hosts.txt").read_text(), "hosts.txt")
    assert any(e.user is None and e.port is None and "." not in e.host for e in entries)  # a name
    assert any(e.user and e.port is None for e in entries)                               # user@host
    assert any(e.user and e.port for e in entries)                                       # user@host:port
    assert any(re.fullmatch(r"[\d.]+", e.host) for e in entries)                         # IPv4
    assert any(":" in e.host and e.port for e in entries)                                # [IPv6]:port
    assert all(e.slots == 8 for e in entries)                                            # slots=N
    aliases = host_aliases(EXAMPLES / "ssh_config")
    assert any(e.host in aliases for e in entries)                                       # an alias


def test_example_spec_sets_every_key_each_with_a_comment() -> None:
    text = (EXAMPLES / "mfctl.yaml").read_text()
    lines = text.splitlines()
    node = yaml.compose(text)
    keys: dict[str, int] = {}  # dotted key -> 1-based line
    for key_node, value_node in node.value:
        keys[key_node.value] = key_node.start_mark.line + 1
        if isinstance(value_node, yaml.MappingNode) and key_node.value in ("parallel", "train"):
            for sub, _ in value_node.value:
                keys[f"{key_node.value}.{sub.value}"] = sub.start_mark.line + 1
    wanted = {f.alias or name for name, f in JobSpec.model_fields.items()}
    wanted |= {f"parallel.{name}" for name in ParallelSpec.model_fields}
    wanted |= {f"train.{name}" for name in TrainSpec.model_fields}
    assert wanted - set(keys) == set(), "keys of JobSpec the annotated example does not show"
    for key, line in keys.items():
        commented = "#" in lines[line - 1] or lines[line - 2].lstrip().startswith("#")
        assert commented, f"configs/examples/mfctl.yaml:{line}: {key} has no comment"


@needs_ssh
def test_example_job_plans_through_the_example_ssh_config(mfctl) -> None:
    # What the example's first comment tells a user to run.
    r = mfctl("plan", "--json", "--dir", EXAMPLES, "--ssh-config", EXAMPLES / "ssh_config")
    assert r.exit_code == 0, r.stderr
    plan = json.loads(r.stdout)
    assert [n["host"] for n in plan["nodes"]] == ["gpu-a", "gpu-b"]
    assert plan["world_size"] == 16
    # MASTER_ADDR is the first node's HostName, not the alias or the jump host.
    assert plan["master_addr"] == "10.0.0.11"


@needs_ssh
def test_example_nodes_go_through_the_jump_host() -> None:
    config = EXAMPLES / "ssh_config"
    for alias in ("gpu-a", "gpu-b"):
        node = resolve(alias, config)
        assert node.proxy_jump == ("bastion",) and node.user == "ml"
    assert resolve("bastion", config).proxy_jump == ()


def test_templates_hold_only_what_is_rendered() -> None:
    rendered = {p.template for p in load_presets().values()} | {"node-launch.sh.j2"}
    assert {p.name for p in (ROOT / "templates").iterdir()} == rendered
