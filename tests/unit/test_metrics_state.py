"""Per-rank state and the cluster view, with a fake clock."""

from __future__ import annotations

import json
import math
import random

import pytest

from mfctl.metrics.state import ClusterState, MetricsState

PREFIX = "2026-11-28 06:14:50,171 - mindformers/job/output/log[mindformers/core/callback/callback.py:747] - INFO - "
MS_WARN = "[WARNING] ME({pid}:140344027511680,MainProcess):2026-11-28-06:14:40.355.000 [mindspore/train/model.py:1] x"
MSRUN = ("[ERROR] ME(99:1,MainProcess):2026-11-28-06:20:01.000.000 "
         "[mindspore/parallel/cluster/process_entity/_api.py:364] ")


def step_line(step, total=100, loss=6.5, ms=100, gn=0.5, overflow=False, epoch=1, epochs=1, mean=None, sink=False):
    mean = loss if mean is None else mean
    loss_info = "loss: %5.6f, " % loss if sink else "loss:[%5.6f/%5.6f], " % (loss, mean)
    return (PREFIX + "{ Epoch:[%3d/%3d], step:[%5d/%5d], " % (epoch, epochs, step, total) + loss_info
            + "per_step_time: %dms, lr: 0.0001, overflow cond: %s, loss_scale: 1024.0, global_norm: [%s], "
              "train_throughput_per_npu: 0.100T" % (ms, overflow, gn))


def progress_line(sps=40.0, percent=50.0, eta="0:01:00"):
    bar = ("|%%-%ds|" % 50) % (int(50 * percent / 100) * "\u2588")
    return PREFIX + "  %4.1f%% %s %.5f samples/s/p  %s }" % (percent, bar, sps, eta)


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def run(state, rank, steps, start=1, total=100, ms=100, node=None, **kw):
    for s in range(start, start + steps):
        state.feed(rank, step_line(s, total=total, ms=ms, **kw), node)
        state.feed(rank, progress_line(), node)


def kinds(state):
    return [a.kind for a in state.alerts]


RANK_KEYS = {"rank", "node", "step", "total_steps", "epoch", "loss", "loss_mean", "step_time_ms", "samples_per_s",
             "tokens_per_s", "tflops", "lr", "global_norm", "overflow", "loss_scale", "percent", "eta_s", "state",
             "reason", "last_update_age_s", "mfu"}
CLUSTER_KEYS = {"world_size", "step", "total_steps", "samples_per_s", "tokens_per_s", "eta_s", "loss", "state",
                "stragglers", "finished_ranks", "failed_ranks", "chip", "peak_tflops", "mfu"}
ALERT_KEYS = {"kind", "rank", "ranks", "count", "message", "step", "time", "last_time"}


def test_snapshot_shape_and_json():
    clock = Clock()
    s = MetricsState(world_size=2, seq_length=64, clock=clock)
    run(s, 0, 3)
    s.feed(0, step_line(4, loss=float("nan")))
    snap = s.snapshot(clock.t + 2)
    assert set(snap) == {"ranks", "cluster", "alerts"}
    assert [set(r) for r in snap["ranks"]] == [RANK_KEYS]
    assert set(snap["cluster"]) == CLUSTER_KEYS
    assert snap["alerts"] and all(set(a) == ALERT_KEYS for a in snap["alerts"])
    assert snap["ranks"][0]["last_update_age_s"] == 2
    json.dumps(snap)  # nan stays a float: json writes NaN


def test_lifecycle_starting_running_finished():
    clock = Clock()
    s = ClusterState(clock=clock)
    s.feed(0, "some startup line")
    assert s.ranks[0].state == "starting"
    run(s, 0, 99)
    r = s.ranks[0]
    got = (r.state, r.step, r.total_steps, r.loss, r.step_time_ms, r.samples_per_s)
    assert got == ("running", 99, 100, 6.5, 100, 40.0)
    s.feed(0, step_line(100))
    assert r.state == "finished"
    assert s.snapshot(clock.t)["cluster"]["state"] == "finished"


