"""Hostile values on the real sshd nodes: each is refused (exit 2, one line) or passed LITERALLY.

Every payload carries ``;``, ``$(...)``, backticks, single and double quotes, spaces and a newline,
and each of them tries to create a marker file named ``mfctl-pwned-<session>-<n>`` (in ``/tmp``
or, where no ``/`` or space may appear, in whatever directory it would run in). After each test
no marker may exist: not in ``/tmp``, not in this test's directories, and not under any node
user's home, looked up as that user on the node.

Where each value goes and what is checked:
- job name: refused by validation (``init --name``, and an edited ``name:`` for ``check``,
  ``launch`` and ``launch --dry-run``); nothing reaches a node.
- dataset, ``env:`` values, ``python``, ``workdir``, ``master_addr``, ``ascend.set_env`` (without
  a newline, which is refused): passed through literally.
  A real ``mfctl launch`` runs on two nodes with ``python`` pointing at a hostile-named directory
  (shared, under /tmp) holding a fake ``python`` (answers the preflight) and a fake ``msrun``
  (records its argv and environment in the node job dir), so the rendered launch script really
  runs on the nodes and what msrun received is compared byte for byte.
- a hostile dataset that does not exist: ``check`` reports it (exit 1) and ``launch`` refuses
  (exit 1) with nothing started and no job recorded.
- privacy: ``$MFCTL_HOME`` 0700 and its SQLite files 0600; the node job dir 0700; env values
  (secrets) appear in no job record (``jobs --json``, ``status --json``, the database bytes),
  only their names.

Not tested on purpose: ``setup`` is a raw shell line by design (e.g. ``source /opt/env.sh``), run
as written by the preflight and the launch script, so a "payload" there is simply the user's own
shell command.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_mfctl_process
from tests.integration.test_ssh_cluster import job_procs, ssh_args

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]
PY = sys.executable

SESSION = secrets.token_hex(4)
MARKER_RE = re.compile(rf"^mfctl-pwned-{SESSION}-\d+$")


def marker(n: int) -> str:
    return f"/tmp/mfctl-pwned-{SESSION}-{n}"


def hostile(n: int) -> str:
    """A value with every shell metacharacter; each construct tries to create marker n."""
    m = marker(n)
    return (f"v{n} ;touch {m}; $(touch {m}) `touch {m}` 'single' \"double\" $HOME"
            f"\ntouch {m} #")


def hostile_word(n: int) -> str:
    """The same without whitespace or '/' (for python and path components): markers in the cwd."""
    m = f"mfctl-pwned-{SESSION}-{n}"
    return f"w{n};touch${{IFS}}{m};$(touch${{IFS}}{m})`touch${{IFS}}{m}`'q'\"d\"|touch${{IFS}}{m}&"


# --------------------------------------------------------------------------- helpers

def one_line_error(r, code: int = 2) -> str:
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"not one error line: {r.stderr!r}"
    assert "Traceback" not in r.stdout + r.stderr
    return lines[0]


def planted(cluster, n_nodes: int, *roots: Path) -> list[str]:
    """Every marker file that exists: in /tmp, under ``roots``, and under each node user's home
    (looked up as the node user on the node)."""
    found = [str(Path("/tmp") / name) for name in os.listdir("/tmp") if MARKER_RE.match(name)]
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            found += [os.path.join(dirpath, x) for x in dirnames + filenames if MARKER_RE.match(x)]
    for node in cluster.nodes[:n_nodes]:
        for args in (["/tmp", "-maxdepth", "1"], [node.home]):
            res = cluster.exec_in(node, ["find", *args, "-name", f"mfctl-pwned-{SESSION}-*"], as_user=True)
            found += [p for p in res.stdout.splitlines() if MARKER_RE.match(os.path.basename(p))]
    return found


def shell_words(script: str) -> list[str]:
    """The words and operators sh would see, comments dropped (quotes removed, like sh does)."""
    lex = shlex.shlex(script, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    return list(lex)


def write_hosts(tmp_path: Path, cluster, n: int) -> Path:
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("".join(f"{node.name}\n" for node in cluster.nodes[:n]))
    return hosts


def make_job(tmp_path: Path, cluster, n: int, name: str = "sec", **spec: object) -> Path:
    """A tiny-llama job on ``n`` nodes x 1 device, then ``spec`` written over mfctl.yaml."""
    job = tmp_path / name
    r = run_mfctl_process("init", job, "--model", "tiny-llama", "--nodes", write_hosts(tmp_path, cluster, n),
                          "--devices-per-node", "1", "--dataset", "/tmp", "--python", PY, "--yes")
    assert r.exit_code == 0, r.stderr
    path = job / "mfctl.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(spec)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return job


def jobs(tmp_path: Path) -> list:
    r = run_mfctl_process("jobs", "--json", cwd=tmp_path)
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def procs_of_job_name(cluster, node, name: str) -> list:
    """The node user's live processes carrying the marker of any job called ``name``."""
    found = []
    for p in cluster.processes_of(node):
        try:
            env = Path(f"/proc/{p.pid}/environ").read_bytes()
        except OSError:
            continue
        if f"MFCTL_JOB={name}-".encode() in env and not p.stat.startswith("Z"):
            found.append(p)
    return found


