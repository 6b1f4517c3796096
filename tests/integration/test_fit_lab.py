"""The memory fit check and ``plan --dryrun`` against real SSH nodes (network namespaces, root).

The nodes have no CANN, so DryRun runs as the stand-in of tests/dryrun_standin.py: the job's
setup line defines it and it prints recorded real DryRun output for the rank it is given.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_mfctl_process
from tests.dryrun_standin import STANDIN_PYTHON, recorded_mib, standin_setup

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]


def seventy_b_job(tmp_path: Path, cluster, slots: int, *extra: str) -> Path:
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("".join(f"{node.name} slots={slots}\n" for node in cluster.nodes[:2]))
    job = tmp_path / "fit70"
    r = run_mfctl_process("init", job, "--model", "llama3-70b", "--nodes", hosts, "--dataset", "/d",
                          "--python", STANDIN_PYTHON, "--yes", *extra)
    assert r.exit_code == 0, r.stderr
    return job


def test_launch_refuses_before_touching_a_node(netns_cluster, tmp_path: Path) -> None:
    cluster = netns_cluster(2)
    job = seventy_b_job(tmp_path, cluster, 8, "--no-fit-check")  # 16 devices: cannot fit
    r = run_mfctl_process("launch", "--ssh-config", cluster.ssh_config_path, cwd=job)
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert "stage 0 needs ~" in r.stderr and "connecting" not in r.stderr
    for node in cluster.nodes[:2]:
        assert not (Path(node.home) / "mfctl-jobs" / "fit70").exists()
    assert json.loads(run_mfctl_process("jobs", "--json").stdout) == []


def test_plan_dryrun_on_a_chosen_node(netns_cluster, tmp_path: Path) -> None:
    cluster = netns_cluster(2)
    job = seventy_b_job(tmp_path, cluster, 32)  # 2 x 32 = 64 devices: the published layout
    spec = job / "mfctl.yaml"
    spec.write_text(spec.read_text() + yaml.safe_dump({"setup": standin_setup(64, 8)}, width=10**6))
    node = cluster.nodes[1]
    r = run_mfctl_process("plan", "--dryrun", "--json", "--node", node.name,
                          "--ssh-config", cluster.ssh_config_path, cwd=job)
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["dryrun"]["node"] == node.name
    stages = out["dryrun"]["stages"]
    assert [(s["stage"], s["rank"], s["rc"]) for s in stages] == [(s, 8 * s, 0) for s in range(8)]
    assert [s["actual_peak_mib"] for s in stages] == [recorded_mib(s) for s in range(8)]
    # The config went to the chosen node only, beside (not into) the job's own bundle.
    assert (Path(node.home) / "mfctl-jobs" / "fit70" / "dryrun" / "bundle" / "config.yaml").is_file()
    assert not (Path(cluster.nodes[0].home) / "mfctl-jobs" / "fit70").exists()
    assert out["memory"]["fits"] is True