def test_last_step_of_an_earlier_epoch_is_not_the_end():
    s = ClusterState(clock=Clock())
    s.feed(0, step_line(10, total=10, epoch=1, epochs=2))
    assert s.ranks[0].state == "running"
    s.feed(0, step_line(10, total=10, epoch=2, epochs=2))
    assert s.ranks[0].state == "finished"


def test_training_over_finishes():
    s = ClusterState(clock=Clock())
    run(s, 0, 5)
    s.feed(0, PREFIX.replace("callback/callback.py:747", "trainer/base_trainer.py:1689")
           + ".........Training Over!.............")
    assert s.ranks[0].state == "finished"


def test_stalled_by_the_clock_and_back():
    clock = Clock(0.0)
    s = ClusterState(clock=clock)
    run(s, 0, 10, ms=100)
    assert s.stall_threshold_s() == 60.0  # max(60 s, 10 x 0.1 s)
    assert s.snapshot(59.0)["ranks"][0]["state"] == "running"
    snap = s.snapshot(61.0)
    assert snap["ranks"][0]["state"] == "stalled" and snap["cluster"]["state"] == "stalled"
    assert kinds(s) == ["stalled"]
    s.snapshot(200.0)
    assert kinds(s) == ["stalled"]  # once, not on every snapshot
    clock.t = 201.0
    s.feed(0, step_line(11))
    assert s.snapshot(202.0)["ranks"][0]["state"] == "running"


def test_stall_threshold_follows_step_time():
    s = ClusterState(clock=Clock(0.0))
    run(s, 0, 5, ms=30_000)
    assert s.stall_threshold_s() == 300.0
    assert ClusterState(stall_after_s=5.0).stall_threshold_s() == 5.0


def test_starting_rank_never_stalls():
    s = ClusterState(clock=Clock(0.0))
    s.feed(0, "compiling")
    assert s.snapshot(10_000.0)["ranks"][0]["state"] == "starting"


def traceback_lines(exc="RuntimeError: For BatchMatMul, inputs shape cannot be broadcast on CPU/GPU"):
    return ["Traceback (most recent call last):", '  File "run_mindformer.py", line 10, in <module>',
            "    main()", exc]


def test_traceback_fails_the_rank_with_the_exception_as_reason():
    clock = Clock()
    s = ClusterState(clock=clock)
    run(s, 0, 3)
    for line in traceback_lines():
        s.feed(0, line)
    r = s.ranks[0]
    assert r.state == "failed"
    assert r.reason == "RuntimeError: For BatchMatMul, inputs shape cannot be broadcast on CPU/GPU"
    assert kinds(s) == ["traceback"]  # the alert was updated with the exception, not doubled
    assert "BatchMatMul" in s.alerts[-1].message and s.alerts[-1].step == 3
    snap = s.snapshot(clock.t)
    assert snap["cluster"]["failed_ranks"] == [0] and snap["cluster"]["state"] == "failed"


def test_caught_traceback_then_more_steps_is_running_again():
    s = ClusterState(clock=Clock())
    run(s, 0, 3)
    for line in traceback_lines("ValueError: handled"):
        s.feed(0, line)
    assert s.ranks[0].state == "failed"
    run(s, 0, 1, start=4)
    assert (s.ranks[0].state, s.ranks[0].reason) == ("running", None)


def test_exception_line_outside_a_traceback_is_ignored():
    s = ClusterState(clock=Clock())
    run(s, 0, 2)
    s.feed(0, "ValueError: printed by someone")
    assert s.ranks[0].state == "running" and not s.alerts


