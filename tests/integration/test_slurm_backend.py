"""mfctl on a real Slurm cluster: slurmctld and one slurmd per network namespace (tests/lab).

What a user with a Slurm allocation checks: ``init --scheduler slurm`` writes the job, ``plan`` and
``launch --dry-run`` show the batch script (and submit nothing), ``launch`` trains the tiny preset
on 2 nodes x 1 worker through sbatch to checkpoints on both, ``watch --once --json`` shows both
ranks, ``stop`` ends a running job at once leaving no process (twice is safe), a worker killed
with SIGKILL ends the job on both nodes within seconds with the cause in ``mfctl jobs``, a job
behind a busy cluster shows as pending with Slurm's reason, and bad input is one line, exit 2,
nothing submitted.

One trained job is shared by the tests that only read it (module fixture ``trained``); every
mfctl call of this module uses one job store (``MFCTL_HOME``) so those tests see its record.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Result, run_mfctl_process
from tests.helpers_train import mindspore_missing
from tests.lab.slurm_cluster import SlurmCluster

pytestmark = [pytest.mark.cluster, pytest.mark.slurm, pytest.mark.timeout(600)]
PY = sys.executable  # the test venv: python, msrun, mindspore and mindformers on every node


@dataclass
class Lab:
    slurm: SlurmCluster
    root: Path  # this module's directory on the lab's shared filesystem
    dataset: Path
    env: dict[str, str]

    def mfctl(self, *args: object, cwd: Path | None = None, env: dict[str, str] | None = None) -> Result:
        return run_mfctl_process(*map(str, args), cwd=cwd, env={**self.env, **(env or {})})

    def init(self, name: str, *extra: object, dataset: object = None, node_count: int = 2,
             partition: str = "lab") -> Path:
        job = self.root / name
        r = self.mfctl("init", job, "--scheduler", "slurm", "--partition", partition, "--node-count",
                       node_count, "--devices-per-node", 1, "--model", "tiny-llama", "--dataset",
                       dataset or self.dataset, "--python", PY, "--shared-root", self.root, "--yes", *extra)
        assert r.exit_code == 0, r.stderr
        return job

    def launch(self, job: Path) -> str:
        r = self.mfctl("launch", "--json", cwd=job)
        assert r.exit_code == 0, r.stderr
        return json.loads(r.stdout)["id"]

    def status(self, job: Path) -> dict:
        r = self.mfctl("status", "--json", cwd=job)
        assert r.exit_code == 0, r.stderr
        return json.loads(r.stdout)

    def slurm_ids(self) -> set[str]:
        return {row.job_id for row in self.slurm.squeue()}


def small_dataset(where: Path) -> Path:
    """A real MindRecord dataset, a fifth of the demo corpus: 48 steps of 2 x 4 samples."""
    from mfctl.data.corpus import pydoc_wikitext
    from mfctl.data.prepare import prepare_dataset

    text = pydoc_wikitext()
    corpus = where / "small.train.tokens"
    corpus.write_text(text[: int(len(text) * 0.2)])
    out = prepare_dataset([str(corpus)], where / "small.mindrecord", 64, train_tokenizer_vocab=1000).output
    for f in where.iterdir():
        f.chmod(0o644)  # MindRecord writes 0600: the node users must read it
    return out


def job_procs(job_id: str) -> list[int]:
    """Live processes of the job on any node (the namespaces share this machine's process table),
    found by the marker every process of the node launch script inherits."""
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if (p / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            env = (p / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        if f"MFCTL_JOB={job_id}".encode() in env:
            pids.append(int(p.name))
    return pids


def worker_pid(job_id: str, rank: int) -> int | None:
    for pid in job_procs(job_id):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            args = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if f"RANK_ID={rank}".encode() in env and b"train.py" in args and b"msrun" not in args:
            return pid
    return None


def wait_for(predicate, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def stepped(lab: Lab, job: Path) -> dict | None:
    """The status once both ranks logged a step (None until then)."""
    st = lab.status(job)
    steps = [r.get("step") for r in st["ranks"]]
    return st if len(steps) == 2 and all(s for s in steps) else None


@pytest.fixture(scope="module")
def lab(slurm_cluster, tmp_path_factory) -> Iterator[Lab]:
    why = mindspore_missing()
    if why:
        pytest.skip(why)
    slurm = slurm_cluster()
    root = slurm.shared_dir / f"mfctl-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    data = root / "data"
    data.mkdir()
    home = tmp_path_factory.mktemp("mfctl-home")
    env = {**slurm.env, "MFCTL_HOME": str(home)}
    try:
        yield Lab(slurm, root, small_dataset(data), env)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def trained(lab: Lab) -> tuple[Path, str]:
    """One job trained to the end on both nodes (the tests below only read it)."""
    job = lab.init("trained")
    job_id = lab.launch(job)
    status = wait_for(lambda: (s := lab.status(job))["job"]["state"] != "running" and s, 300, 2)
    assert status and status["job"]["state"] == "finished", status
    return job, job_id


def test_init_plan_and_dry_run_submit_nothing(lab: Lab) -> None:
    job = lab.init("dry", "--gres", "npu:1", "--time", "10:00", "--sbatch-arg=--exclusive")
    spec = (job / "mfctl.yaml").read_text()
    assert "scheduler: slurm" in spec and "partition: lab" in spec and "- --exclusive" in spec
    before = lab.slurm_ids()
    r = lab.mfctl("plan", cwd=job)
    assert r.exit_code == 0, r.stderr
    assert '--master_addr "$MASTER_ADDR"' in r.stdout and "--node_rank 1" in r.stdout
    assert "srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --kill-on-bad-exit=1" in r.stdout
    r = lab.mfctl("launch", "--dry-run", cwd=job)
    assert r.exit_code == 0, r.stderr
    assert "sbatch --parsable --job-name=dry --partition=lab --nodes=2" in r.stdout
    assert "--no-requeue" in r.stdout and "--gres=npu:1" in r.stdout and "--exclusive" in r.stdout
    assert lab.slurm_ids() == before  # nothing submitted
    assert not (job / "slurm").exists()


def test_two_nodes_train_to_checkpoints_on_both(lab: Lab, trained) -> None:
    job, job_id = trained
    for rank in (0, 1):
        ckpts = sorted((job / "nodes" / f"node{rank}" / "output" / "checkpoint" / f"rank_{rank}").glob("*.ckpt"))
        assert ckpts, f"no checkpoint of rank {rank}"
    status = lab.status(job)
    assert [r["step"] for r in status["ranks"]] == [48, 48]
    # Each node rank ran on its own Slurm node, and Slurm says the batch job completed.
    assert sorted(n["host"] for n in status["nodes"]) == ["node1", "node2"]
    assert all(n["exit_code"] == 0 for n in status["nodes"])
    slurm_id = (job / "slurm" / f"{job_id}.slurm_id").read_text().strip()
    assert lab.slurm.job(slurm_id)["JobState"] == "COMPLETED"


def test_watch_once_json_shows_both_ranks(lab: Lab, trained) -> None:
    job, _ = trained
    r = lab.mfctl("watch", "--once", "--json", cwd=job)
    assert r.exit_code == 0, r.stderr
    ranks = json.loads(r.stdout)["ranks"]
    assert [(x["rank"], x["step"], x["total_steps"]) for x in ranks] == [(0, 48, 48), (1, 48, 48)]
    assert all(isinstance(x["loss"], float) for x in ranks)


def test_stop_ends_a_running_job_at_once_and_twice_is_safe(lab: Lab) -> None:
    job = lab.init("stopme")
    job_id = lab.launch(job)
    assert wait_for(lambda: stepped(lab, job), 180), "no step within 180 s"
    assert job_procs(job_id)
    t0 = time.monotonic()
    r = lab.mfctl("stop", "--json", cwd=job)
    took = time.monotonic() - t0
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["clean"] and out["state"] == "stopped"
    assert out["scheduler"].startswith("slurm job ") and "cancelled" in out["scheduler"], out
    assert took < 15, f"stop took {took:.1f} s (KillWait is 30 s)"
    assert job_procs(job_id) == []
    slurm_id = (job / "slurm" / f"{job_id}.slurm_id").read_text().strip()
    assert lab.slurm.wait_job(slurm_id, ("CANCELLED",), timeout=10)["JobState"] == "CANCELLED"
    r = lab.mfctl("stop", "--json", cwd=job)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["clean"]


def test_killed_worker_ends_the_job_on_both_nodes(lab: Lab) -> None:
    job = lab.init("killme")
    job_id = lab.launch(job)
    assert wait_for(lambda: stepped(lab, job), 180), "no step within 180 s"
    pid = worker_pid(job_id, 1)
    assert pid is not None
    t0 = time.monotonic()
    os.kill(pid, 9)
    gone = wait_for(lambda: not job_procs(job_id), 30, 0.1)
    took = time.monotonic() - t0
    assert gone and took < 5, f"processes left {took:.1f} s after the kill: {job_procs(job_id)}"
    # Slurm ends the batch job a moment after its tasks.
    status = wait_for(lambda: (s := lab.status(job))["job"]["state"] != "running" and s, 15)
    assert status and status["job"]["state"] == "failed", lab.status(job)
    r = lab.mfctl("jobs", "--json")
    record = next(j for j in json.loads(r.stdout) if j["id"] == job_id)
    assert record["state"] == "failed"
    # The node that failed (rank 1 ran on node2) and msrun's exit code.
    assert "node2" in record["exit_cause"] and "exit" in record["exit_cause"], record["exit_cause"]


def test_job_behind_a_busy_cluster_is_pending_with_slurms_reason(lab: Lab) -> None:
    busy = lab.slurm.busy(2)
    try:
        job = lab.init("waits")
        job_id = lab.launch(job)
        status = wait_for(lambda: (s := lab.status(job)) and
                          any("Resources" in (n.get("note") or "") for n in s["nodes"]) and s, 20)
        assert status, lab.status(job)
        assert status["job"]["state"] == "running"  # the record: launched, waiting for its nodes
        assert all("pending (Resources)" in n["note"] for n in status["nodes"])
        r = lab.mfctl("status", cwd=job)
        assert "pending (Resources)" in r.stdout
        r = lab.mfctl("watch", "--once", cwd=job)
        assert r.exit_code == 0 and "pending (Resources)" in r.stdout, (r.stdout, r.stderr)
        r = lab.mfctl("jobs", "--json")
        record = next(j for j in json.loads(r.stdout) if j["id"] == job_id)
        assert record["state"] == "running" and "pending (Resources)" in record["scheduler"], record
        # The dashboard says it too, in its header, while the job waits for its nodes.
        assert "pending (Resources)" in _dashboard_header(lab, job_id)
        r = lab.mfctl("stop", "--json", cwd=job)
        assert r.exit_code == 0 and json.loads(r.stdout)["clean"], r.stderr
        slurm_id = (job / "slurm" / f"{job_id}.slurm_id").read_text().strip()
        assert lab.slurm.job(slurm_id)["JobState"] == "CANCELLED"
    finally:
        lab.slurm.run(["scancel", busy], check=False)


def _dashboard_header(lab: Lab, job_id: str) -> str:
    """The header of the real dashboard (``mfctl watch``'s app over a live session), headless."""
    import asyncio

    from mfctl.live.session import LiveSession
    from mfctl.records.store import JobStore
    from mfctl.tui.app import make_app

    saved = {k: os.environ.get(k) for k in lab.env}
    os.environ.update(lab.env)  # SLURM_CONF and the lab's job store, as the subprocesses get them
    try:
        store = JobStore()
        session = LiveSession(store.find(job_id), store)
        app = make_app(session.source, job=session.job_info())

        async def header() -> str:
            async with app.run_test(size=(200, 40)) as pilot:
                await pilot.pause()
                return str(app.query_one("#header").render())

        try:
            return asyncio.run(header())
        finally:
            session.close()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _refused(lab: Lab, job: Path, env: dict[str, str] | None = None) -> str:
    before = lab.slurm_ids()
    r = lab.mfctl("launch", "--json", cwd=job, env=env)
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stdout == ""
    assert lab.slurm_ids() == before  # nothing submitted
    return r.stderr.strip()


def test_unknown_partition_is_refused(lab: Lab) -> None:
    err = _refused(lab, lab.init("nopart", partition="nope"))
    assert f"{lab.root}/nopart/mfctl.yaml: slurm.partition 'nope'" in err and "no such partition" in err


def test_more_nodes_than_the_partition_has_is_refused(lab: Lab) -> None:
    err = _refused(lab, lab.init("toomany", node_count=3))
    assert f"{lab.root}/toomany/mfctl.yaml: slurm.node_count 3 is more than partition lab has (2 nodes)" in err


def test_no_sbatch_on_this_machine_is_refused(lab: Lab, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "cat", "mkdir", "stat"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    err = _refused(lab, lab.init("nosbatch"), env={"PATH": str(bin_dir)})
    assert "this machine: Slurm's commands (sbatch" in err and "--login" in err


def test_job_dir_not_on_a_shared_path_is_refused(lab: Lab, tmp_path: Path) -> None:
    job = tmp_path / "local"
    r = lab.mfctl("init", job, "--scheduler", "slurm", "--partition", "lab", "--node-count", 2,
                  "--devices-per-node", 1, "--model", "tiny-llama", "--dataset", lab.dataset, "--python", PY,
                  "--yes")
    assert r.exit_code == 0, r.stderr
    err = _refused(lab, job)
    assert "filesystem, which Slurm's nodes may not see" in err and "--shared-root" in err
    # Declared, but the job is elsewhere.
    r = lab.mfctl("init", tmp_path / "elsewhere", "--scheduler", "slurm", "--partition", "lab",
                  "--node-count", 2, "--devices-per-node", 1, "--model", "tiny-llama", "--dataset", lab.dataset,
                  "--python", PY, "--shared-root", lab.root, "--yes")
    assert r.exit_code == 0, r.stderr
    assert "is not under slurm.shared_root" in _refused(lab, tmp_path / "elsewhere")


def test_spec_errors_name_the_file_and_line(lab: Lab, tmp_path: Path) -> None:
    job = tmp_path / "bad"
    job.mkdir()
    (job / "mfctl.yaml").write_text(f"name: bad\nmodel: tiny-llama\ndataset: {lab.dataset}\nscheduler: slurm\n"
                                    "slurm:\n  partition: lab\n  node_count: 0\n")
    r = lab.mfctl("plan", cwd=job)
    assert r.exit_code == 2
    assert "mfctl.yaml:7: slurm.node_count" in r.stderr


@pytest.mark.train
def test_supervised_job_restarts_from_the_common_checkpoint(lab: Lab) -> None:
    import subprocess

    job = lab.init("resumes")
    proc = subprocess.Popen([sys.executable, "-m", "mfctl", "launch", "--supervise", "--max-restarts", "1"],
                            cwd=job, env={**os.environ, **lab.env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        ckpts = [job / "nodes" / f"node{r}" / "output" / "checkpoint" / f"rank_{r}" for r in (0, 1)]
        assert wait_for(lambda: all(list(d.glob("*_16.ckpt")) for d in ckpts), 240), "no checkpoint at step 16"
        first = (job / "nodes" / "node1" / "run" / "job_id").read_text().strip()
        pid = worker_pid(first, 1)
        assert pid is not None
        os.kill(pid, 9)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "restart 1 of 1" in out
    records = {j["id"]: j for j in json.loads(lab.mfctl("jobs", "--json").stdout)}
    assert records[first]["state"] == "failed"
    # The cause names where it failed: the killed rank when its log's exit line is read first, or
    # the node whose msrun exited because of it when the supervisor's look at the nodes comes first.
    cause = records[first]["exit_cause"]
    assert ("rank 1" in cause and "SIGKILL" in cause) or cause.startswith("node2: msrun exited with code"), cause
    second = next(j for j in records.values() if j["resumed_from"] == first)
    assert second["state"] == "finished" and second["restarts"] == 1
    # The second run loaded the step-16 checkpoint and trained on to step 48 on both nodes,
    # checkpointing the 32 steps it ran (MindFormers names a resumed run's files <prefix>_1-...).
    r = lab.mfctl("status", second["id"], "--json", cwd=job)
    assert [x["step"] for x in json.loads(r.stdout)["ranks"]] == [48, 48], r.stdout
    for d in ckpts:
        assert json.loads((d / "meta.json").read_text())["last_step"] == 32
    log = (job / "nodes" / "node0" / "output" / "msrun_log" / "worker_0.log").read_text()
    assert "resume_training" in log


def test_node_preflight_fails_the_job_with_that_nodes_reason(lab: Lab) -> None:
    job = lab.init("nodata", dataset="/nonexistent/wiki.mindrecord")
    t0 = time.monotonic()
    r = lab.mfctl("launch", cwd=job)
    # Launch's start check may already see it (exit 1); else the next look does.
    assert r.exit_code in (0, 1), r.stderr
    status = wait_for(lambda: (s := lab.status(job))["job"]["state"] != "running" and s, 20)
    assert status and status["job"]["state"] == "failed", lab.status(job)
    assert time.monotonic() - t0 < 30
    assert "preflight failed: dataset /nonexistent/wiki.mindrecord not found" in status["job"]["exit_cause"]
    assert not list(job.glob("nodes/node*/output/msrun_log/worker_*.log"))  # msrun never started


@pytest.mark.train
@pytest.mark.skipif(not os.environ.get("MFCTL_MINDFORMERS_HOME"),
                    reason="launcher mindformers needs a MindFormers checkout: set MFCTL_MINDFORMERS_HOME")
def test_mindformers_launcher_trains_on_slurm(lab: Lab) -> None:
    home = os.environ["MFCTL_MINDFORMERS_HOME"]
    job = lab.init("mflauncher", "--launcher", "mindformers", "--mindformers-home", home)
    lab.launch(job)
    status = wait_for(lambda: (s := lab.status(job))["job"]["state"] != "running" and s, 300, 2)
    assert status and status["job"]["state"] == "finished", status
    assert [r["step"] for r in status["ranks"]] == [48, 48]
    for rank in (0, 1):
        assert list((job / "nodes" / f"node{rank}" / "output" / "checkpoint" / f"rank_{rank}").glob("*.ckpt"))
