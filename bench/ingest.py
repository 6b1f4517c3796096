"""Ingest benchmark: the command a user runs over a long run's logs, with ``grep -c`` beside it.

Generates a long run's log directory from the real MindFormers 1.9.0 log
``tests/data/samples/mindformers-1.9.0-cpu-msrun-dp2/worker_0.log``: ``--ranks`` worker logs
(default 64), each the real header once (the config dump), then ``--steps`` steps (default 12,000)
of the step line and the progress line printed with MindFormers' own format strings (step, loss,
running mean, step time, lr, global norm, samples/s, time left varying) and the checkpoint lines
every ``--ckpt-every`` steps (default 500). About 1.6M lines, 6-7 MB per file: every file is read
over more than one 4 MiB block.

Figures, each the least of ``--repeat`` runs (wall time, and CPU time of the process and its
children):

- ``grep -c 'step:\\['`` over the same files (the baseline: reads and scans, nothing else);
- ``mfctl watch --logs DIR --once --json``: the COMMAND, as a subprocess, start-up included (the
  interpreter, the imports, reading every file, the JSON printed); its output is checked: every
  rank at its last step;
- with ``--function``: ``load_log_dir`` + ``MetricsCollector.backfill`` + a snapshot in this
  process (no start-up), for comparison.

The goal is >= 1,000,000 lines/s through the command, counted on its wall time.

    python bench/ingest.py [--ranks 64] [--steps 12000] [--repeat 3] [--function] [--corpus DIR]

``--corpus DIR`` keeps the generated logs in DIR (and reuses them when DIR already holds them).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "data" / "samples" / "mindformers-1.9.0-cpu-msrun-dp2" / "worker_0.log"

# MindFormers' MFLossMonitor formats (mindformers/core/callback/callback.py).
STEP_FMT = ("{ Epoch:[%3d/%3d], step:[%5d/%5d], loss:[%5.6f/%5.6f], per_step_time: %dms, lr: %s, "
            "overflow cond: %s, loss_scale: %s, global_norm: [%s], train_throughput_per_npu: %.3fT")
PROGRESS_FMT = "  %4.1f%% %s %.5f samples/s/p  %s }"
GOAL = 1_000_000


class Templates:
    """The pieces of the real log the generator reuses."""

    def __init__(self, sample: Path) -> None:
        lines = sample.read_text(encoding="utf-8").split("\n")
        first_step = next(i for i, l in enumerate(lines) if "step:[" in l)
        self.header = lines[:first_step]
        step_line = lines[first_step]
        prog_line = next(l for l in lines if "samples/s/p" in l)
        # "2026-11-28 06:14:50,026 - mindformers/.../log[mindformers/core/callback/callback.py:747] - INFO - "
        self.step_prefix = step_line[23:step_line.index("{ Epoch:")]
        self.prog_prefix = prog_line[23:prog_line.index(" - INFO - ") + len(" - INFO - ")]
        save = next(i for i, l in enumerate(lines) if "Saving ckpt" in l)
        self.ckpt_block = [l[23:] for l in lines[save:save + 6]]  # "......Saving ckpt......" .. "Finish saving"


def stamp(t: float) -> str:
    d = datetime.datetime(2026, 11, 28, 6, 14, 50) + datetime.timedelta(seconds=t)
    return d.strftime("%Y-%m-%d %H:%M:%S") + ",%03d" % (int(t * 1000) % 1000)


def generate_rank(tpl: Templates, steps: int, ckpt_every: int, rng: random.Random) -> list[str]:
    """One rank's log: the real header, then ``steps`` step + progress pairs, checkpoint notes."""
    out = list(tpl.header)
    mean_window: list[float] = []
    t = 0.0
    for step in range(1, steps + 1):
        ms = int(rng.gauss(120, 15)) if step > 1 else 9640
        t += ms / 1000
        loss = 10.4 * math.exp(-step / (steps * 0.7)) + 2.0 + rng.gauss(0, 0.02)
        mean_window.append(loss)
        if len(mean_window) > 200:
            del mean_window[0]
        mean = sum(mean_window) / len(mean_window)
        lr = "%.8g" % (1e-3 * min(1.0, step / 100) * (0.5 + 0.5 * math.cos(math.pi * step / steps)))
        gn = "%.8g" % abs(rng.gauss(0.55, 0.05))
        out.append(stamp(t) + tpl.step_prefix + STEP_FMT % (
            1, 1, step, steps, loss, mean, ms, lr, False, 1024.0, gn, 277610496 / (ms / 1000) / 1e12))
        percent = 100.0 * step / steps
        bar = ("|%%-%ds|" % 50) % (int(50 * percent / 100) * "\u2588")
        left = datetime.timedelta(seconds=int((steps - step) * ms / 1000))
        out.append(stamp(t) + tpl.prog_prefix + PROGRESS_FMT % (percent, bar, 8 / 2 / (ms / 1000), left))
        if step % ckpt_every == 0:
            block = [l.replace("step_num: 10", f"step_num: {step}").replace("global_step: 10", f"global_step: {step}")
                     .replace("step 10 using", f"step {step} using") for l in tpl.ckpt_block]
            out.extend(stamp(t) + l for l in block)
    return out


