"""The log line parser: every MFLossMonitor variant, msrun's lines, and garbage that must not raise."""

from __future__ import annotations

import dataclasses
import datetime
import math
import random
from pathlib import Path

import pytest

from mfctl.metrics.events import (
    CheckpointSavedEvent,
    ErrorLineEvent,
    ExceptionEvent,
    GlobalBatchSizeEvent,
    KillAllWorkersEvent,
    ProgressEvent,
    SchedulerExitEvent,
    StepEvent,
    TimeoutEvent,
    TracebackEvent,
    TrainingOverEvent,
    WorkerExitEvent,
)
from mfctl.metrics.parser import parse_line, parse_lines, parse_pid, parse_timedelta

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples" / "mindformers-1.9.0-cpu-msrun-dp2"

# The two logger formats MindFormers writes (only what precedes "{ Epoch:" differs).
STDOUT = ("2026-11-28 06:14:50,171 - mindformers/job/output/log"
          "[mindformers/core/callback/callback.py:747] - INFO - ")
FILEFMT = "[INFO] 2026-11-28 06:14:08,231 [mindformers/core/callback/callback.py:747] print_output_info: "
PROG_STDOUT = ("2026-11-28 06:14:53,978 - mindformers/job/output/log"
               "[mindformers/core/callback/callback.py:764] - INFO - ")
PROG_FILE = "[INFO] 2026-11-28 06:14:08,233 [mindformers/core/callback/callback.py:764] print_output_info: "
MS = ("[ERROR] ME(4242:140213867424640,MainProcess):2026-11-28-06:20:01.123.000 "
      "[mindspore/parallel/cluster/process_entity/_api.py:364] ")

HEAD = "{ Epoch:[  1/  1], step:[   32/   32], "
TAIL = "per_step_time: 83ms, lr: 1.2901718e-05, overflow cond: False, loss_scale: 1024.0, global_norm: [0.59495854]"
BAR = "|" + "\u2588" * 46 + " " * 4 + "|"


def step(**kw) -> StepEvent:
    base = dict(epoch=1, total_epochs=1, step=32, total_steps=32, loss=6.641791, loss_mean=6.772396,
                separate_losses=(), step_time_ms=83, lr=1.2901718e-05, overflow=False, loss_scale=1024.0,
                global_norm=0.59495854, tflops=0.002, progress_follows=True)
    base.update(kw)
    return StepEvent(**base)


STEP_CASES = [
    # the real stdout line (worker_N.log) and the info.log format
    ("non-sink stdout", STDOUT + HEAD + "loss:[6.641791/6.772396], " + TAIL + ", train_throughput_per_npu: 0.002T",
     step()),
    ("non-sink file format",
     FILEFMT + HEAD + "loss:[6.641791/6.772396], " + TAIL + ", train_throughput_per_npu: 0.002T", step()),
    ("sink mode", STDOUT + HEAD + "loss: 6.641791, " + TAIL + ", train_throughput_per_npu: 0.002T",
     step(loss_mean=None)),
    ("older 3 decimals non-sink", STDOUT + HEAD + "loss:[6.642/6.772], " + TAIL,
     step(loss=6.642, loss_mean=6.772, tflops=None)),
    ("older 3 decimals sink", FILEFMT + HEAD + "loss: 6.642, " + TAIL,
     step(loss=6.642, loss_mean=None, tflops=None)),
    ("without lr", STDOUT + HEAD + "loss:[6.641791/6.772396], per_step_time: 83ms, overflow cond: False, "
     "loss_scale: 1024.0, global_norm: [0.59495854], train_throughput_per_npu: 0.002T", step(lr=None)),
    ("without throughput", STDOUT + HEAD + "loss:[6.641791/6.772396], " + TAIL, step(tflops=None)),
    ("without global_norm (old releases)", STDOUT + HEAD + "loss:[6.642/6.772], per_step_time: 83ms, "
     "lr: 1.2901718e-05, overflow cond: False, loss_scale: 1024.0",
     step(loss=6.642, loss_mean=6.772, global_norm=None, tflops=None)),
    ("separate losses", STDOUT + HEAD + "loss: 2.345678, lm_loss: 2.301, load_balancing_loss: 0.012, "
     "mtp_loss: 0.456, " + TAIL + ", train_throughput_per_npu: 123.456T",
     step(loss=2.345678, loss_mean=None, tflops=123.456,
          separate_losses=(("lm_loss", 2.301), ("load_balancing_loss", 0.012), ("mtp_loss", 0.456)))),
    ("overflow and big numbers", STDOUT + "{ Epoch:[  3/ 10], step:[123456/200000], loss:[2.100000/2.200000], "
     "per_step_time: 4321ms, lr: 3e-05, overflow cond: True, loss_scale: 65536.0, global_norm: [12.5], "
     "train_throughput_per_npu: 180.250T",
     step(epoch=3, total_epochs=10, step=123456, total_steps=200000, loss=2.1, loss_mean=2.2,
          step_time_ms=4321, lr=3e-05, overflow=True, loss_scale=65536.0, global_norm=12.5, tflops=180.25)),
    ("first step of the sample", STDOUT + "{ Epoch:[  1/  1], step:[    1/   32], loss:[6.910518/6.910518], "
     "per_step_time: 9640ms, lr: 0.0, overflow cond: False, loss_scale: 1024.0, global_norm: [0.52607346], "
     "train_throughput_per_npu: 0.000T",
     step(step=1, loss=6.910518, loss_mean=6.910518, step_time_ms=9640, lr=0.0, global_norm=0.52607346, tflops=0.0)),
    ("trailing newline", STDOUT + HEAD + "loss:[6.641791/6.772396], " + TAIL + ", train_throughput_per_npu: 0.002T\n",
     step()),
    ("CRLF", STDOUT + HEAD + "loss:[6.641791/6.772396], " + TAIL + "\r", step(tflops=None)),
]

