"""The node-side log filter (``node/logtail.py``'s ``KEEP``) lets through every line the metrics
parser makes an event of: a line it dropped on the node would be a step, a failure or the end of
training that ``mfctl watch`` / ``status`` never see (only the local ``--logs`` reader would)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfctl.metrics.parser import parse_line
from mfctl.node.logtail import KEEP, split_tagged
from tests.unit import test_metrics_parser as cases

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"


def _parser_cases() -> list[str]:
    lines = []
    for table in (cases.STEP_CASES, cases.NONFINITE_CASES, cases.PROGRESS_CASES, cases.OTHER_CASES,
                  cases.TIMEOUT_CASES):
        lines += [row[1] for row in table]
    return lines


def _sample_lines() -> list[str]:
    out = []
    for path in sorted(SAMPLES.rglob("*.log")):
        out += path.read_text(encoding="utf-8", errors="replace").splitlines()
    return out


@pytest.mark.parametrize("line", [line for line in _parser_cases() if parse_line(line) is not None])
def test_every_parser_case_passes_the_node_filter(line: str) -> None:
    assert KEEP.search(line.encode("utf-8")), line


def test_every_event_line_of_the_sample_logs_passes_the_node_filter() -> None:
    lines = [line for line in _sample_lines() if parse_line(line) is not None]
    assert len(lines) > 100  # the samples hold a whole run: steps, progress, the end
    dropped = [line for line in lines if not KEEP.search(line.encode("utf-8"))]
    assert dropped == []


def test_every_cann_failure_line_passes_the_node_filter() -> None:
    # The real CANN/HCCL excerpts (tests/data/ascend): a code line or an out-of-memory line the
    # node dropped would be a failure `mfctl watch` never names.
    from mfctl.metrics.cann import MARKS_PATTERN, classify

    lines = []
    for path in sorted((SAMPLES.parent / "ascend").glob("*.log")):
        lines += path.read_text(encoding="utf-8").splitlines()[1:]
    named = [line for line in lines if parse_line(line) is not None and classify(line) is not None]
    assert len(named) > 40
    assert [line for line in named if not KEEP.search(line.encode("utf-8"))] == []
    assert MARKS_PATTERN.encode() in KEEP.pattern  # the node keeps what the parser looks for


@pytest.mark.parametrize(("raw", "expected"), [
    ("worker_3.log\t1234\tstep:[ 1/ 8], loss: 6.9", ("worker_3.log", 1234, "step:[ 1/ 8], loss: 6.9")),
    ("scheduler.log\t10\ta\tb", ("scheduler.log", 10, "a\tb")),  # a tab inside the text stays
    ("launch.out\t7\t", ("launch.out", 7, "")),
    ("#idle", None),
    ("", None),
    ("worker_0.log\tx\ttext", None),
    ("no tabs here", None),
])
def test_tagged_line_parse(raw: str, expected) -> None:
    assert split_tagged(raw) == expected
