"""At 80 columns (and wider) no table cuts what the user types next: job ids, hosts, rank lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.sample_job import make_sample_job

LONG_ID = "demo-tui-20261129-040000-ab12"
HOSTS = ["gpu-node-017.rack-a.cluster.invalid", "gpu-node-018.rack-a.cluster.invalid"]


def whole_on_one_line(text: str, value: str) -> bool:
    return any(value in line for line in text.splitlines())


@pytest.mark.parametrize("columns", [80, 100, 200])
def test_jobs_shows_every_full_job_id(mfctl, tmp_path: Path, columns: int) -> None:
    make_sample_job(tmp_path / "a", LONG_ID, feed=False)
    other = "pretrain-llama3-70b-wikitext-20261129-041500"
    make_sample_job(tmp_path / "b", other, feed=False)
    r = mfctl("jobs", columns=columns)
    assert r.exit_code == 0, r.stderr
    for job_id in (LONG_ID, other):
        assert whole_on_one_line(r.stdout, job_id), r.stdout
    assert whole_on_one_line(r.stdout, "finished")  # the state is one word: not folded either
    assert max(len(line) for line in r.stdout.splitlines()) <= columns, r.stdout
    # The cause gives way: folded over lines, but all of it is there.
    cause = "".join(line.split("│")[-1].strip() for line in r.stdout.splitlines() if "│" in line)
    assert "all ranks finished (32 steps)".replace(" ", "") in cause.replace(" ", "")


def test_status_at_80_columns_keeps_job_host_and_ranks(mfctl, tmp_path: Path) -> None:
    make_sample_job(tmp_path / "job", LONG_ID)
    r = mfctl("status", LONG_ID, columns=80)
    assert r.exit_code == 0, r.stderr
    assert whole_on_one_line(r.stdout, LONG_ID)
    assert max(len(line) for line in r.stdout.splitlines()) <= 80, r.stdout
    rows = [line for line in r.stdout.splitlines() if "localhost" in line]
    assert len(rows) == 3  # the node table's row and both ranks'
    assert any(line.split("│")[0].strip() == "0" for line in rows)
    assert any(line.split("│")[0].strip() == "1" for line in rows)


def init_job(mfctl, tmp_path: Path) -> Path:
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("".join(f"{h} slots=8\n" for h in HOSTS))
    r = mfctl("init", tmp_path / "j", "--nodes", hosts, "--model", "llama3-70b", "--devices-per-node", "8",
              "--dataset", "/data/wiki4096.mindrecord", "--yes", "--no-fit-check")
    assert r.exit_code == 0, r.stderr
    return tmp_path / "j"


def test_plan_at_80_columns_keeps_hosts_and_rank_ranges(mfctl, tmp_path: Path) -> None:
    job = init_job(mfctl, tmp_path)
    r = mfctl("plan", "--dir", job, columns=80)
    assert r.exit_code == 0, r.stderr
    assert max(len(line) for line in r.stdout.splitlines()) <= 80, r.stdout
    for host, ranks in zip(HOSTS, ("0-7", "8-15")):
        row = next(line for line in r.stdout.splitlines() if line.startswith(f" {host} "))
        assert f"│ {ranks} " in row
    # The command folds but loses nothing: every word of the JSON plan's command is printed.
    plan = json.loads(mfctl("plan", "--json", "--dir", job).stdout)
    printed = r.stdout.replace("│", " ")
    for word in plan["nodes"][0]["command"].split():
        if len(word) < 20:
            assert word in printed, word


def test_check_at_80_columns_keeps_hosts(mfctl, tmp_path: Path) -> None:
    job = init_job(mfctl, tmp_path)
    r = mfctl("check", "--dir", job, "--connect-timeout", "1", "--no-fit-check", columns=80)
    assert r.exit_code == 1  # the hosts do not exist: every node fails, and says so
    assert max(len(line) for line in r.stdout.splitlines()) <= 80, r.stdout
    for host in HOSTS:
        row = next(line for line in r.stdout.splitlines() if line.startswith(f" {host} "))
        assert row.rstrip().endswith("FAIL")
