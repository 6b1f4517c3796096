"""Every MindFormers step-line format (``mfctl.metrics.formats``), with and without the logger's
prefix, read by the parser, by the state, by the node-side filter and by the status greps.

Each sample names its source. "docs" lines are copied from MindSpore's published MindFormers
docs; "format string" lines are what the named MindFormers tag's format string prints (rendered
with the same %-format the logger applies, values of a real run where a doc gave them).
"""

from __future__ import annotations

import datetime
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mfctl.metrics.events import StepEvent
from mfctl.metrics.formats import OTHER_MARKS, PROGRESS, STEP_FORMATS, log_time, log_times
from mfctl.metrics.parser import parse_line
from mfctl.metrics.state import ClusterState
from mfctl.metrics.types import StepPoint
from mfctl.node.logtail import KEEP

ROOT = Path(__file__).resolve().parents[2]

# r0.x's stdout logger ("%(asctime)s - %(name)s - %(levelname)s - %(message)s", tools/logger.py
# of v0.6.0), 1.x's stdout and file loggers (the sample run's worker_0.log and info.log).
R0_PREFIX = "2023-06-01 10:00:00,123 - mindformers - INFO - "
STDOUT = "2026-11-28 06:14:50,171 - mindformers/job/output/log[mindformers/core/callback/callback.py:747] - INFO - "
FILEFMT = "[INFO] 2026-11-28 06:14:08,231 [mindformers/core/callback/callback.py:747] print_output_info: "
DOCS_15 = "2025-04-07 15:34:30,941 - [mindformers/core/callback/callback.py:529] - INFO - "

