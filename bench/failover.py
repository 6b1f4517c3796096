"""Failover benchmark: kill one worker of a 2-node job; time until no process of the job is left.

Two runs on the real SSH test cluster (network namespaces, real msrun, the tiny Llama):

* baseline: the job launched plainly; what msrun's own teardown does (the other node's ranks
  wait for the cluster timeout);
* mfctl: the same job under ``mfctl launch --supervise`` (fail-fast).

Both are timed from the SIGKILL of rank 1's worker on node 2 to the moment no process carrying
the job's marker remains on either node. The baseline is cut off after ``--baseline-cap``
seconds (then stopped with ``mfctl stop``) and printed as "> cap".

    python bench/failover.py            # as root: brings up and removes a 2-node test cluster
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PY = sys.executable


def mfctl(*args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "mfctl", *args], cwd=cwd, env=env, capture_output=True, text=True)


def job_pids(cluster, job_id: str) -> list[int]:
    pids = []
    for node in cluster.nodes[:2]:
        for p in cluster.processes_of(node):
            try:
                env = Path(f"/proc/{p.pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"MFCTL_JOB={job_id}".encode() in env and not p.stat.startswith("Z"):
                pids.append(p.pid)
    return pids


def rank1_worker(cluster, job_id: str) -> int:
    node = cluster.nodes[1]
    for p in cluster.processes_of(node):
        try:
            env = Path(f"/proc/{p.pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if (f"MFCTL_JOB={job_id}".encode() in env and b"MS_ROLE=MS_WORKER" in env
                and os.getpgid(p.pid) == p.pid):
            return p.pid
    raise RuntimeError("rank 1's worker not found")


def wait_steps(job: Path, env: dict, steps: int, not_id: str | None, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = mfctl("status", "--json", cwd=job, env=env)
        if r.returncode == 0:
            status = json.loads(r.stdout)
            ranks = status["ranks"]
            if status["job"]["id"] != not_id and len(ranks) == 2 and all((x.get("step") or 0) >= steps for x in ranks):
                return status["job"]["id"]
        time.sleep(1)
    raise RuntimeError("the job did not start training")


def one_run(cluster, job: Path, env: dict, supervised: bool, cap: float,
            previous: str | None = None) -> tuple[float | None, str]:
    args = ["launch", "--sync-dataset", "--ssh-config", str(cluster.ssh_config_path)]
    proc = None
    if supervised:
        proc = subprocess.Popen([PY, "-m", "mfctl", *args, "--supervise"], cwd=job, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        r = mfctl(*args, cwd=job, env=env)
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
    job_id = wait_steps(job, env, 5, previous)
    os.kill(rank1_worker(cluster, job_id), signal.SIGKILL)
    t0 = time.monotonic()
    took = None
    while time.monotonic() - t0 < cap:
        if not job_pids(cluster, job_id):
            took = time.monotonic() - t0
            break
        time.sleep(0.05)
    mfctl("stop", job_id, "--grace", "1", cwd=job, env=env)
    if proc is not None:
        proc.wait(timeout=300)
    print(f"  {'supervised' if supervised else 'baseline'} run {job_id}: "
          + (f"{took:.1f} s" if took is not None else f"still running after {cap:.0f} s"), file=sys.stderr)
    return took, job_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-cap", type=float, default=120.0)
    args = parser.parse_args()
    from mfctl.data.corpus import pydoc_wikitext
    from mfctl.data.prepare import prepare_dataset
    from tests.lab import NetnsCluster

    cluster = NetnsCluster.claim(base="mfv")
    reason = cluster.unavailable_reason()
    if reason:
        print(f"failover: cannot bring up the test cluster: {reason}", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="mfctl-failover-"))
    env = {**os.environ, "MFCTL_HOME": str(work / "home")}
    try:
        cluster.up(2)
        text = pydoc_wikitext()
        (work / "c.tokens").write_text(text)
        data = prepare_dataset([str(work / "c.tokens")], work / "c.mindrecord", 64, train_tokenizer_vocab=1000)
        (work / "hosts.txt").write_text("".join(f"{n.name}\n" for n in cluster.nodes[:2]))
        job = work / "job"
        r = mfctl("init", str(job), "--model", "tiny-llama", "--nodes", str(work / "hosts.txt"),
                  "--devices-per-node", "1", "--dataset", str(data.output), "--python", PY, "--yes",
                  cwd=work, env=env)
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
        baseline, first = one_run(cluster, job, env, supervised=False, cap=args.baseline_cap)
        supervised, _ = one_run(cluster, job, env, supervised=True, cap=args.baseline_cap, previous=first)
    finally:
        cluster.down()
    fmt = lambda v: f"{v:6.1f} s" if v is not None else f"> {args.baseline_cap:.0f} s"  # noqa: E731
    print("kill -9 of rank 1's worker on node 2 -> no process of the job left on either node")
    print(f"  msrun's own teardown (baseline): {fmt(baseline)}")
    print(f"  mfctl launch --supervise:        {fmt(supervised)}")
    if supervised is not None:
        base = baseline if baseline is not None else args.baseline_cap
        print(f"  {'' if baseline is not None else 'at least '}{base / supervised:.0f}x faster; goal <= 5 s: "
              f"{'met' if supervised <= 5 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