NONFINITE_CASES = [
    ("nan non-sink", STDOUT + HEAD + "loss:[  nan/  nan], " + TAIL, "nan", "nan"),
    ("inf sink", STDOUT + HEAD + "loss:   inf, " + TAIL, "inf", None),
    ("-inf non-sink", STDOUT + HEAD + "loss:[ -inf/6.772396], " + TAIL, "-inf", "6.772396"),
    ("nan 6 decimals sink", FILEFMT + HEAD + "loss: nan, " + TAIL, "nan", None),
]


@pytest.mark.parametrize("name,line,expected", STEP_CASES, ids=[c[0] for c in STEP_CASES])
def test_step_lines(name, line, expected):
    ev = parse_line(line)
    assert isinstance(ev, StepEvent)
    # The step's time is its logger prefix's (local time), checked on its own.
    stamp = line[:23] if line[:1].isdigit() else line[7:30]
    assert ev.time == datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
    assert dataclasses.replace(ev, time=None) == expected


@pytest.mark.parametrize("name,line,loss,mean", NONFINITE_CASES, ids=[c[0] for c in NONFINITE_CASES])
def test_nonfinite_losses(name, line, loss, mean):
    ev = parse_line(line)
    assert isinstance(ev, StepEvent)
    assert repr(ev.loss) == repr(float(loss))  # nan == nan is False; repr compares it
    assert (ev.loss_mean is None) if mean is None else repr(ev.loss_mean) == repr(float(mean))


def test_nonfinite_global_norm():
    ev = parse_line(STDOUT + HEAD + "loss:[6.6/6.7], per_step_time: 83ms, overflow cond: True, loss_scale: 512.0, "
                    "global_norm: [nan]")
    assert isinstance(ev, StepEvent) and ev.overflow is True and math.isnan(ev.global_norm)


def test_list_global_norm_gives_its_first_value():
    ev = parse_line(STDOUT + HEAD + "loss: 6.6, " + TAIL.replace("[0.59495854]", "[0.5 0.75]"))
    assert ev.global_norm == 0.5 and ev.loss == 6.6


PROGRESS_CASES = [
    ("real stdout", PROG_STDOUT + "  93.8% " + BAR + " 31.37265 samples/s/p  0:00:00 }",
     ProgressEvent(93.8, 31.37265, 0)),
    ("real 100%", PROG_STDOUT + "  100.0% |" + "\u2588" * 50 + "| 47.87513 samples/s/p  0:00:00 }",
     ProgressEvent(100.0, 47.87513, 0)),
    ("first step, minutes left", PROG_STDOUT + "   3.1% |\u2588" + " " * 49 + "| 0.41491 samples/s/p  0:04:58 }",
     ProgressEvent(3.1, 0.41491, 298)),
    ("file format", PROG_FILE + "  50.0% " + BAR + " 12.00000 samples/s/p  1:02:03 }", ProgressEvent(50.0, 12.0, 3723)),
    ("negative timedelta", PROG_STDOUT + "  103.1% |" + "\u2588" * 51 + "| 40.00000 samples/s/p  -1 day, 23:59:57 }",
     ProgressEvent(103.1, 40.0, -3)),
    ("days left", PROG_STDOUT + "   0.1% |" + " " * 50 + "| 2.50000 samples/s/p  2 days, 3:04:05 }",
     ProgressEvent(0.1, 2.5, 2 * 86400 + 3 * 3600 + 4 * 60 + 5)),
    ("inf throughput", PROG_STDOUT + "  10.0% " + BAR + " inf samples/s/p  0:00:10 }",
     ProgressEvent(10.0, math.inf, 10)),
    ("no closing brace", PROG_STDOUT + "  93.8% " + BAR + " 31.37265 samples/s/p  0:00:00",
     ProgressEvent(93.8, 31.37265, 0)),
    ("no percent", PROG_STDOUT + "|" + "\u2588" * 50 + "| 7.00000 samples/s/p  0:00:01 }", ProgressEvent(None, 7.0, 1)),
]