def test_worker_exit_from_msrun_fails_the_rank_of_that_pid():
    s = ClusterState(clock=Clock())
    s.feed(0, MS_WARN.format(pid=4242), "node-a")
    s.feed(1, MS_WARN.format(pid=4343), "node-a")
    run(s, 0, 3, node="node-a")
    run(s, 1, 3, node="node-a")
    s.feed(None, MSRUN + "Worker process 4343 exit with exception. Error code: -9.", "node-a")
    assert s.ranks[1].state == "failed"
    assert "-9" in s.ranks[1].reason and "SIGKILL" in s.ranks[1].reason
    assert s.ranks[0].state == "running"
    assert [(a.kind, a.rank) for a in s.alerts] == [("worker_exit", 1)]
    s.feed(None, MSRUN.replace("[ERROR]", "[WARNING]") + "There's worker exits with exception, kill all other workers.",
           "node-a")
    assert s.ranks[0].state == "failed" and "killed by msrun" in s.ranks[0].reason
    assert "SIGKILL" in s.ranks[1].reason  # the dead worker keeps its own reason
    assert kinds(s) == ["worker_exit", "msrun_failure"]


def test_worker_exit_of_an_unknown_pid_is_an_alert_only():
    s = ClusterState(clock=Clock())
    run(s, 0, 2)
    s.feed(None, MSRUN + "Worker process 777 exit with exception. Error code: 1.", "node-b")
    assert s.ranks[0].state == "running"
    assert [(a.kind, a.rank) for a in s.alerts] == [("worker_exit", None)]
    assert "777" in s.alerts[0].message and "node-b" in s.alerts[0].message


def test_kill_all_only_touches_that_node():
    s = ClusterState(clock=Clock())
    for rank, node in ((0, "a"), (1, "a"), (2, "b")):
        run(s, rank, 2, node=node)
    s.feed(0, step_line(100))  # rank 0 finished already
    s.feed(None, MSRUN + "There's worker exits with exception, kill all other workers.", "a")
    assert [s.ranks[i].state for i in range(3)] == ["finished", "failed", "running"]


def test_msrun_runtime_error_and_scheduler_exit():
    s = ClusterState(clock=Clock())
    for line in traceback_lines("RuntimeError: Distributed job exited with exception. Please check logs"):
        s.feed(None, line, "a")
    s.feed(None, MSRUN + "Scheduler process 12 exit with exception.", "a")
    assert kinds(s) == ["msrun_failure", "msrun_failure"]
    assert "Distributed job exited" in s.alerts[0].message


def test_scheduler_timeout_names_the_rank():
    s = ClusterState(world_size=2, clock=Clock())
    run(s, 1, 2)
    s.feed(None, "[ERROR] DISTRIBUTED(1,2,python):x [meta_server_node.cc:470] UpdateTopoState] The node: 1 is "
           "timed out. It may exit with exception, please check this node's log.", "a")
    assert [(a.kind, a.rank, a.step) for a in s.alerts] == [("timeout", 1, 2)]


def test_nan_loss_alerts_once_until_finite_again():
    s = ClusterState(clock=Clock())
    run(s, 0, 3)
    for step in (4, 5, 6):
        s.feed(0, step_line(step, loss=float("nan")))
    s.feed(0, step_line(7))
    s.feed(0, step_line(8, loss=float("inf")))
    assert kinds(s) == ["nan_loss", "nan_loss"]
    assert [a.step for a in s.alerts] == [4, 8]
    assert math.isinf(s.snapshot(1000.0)["ranks"][0]["loss"])


def test_loss_spike_against_the_running_mean():
    s = ClusterState(clock=Clock())
    run(s, 0, 20, loss=2.0)
    s.feed(0, step_line(21, loss=2.4))  # 1.2x: not a spike
    assert not s.alerts
    s.feed(0, step_line(22, loss=3.0))
    s.feed(0, step_line(23, loss=3.1))  # still spiking: no second alert
    assert kinds(s) == ["loss_spike"] and s.alerts[0].step == 22
    assert "1.4" in s.alerts[0].message


def test_no_spike_alert_during_warmup():
    s = ClusterState(clock=Clock())
    s.feed(0, step_line(1, loss=1.0))
    s.feed(0, step_line(2, loss=10.0))
    assert not s.alerts


