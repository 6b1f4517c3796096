"""The chunk path (``feed_chunk``, bytes or str) leaves exactly the state the per-line path does.

The per-line path (``feed`` / ``feed_many`` over ``parse_line``) is the reference: every test here
feeds the same log both ways and compares the whole state (every rank field, history, alerts).
"""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import pytest

from mfctl.metrics import chunk, pairs
from mfctl.metrics.logdir import feed_file, load_log_dir
from mfctl.metrics.state import ClusterState
from tests.unit.test_metrics_state import (
    MS_WARN,
    PREFIX,
    Clock,
    progress_line,
    scenario,
    step_line,
    traceback_lines,
)

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples" / "mindformers-1.9.0-cpu-msrun-dp2"


@pytest.fixture(autouse=True, params=["split", "matches"])
def chunk_way(request, monkeypatch):
    """Every test here runs both ways through a block: split whole (feed_chunk's way for big blocks)
    and a pair at a time (feed_matches, its way for small ones)."""
    monkeypatch.setattr(chunk, "SPLIT_FROM", 0 if request.param == "split" else sys.maxsize)
    return request.param


def state(**kw) -> ClusterState:
    return ClusterState(world_size=4, seq_length=128, clock=Clock(), overflow_streak=2, **kw)


def assert_same(a: ClusterState, b: ClusterState) -> None:
    # No line was skipped as unreadable on either path: a reader that crashed would show here.
    assert a.unreadable_lines == b.unreadable_lines == 0
    assert repr(a.snapshot(2000.0)) == repr(b.snapshot(2000.0))  # repr: nan-safe equality
    assert a.global_batch_size == b.global_batch_size
    for rank in a.ranks:
        ra, rb = a.ranks[rank], b.ranks[rank]
        assert repr(ra) == repr(rb)
        assert repr(list(ra.history)) == repr(list(rb.history))
        assert repr(list(ra.recent_step_ms)) == repr(list(rb.recent_step_ms))
        assert (ra.pid, ra.ckpt_epoch, ra.ckpt_step, ra.separate_losses, ra.loss_ema, ra.gn_ema, ra.loss_seen,
                ra.gn_seen, ra.overflow_run, ra.in_traceback) == \
               (rb.pid, rb.ckpt_epoch, rb.ckpt_step, rb.separate_losses, rb.loss_ema, rb.gn_ema, rb.loss_seen,
                rb.gn_seen, rb.overflow_run, rb.in_traceback)


def by_lines(logs: dict[int, list[str]]) -> ClusterState:
    s = state()
    for rank, lines in logs.items():
        for line in lines:
            s.feed(rank, line)
    return s


def by_chunks(logs: dict[int, list[str]], rng: random.Random, as_bytes: bool) -> ClusterState:
    """Each rank's text cut into chunks at random line ends (as a reader gets it)."""
    s = state()
    for rank, lines in logs.items():
        i = 0
        while i < len(lines):
            n = rng.choice([1, 2, 3, 7, 50, 1000])
            text = "".join(line + "\n" for line in lines[i:i + n])
            s.feed_chunk(rank, text.encode("utf-8", "surrogatepass") if as_bytes else text)
            i += n
    return s


ODD_LINES = [
    # a progress line with a second mark: the line path reads the figure before the first one
    PREFIX + "  50.0% |█████     | 1.50000 samples/s/p x | 2.50000 samples/s/p  0:00:01 }",
    PREFIX + "x samples/s/p |█████     | 3.50000 samples/s/p  0:00:01 }",
    # two step marks on a line: only the first counts, and here it does not parse
    PREFIX + "{ Epoch:[oops] " + step_line(3)[len(PREFIX) + 2:],
    # a step line that ends with "}" is not a step line
    step_line(4) + " }",
    # lr printed as a list: the later fields are not read
    step_line(5).replace("lr: 0.0001", "lr: [0.0001, 0.0002]"),
    # leading zeros, nan, a Tensor repr, no global norm, sink mode with separate losses
    step_line(6).replace("step:[    6/", "step:[00006/"),
    step_line(7, loss=float("nan")),
    step_line(8).replace("overflow cond: False", "overflow cond: Tensor(shape=[], dtype=Bool, value= False)"),
    step_line(9).split(", global_norm")[0],
    PREFIX + "{ Epoch:[  1/  1], step:[   10/  100], loss: 6.500000, lm_loss: 6.1, mtp_loss: 0.4, "
             "per_step_time: 100ms, lr: 0.0001, overflow cond: False, loss_scale: 1024.0, global_norm: [0.5]",
    progress_line(sps=41.0).replace("41.00000", "nan"),
    progress_line(sps=42.0).replace("42.00000", "4.2e1"),
    # a progress line alone, then a step line alone, then one at the end of the chunk without "\n"
    progress_line(sps=43.0),
    step_line(11),
    MS_WARN.format(pid=4242),
    PREFIX + "global_batch_size = batch_size_per_card * device_num * gradient_accumulation_steps = 8 = 4 * 2 * 1",
    "[WARNING] DISTRIBUTED(1,1,python):x [y.cc:1] f] connection timed out",
    "\ufeff\u00e9\u2588 " + PREFIX,
]