@pytest.mark.parametrize("name,line,expected", PROGRESS_CASES, ids=[c[0] for c in PROGRESS_CASES])
def test_progress_lines(name, line, expected):
    assert parse_line(line) == expected


OTHER_CASES = [
    ("training over", "2026-11-28 06:14:54,249 - mindformers/job/output/log[mindformers/trainer/base_trainer.py:1689]"
     " - INFO - .........Training Over!.............", TrainingOverEvent()),
    ("training over file format", "[INFO] 2026-11-28 06:14:54,249 [mindformers/trainer/base_trainer.py:1689] "
     "train: .........Training Over!.............", TrainingOverEvent()),
    ("checkpoint", "2026-11-28 06:14:54,001 - mindformers/job/output/log[mindformers/core/callback/callback.py:1781]"
     " - INFO - Finish saving ckpt of epoch 1 step 30 using 0.018 seconds", CheckpointSavedEvent(1, 30, 0.018)),
    ("global batch size", "2026-11-28 06:14:40,194 - mindformers/job/output/log"
     "[mindformers/trainer/base_trainer.py:285]"
     " - INFO - global_batch_size = batch_size_per_card * device_num * gradient_accumulation_steps = 8 = 4 * 2 * 1",
     GlobalBatchSizeEvent(8, 4, 2, 1)),
    ("worker exit", MS + "Worker process 23277 exit with exception. Error code: -9.", WorkerExitEvent(23277, -9)),
    ("worker exit code 1", MS + "Worker process 5 exit with exception. Error code: 1.", WorkerExitEvent(5, 1)),
    ("kill all", MS.replace("[ERROR]", "[WARNING]") + "There's worker exits with exception, kill all other workers.",
     KillAllWorkersEvent()),
    ("scheduler exit", MS + "Scheduler process 23276 exit with exception.", SchedulerExitEvent(23276)),
    ("node timed out", "[ERROR] DISTRIBUTED(23276,7f85d3fff6c0,python):2026-11-28-06:20:01.1 "
     "[mindspore/ccsrc/cluster/topology/meta_server_node.cc:470] UpdateTopoState] The node: 1 is timed out. "
     "It may exit with exception, please check this node's log.", None),  # checked below: TimeoutEvent(node_id='1')
    ("traceback", "Traceback (most recent call last):", TracebackEvent()),
    ("traceback logged", "2026-11-28 06:20:01,000 - mindformers/job/output/log[x.py:1] - ERROR - "
     "Traceback (most recent call last):", TracebackEvent()),
    ("exception line", "RuntimeError: Distributed job exited with exception. Please check logs in directory: out.",
     ExceptionEvent("RuntimeError", "Distributed job exited with exception. Please check logs in directory: out.")),
    ("dotted exception", "mindspore.common.errors.SomeError: boom",
     ExceptionEvent("mindspore.common.errors.SomeError", "boom")),
    ("bare exception", "KeyboardInterrupt", ExceptionEvent("KeyboardInterrupt", "")),
    ("fatal python error", "Fatal Python error: Segmentation fault",
     ExceptionEvent("Fatal Python error", "Segmentation fault")),
    ("stdout ERROR", "2026-11-28 06:20:01,000 - mindformers/job/output/log[x.py:1] - ERROR - something broke",
     ErrorLineEvent("2026-11-28 06:20:01,000 - mindformers/job/output/log[x.py:1] - ERROR - something broke")),
    ("file ERROR", "[ERROR] 2026-11-28 06:20:01,000 [x.py:1] f: something broke",
     ErrorLineEvent("[ERROR] 2026-11-28 06:20:01,000 [x.py:1] f: something broke")),
    ("CRITICAL", "[CRITICAL] ME(1:2,MainProcess):x [y.py:1] bad",
     ErrorLineEvent("[CRITICAL] ME(1:2,MainProcess):x [y.py:1] bad")),
    ("traceback logged at WARNING", "[WARNING] ME(1:2,MainProcess):x [y.py:1] Traceback (most recent call last):",
     TracebackEvent()),
    ("indented traceback", "  | Traceback (most recent call last):", TracebackEvent()),
    ("raw line with everything", "Training Over? Finish saving ckpt of epoch 2 step 3", TrainingOverEvent()),
]