def test_overflow_streak():
    s = ClusterState(clock=Clock(), overflow_streak=3)
    run(s, 0, 2)
    for step in range(3, 9):
        s.feed(0, step_line(step, overflow=True))
    assert kinds(s) == ["overflow_streak"] and s.alerts[0].step == 5
    s.feed(0, step_line(9))
    for step in range(10, 13):
        s.feed(0, step_line(step, overflow=True))
    assert kinds(s) == ["overflow_streak"] * 2


def test_global_norm_spike_and_nonfinite():
    s = ClusterState(clock=Clock())
    run(s, 0, 20, gn=0.5)
    s.feed(0, step_line(21, gn=5.0))
    s.feed(0, step_line(22, gn="nan"))
    assert kinds(s) == ["global_norm_spike", "nonfinite_global_norm"]


def test_error_lines_are_alerts_without_repeats():
    s = ClusterState(clock=Clock())
    err = "2026-11-28 06:20:01,000 - mindformers/job/output/log[x.py:1] - ERROR - the disk is full"
    for _ in range(3):
        s.feed(0, err)
    s.feed(0, err.replace("disk", "tape"))
    assert kinds(s) == ["error", "error"] and s.ranks[0].state == "starting"


def test_alerts_are_bounded():
    s = ClusterState(clock=Clock(), max_alerts=5)
    for i in range(20):
        s.feed(0, f"[ERROR] 2026-11-28 06:20:01,000 [x.py:1] f: error number {i}")
    assert len(s.alerts) == 5 and s.alerts[-1].message.endswith("error number 19")


def test_stragglers_need_four_ranks():
    clock = Clock()
    s = ClusterState(clock=clock)
    for rank in range(3):
        run(s, rank, 8, ms=300 if rank == 2 else 100)
    assert s.snapshot(clock.t)["cluster"]["stragglers"] == []
    run(s, 3, 8, ms=100)
    snap = s.snapshot(clock.t)
    assert snap["cluster"]["stragglers"] == [2]
    s.snapshot(clock.t)
    assert kinds(s) == ["straggler"] and s.alerts[0].rank == 2


def test_first_step_compile_time_does_not_make_a_straggler():
    clock = Clock()
    s = ClusterState(clock=clock)
    for rank in range(4):
        s.feed(rank, step_line(1, ms=9640 if rank == 0 else 9000))
        run(s, rank, 5, start=2, ms=100)
    assert s.snapshot(clock.t)["cluster"]["stragglers"] == []


def test_pipeline_loss_is_the_last_stage_mean():
    clock = Clock()
    s = ClusterState(world_size=4, pipeline_stage=2, clock=clock)
    for rank, loss in enumerate((0.0, 0.0, 2.0, 3.0)):
        s.feed(rank, step_line(1, loss=loss))
    assert s.snapshot(clock.t)["cluster"]["loss"] == 2.5
    flat = ClusterState(world_size=4, clock=clock)
    for rank, loss in enumerate((0.0, 0.0, 2.0, 3.0)):
        flat.feed(rank, step_line(1, loss=loss))
    assert flat.snapshot(clock.t)["cluster"]["loss"] == 1.25


def test_throughput_tokens_and_cluster_sums():
    clock = Clock()
    s = ClusterState(world_size=3, seq_length=4096, clock=clock)
    for rank, sps in enumerate((10.0, 12.5)):
        s.feed(rank, step_line(7, total=10))
        s.feed(rank, progress_line(sps=sps, percent=70.0, eta="0:00:30"))
    snap = s.snapshot(clock.t)
    assert [r["tokens_per_s"] for r in snap["ranks"]] == [40960.0, 51200.0]
    c = snap["cluster"]
    assert (c["world_size"], c["samples_per_s"], c["tokens_per_s"], c["eta_s"], c["step"], c["total_steps"]) == \
        (3, 22.5, 92160.0, 30, 7, 10)
    assert c["state"] == "running"  # rank 2 has not started yet
    assert ClusterState(clock=clock).rank(0).tokens_per_s is None
    s.seq_length = None
    assert s.snapshot(clock.t)["cluster"]["tokens_per_s"] is None


