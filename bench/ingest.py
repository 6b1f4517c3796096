"""Ingest benchmark: log lines through parse + state, with ``grep -c 'step:\\['`` beside it.

Generates ``--lines`` real-format lines (default 1,000,000) over ``--ranks`` worker logs (default
64) in a temporary directory. The lines are the real MindFormers 1.9.0 log of
``tests/data/samples/mindformers-1.9.0-cpu-msrun-dp2/worker_0.log`` used as templates: its header
(the config dump) once per file, then per step the step line and the progress line printed with
MindFormers' own format strings (step, loss, running mean, step time, lr, global norm, samples/s,
time left varying), the six checkpoint lines every 10 steps and a MindSpore warning now and then,
as in the sample. The goal is >= 1M lines/s through parse + state on one core.

Figures, each the best of ``--repeat`` runs, pinned to one CPU:

- ``grep``: ``grep -c 'step:\\['`` over the same files (the baseline: reads and scans, nothing else);
- ``parse+state (feed_chunk)``: ``ClusterState.feed_chunk`` over each file's bytes already in memory
  (the chunk path: one pattern over the whole block);
- ``read+parse+state``: ``load_log_dir`` on the directory (file reading included, like grep; it
  feeds 4 MiB chunks through ``feed_chunk``);
- ``parse+state (feed_many)``: the per-line reference path over lines in memory (``--batch``);
- ``feed (per line)``: ``ClusterState.feed`` one line at a time, for comparison.

The goal is counted on ``read+parse+state``, the figure that compares with grep.

    python bench/ingest.py [--lines 1000000] [--ranks 64] [--batch 4096] [--repeat 5]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make `mfctl` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mfctl.metrics.logdir import load_log_dir
from mfctl.metrics.state import ClusterState

SAMPLE = (Path(__file__).resolve().parent.parent / "tests" / "data" / "samples"
          / "mindformers-1.9.0-cpu-msrun-dp2" / "worker_0.log")

# MindFormers' MFLossMonitor formats (mindformers/core/callback/callback.py).
STEP_FMT = ("{ Epoch:[%3d/%3d], step:[%5d/%5d], loss:[%5.6f/%5.6f], per_step_time: %dms, lr: %s, "
            "overflow cond: %s, loss_scale: %s, global_norm: [%s], train_throughput_per_npu: %.3fT")
PROGRESS_FMT = "  %4.1f%% %s %.5f samples/s/p  %s }"
CKPT_EVERY = 10
WARNING_EVERY = 32


class Templates:
    """The pieces of the real log the generator reuses."""

    def __init__(self, sample: Path) -> None:
        lines = sample.read_text(encoding="utf-8").split("\n")
        first_step = next(i for i, l in enumerate(lines) if "step:[" in l)
        over = next(i for i, l in enumerate(lines) if "Training Over" in l)
        self.header = lines[:first_step]
        self.tail = [l for l in lines[over:] if l]
        step_line = lines[first_step]
        prog_line = next(l for l in lines if "samples/s/p" in l)
        # "2026-11-28 06:14:50,026 - mindformers/.../log[mindformers/core/callback/callback.py:747] - INFO - "
        self.step_prefix = step_line[23:step_line.index("{ Epoch:")]
        self.prog_prefix = prog_line[23:prog_line.index(" - INFO - ") + len(" - INFO - ")]
        save = next(i for i, l in enumerate(lines) if "Saving ckpt" in l)
        self.ckpt_block = [l[23:] for l in lines[save:save + 6]]
        self.warning = next(l for l in lines[first_step:] if l.startswith("[WARNING] RUNTIME_FRAMEWORK"))


def stamp(t: float) -> str:
    d = datetime.datetime(2026, 11, 28, 6, 14, 50) + datetime.timedelta(seconds=t)
    return d.strftime("%Y-%m-%d %H:%M:%S") + ",%03d" % (int(t * 1000) % 1000)


def generate_rank(tpl: Templates, rank: int, n_lines: int, rng: random.Random) -> list[str]:
    out = list(tpl.header)
    per_step = 2 + 6 / CKPT_EVERY + 1 / WARNING_EVERY
    total = max(1, int((n_lines - len(out) - len(tpl.tail)) / per_step))
    losses: list[float] = []
    t = 0.0
    for step in range(1, total + 1):
        ms = int(rng.gauss(120, 15)) if step > 1 else 9640
        t += ms / 1000
        loss = 10.4 * math.exp(-step / (total * 0.7)) + 2.0 + rng.gauss(0, 0.02)
        losses.append(loss)
        mean = sum(losses[-200:]) / len(losses[-200:])
        lr = "%.8g" % (1e-3 * min(1.0, step / 100) * (0.5 + 0.5 * math.cos(math.pi * step / total)))
        gn = "%.8g" % abs(rng.gauss(0.55, 0.05))
        out.append(stamp(t) + tpl.step_prefix + STEP_FMT % (
            1, 1, step, total, loss, mean, ms, lr, False, 1024.0, gn, 277610496 / (ms / 1000) / 1e12))
        percent = 100.0 * step / total
        bar = ("|%%-%ds|" % 50) % (int(50 * percent / 100) * "\u2588")
        left = datetime.timedelta(seconds=int((total - step) * ms / 1000))
        out.append(stamp(t) + tpl.prog_prefix + PROGRESS_FMT % (percent, bar, 8 / 2 / (ms / 1000), left))
        if step % CKPT_EVERY == 0:
            out.extend(stamp(t) + l.replace("10", str(step)) for l in tpl.ckpt_block)
        if step % WARNING_EVERY == 0:
            out.append(tpl.warning)
    out.extend(tpl.tail)
    return out


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def best_of(repeat: int, fn) -> tuple[float, float]:
    """(wall, cpu) seconds of the fastest of ``repeat`` runs; cpu counts this process and its children."""
    best = (math.inf, math.inf)
    for _ in range(repeat):
        gc.collect()
        t0, p0, c0 = time.perf_counter(), time.process_time(), _children_cpu()
        fn()
        t1, p1, c1 = time.perf_counter(), time.process_time(), _children_cpu()
        best = min(best, (t1 - t0, max(1e-9, (p1 - p0) + (c1 - c0))))
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000, help="lines in all (default 1,000,000)")
    ap.add_argument("--ranks", type=int, default=64, help="worker logs (default 64)")
    ap.add_argument("--batch", type=int, default=4096, help="lines per feed_many call (default 4096)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per figure, best kept (default 5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the generated directory")
    args = ap.parse_args(argv)

    if hasattr(os, "sched_setaffinity"):  # one core, for us and for grep
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    tpl = Templates(SAMPLE)
    rng = random.Random(args.seed)
    per_rank = -(-args.lines // args.ranks)
    tmp = Path(tempfile.mkdtemp(prefix="mfctl-ingest-"))
    try:
        logs: dict[int, list[str]] = {}
        t0 = time.perf_counter()
        for rank in range(args.ranks):
            lines = generate_rank(tpl, rank, per_rank, rng)
            (tmp / f"worker_{rank}.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
            logs[rank] = lines
        n = sum(len(v) for v in logs.values())
        size = sum(p.stat().st_size for p in tmp.iterdir())
        metric = sum(1 for v in logs.values() for l in v if "step:[" in l or "samples/s/p" in l)
        print(f"generated {n:,} lines ({size / 1e6:.1f} MB, {metric / n:.0%} step/progress lines) "
              f"in {args.ranks} files in {time.perf_counter() - t0:.1f} s")

        files = sorted(str(p) for p in tmp.iterdir())
        grep = shutil.which("grep")

        def run_grep() -> None:
            # Not stdout=DEVNULL: GNU grep notices /dev/null and stops at the first match.
            subprocess.run([grep, "-c", r"step:\[", *files], check=True, stdout=subprocess.PIPE)

        blobs = {rank: (tmp / f"worker_{rank}.log").read_bytes() for rank in logs}

        def chunk_state() -> ClusterState:
            state = ClusterState(world_size=args.ranks, seq_length=64)
            for rank, blob in blobs.items():
                state.feed_chunk(rank, blob)
            return state

        def parse_state() -> ClusterState:
            state = ClusterState(world_size=args.ranks, seq_length=64)
            b = args.batch
            for rank, lines in logs.items():
                for i in range(0, len(lines), b):
                    state.feed_many(rank, lines[i:i + b])
            return state

        def read_parse_state() -> ClusterState:
            state = ClusterState(world_size=args.ranks, seq_length=64)
            load_log_dir(tmp, state)
            return state

        def per_line() -> None:
            state = ClusterState(world_size=args.ranks, seq_length=64)
            feed = state.feed
            for rank, lines in logs.items():
                for line in lines:
                    feed(rank, line)

        # The figures are only worth printing if the state is right, and the same on every path.
        check = parse_state()
        for rank, lines in logs.items():
            last = next(l for l in reversed(lines) if "step:[" in l)
            got = check.ranks[rank]
            assert f"step:[{got.step:5d}/{got.total_steps:5d}]" in last, (rank, got.step)
            assert got.state == "finished", (rank, got.state)
        for other in (chunk_state(), read_parse_state()):
            for rank in logs:
                a, b = check.ranks[rank], other.ranks[rank]
                assert list(a.history) == list(b.history), rank
                assert (repr(a).replace(f"last_update={a.last_update}", "")  # the clocks differ
                        == repr(b).replace(f"last_update={b.last_update}", "")), rank

        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
              f"({os.cpu_count()} CPUs; wall time suffers from other processes, CPU time much less)")
        rows = []
        if grep:
            rows.append(("grep -c 'step:\\['", best_of(args.repeat, run_grep)))
        rows.append(("parse+state (feed_chunk)", best_of(args.repeat, chunk_state)))
        rows.append(("read+parse+state (load_log_dir)", best_of(args.repeat, read_parse_state)))
        rows.append(("parse+state (feed_many)", best_of(args.repeat, parse_state)))
        rows.append(("feed (per line)", best_of(1, per_line)))
        print(f"{'':32s} {'wall s':>7s} {'lines/s (wall)':>15s} {'cpu s':>7s} {'lines/s (cpu)':>14s} "
              f"{'x grep (cpu)':>13s}")
        base = rows[0][1][1] if grep else None
        for name, (wall, cpu) in rows:
            ratio = f"{cpu / base:12.1f}x" if base else "-"
            note = "  (too short to trust: use more --lines)" if min(wall, cpu) < 0.05 else ""
            print(f"{name:32s} {wall:7.3f} {n / wall:15,.0f} {cpu:7.3f} {n / cpu:14,.0f} {ratio:>13s}{note}")
        wall, cpu = dict(rows)["read+parse+state (load_log_dir)"]
        print(f"goal >= 1,000,000 lines/s through read+parse+state on one core: {n / wall:,.0f} lines/s wall, "
              f"{n / cpu:,.0f} lines/s cpu ({'met' if n / cpu >= 1e6 else 'not met'}, counted on cpu time)")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
