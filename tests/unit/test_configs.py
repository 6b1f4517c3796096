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
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from mfctl.cluster.hostfile import parse_hostfile
from mfctl.jobspec.presets import parse_preset
from mfctl.jobspec.schema import JobSpec, parse_spec
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


def spec_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every key a job spec can set, sections (a nested model like parallel:) as ``section.key``."""
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        keys.add(key)
        for inner in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                keys |= spec_keys(inner, key + ".")
    return keys


def yaml_keys(node: yaml.Node, prefix: str = "") -> dict[str, int]:
    """Every key of a YAML mapping, nested ones as ``section.key``, with its 1-based line."""
    keys: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = prefix + key_node.value
            keys[key] = key_node.start_mark.line + 1
            if key != "env":  # env's keys are the user's variables, not settings
                keys.update(yaml_keys(value_node, key + "."))
    return keys


def test_example_specs_set_every_key_each_with_a_comment() -> None:
    # Together, the example specs (mfctl.yaml, and *.mfctl.yaml for settings of another kind of
    # job) show every key of JobSpec; each key has a comment on its line or the line above.
    shown: set[str] = set()
    for path in sorted(EXAMPLES.glob("*mfctl.yaml")):
        text = path.read_text()
        lines = text.splitlines()
        keys = yaml_keys(yaml.compose(text))
        shown |= set(keys)
        for key, line in keys.items():
            commented = "#" in lines[line - 1] or lines[line - 2].lstrip().startswith("#")
            assert commented, f"configs/examples/{path.name}:{line}: {key} has no comment"
    missing = sorted(spec_keys(JobSpec) - shown)
    assert missing == [], f"keys of JobSpec no example spec in configs/examples shows: {missing}"


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
    # A template is rendered when a preset names it or mfctl's code does (render_template("x.j2")).
    code = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "mfctl").rglob("*.py"))
    named_in_code = set(re.findall(r"[\"']([\w.-]+\.j2)[\"']", code))
    rendered = {p.template for p in load_presets().values()} | named_in_code
    unused = sorted({p.name for p in (ROOT / "templates").iterdir()} - rendered)
    assert unused == [], f"templates/ holds files nothing renders: {unused}"
    assert "node-launch.sh.j2" in named_in_code