def odd_scenario(rng: random.Random) -> list[str]:
    out = scenario(rng, steps=60)
    for line in rng.sample(ODD_LINES, k=rng.randint(3, len(ODD_LINES))):
        out.insert(rng.randint(0, len(out)), line)
    if rng.random() < 0.3:
        out += traceback_lines("ValueError: late")
    return out


@pytest.mark.parametrize("seed", range(16))
@pytest.mark.parametrize("as_bytes", [True, False])
def test_chunks_equal_lines_on_generated_logs(seed, as_bytes):
    rng = random.Random(seed)
    logs = {rank: odd_scenario(rng) for rank in range(4)}
    assert_same(by_chunks(logs, random.Random(seed), as_bytes), by_lines(logs))


@pytest.mark.parametrize("line", ODD_LINES)
def test_each_odd_line_between_ordinary_steps(line):
    lines = []
    for step in range(1, 30):
        lines += [step_line(step), progress_line()]
        if step == 15:
            lines.append(line)
    logs = {0: lines}
    for as_bytes in (True, False):
        assert_same(by_chunks(logs, random.Random(0), as_bytes), by_lines(logs))


def test_sample_logs_read_as_chunks_equal_lines():
    chunked = ClusterState(world_size=2, clock=Clock())
    load_log_dir(SAMPLES, chunked, node="vm")
    lined = ClusterState(world_size=2, clock=Clock())
    for name, rank in (("worker_0.log", 0), ("worker_1.log", 1), ("scheduler.log", None)):
        for line in (SAMPLES / name).read_text(encoding="utf-8").split("\n"):
            lined.feed(rank, line, "vm")
    assert_same(chunked, lined)
    assert chunked.ranks[0].step == 32 and chunked.ranks[0].pid is not None


def test_files_with_crlf_and_cr_line_ends(tmp_path):
    lines = []
    for step in range(1, 20):
        lines += [step_line(step, total=19), progress_line()]
    for name, sep in (("crlf", "\r\n"), ("cr", "\r")):
        path = tmp_path / f"{name}.log"
        path.write_bytes((sep.join(lines) + sep).encode())
        s = state()
        assert feed_file(path, s, 0) == path.stat().st_size
        assert_same(s, by_lines({0: lines}))
        assert s.ranks[0].state == "finished" and s.ranks[0].step == 19


def test_hypothesis_lines_from_parts():
    hyp = pytest.importorskip("hypothesis")
    st = hyp.strategies
    parts = st.sampled_from([step_line(1), step_line(2, loss=9.0), progress_line(), MS_WARN.format(pid=7), "",
                             "}", " samples/s/p", "Epoch:[", "|", "\r", "Traceback (most recent call last):",
                             "ValueError: x", PREFIX, " 1.5", "\u2588"] + ODD_LINES)

    @hyp.settings(max_examples=150, deadline=None, derandomize=True)
    @hyp.given(st.lists(st.lists(parts, min_size=1, max_size=3).map("".join), max_size=30),
               st.booleans())
    def check(lines, as_bytes):
        lines = [line.replace("\r", "") for line in lines]
        assert_same(by_chunks({0: lines}, random.Random(1), as_bytes), by_lines({0: lines}))

    check()


def parser_case_lines() -> list[str]:
    """Every line of the parser's tests (MFLossMonitor variants, progress, msrun, timeouts, noise)."""
    from tests.unit import test_metrics_parser as tp

    lines = [c[1] for c in tp.STEP_CASES + tp.NONFINITE_CASES + tp.PROGRESS_CASES + tp.OTHER_CASES
             + tp.TIMEOUT_CASES]
    return lines + list(tp.IGNORED)