# (source, format name, line without prefix, step, total, loss, step time ms, tflops, global norm)
CASES = [
    # v0.3 / v0.6.0 mindformers/core/callback/callback.py MFLossMonitor (format string, with lr)
    ("format string v0.6.0 callback.py:271", "mfloss-r0",
     "Epoch:[  1/  2], step:[    7/  100], loss:[10.234/10.500], time:1234.567 ms, lr:0.0001, "
     "overflow cond: False, loss_scale: 1024.0", 7, 100, 10.234, 1235, None, None),
    ("format string v0.6.0 callback.py:278 (no lr)", "mfloss-r0",
     "Epoch:[  2/  2], step:[  100/  100], loss:[2.500/2.700], time:95.250 ms, overflow cond: True, "
     "loss_scale: 512.0", 100, 100, 2.5, 95, None, None),
    # v1.0.0 / v1.2.0 callback.py print_output_info: no global_norm, 3-decimal loss
    ("format string v1.0.0 callback.py:318", "mfloss",
     "{ Epoch:[  1/  1], step:[   10/   32], loss:[6.642/6.772], per_step_time: 83ms, lr: 1.29e-05, "
     "overflow cond: False, loss_scale: 1024.0", 10, 32, 6.642, 83, None, None),
    ("format string v1.2.0 callback.py:324 (sink mode)", "mfloss",
     "{ Epoch:[  1/  1], step:[   10/   32], loss: 6.642, per_step_time: 83ms, lr: 1.29e-05, "
     "overflow cond: False, loss_scale: 1024.0", 10, 32, 6.642, 83, None, None),
    # v1.3.0: global_norm
    ("format string v1.3.0 callback.py:337", "mfloss",
     "{ Epoch:[  1/  1], step:[   11/   32], loss:[6.601/6.700], per_step_time: 90ms, lr: 1.3e-05, "
     "overflow cond: False, loss_scale: 1024.0, global_norm: [0.59495854]", 11, 32, 6.601, 90, None, 0.59495854),
    # 1.5: train_throughput_per_npu; the docs' lines (mindspore-ai/docs,
    # docs/mindformers/docs/source_en/feature/high_availability.md, worker_0.log excerpt)
    ("docs: MindFormers high availability (MindIO) worker_0.log", "mfloss",
     "{ Epoch:[  1/  2], step:[    2/   19], loss: 10.633, per_step_time: 1752ms, lr: 1e-05, overflow cond: False, "
     "loss_scale: 1.0, global_norm: [1 508834], train_throughput_per_npu: 170.738T", 2, 19, 10.633, 1752, 170.738, 1.0),
    ("docs: same page, global_norm without its colon", "mfloss",
     "{ Epoch:[  1/  2], step:[    3/   19], loss: 9.673, per_step_time: 1754ms, lr: 9.981987e-06, overflow cond: "
     "False, loss_scale: 1.0, global_norm [10.579812], train_throughput_per_npu: 170.523T",
     3, 19, 9.673, 1754, 170.523, 10.579812),
    # 1.7+: six decimals, separate losses (v1.7.0 callback.py:534-545)
    ("format string v1.7.0 callback.py:544 (MoE + MTP)", "mfloss",
     "{ Epoch:[  1/  1], step:[   20/  500], loss:[7.123456/7.234567], lm_loss: 7.000001, "
     "load_balancing_loss: 0.012345, mtp_loss: 0.111110, per_step_time: 4321ms, lr: 3e-05, overflow cond: False, "
     "loss_scale: 1.0, global_norm: [2.5], train_throughput_per_npu: 180.250T", 20, 500, 7.123456, 4321, 180.25, 2.5),
    # 1.9 (the sample run, tests/data/samples/mindformers-1.9.0-cpu-msrun-dp2/worker_0.log:434)
    ("sample run 1.9.0 worker_0.log:434", "mfloss",
     "{ Epoch:[  1/  1], step:[    2/   32], loss:[6.910746/6.910632], per_step_time: 138ms, lr: 0.00033333336, "
     "overflow cond: False, loss_scale: 1024.0, global_norm: [0.5000543], train_throughput_per_npu: 0.001T",
     2, 32, 6.910746, 138, 0.001, 0.5000543),
    # 1.9 PyNative trainer (mindspore-ai/docs, MindFormers dynamic graph quick start, "Viewing the Result")
    ("docs: MindFormers dynamic graph quick start worker_0.log", "pynative",
     "{ step:[    2/   10], loss:  11.755612, per_step_time:    710ms, load_balancing_loss:   1.106543, "
     "lr: 1.000000e-05, grad_norm:  19.926786, throughput:  25.92T }", 2, 10, 11.755612, 710, 25.92, 19.926786),
    ("format string v1.9.0 pynative/callback/loss_callback.py:172 (no grad norm computed)", "pynative",
     "{ step:[   10/   10], loss:   9.500000, per_step_time:    700ms, lr: 1.000000e-05, grad_norm: NaN }",
     10, 10, 9.5, 700, None, None),
]


def _stamp(prefix: str) -> float | None:
    m = re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}", prefix)
    return datetime.datetime.strptime(m[0], "%Y-%m-%d %H:%M:%S,%f").timestamp() if m else None


def _prefixes(fmt: str) -> list[str]:
    return ["", R0_PREFIX] if fmt == "mfloss-r0" else ["", STDOUT, FILEFMT, DOCS_15]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_step_format_reads_with_and_without_its_prefix(case) -> None:
    _source, fmt, line, step, total, loss, ms, tflops, gn = case
    for prefix in _prefixes(fmt):
        ev = parse_line(prefix + line)
        assert isinstance(ev, StepEvent), (prefix, line)
        assert (ev.step, ev.total_steps, ev.loss, ev.step_time_ms, ev.tflops, ev.global_norm) == \
            (step, total, loss, ms, tflops, gn)
        assert ev.time == _stamp(prefix)
        # The declared format of that name matches the line at its mark.
        declared = {f.name: f for f in STEP_FORMATS}[fmt]
        assert re.compile(declared.pattern).match(line, line.find(declared.mark)), fmt


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_format_feeds_the_state_on_every_path(case) -> None:
    """Line by line, as a batch and as a block: the same step, loss, step time and TFLOPS."""
    _source, fmt, line, step, total, loss, ms, tflops, _gn = case
    text = _prefixes(fmt)[-1] + line
    states = [ClusterState(), ClusterState(), ClusterState()]
    states[0].feed(0, text)
    states[1].feed_many(0, [text, text.replace(f"/{total:5d}]", f"/{total:5d}]")])
    states[2].feed_chunk(0, (text + "\n").encode())
    for s in states:
        r = s.ranks[0]
        assert (r.step, r.total_steps, r.loss, r.step_time_ms, r.tflops) == (step, total, loss, ms, tflops)
        assert r.state in ("running", "finished")
        assert s.unreadable_lines == 0