@pytest.mark.parametrize("name,line,expected", OTHER_CASES, ids=[c[0] for c in OTHER_CASES])
def test_other_events(name, line, expected):
    got = parse_line(line)
    if expected is None:
        assert isinstance(got, TimeoutEvent) and got.node_id == "1"
    else:
        assert got == expected


TIMEOUT_CASES = [
    ("warning receive timeout", "[WARNING] DISTRIBUTED(1,2,python):x [tcp_client.cc:1] ReceiveMessage] "
     "Message receive timeout, Suggest configuring timeout time through MS_RECEIVE_MSG_TIMEOUT", True),
    ("error hccl timeout",
     "2026-11-28 06:20:01,000 - mindformers/job/output/log[x.py:1] - ERROR - HCCL timeout on stream 3", True),
    ("topology polling is normal", "[WARNING] DISTRIBUTED(23276,7f8615c2ab80,python):2026-11-28-06:14:37.138.205 "
     "[mindspore/ccsrc/cluster/topology/cluster_context.cc:316] BuildCluster] Topology build timed out., "
     "retry(1/1200).",
     False),
    ("function name is not a timeout", "[WARNING] DISTRIBUTED(23279,7f6856e1eb80,python):2026-11-28-06:14:37.058.752 "
     "[mindspore/ccsrc/cluster/topology/compute_graph_node.cc:392] ReconnectWithTimeoutWindow] Failed to register "
     "and try to reconnect to the meta server.", False),
    ("setting printed at INFO", "[INFO] DISTRIBUTED(1,2,python):x [a.cc:1] F] Cluster topo timeout is 600", False),
    ("env var name", "[WARNING] ME(1:2,MainProcess):x [a.py:1] HCCL_CONNECT_TIMEOUT is 7200", False),
]


@pytest.mark.parametrize("name,line,is_timeout", TIMEOUT_CASES, ids=[c[0] for c in TIMEOUT_CASES])
def test_timeouts(name, line, is_timeout):
    assert isinstance(parse_line(line), TimeoutEvent) is is_timeout


IGNORED = [
    "",
    "\n",
    "  File \"/x/run_mindformer.py\", line 10, in <module>",
    "2026-11-28 06:14:51,561 - mindformers/job/output/log[mindformers/core/callback/callback.py:1929] - INFO - "
    "global_batch_size: 8",
    "2026-11-28 06:14:51,560 - mindformers/job/output/log[mindformers/core/callback/callback.py:1870] - INFO - "
    "......Saving ckpt......",
    "[WARNING] ME(23277:140344027511680,MainProcess):2026-11-28-06:14:40.355.000 [mindspore/train/model.py:1403] "
    "For CheckpointMonitor callback, {'end', 'step_end'} methods may not be supported in later version",
    " 'train_precision_sync': None,",
    "                            'seq_length': 64,",
    "Import PyNativeDeepseekV3ForCausalLM failed: No module named 'hyper_parallel'",
    "{ Epoch:[  1/  1], step:[   32/   32], this is not a step line }",
    "Errors happen",
    "2026-11-28 06:14:51,560 - mindformers/job/output/log[x.py:1] - INFO - retrying after - ERROR - in a message",
    "2026-11-28 06:14:51,560 - mindformers/job/output/log[x.py:1] - INFO - HCCL timeout set to 7200",
    "  'Training Over' is not a config key",
    "12.5 samples/s/p without a bar",
]


@pytest.mark.parametrize("line", IGNORED)
def test_unknown_lines_are_ignored(line):
    assert parse_line(line) is None


@pytest.mark.parametrize("text,seconds", [
    ("0:00:00", 0), ("0:04:58", 298), (" 1:02:03 ", 3723), ("-1 day, 23:59:57", -3), ("2 days, 0:00:01", 172801),
    ("1 day, 0:00:00.500000", 86400), ("soon", None), ("", None),
])
def test_timedelta(text, seconds):
    assert parse_timedelta(text) == seconds