@pytest.mark.parametrize("as_bytes", [True, False])
def test_every_parser_case_between_steps_equals_lines(as_bytes):
    cases = [line for line in parser_case_lines() if isinstance(line, str) and "\n" not in line]
    assert len(cases) > 40
    lines = []
    for i, case in enumerate(cases):
        lines += [step_line(i + 1, total=len(cases) + 5), progress_line(), case]
    for rank in range(2):  # twice: the second rank meets the shapes the first one left
        logs = {rank: lines}
        assert_same(by_chunks(logs, random.Random(rank), as_bytes), by_lines(logs))


def between_steps(rng: random.Random, step: int) -> list[str]:
    """What MindFormers and MindSpore print between two steps now and then: checkpoint notes
    (their numbers change), a periodic warning, an error line (an alert each time it changes)."""
    kind = rng.choice(["none", "none", "ckpt", "ckpt", "warning", "error", "ckpt+error", "batch"])
    note = [PREFIX + "......Saving ckpt......",
            PREFIX + f"Finish saving ckpt of epoch 1 step {step} using 0.0{step % 10} seconds"]
    error = [PREFIX.replace("INFO", "ERROR") + f"device {step % 3} is slow"]
    return {"none": [], "ckpt": note, "warning": [MS_WARN.format(pid=4242)], "error": error,
            "ckpt+error": note + error + note[1:],
            "batch": [PREFIX + f"global_batch_size = 8 = {step % 4 + 1} * 2 * 1"]}[kind]


@pytest.mark.parametrize("seed", range(6))
def test_recurring_lines_between_steps_in_big_blocks(seed):
    """The same kinds of lines again and again between steps (the shapes a block meets a second
    time are sorted out before its steps are run through): the last checkpoint note, error
    alerts and steps come out as line by line, with spikes and an overflow among the steps; with
    short history and step-time windows (odd seeds) only their newest points are kept."""
    history, window = (16, 3) if seed % 2 else (2048, 8)

    rng = random.Random(seed)
    lines = [MS_WARN.format(pid=4242)]
    total = 400
    for step in range(1, total + 1):
        loss = 6.5 - step / 200 + (5.0 if rng.random() < 0.02 else 0.0)
        lines += [step_line(step, total=total, loss=loss, gn=0.5 + rng.random() / 10, ms=100 + step % 7,
                            overflow=rng.random() < 0.01), progress_line(sps=40.0 + step % 5)]
        lines += between_steps(rng, step)
    if seed % 2:
        lines += [PREFIX + "Finish saving ckpt of epoch 1 step 999 using 0.01 seconds"]
    for rank in range(2):  # twice: the second rank meets every shape the first one left
        lined = state(history_len=history, step_window=window)
        for line in lines:
            lined.feed(rank, line)
        assert len(lined.ranks[rank].history) == min(history, total)
        for as_bytes in (True, False):
            s = state(history_len=history, step_window=window)
            text = "".join(line + "\n" for line in lines)
            s.feed_chunk(rank, text.encode() if as_bytes else text)  # one big block
            assert_same(s, lined)
            assert s.ranks[rank].ckpt_step == (999 if seed % 2 else max(
                int(line.split(" step ")[1].split()[0]) for line in lines if "Finish saving" in line))


@pytest.mark.skipif(sys.version_info < (3, 11), reason="possessive repeats need Python 3.11")
def test_pair_pattern_matches_the_same_with_and_without_possessive_repeats():
    """Python 3.10 gets the pattern without possessive repeats: it must take the same pairs."""
    rng = random.Random(7)
    texts = [(SAMPLES / "worker_0.log").read_text(encoding="utf-8")]
    texts += ["".join(line + "\n" for line in odd_scenario(rng)) for _ in range(20)]
    texts += ["".join(line + "\n" for line in parser_case_lines() if isinstance(line, str))]
    fast, plain = re.compile(pairs.pair_pattern(True)), re.compile(pairs.pair_pattern(False))
    assert fast.pattern != plain.pattern
    taken = 0
    for text in texts:
        got = [(m.span(), m.groups()) for m in fast.finditer(text)]
        assert got == [(m.span(), m.groups()) for m in plain.finditer(text)]
        taken += sum(1 for _, g in got if g[2] is not None)
    assert taken > 500