def generate(directory: Path, ranks: int, steps: int, ckpt_every: int, seed: int = 0) -> int:
    """Write ``worker_0.log`` .. ``worker_{ranks-1}.log`` into ``directory``; returns the line count.
    A directory that already holds them (``.corpus`` names the same arguments) is reused."""
    stamp_file = directory / ".corpus"
    key = f"{ranks} {steps} {ckpt_every} {seed} {SAMPLE.stat().st_size}"
    if stamp_file.exists() and stamp_file.read_text().split("\n")[0] == key:
        return int(stamp_file.read_text().split("\n")[1])
    directory.mkdir(parents=True, exist_ok=True)
    tpl = Templates(SAMPLE)
    rng = random.Random(seed)
    n = 0
    for rank in range(ranks):
        lines = generate_rank(tpl, steps, ckpt_every, rng)
        (directory / f"worker_{rank}.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
        n += len(lines)
    stamp_file.write_text(f"{key}\n{n}\n")
    return n


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def least_of(repeat: int, fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, cpu) seconds of the fastest of ``repeat`` runs; cpu counts this process and its children."""
    best = (math.inf, math.inf)
    for _ in range(repeat):
        gc.collect()
        t0, p0, c0 = time.perf_counter(), time.process_time(), _children_cpu()
        fn()
        t1, p1, c1 = time.perf_counter(), time.process_time(), _children_cpu()
        best = min(best, (t1 - t0, max(1e-9, (p1 - p0) + (c1 - c0))))
    return best


def mfctl_command() -> list[str]:
    """The installed ``mfctl`` script beside this interpreter, else ``python -m mfctl``."""
    script = Path(sys.executable).parent / "mfctl"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mfctl"]


def check_last_steps(out: str, ranks: int, steps: int) -> None:
    snap = json.loads(out)
    got = {r["rank"]: r["step"] for r in snap["ranks"]}
    bad = {rank: got.get(rank) for rank in range(ranks) if got.get(rank) != steps}
    if bad:
        raise SystemExit(f"the command's output is wrong: ranks not at step {steps}: {bad}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", type=int, default=64, help="worker logs (default 64)")
    ap.add_argument("--steps", type=int, default=12000, help="steps per rank (default 12,000)")
    ap.add_argument("--ckpt-every", type=int, default=500, help="checkpoint notes every N steps (default 500)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure, least kept (default 3)")
    ap.add_argument("--function", action="store_true", help="also time load_log_dir in this process")
    ap.add_argument("--corpus", type=Path, help="keep (and reuse) the generated logs in this directory")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    tmp = args.corpus or Path(tempfile.mkdtemp(prefix="mfctl-ingest-"))
    try:
        t0 = time.perf_counter()
        n = generate(tmp, args.ranks, args.steps, args.ckpt_every, args.seed)
        files = sorted(str(p) for p in tmp.glob("worker_*.log"))
        size = sum(os.path.getsize(p) for p in files)
        print(f"{n:,} lines, {size / 1e6:.0f} MB in {len(files)} files ({size / len(files) / 1e6:.1f} MB each, "
              f"{args.steps:,} steps per rank) ready in {time.perf_counter() - t0:.1f} s")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
        cmd = [*mfctl_command(), "watch", "--logs", str(tmp), "--once", "--json"]

        def run_command() -> None:
            done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, env=env, text=True)
            check_last_steps(done.stdout, args.ranks, args.steps)

        grep = shutil.which("grep")

        def run_grep() -> None:
            # Not stdout=DEVNULL: GNU grep notices /dev/null and stops at the first match.
            subprocess.run([grep or "grep", "-c", r"step:\[", *files], check=True, stdout=subprocess.PIPE)

        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs; "
              "on a shared machine wall time moves with the load)")
        rows: list[tuple[str, tuple[float, float]]] = []
        if grep:
            rows.append(("grep -c 'step:\\['", least_of(args.repeat, run_grep)))
        rows.append(("mfctl watch --logs DIR --once --json", least_of(args.repeat, run_command)))
        if args.function:
            if str(ROOT) not in sys.path:
                sys.path.insert(0, str(ROOT))
            from mfctl.live.sources import LogDirSource

            rows.append(("load_log_dir + snapshot (in process)",
                         least_of(args.repeat, lambda: LogDirSource(tmp, None, 1, plots=False).snapshot())))
        print(f"{'':40s} {'wall s':>7s} {'lines/s (wall)':>15s} {'cpu s':>7s} {'lines/s (cpu)':>14s}")
        for name, (wall, cpu) in rows:
            print(f"{name:40s} {wall:7.3f} {n / wall:15,.0f} {cpu:7.3f} {n / cpu:14,.0f}")
        wall, cpu = dict(rows)["mfctl watch --logs DIR --once --json"]
        print(f"goal >= {GOAL:,} lines/s through the command, start-up included: {n / wall:,.0f} lines/s "
              f"(wall, least of {args.repeat}): {'met' if n / wall >= GOAL else 'not met'}")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if args.corpus is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