def test_training_over_finishes_a_rank_in_every_format() -> None:
    for _source, fmt, line, *_ in CASES:
        s = ClusterState()
        s.feed_many(0, [_prefixes(fmt)[-1] + line.replace("/  100]", "/  999]").replace("/   10]", "/  999]"),
                        "2026-11-28 06:14:55,000 - mindformers - INFO - .........Training Over!............."])
        assert s.ranks[0].state == "finished", fmt


def test_a_step_that_goes_back_becomes_the_current_step() -> None:
    """A restart inside one log (resumed from a checkpoint): the rank is at the step it printed last."""
    lines = [STDOUT + line for _s, fmt, line, *_ in CASES if fmt == "mfloss"][:1]
    first = lines[0]  # step 10 of 32
    back = first.replace("step:[   10/   32]", "step:[    4/   32]")
    for feed in ("feed", "feed_many", "feed_chunk"):
        s = ClusterState()
        s.keep_steps = True
        if feed == "feed":
            s.feed(0, first)
            s.feed(0, back)
        elif feed == "feed_many":
            s.feed_many(0, [first, back])
        else:
            s.feed_chunk(0, (first + "\n" + back + "\n").encode())
        assert s.ranks[0].step == 4, feed
        assert [p[0] for p in s.take_steps(0)] == [10], feed  # step 4 waits for its progress line
        s.feed(0, "  12.5% |######| 26.53305 samples/s/p  0:00:04 }")
        assert [(StepPoint(*p).step, StepPoint(*p).samples_per_s) for p in s.take_steps(0)] == [(4, 26.53305)], feed


def test_log_time_reads_the_last_line_and_both_logger_formats() -> None:
    assert log_time(STDOUT) == _stamp(STDOUT)
    assert log_time(FILEFMT.encode()) == _stamp(FILEFMT)
    assert log_time("garbage\n" + DOCS_15) == _stamp(DOCS_15)
    assert log_time("no time here") is None and log_time(None) is None


def test_log_time_of_a_second_seen_before_is_the_same_exact_time() -> None:
    # The first line of a second is read in full, the next ones from the tables: each must give
    # the exact time (milliseconds, local time), bytes or str, and a malformed fraction none.
    for ms in ("171", "000", "999", "050"):
        line = STDOUT.replace(",171", "," + ms)
        for prefix in (line, line.encode(), "x\n" + line, (line + "\n").encode() + line.encode()):
            assert log_time(prefix) == _stamp(line) and log_time(prefix) == log_time(prefix)
    assert log_time(STDOUT.replace(",171", ".171")) == _stamp(STDOUT)
    for bad in (",17x", ",1 7", ";171"):
        assert log_time(STDOUT.replace(",171", bad)) is None
        assert log_time(STDOUT.replace(",171", bad).encode()) is None
    assert log_time(STDOUT + "\nno time here") is None


def test_log_times_of_a_column_are_each_line_s_log_time() -> None:
    lines = [STDOUT.replace(",171", f",{ms:03d}").replace(":50,", f":{s:02d},") for s in (50, 51) for ms in (1, 999)]
    odd = [FILEFMT, "garbage\n" + DOCS_15, DOCS_15 + "\nno time", "no time here", "", STDOUT.replace(",171", ",1x1")]
    for column in (lines, lines + odd, odd + lines, lines + lines):
        for kind in (str, bytes):
            prefixes = [p.encode() if kind is bytes else p for p in column]
            fresh = [_stamp(p.split("\n")[-1]) for p in column]
            assert log_times(prefixes) == fresh and log_times(prefixes) == fresh  # read, then from the tables
    assert log_times([1.5, None]) == [1.5, None] and log_times([]) == []
    assert log_times([STDOUT.encode(), STDOUT]) == [_stamp(STDOUT)] * 2