def test_cluster_step_is_the_slowest_rank():
    clock = Clock()
    s = ClusterState(clock=clock)
    s.feed(0, step_line(5, total=10, epoch=2, epochs=2))
    s.feed(1, step_line(9, total=10, epoch=1, epochs=2))
    assert s.snapshot(clock.t)["cluster"]["step"] == 9


def test_history_is_bounded_and_has_throughput():
    s = ClusterState(clock=Clock(), history_len=4)
    for step in range(1, 11):
        s.feed(0, step_line(step, loss=10 - step * 0.1))
        s.feed(0, progress_line(sps=float(step)))
    assert s.history(0) == [(7, 9.3, 7.0), (8, 9.2, 8.0), (9, 9.1, 9.0), (10, 9.0, 10.0)]
    assert s.history(5) == []


def test_node_label_and_pid_are_learned():
    s = ClusterState(clock=Clock())
    s.feed(3, MS_WARN.format(pid=31337), "host-7")
    assert (s.ranks[3].node, s.ranks[3].pid) == ("host-7", 31337)


# -- feed (one line) and feed_many (the fast path) must agree


def scenario(rng: random.Random, steps: int = 120) -> list[str]:
    """A rank's log with everything the state reacts to, in random places."""
    out = ["[WARNING] ME(%d:1,MainProcess):x [y.py:1] hello" % rng.randint(100, 9999), " 'seq_length': 64,"]
    loss = 8.0
    for step in range(1, steps + 1):
        loss = max(0.5, loss * 0.99 + rng.gauss(0, 0.02))
        value = loss
        roll = rng.random()
        if roll < 0.03:
            value = float(rng.choice(["nan", "inf", "-inf"]))
        elif roll < 0.06:
            value = loss * 3
        gn = 0.5 if rng.random() > 0.05 else rng.choice([9.0, float("nan")])
        out.append(step_line(step, total=steps, loss=value, gn=gn, overflow=rng.random() < 0.15,
                             ms=rng.randint(80, 200), sink=rng.random() < 0.2))
        if rng.random() < 0.97:
            out.append(progress_line(sps=rng.uniform(20, 50), percent=100 * step / steps))
        roll = rng.random()
        if roll < 0.02:
            out += traceback_lines("ValueError: caught %d" % step)
        elif roll < 0.04:
            out.append("[ERROR] 2026-11-28 06:20:01,000 [x.py:1] f: hiccup %d" % (step % 3))
        elif roll < 0.06:
            out.append(PREFIX + "Finish saving ckpt of epoch 1 step %d using 0.018 seconds" % step)
        elif roll < 0.07:
            out.append(b"\xff\xfe garbage".decode("latin-1"))
    if rng.random() < 0.5:
        out.append(PREFIX + ".........Training Over!.............")
    return out