@pytest.mark.parametrize("line,pid", [
    ("[WARNING] ME(23277:140344027511680,MainProcess):2026-11-28-06:14:40.355.000 [x.py:1] y", 23277),
    ("[WARNING] DISTRIBUTED(23277,7fa463e7fb80,python):2026-11-28-06:14:37.147.651 [x.cc:485] Connect] y", 23277),
    ("2026-11-28 06:14:36,067 - mindformers/job/output/log[x.py:31] - WARNING - y", None),
    ("", None),
])
def test_pid(line, pid):
    assert parse_pid(line) == pid


def test_sample_logs_parse():
    """Every line of the real run parses; each worker has 32 step and 32 progress lines."""
    for name in ("worker_0.log", "worker_1.log"):
        lines = (SAMPLES / name).read_text(encoding="utf-8").split("\n")
        events = parse_lines(lines)
        steps = [e for e in events if isinstance(e, StepEvent)]
        progress = [e for e in events if isinstance(e, ProgressEvent)]
        assert [e.step for e in steps] == list(range(1, 33))
        assert len(progress) == 32 and progress[-1].percent == 100.0
        assert sum(isinstance(e, CheckpointSavedEvent) for e in events) == 4
        assert sum(isinstance(e, TrainingOverEvent) for e in events) == 1
        assert sum(isinstance(e, GlobalBatchSizeEvent) for e in events) == 1
        assert not [e for e in events if isinstance(e, (ErrorLineEvent, TimeoutEvent, TracebackEvent, ExceptionEvent))]
    assert parse_lines((SAMPLES / "scheduler.log").read_text(encoding="utf-8").split("\n")) == []


def test_parse_lines_keeps_order():
    lines = [c[1] for c in STEP_CASES[:2]] + ["noise"] + [PROGRESS_CASES[0][1], OTHER_CASES[0][1]]
    assert [type(e) for e in parse_lines(lines)] == [StepEvent, StepEvent, ProgressEvent, TrainingOverEvent]


# -- nothing can make it raise

def _variants() -> list[str]:
    lines = [c[1] for c in STEP_CASES + PROGRESS_CASES + OTHER_CASES + TIMEOUT_CASES]
    lines += [c[1] for c in NONFINITE_CASES]
    return lines


@pytest.mark.parametrize("line", _variants())
def test_truncated_lines_never_raise(line):
    for cut in range(len(line) + 1):
        parse_line(line[:cut])
        parse_line(line[cut:])


def test_random_garbage_never_raises():
    rng = random.Random(1234)
    pieces = ["Epoch:[", "step:[", "loss:[", "/", "], ", "per_step_time: ", "ms", "lr: ", "overflow cond: ",
              "loss_scale: ", "global_norm: [", "]", "train_throughput_per_npu: ", "T", "nan", "inf", "-",
              "% |", "|", " samples/s/p  ", " day, ", ":", " }", "Traceback (most recent call last)",
              "Worker process ", " exit with exception. Error code: ", "with exception", "ERROR", "timed out",
              "Finish saving ckpt of epoch ", "global_batch_size = ", "Training Over", "9" * 5000, "\x00",
              "\ufffd", "\u2588", "\n", "\r", " ", "Error: ", "e+999"]
    for _ in range(3000):
        line = "".join(rng.choice(pieces) if rng.random() < 0.7 else str(rng.randint(-10**6, 10**6))
                       for _ in range(rng.randint(0, 25)))
        parse_line(line)
    for _ in range(2000):
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
        parse_line(raw.decode("latin-1"))
        parse_line(raw.decode("utf-8", errors="replace"))


@pytest.mark.parametrize("value", [None, b"step:[", 42, 3.5, object(), ["Epoch:["]])
def test_non_strings_raise_in_the_parser(value):
    """The parser does not swallow errors: the state's entry points keep going past such a line
    (test_metrics_state.py feeds these), and a parser bug shows in the tests."""
    with pytest.raises((TypeError, AttributeError)):
        parse_line(value)
    with pytest.raises(TypeError):
        parse_pid(value)


def test_tensor_reprs_degrade_to_the_fields_before_them():
    """MindFormers prints numpy values; a Tensor repr (commas inside) ends the match early."""
    ev = parse_line(STDOUT + HEAD + "loss:[6.6/6.7], per_step_time: 83ms, lr: 0.001, overflow cond: Tensor(shape=[], "
                    "dtype=Bool, value= False), loss_scale: Tensor(shape=[], dtype=Float32, value= 1024), "
                    "global_norm: [0.5], train_throughput_per_npu: 1.000T")
    assert isinstance(ev, StepEvent)
    assert (ev.step, ev.loss, ev.step_time_ms, ev.lr) == (32, 6.6, 83, 0.001)
    assert (ev.overflow, ev.loss_scale, ev.global_norm, ev.tflops) == (None, None, None, None)
