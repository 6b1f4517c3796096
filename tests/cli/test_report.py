"""mfctl report: one self-contained HTML page about a job, drawn by a real headless browser."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.browser import check_rendered_report, chromium, outside_references
from tests.sample_job import make_sample_job

JOB = "demo-tui-20261129-040000-ab12"


def sample_losses(rank: int) -> list[float]:
    """Every loss the sample log of ``rank`` prints, read straight from the file."""
    from tests.sample_job import SAMPLES

    text = (SAMPLES / f"worker_{rank}.log").read_text()
    return [float(x) for x in re.findall(r"loss:\[([\d.]+)/", text)]


def test_report_of_a_watched_job_is_one_self_contained_page(mfctl, tmp_path: Path) -> None:
    make_sample_job(tmp_path / "job", JOB)
    r = mfctl("report", JOB, "--json")
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    page = tmp_path / "job" / "report.html"
    assert result["path"] == str(page) and page.is_file()
    assert result["ranks"] == [0, 1] and result["points"] == 64
    text = page.read_text()
    assert outside_references(text) == []
    assert not re.search(r"<script[^>]*\bsrc=", text) and "<link" not in text
    for pattern in ('src="http', "src='http", 'href="http', "href='http", "@import", "url(http"):
        assert pattern not in text, pattern  # not even as text inside the inlined plotly.js
    assert "Plotly.newPlot" in text and len(text) > 1_000_000  # plotly.js itself is inline
    # The plan and config summary, and the exit cause, as the record has them.
    for expected in (JOB, "data_parallel 2", "localhost (NODE_RANK 0, ranks 0-1)", "all ranks finished (32 steps)",
                     "train.seq_length"):
        assert expected in text, expected
    # Each rank's own loss curve carries that rank's losses from its log.
    for rank in (0, 1):
        assert f'"name":"rank {rank}"' in text
        losses = sample_losses(rank)
        assert len(losses) == 32
        assert str(losses[0]) in text and str(losses[-1]) in text


def test_report_output_option_and_plain_output(mfctl, tmp_path: Path) -> None:
    make_sample_job(tmp_path / "job", JOB)
    target = tmp_path / "out" / "run.html"
    r = mfctl("report", JOB, "-o", target, columns=80)
    assert r.exit_code == 0, r.stderr
    assert target.is_file() and str(target) in r.stdout.replace("\n", "")
    assert "64 points of 2 ranks" in r.stdout
    bad = mfctl("report", JOB, "-o", tmp_path)
    assert bad.exit_code == 2 and "is a directory" in bad.stderr
    missing = mfctl("report", "no-such-job")
    assert missing.exit_code == 2 and "no job 'no-such-job'" in missing.stderr


def test_report_reads_the_logs_when_no_metrics_were_saved(mfctl, tmp_path: Path) -> None:
    # A job nobody watched: the report reads the node's logs once, and keeps what it read.
    make_sample_job(tmp_path / "job", JOB, feed=False)
    r = mfctl("report", JOB, "--json")
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["ranks"] == [0, 1] and result["points"] == 64
    exported = [json.loads(line) for line in mfctl("export", JOB, "--format", "jsonl").stdout.splitlines()]
    assert len(exported) == 64
    assert all(row["step_time_ms"] is not None for row in exported)  # every step's time, not the last's


def test_report_shows_saved_alerts_and_restarts(mfctl, tmp_path: Path) -> None:
    from mfctl.records.store import JobStore

    make_sample_job(tmp_path / "job", JOB)
    store = JobStore()
    store.add_alerts(JOB, [{"kind": "straggler", "rank": 1, "step": 12, "time": 1_795_000_000.0,
                            "message": "step time 1.9x the median of the ranks"},
                           {"kind": "stalled", "rank": None, "ranks": [0, 1], "step": 20,
                            "time": 1_795_000_100.0, "message": "2 ranks: no step line for 95 s"}])
    store.update(JOB, restarts=1, resumed_from="demo-tui-20261129-030000-ab11")
    store.close()
    r = mfctl("report", JOB, "--json")
    assert json.loads(r.stdout)["alerts"] == 2
    text = (tmp_path / "job" / "report.html").read_text()
    assert "step time 1.9x the median of the ranks" in text and "Alerts (2)" in text
    assert "<td>0, 1</td><td>20</td><td>2 ranks: no step line for 95 s</td>" in text
    assert "resumed from <b>demo-tui-20261129-030000-ab11</b>" in text


@pytest.mark.browser
@pytest.mark.skipif(chromium() is None, reason="needs Debian's chromium (scripts/dev test installs it)")
def test_report_draws_both_ranks_in_a_headless_browser(mfctl, tmp_path: Path) -> None:
    make_sample_job(tmp_path / "job", JOB)
    assert mfctl("report", JOB).exit_code == 0
    check_rendered_report(tmp_path / "job" / "report.html", tmp_path / "browser", ranks=(0, 1))


def test_a_large_job_draws_the_band_and_starts_with_few_ranks_shown(tmp_path: Path) -> None:
    from mfctl.cluster.plan import LaunchPlan
    from mfctl.jobs.report import ReportData, build_html
    from mfctl.records.record import JobRecord

    nodes = [{"host": f"node-{i:02d}", "node_rank": i, "local_worker_num": 8, "ranks": list(range(8 * i, 8 * i + 8)),
              "command": "msrun ...", "job_dir": "mfctl-jobs/big", "log_dir": "output/msrun_log"}
             for i in range(8)]
    plan = LaunchPlan.from_json({
        "job_name": "big", "world_size": 64, "master_addr": "node-00", "master_port": 8118, "launcher": "msrun",
        "parallel": {"data_parallel": 1, "model_parallel": 8, "pipeline_stage": 8, "micro_batch_num": 256},
        "nodes": nodes})
    record = JobRecord(id="big-20261129-041500", name="big", job_dir=str(tmp_path), transport="ssh",
                       spec={"model": "llama3-70b"}, plan=plan, hosts=[],
                       state="failed", exit_cause="rank 5: exit code 1", created_at=1.0)
    rows = [(r, s, 100, 2.0 + 8.0 / s, 400.0 + (200.0 if r == 3 else 0.0), 8.0, 1.0)
            for r in range(64) for s in range(1, 51)]
    page = build_html(ReportData(record, rows, [], [], 4096))
    assert page.count('"name":"min..max over ranks"') == 3 and page.count('"name":"median over ranks"') == 3
    assert page.count('"visible":"legendonly"') == 3 * (64 - 8)  # one click away in each chart
    assert page.count('"name":"rank 63"') == 3
    assert "node-07 (NODE_RANK 7, ranks 56-63)" in page