@pytest.mark.parametrize("seed", range(12))
def test_feed_many_equals_feed(seed):
    rng = random.Random(seed)
    logs = {rank: scenario(rng) for rank in range(4)}
    one = ClusterState(world_size=4, seq_length=128, clock=Clock(), overflow_streak=2)
    for rank, lines in logs.items():
        for line in lines:
            one.feed(rank, line, "n%d" % (rank // 2))
    many = ClusterState(world_size=4, seq_length=128, clock=Clock(), overflow_streak=2)
    for rank, lines in logs.items():
        i = 0
        while i < len(lines):
            n = rng.choice([1, 2, 3, 7, 50, 1000])
            many.feed_many(rank, lines[i:i + n], "n%d" % (rank // 2))
            i += n
    assert many.unreadable_lines == one.unreadable_lines == 0  # a crashed reader would show here
    assert repr(many.snapshot(2000.0)) == repr(one.snapshot(2000.0))  # repr: nan-safe equality
    for rank in logs:
        assert repr(many.history(rank)) == repr(one.history(rank))
        a, b = one.ranks[rank], many.ranks[rank]
        assert repr(a) == repr(b)
        assert (a.pid, a.ckpt_step, a.separate_losses, a.loss_ema, a.gn_ema) == \
            (b.pid, b.ckpt_step, b.separate_losses, b.loss_ema, b.gn_ema)


def test_feed_many_with_non_strings_and_launcher_lines():
    s = ClusterState(clock=Clock())
    s.feed_many(0, [step_line(1), None, b"bytes", 12, progress_line()])  # never raises
    assert s.ranks[0].step == 1 and s.ranks[0].samples_per_s == 40.0
    assert s.unreadable_lines == 3  # skipped, and counted
    s.feed_many(None, [MSRUN + "Worker process 1 exit with exception. Error code: 1."], "a")
    assert kinds(s) == ["worker_exit"]
    s.feed_text(1, step_line(1) + "\n" + progress_line() + "\n")
    assert s.ranks[1].samples_per_s == 40.0


# -- alerts are events: one per kind and step, naming its ranks


@pytest.mark.parametrize("ranks, text", [
    ([], "no rank"),
    ([3], "rank 3"),
    ([4, 3], "ranks 3, 4"),
    (range(1024), "ranks 0-1023"),
    ([3, 17, *range(200, 208)], "ranks 3, 17, 200-207"),
    ([5, 5, 1, 2, 3], "ranks 1-3, 5"),
    (range(0, 40, 2), "ranks 0, 2, 4, 6, 8, 10, 12, ..., 38"),
    ([0, 1, 2, 10, 11, 12, 20, 21, 22, 30, 40, 50, 60, 70, 80], "ranks 0-2, 10-12, 20-22, 30, 40, 50, 60, ..., 80"),
])
def test_format_ranks(ranks, text):
    from mfctl.metrics.ranks import format_ranks

    assert format_ranks(ranks) == text


@pytest.mark.parametrize("ranks, text", [([7], "rank 7"), (range(1024), "ranks 0-1023 (1024)"),
                                         ([1, 9], "ranks 1, 9 (2)")])
def test_rank_label_counts(ranks, text):
    from mfctl.metrics.ranks import rank_label

    assert rank_label(ranks) == text


def spiking_cluster(world, spike_step=15, **kw):
    """Every rank the same steps (data parallel: same global norm), a spike at ``spike_step``."""
    s = ClusterState(world_size=world, clock=Clock(), **kw)
    for rank in range(world):
        lines = []
        for step in range(1, 21):
            lines += [step_line(step, gn=9.0 if step == spike_step else 0.5), progress_line()]
        s.feed_many(rank, lines)
    return s


def test_the_same_spike_on_every_rank_is_one_alert():
    s = spiking_cluster(1024)
    assert kinds(s) == ["global_norm_spike"]
    a = s.alerts[0]
    assert a.ranks == list(range(1024)) and a.count == 1024 and a.step == 15 and a.rank is None
    assert a.message.startswith("ranks 0-1023 (1024): global_norm 9 at step 15 is ")
    d = s.snapshot(2000.0)["alerts"][0]
    assert d["ranks"] == list(range(1024)) and d["count"] == 1024 and d["rank"] is None


def test_the_bound_counts_alerts_not_ranks():
    s = spiking_cluster(300, max_alerts=2)
    for rank in range(300):
        s.feed(rank, "[ERROR] 2026-11-28 06:20:01,000 [x.py:1] f: the disk is full")
    assert kinds(s) == ["global_norm_spike", "error"]
    assert [a.count for a in s.alerts] == [300, 300]
    assert s.alerts[1].message == "ranks 0-299 (300): [ERROR] 2026-11-28 06:20:01,000 [x.py:1] f: the disk is full"


def test_spikes_steps_apart_are_separate_alerts_and_one_rank_stays_singular():
    s = ClusterState(clock=Clock())
    for rank, spike in ((0, 15), (1, 16), (2, 30), (3, 30)):
        lines = []
        for step in range(1, 41):
            lines += [step_line(step, gn=9.0 if step == spike else 0.5), progress_line()]
        s.feed_many(rank, lines)
    assert [(a.step, a.ranks) for a in s.alerts] == [(15, [0, 1]), (30, [2, 3])]
    assert ClusterState(clock=Clock()).alerts.raise_("x", 5, "d", 1, 0.0).message == "rank 5: d"


def test_tracebacks_group_by_their_exception():
    s = ClusterState(clock=Clock())
    for rank in range(6):
        run(s, rank, 3)
        exc = "RuntimeError: HCCL timeout" if rank < 4 else f"ValueError: bad batch {rank}"
        for line in traceback_lines(exc):
            s.feed(rank, line)
    got = sorted((a.message, a.count) for a in s.alerts)
    assert got == [("rank 4: ValueError: bad batch 4", 1), ("rank 5: ValueError: bad batch 5", 1),
                   ("ranks 0-3 (4): RuntimeError: HCCL timeout", 4)]
    assert all(s.ranks[r].state == "failed" for r in range(6))


def test_stragglers_found_together_are_one_alert_naming_the_slowest():
    clock = Clock()
    s = ClusterState(clock=clock)
    for rank in range(8):
        run(s, rank, 8, ms={3: 300, 5: 200}.get(rank, 100))
    s.snapshot(clock.t)
    assert kinds(s) == ["straggler"]
    a = s.alerts[0]
    assert a.ranks == [3, 5]
    assert a.message == ("ranks 3, 5 (2): median step time up to 300 ms, 3.00x the cluster's 100 ms "
                         "(slowest: rank 3 3.00x, rank 5 2.00x)")


def test_a_rank_the_scheduler_timed_out_is_not_running():
    s = ClusterState(world_size=2, clock=Clock())
    run(s, 0, 3)
    run(s, 1, 3)
    s.feed(None, "[ERROR] DISTRIBUTED(1,1,python):2026-11-28-06:20:01.000.000 [cluster.cc:1] f] "
                 "The node: 1 is timed out. It may exit with exception, please check this node's log.", "n0")
    assert (s.ranks[0].state, s.ranks[1].state) == ("running", "failed")
    assert "timed out" in s.ranks[1].reason
    assert [(a.kind, a.rank) for a in s.alerts] == [("timeout", 1)]
    run(s, 1, 1, start=4)  # it logs steps again: the scheduler was wrong
    assert s.ranks[1].state == "running"


# -- "a line never stops ingestion" is held where lines enter the state, not inside the parser


CRASH = "this line crashes the parser"


@pytest.fixture
def buggy_parser(monkeypatch):
    """A parser with a bug on one line (it raises), as every reader calls it."""
    from mfctl.metrics import lines, pairs, parser, state

    def buggy(real):
        def parse(line):
            if isinstance(line, str) and CRASH in line:
                raise ValueError("parser bug")
            return real(line)
        return parse

    for module in (lines, pairs, state):
        monkeypatch.setattr(module, "parse_line", buggy(parser.parse_line))
    monkeypatch.setattr(lines, "parse_other", buggy(parser.parse_other))


@pytest.mark.parametrize("way", ["feed", "feed_many", "feed_text", "feed_chunk str", "feed_chunk bytes"])
def test_a_line_that_crashes_the_parser_is_skipped_and_counted(buggy_parser, way):
    lines = [step_line(1), progress_line(), "[ERROR] " + CRASH, step_line(2), progress_line(), None]
    if way.startswith("feed_chunk") or way == "feed_text":
        lines = lines[:-1]  # text: no None in it
    s = ClusterState(clock=Clock())
    if way == "feed":
        for line in lines:
            s.feed(0, line)
        s.feed(None, CRASH)  # the launcher's log too
    elif way == "feed_many":
        s.feed_many(0, lines)
        s.feed_many(None, [CRASH])
    elif way == "feed_text":
        s.feed_text(0, "\n".join(lines))
    else:
        text = "\n".join(lines) + "\n"
        s.feed_chunk(0, text.encode() if way.endswith("bytes") else text)
    r = s.ranks[0]
    assert (r.step, r.samples_per_s, r.state) == (2, 40.0, "running")
    assert s.unreadable_lines == {"feed": 3, "feed_many": 3}.get(way, 1)