# -- the node side: logtail's KEEP and the status greps of nodectl.sh and the Slurm backend

def _event_lines() -> list[str]:
    """Every format's lines (with each prefix), the progress line and the other marks' lines."""
    lines = [p + c[2] for c in CASES for p in _prefixes(c[1])]
    lines.append(STDOUT.replace("callback.py:747", "callback.py:764")
                 + "   6.2% |███                                               | 28.82787 samples/s/p  0:00:04 }")
    lines += [f"2026-11-28 06:14:55,000 - mindformers - INFO - {mark} something" for mark in OTHER_MARKS]
    return lines


def test_every_declared_line_passes_the_node_filter() -> None:
    for line in _event_lines():
        assert KEEP.search(line.encode("utf-8")), line


def _status_grep_args(text: str) -> list[str]:
    """The -e patterns of the status grep in a script (``grep -a -e 'step:\\[' -e ...``)."""
    m = re.search(r"grep -a((?: -e '[^']*')+)", text)
    assert m, "no status grep found"
    return re.findall(r"-e '([^']*)'", m[1])


@pytest.mark.skipif(shutil.which("grep") is None, reason="needs grep")
@pytest.mark.parametrize("script", ["mfctl/node/nodectl.sh", "mfctl/jobs/slurm_backend.py"])
def test_the_status_greps_find_every_step_format_and_progress_line(script: str) -> None:
    text = (ROOT / script).read_text().replace("\\\\[", "\\[")  # the Python source escapes its backslash
    args = _status_grep_args(text)
    step_lines = [p + c[2] for c in CASES for p in _prefixes(c[1])]
    lines = step_lines + [STDOUT + "  3.1% |█     | 0.41491 samples/s/p  0:04:58 }",
                          "2026-11-28 06:14:55,000 - mindformers - INFO - .........Training Over!............."]
    cmd = ["grep", "-a"] + [x for a in args for x in ("-e", a)]
    out = subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True, text=True, check=False).stdout
    assert out.splitlines() == lines


def test_the_progress_declaration_matches_the_progress_line() -> None:
    line = "   6.2% |███                                               | 28.82787 samples/s/p  0:00:04 }"
    m = re.compile(PROGRESS.pattern).search(line)
    assert m and float(m["samples_per_s"]) == 28.82787 and parse_line(line).samples_per_s == 28.82787


def test_the_block_readers_pair_pattern_reads_what_the_declared_format_reads() -> None:
    """pairs.PAIR_PATTERN (one match per step line and its progress line) is built from MF_STEP's
    and PROGRESS's marks; where it takes a pair, its fields are the declared pattern's."""
    from mfctl.metrics.pairs import PAIR_RE

    progress = "   6.2% |███                                               | 28.82787 samples/s/p  0:00:04 }"
    taken = 0
    for _source, fmt, line, *_ in CASES:
        if fmt != "mfloss":
            continue
        text = STDOUT + line + "\n" + STDOUT + progress + "\n"
        m = PAIR_RE[str].search(text)
        ev = parse_line(STDOUT + line)
        if m is None or m.group(3) is None:  # a shape the pair pattern leaves to the per-line reader
            continue
        taken += 1
        loss = m.group(5) if m.group(5) is not None else m.group(6)
        assert (int(m.group(3)), float(loss), int(m.group(7)), float(m.group(9))) == \
            (ev.step, ev.loss, ev.step_time_ms, ev.global_norm)
        assert float(m.group(11)) == 28.82787
    assert taken >= 2  # 1.3 and 1.9 lines; the rest go to the per-line reader (same state: test_metrics_chunk)