def remote_job_dirs(cluster, n: int, workdir: str, name: str) -> list[Path]:
    return [Path(node.home) / workdir / name for node in cluster.nodes[:n]
            if (Path(node.home) / workdir / name).exists()]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every node user can read (pytest's tmp_path is root's, 0700)."""
    path = Path(tempfile.mkdtemp(prefix="mfctl-sec-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


FAKE_PYTHON = """#!/bin/sh
# Answers mfctl's preflight like a python with mindspore and mindformers; nothing else.
if [ "$1" = "-" ]; then
    cat > /dev/null
    echo "python 3.11.2"; echo "mindspore 2.9.0"; echo "mindformers 1.9.0"
    exit 0
fi
exit 3
"""

FAKE_MSRUN = """#!/bin/sh
# Records exactly what it was given: argv (NUL-separated) and the environment, in the job dir.
printf '%s\\0' "$0" "$@" > "$JOB_DIR/fake-msrun.argv"
cat /proc/$$/environ > "$JOB_DIR/fake-msrun.env"
exit 0
"""


def make_tree(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for parent in [path, *path.parents]:
        if parent == Path("/tmp") or parent == Path("/"):
            break
        parent.chmod(0o755)


# --------------------------------------------------------------------------- refused

HOSTILE_NAMES = [hostile(1), f"a;touch {marker(1)}", f"$(touch {marker(1)})", f"`touch {marker(1)}`",
                 "a b", "it's", 'say"hi"', "x\ntouch", "../up", "-rf"]


def test_hostile_job_names_are_refused(netns_cluster, tmp_path: Path) -> None:
    cluster = netns_cluster(2)
    job = make_job(tmp_path, cluster, 2)
    spec = job / "mfctl.yaml"
    original = spec.read_text()
    homes_before = [sorted(os.listdir(n.home)) for n in cluster.nodes[:2]]
    for k, name in enumerate(HOSTILE_NAMES):
        target = tmp_path / f"new{k}"
        r = run_mfctl_process("init", target, f"--name={name}", "--model", "tiny-llama", "--dataset", "/tmp",
                              "--yes", cwd=tmp_path)
        assert "job name" in one_line_error(r)
        assert not target.exists()
        data = yaml.safe_load(original)
        data["name"] = name
        spec.write_text(yaml.safe_dump(data, sort_keys=False))
        for argv in (["check"], ["launch"], ["launch", "--dry-run"]):
            r = run_mfctl_process(*argv, *ssh_args(cluster), cwd=job)
            assert "mfctl.yaml:" in one_line_error(r) and "job name" in r.stderr, (argv, r.stderr)
    assert jobs(tmp_path) == []
    assert [sorted(os.listdir(n.home)) for n in cluster.nodes[:2]] == homes_before
    assert remote_job_dirs(cluster, 2, "mfctl-jobs", "sec") == []
    assert planted(cluster, 2, tmp_path) == []


@pytest.mark.parametrize("field, value, message", [
    ("python", f"python3 ;touch {marker(2)}", "python must be a command or path without spaces"),
    ("python", f"python3\ntouch {marker(2)}", "python must be a command or path without spaces"),
    ("env", {f"A;touch {marker(2)}": "x"}, "is not valid"),
    ("env", {"A\nB": "x"}, "is not valid"),
    ("env", {"$(touch /tmp/x)": "x"}, "is not valid"),
    ("ascend", {"set_env": hostile(2)}, "has a control character"),
], ids=["python-space", "python-newline", "env-name-semicolon", "env-name-newline", "env-name-subshell",
        "set-env-newline"])
def test_hostile_python_and_env_names_are_refused(netns_cluster, tmp_path: Path, field: str, value,
                                                  message: str) -> None:
    cluster = netns_cluster(1)
    job = make_job(tmp_path, cluster, 1, **{field: value})
    for argv in (["check"], ["launch"]):
        r = run_mfctl_process(*argv, *ssh_args(cluster), cwd=job)
        assert message in one_line_error(r) and "mfctl.yaml:" in r.stderr
    if field == "python":
        r = run_mfctl_process("init", tmp_path / "again", "--model", "tiny-llama", "--dataset", "/tmp",
                              "--python", value, "--yes", cwd=tmp_path)
        assert message in one_line_error(r)
        assert not (tmp_path / "again").exists()
    assert jobs(tmp_path) == []
    assert remote_job_dirs(cluster, 1, "mfctl-jobs", "sec") == []
    assert planted(cluster, 1, tmp_path) == []


# --------------------------------------------------------------------------- passed literally

def test_dry_run_shows_hostile_values_literally_and_touches_nothing(netns_cluster, tmp_path: Path) -> None:
    cluster = netns_cluster(2)
    dataset, master, workdir = hostile(3), hostile(4), hostile(5)
    python = f"/opt/{hostile_word(15)}/python"
    job = make_job(tmp_path, cluster, 2, dataset=dataset, master_addr=master, workdir=workdir,
                   python=python, env={"HOSTILE": hostile(6)})
    r = run_mfctl_process("launch", "--dry-run", "--json", *ssh_args(cluster), cwd=job)
    assert r.exit_code == 0, r.stderr
    plan = json.loads(r.stdout)["plan"]
    assert plan["master_addr"] == master
    for node in plan["nodes"]:
        argv = shlex.split(node["command"])
        assert argv[0] == f"/opt/{hostile_word(15)}/msrun"
        assert argv[argv.index("--train_dataset_dir") + 1] == dataset
        assert argv[argv.index("--master_addr") + 1] == master
        assert node["job_dir"] == f"{workdir}/sec"
    # The same values from the command line.
    r = run_mfctl_process("launch", "--dry-run", "--json", "--master-addr", hostile(7), *ssh_args(cluster),
                          cwd=job)
    assert r.exit_code == 0, r.stderr
    for node in json.loads(r.stdout)["plan"]["nodes"]:
        argv = shlex.split(node["command"])
        assert argv[argv.index("--master_addr") + 1] == hostile(7)
    # The rendered launch scripts parse, and each hostile value is one quoted word in them.
    r = run_mfctl_process("render", *ssh_args(cluster), cwd=job)
    assert r.exit_code == 0, r.stderr
    for k in range(2):
        script = job / "rendered" / f"launch-node{k}.sh"
        assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0
        words = shell_words(script.read_text())
        assert "touch" not in words  # a payload that escaped its quotes would be a command here
        assert f"HOSTILE={hostile(6)}" in words
        assert dataset in words and master in words
        assert f"PATH=/opt/{hostile_word(15)}:$PATH" in words
    # MindFormers' msrun_launcher.sh splits its first argument on spaces and evals its msrun line:
    # a hostile mindformers_home, master_addr or dataset is refused before anything is rendered.
    spec = job / "mfctl.yaml"
    data = yaml.safe_load(spec.read_text())
    data.update(launcher="mindformers", mindformers_home=hostile(16), workdir="mfctl-jobs")
    for what, fix in (("mindformers_home", {"mindformers_home": "/opt/mindformers"}),
                      ("dataset", {"dataset": "/data/x.mindrecord"}), ("master_addr", {})):
        spec.write_text(yaml.safe_dump(data, sort_keys=False))
        for argv in (["render"], ["launch", "--dry-run"]):
            error = one_line_error(run_mfctl_process(*argv, *ssh_args(cluster), cwd=job))
            assert error.startswith(f"error: {what} ") and "shell characters" in error, error
        data.update(fix)
    data["master_addr"] = "10.0.0.1"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    r = run_mfctl_process("render", *ssh_args(cluster), cwd=job)
    assert r.exit_code == 0, r.stderr
    words = shell_words((job / "rendered" / "launch-node0.sh").read_text())
    assert "touch" not in words and f"HOSTILE={hostile(6)}" in words
    assert jobs(tmp_path) == []
    assert remote_job_dirs(cluster, 2, workdir, "sec") == []
    assert planted(cluster, 2, tmp_path) == []


def test_check_and_launch_with_a_missing_hostile_dataset_start_nothing(netns_cluster, tmp_path: Path) -> None:
    cluster = netns_cluster(2)
    dataset = hostile(8)
    job = make_job(tmp_path, cluster, 2, dataset=dataset)
    r = run_mfctl_process("check", "--json", *ssh_args(cluster), cwd=job)
    assert r.exit_code == 1, r.stderr
    report = json.loads(r.stdout)
    for node in report["nodes"]:
        assert node["facts"]["dataset"] == "missing"  # the node looked up exactly that path
        assert any(f"dataset {dataset} not found" in p for p in node["problems"]), node["problems"]
    assert len(r.stderr.splitlines()) == 1 and "failed the checks" in r.stderr
    assert "\\ntouch" in r.stderr  # the newline of the value is shown escaped, on the one line

    r = run_mfctl_process("launch", *ssh_args(cluster), cwd=job)
    assert r.exit_code == 1, r.stderr
    last = r.stderr.splitlines()[-1]
    assert last.startswith("error: ") and "nothing was started" in last and "not found" in last
    assert jobs(tmp_path) == []
    assert remote_job_dirs(cluster, 2, "mfctl-jobs", "sec") == []
    for node in cluster.nodes[:2]:
        assert procs_of_job_name(cluster, node, "sec") == []
    assert planted(cluster, 2, tmp_path) == []


def test_launch_passes_hostile_values_literally_and_keeps_secrets(netns_cluster, tmp_path: Path,
                                                                 shared_dir: Path) -> None:
    """A real launch on two nodes: the launch script runs there and execs the fake msrun."""
    cluster = netns_cluster(2)
    pydir = shared_dir / hostile_word(9)
    make_tree(pydir)
    for name, text in (("python", FAKE_PYTHON), ("msrun", FAKE_MSRUN)):
        (pydir / name).write_text(text)
        (pydir / name).chmod(0o755)
    dataset = shared_dir / "data" / hostile(10)
    make_tree(dataset)
    (dataset / "part.mindrecord").write_text("not read by the fake msrun")
    (dataset / "part.mindrecord").chmod(0o644)
    secret = f"s3cr3t-{SESSION}-value"
    workdir = f"wd {hostile_word(11)}/{hostile(12)}"
    master = hostile(13)
    env = {"SECRET_TOKEN": secret, "HOSTILE_ENV": hostile(14), "QUOTES": "it's \"quoted\" \\ $x"}
    # The CANN environment script the launch script sources, at a hostile path (without a newline,
    # which is refused): found by the preflight, sourced by the launch script, literally.
    set_env = shared_dir / f"cann {hostile_word(17)}" / "set_env.sh"
    make_tree(set_env.parent)
    set_env.write_text("export HOSTILE_CANN_SOURCED=yes\n")
    set_env.chmod(0o644)
    job = make_job(tmp_path, cluster, 2, dataset=str(dataset), python=str(pydir / "python"),
                   workdir=workdir, master_addr=master, env=env, ascend={"set_env": [str(set_env)]})
    try:
        r = run_mfctl_process("launch", "--json", *ssh_args(cluster), cwd=job)
        assert r.exit_code == 0, r.stdout + r.stderr
        launched = json.loads(r.stdout)
        job_id = launched["id"]
        status = run_mfctl_process("status", "--json", cwd=job)
        assert status.exit_code == 0, status.stderr

        for k, node in enumerate(cluster.nodes[:2]):
            node_job = Path(node.home) / workdir / "sec"
            argv = (node_job / "fake-msrun.argv").read_bytes().decode().split("\0")[:-1]
            assert argv[0] == f"{pydir}/msrun"
            assert argv[argv.index("--train_dataset_dir") + 1] == str(dataset)
            assert argv[argv.index("--master_addr") + 1] == master
            assert argv[argv.index("--node_rank") + 1] == str(k)
            environ = dict(kv.split("=", 1) for kv in
                           (node_job / "fake-msrun.env").read_bytes().decode().split("\0") if "=" in kv)
            assert environ["SECRET_TOKEN"] == secret
            assert environ["HOSTILE_ENV"] == hostile(14)
            assert environ["QUOTES"] == env["QUOTES"]
            assert environ["HOSTILE_CANN_SOURCED"] == "yes"
            assert environ["MFCTL_JOB"] == job_id
            assert environ["PATH"].startswith(f"{pydir}:")
            assert Path(environ["JOB_DIR"]) == node_job
            # Private on the node: the job dir and the work dir above it.
            assert stat.S_IMODE(node_job.stat().st_mode) == 0o700
            assert stat.S_IMODE((Path(node.home) / workdir.split("/")[0]).stat().st_mode) == 0o700
            assert node_job.stat().st_uid == Path(node.home).stat().st_uid
            assert job_procs(cluster, node, job_id) == []

        # Private on this machine: the job database, and the rendered scripts that export the env.
        home = Path(os.environ["MFCTL_HOME"])
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        db_files = sorted(home.glob("jobs.db*"))
        assert db_files and db_files[0].name == "jobs.db"
        for f in db_files:
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        for script in (job / "rendered").glob("launch-node*.sh"):
            assert stat.S_IMODE(script.stat().st_mode) & 0o077 == 0, script

        # Secrets (env values) are in no job record, only their names.
        db = b"".join(f.read_bytes() for f in db_files)
        records = [r.stdout, status.stdout, run_mfctl_process("jobs", "--json").stdout]
        for text in records:
            assert secret not in text and "s3cr3t" not in text
        assert secret.encode() not in db
        assert json.dumps(hostile(14))[1:-1].encode() not in db and hostile(14).encode() not in db
        assert b"SECRET_TOKEN" in db and b"HOSTILE_ENV" in db

        stop = run_mfctl_process("stop", job_id, cwd=job)
        assert stop.exit_code == 0, stop.stderr
    finally:
        for node in cluster.nodes[:2]:
            cluster.exec_in(node, ["rm", "-rf", "--", workdir.split("/")[0]], as_user=True)
    assert planted(cluster, 2, tmp_path, shared_dir) == []


def test_default_node_job_dir_and_job_database_are_private(netns_cluster, tmp_path: Path,
                                                           shared_dir: Path) -> None:
    """``~/mfctl-jobs/<name>`` on every node is 0700 after a launch; ``$MFCTL_HOME`` is made 0700
    (even when it existed with looser modes) and its SQLite files 0600."""
    cluster = netns_cluster(2)
    pydir = shared_dir / "bin"
    make_tree(pydir)
    for name, text in (("python", FAKE_PYTHON), ("msrun", FAKE_MSRUN)):
        (pydir / name).write_text(text)
        (pydir / name).chmod(0o755)
    home = Path(os.environ["MFCTL_HOME"])
    home.chmod(0o755)
    job = make_job(tmp_path, cluster, 2, name="private", python=str(pydir / "python"),
                   env={"API_KEY": f"key-{SESSION}"})
    try:
        r = run_mfctl_process("launch", "--json", *ssh_args(cluster), cwd=job)
        assert r.exit_code == 0, r.stdout + r.stderr
        for node in cluster.nodes[:2]:
            node_job = Path(node.home) / "mfctl-jobs" / "private"
            assert stat.S_IMODE(node_job.stat().st_mode) == 0o700, node.name
            for sub in ("bundle", "run"):
                assert stat.S_IMODE((node_job / sub).stat().st_mode) & 0o077 == 0, (node.name, sub)
            assert f"API_KEY=key-{SESSION}".encode() in (node_job / "fake-msrun.env").read_bytes()
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        for f in home.glob("jobs.db*"):
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
            assert f"key-{SESSION}".encode() not in f.read_bytes()
        assert run_mfctl_process("stop", cwd=job).exit_code == 0
    finally:
        for node in cluster.nodes[:2]:
            cluster.exec_in(node, ["rm", "-rf", "--", "mfctl-jobs/private"], as_user=True)
    assert planted(cluster, 2, tmp_path, shared_dir) == []
