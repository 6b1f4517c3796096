"""Live-path benchmark: ``mfctl watch --logs DIR`` on rank logs that grow while the dashboard is open.

Unlike ``bench/dashboard.py`` (a synthetic source), this drives the pipeline users run: a
``LogDirFollower`` thread polls the directory and feeds the ``MetricsCollector`` (parse, per-rank
state, plot series); the ``DashboardApp`` polls it from a thread worker, applies the result on
the UI thread and repaints, headless at 200x60 through ``app.run_test``.

The logs are real-format MindFormers 1.9.0 logs (the templates of ``bench/ingest.py``: the
sample's config dump as each file's header, then per step the step line and the progress line).
``--prefill`` steps are written before the dashboard opens (the follower catches up on them first,
outside the measured window); then a separate writer process appends one step (two lines) per
rank per second, all ranks in one burst per second as a synchronous data-parallel job prints, for
``--seconds``. The writer is another process so that the CPU measured here is mfctl's only.

Measured over the live window, per run:

- frame (p50 / p95 ms): from the start of ``apply_poll`` (the poll's ``Polled`` message patched
  into header, table, plots, alerts, on the UI thread) until the compositor refresh that paints it
  returns (``Screen._compositor_refresh``: the dirty widgets render their lines, the update is
  composed, handed to ``App._display`` and encoded into the terminal's escape sequences, which
  Textual skips headless and this adds back). What the user waits for once the data is there,
  event-loop scheduling between the two included; ``apply`` and ``render`` are its two parts, and
  the UI thread's CPU time in them is shown too (wall time minus waiting for a core or the GIL);
- poll (p50 ms): the worker thread's ``snapshot()`` + ``history()`` (off the UI thread);
- longest stall: a 10 ms ``asyncio`` ticker on the app's event loop records how late it wakes;
  the worst lateness (and the 99th percentile) is the longest the loop could not answer a key
  or paint (the follower and the poll worker share the GIL with it). For the late ticks the UI
  thread's own CPU time is kept too: a stall with little of it was the process waiting for a
  core (another process on the machine), one with much of it was the app's own work (a frame,
  a full garbage collection);
- CPU: process CPU time / wall time over the window (follower + collector + app + the ticker,
  which itself costs ~1%), split into the UI thread, the follower thread (reading and parsing)
  and the rest (the poll workers); the writer's CPU is printed apart;
- caught up: after the writer stops, every rank must reach the writer's last step, followed and
  also read once (``--once``'s path); the run fails otherwise.

    python bench/live.py                       # 1024 and 16 ranks, 30 s each
    python bench/live.py --seconds 60 --ranks 1024 --baseline-ranks 16

Goals: frame p50/p95 <= 50 ms, longest stall <= 50 ms, CPU <= 25% of one core. The machine's
load average is printed: on a shared machine the figures move with it.
"""

from __future__ import annotations

import argparse
import asyncio
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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script from a checkout: make `mfctl` and `bench` importable
    sys.path.insert(0, str(ROOT))

from bench.ingest import PROGRESS_FMT, SAMPLE, STEP_FMT, Templates, stamp  # noqa: E402

SIZE = (200, 60)
SEQ_LENGTH = 4096
TOTAL_STEPS = 100000
GOAL_FRAME_MS = 50.0
GOAL_STALL_MS = 50.0
GOAL_CPU = 0.25
TICK_S = 0.010


# --------------------------------------------------------------------------------------------------
# The writer: real-format step lines, appended to every rank's log once a second
# --------------------------------------------------------------------------------------------------

def step_text(tpl: Templates, rank: int, step: int, t: float) -> bytes:
    """One step of one rank as MindFormers prints it: the step line and the progress line."""
    rng = random.Random(rank * 1_000_003 + step)
    ms = 1000 + int(rng.gauss(0, 20)) + (300 if rank % 97 == 3 else 0)  # a few slower ranks
    loss = 10.4 * math.exp(-step / 3000) + 2.0 + rng.gauss(0, 0.02) + rank * 1e-4
    gn = "%.8g" % abs(rng.gauss(0.55, 0.05))
    step_line = stamp(t) + tpl.step_prefix + STEP_FMT % (
        1, 1, step, TOTAL_STEPS, loss, loss, ms, "%.8g" % 1e-4, False, 1024.0, gn,
        277610496 / (ms / 1000) / 1e12)
    percent = 100.0 * step / TOTAL_STEPS
    bar = ("|%%-%ds|" % 50) % (int(50 * percent / 100) * "\u2588")
    prog = stamp(t) + tpl.prog_prefix + PROGRESS_FMT % (percent, bar, 8 / (ms / 1000), "1 day, 3:00:00")
    return (step_line + "\n" + prog + "\n").encode()


def log_path(directory: Path, rank: int) -> Path:
    return directory / f"worker_{rank}.log"


def prefill(directory: Path, ranks: int, steps: int) -> None:
    tpl = Templates(SAMPLE)
    header = ("\n".join(tpl.header) + "\n").encode()
    for rank in range(ranks):
        with open(log_path(directory, rank), "wb") as handle:
            handle.write(header)
            handle.write(b"".join(step_text(tpl, rank, s, s) for s in range(1, steps + 1)))


def writer(directory: Path, ranks: int, first: int, seconds: float) -> int:
    """Append step ``first``, ``first + 1``, ... to every rank's log, once a second; prints the
    last step written."""
    tpl = Templates(SAMPLE)
    start = time.monotonic()
    step = first - 1
    while time.monotonic() - start < seconds:
        step += 1
        for rank in range(ranks):
            with open(log_path(directory, rank), "ab") as handle:
                handle.write(step_text(tpl, rank, step, step))
        next_at = start + (step - first + 1)
        time.sleep(max(0.0, next_at - time.monotonic()))
    print(step, flush=True)
    return 0


# --------------------------------------------------------------------------------------------------
# The measured pipeline
# --------------------------------------------------------------------------------------------------

@dataclass
class Run:
    ranks: int
    seconds: float
    frame_ms: list[float] = field(default_factory=list)
    frame_cpu_ms: list[float] = field(default_factory=list)
    apply_ms: list[float] = field(default_factory=list)
    render_ms: list[float] = field(default_factory=list)
    poll_ms: list[float] = field(default_factory=list)
    late_ms: list[float] = field(default_factory=list)
    # (generation, ms, CPU ms, objects freed) of each collection
    gc_ms: list[tuple[int, float, float, int]] = field(default_factory=list)
    stalls: list[tuple[float, float, float]] = field(default_factory=list)  # late, UI CPU, process CPU
    cpu: float = 0.0
    thread_cpu: dict[str, float] = field(default_factory=dict)  # share of one core per thread
    writer_cpu: float = 0.0
    last_written: int = 0
    followed_last: set[int] = field(default_factory=set)
    once_last: set[int] = field(default_factory=set)

    @property
    def caught_up(self) -> bool:
        return self.followed_last == self.once_last == {self.last_written}


def instrument(app: Any, source: Any, run: Run) -> dict[str, bool]:
    from textual._compositor import CompositorUpdate

    """Time the UI thread's refresh (``apply_poll``), the compositor render (``Screen.
    _compositor_refresh``), the hand-off to the driver (``App._display``) and the worker's poll.
    ``apply_poll`` is the app's own seam; the two Textual methods are private (Textual has no
    public "frame painted" hook): if a release renames them the benchmark stops instead of
    reporting zeros."""
    screen = app.screen
    if not hasattr(screen, "_compositor_refresh") or not hasattr(app, "_display"):
        raise SystemExit("this Textual has no Screen._compositor_refresh / App._display to time")
    state = {"measuring": False}
    pending: list[float] = []  # start of applies whose paint has not been seen yet
    shown: list[bool] = []  # an update reached the driver during this compositor refresh
    cpu = [0.0]  # the UI thread's CPU time in the pending frame's apply
    apply, refresh, display = app.apply_poll, screen._compositor_refresh, app._display
    snapshot, history = source.snapshot, source.history

    def timed_apply(*args: Any, **kwargs: Any) -> None:
        t0, c0 = time.perf_counter(), time.thread_time()
        apply(*args, **kwargs)
        if state["measuring"]:
            run.apply_ms.append(1000 * (time.perf_counter() - t0))
            # An apply that changed nothing on screen has no paint: the next apply starts afresh.
            pending[:] = [t0]
            cpu[0] = time.thread_time() - c0

    def timed_refresh() -> None:
        t0, c0 = time.perf_counter(), time.thread_time()
        shown.clear()
        refresh()
        if pending and shown:
            now = time.perf_counter()
            run.frame_ms.append(1000 * (now - pending[0]))
            run.render_ms.append(1000 * (now - t0))
            run.frame_cpu_ms.append(1000 * (cpu[0] + time.thread_time() - c0))
            pending.clear()

    def timed_display(screen_: Any, renderable: Any) -> None:
        display(screen_, renderable)
        if isinstance(renderable, CompositorUpdate):
            # Headless, Textual skips turning the update into escape sequences; a terminal would
            # not, so the frame includes it (the write itself is the driver's thread's).
            renderable.render_segments(app.console)
            shown.append(True)

    def timed_snapshot() -> dict:
        t0 = time.perf_counter()
        out = snapshot()
        if state["measuring"]:
            run.poll_ms.append(1000 * (time.perf_counter() - t0))
        return out

    def timed_history(rank: int | None = None) -> dict:
        t0 = time.perf_counter()
        out = history(rank)
        if state["measuring"] and run.poll_ms:
            run.poll_ms[-1] += 1000 * (time.perf_counter() - t0)
        return out

    app.apply_poll = timed_apply
    screen._compositor_refresh = timed_refresh
    app._display = timed_display
    source.snapshot, source.history = timed_snapshot, timed_history
    return state


def thread_cpu(tid: int) -> float:
    """CPU seconds of one thread of this process (Linux), for the split of the process's CPU."""
    try:
        fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def steps_of(snap: dict) -> set[int]:
    return {r.get("step") for r in snap.get("ranks") or []}


async def measure(directory: Path, ranks: int, seconds: float, prefill_steps: int) -> Run:
    from mfctl.live.sources import LogDirSource
    from mfctl.tui.app import make_app
    from mfctl.tui.table import RankTable

    run = Run(ranks, seconds)
    prefill(directory, ranks, prefill_steps)
    source = LogDirSource(directory, SEQ_LENGTH, 1, follow=True).start()
    app = make_app(source, job={"id": "live-bench", "name": directory.name, "model": "logs", "nodes": 1,
                                "devices_per_node": ranks, "world_size": None, "started_at": None},
                   refresh_s=1.0, freeze_heap=True)  # as `mfctl watch` runs it
    try:
        async with app.run_test(size=SIZE) as pilot:
            table = app.query_one(RankTable)
            state = instrument(app, source, run)
            # Caught up on the prefill before the clock starts (the follower reads ~MBs first).
            deadline = time.monotonic() + 120
            while not (len(table.visible_ranks) == ranks and steps_of(app.last_snapshot) == {prefill_steps}
                       and gc.get_freeze_count() > 0):  # and the app's one-off heap freeze done
                if time.monotonic() > deadline:
                    raise SystemExit(f"{ranks} ranks: the prefill was not shown within 120 s")
                await pilot.pause(0.1)
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            proc = subprocess.Popen([sys.executable, __file__, "--writer", str(directory), str(ranks),
                                     str(prefill_steps + 1), str(seconds)], stdout=subprocess.PIPE, text=True)
            stop = asyncio.Event()

            async def ticker() -> None:
                while not stop.is_set():
                    t0, ui0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
                    await asyncio.sleep(TICK_S)
                    late = max(0.0, time.perf_counter() - t0 - TICK_S)
                    run.late_ms.append(1000 * late)
                    if late > 0.02:  # what the loop did meanwhile: its own CPU, the process's CPU
                        run.stalls.append((1000 * late, 1000 * (time.thread_time() - ui0),
                                           1000 * (time.process_time() - p0)))

            gc_start: list[float] = []

            def on_gc(phase: str, info: dict) -> None:
                if phase == "start":
                    gc_start[:] = [time.perf_counter(), time.thread_time()]
                elif gc_start and state["measuring"]:
                    run.gc_ms.append((info["generation"], 1000 * (time.perf_counter() - gc_start[0]),
                                      1000 * (time.thread_time() - gc_start[1]), info["collected"]))

            gc.callbacks.append(on_gc)
            ticking = asyncio.ensure_future(ticker())
            state["measuring"] = True
            threads = {"UI": threading.get_native_id(), "follower": source.follower.native_id}
            th0 = {name: thread_cpu(tid) for name, tid in threads.items()}
            c0, t0 = time.process_time(), time.perf_counter()
            while proc.poll() is None:
                await asyncio.sleep(0.05)
            c1, t1 = time.process_time(), time.perf_counter()
            run.thread_cpu = {name: (thread_cpu(tid) - th0[name]) / (t1 - t0)
                              for name, tid in threads.items()}
            state["measuring"] = False
            stop.set()
            await ticking
            gc.callbacks.remove(on_gc)
            run.cpu = (c1 - c0) / (t1 - t0)
            ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # the writer, once it has exited
            run.writer_cpu = (ru.ru_utime + ru.ru_stime - ru0.ru_utime - ru0.ru_stime) / (t1 - t0)
            run.last_written = int(proc.stdout.read().strip())
            deadline = time.monotonic() + 30
            while steps_of(app.last_snapshot) != {run.last_written} and time.monotonic() < deadline:
                await pilot.pause(0.1)
            run.followed_last = steps_of(app.last_snapshot)
    finally:
        source.close()
    once = LogDirSource(directory, SEQ_LENGTH, 1)  # what `mfctl watch --logs DIR --once` reads
    run.once_last = steps_of(once.snapshot())
    return run


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report(runs: list[Run]) -> bool:
    print(f"{'':<28}" + "".join(f"{f'{r.ranks} ranks':>18}" for r in runs) + f"{'goal':>14}")

    def line(label: str, cells: list[str], goal: str = "") -> None:
        print(f"{label:<28}" + "".join(f"{c:>18}" for c in cells) + f"{goal:>14}")

    line("frame p50 / p95 ms", [f"{pct(r.frame_ms, .5):.1f} / {pct(r.frame_ms, .95):.1f}" for r in runs],
         f"<= {GOAL_FRAME_MS:.0f}")
    line("  its UI-thread CPU p50/p95", [f"{pct(r.frame_cpu_ms, .5):.1f} / {pct(r.frame_cpu_ms, .95):.1f}"
                                          for r in runs])
    line("  apply p50 / p95 ms", [f"{pct(r.apply_ms, .5):.1f} / {pct(r.apply_ms, .95):.1f}" for r in runs])
    line("  render p50 / p95 ms", [f"{pct(r.render_ms, .5):.1f} / {pct(r.render_ms, .95):.1f}" for r in runs])
    line("poll (worker) p50 ms", [f"{pct(r.poll_ms, .5):.1f}" for r in runs])
    line("longest stall ms (p99)",
         [f"{max(r.late_ms, default=0):.1f} ({pct(r.late_ms, .99):.1f})" for r in runs],
         f"<= {GOAL_STALL_MS:.0f}")
    line("  the worst's UI-thread CPU", [f"{max(r.stalls, default=(0, 0, 0))[1]:.1f}" for r in runs])
    line("  most UI-thread CPU in one", [f"{max((x[1] for x in r.stalls), default=0):.1f}" for r in runs])
    line("  stalls > 50 ms", [f"{sum(1 for x in r.late_ms if x > GOAL_STALL_MS)}" for r in runs])
    line("mfctl CPU, % of one core", [f"{100 * r.cpu:.1f}%" for r in runs], f"<= {100 * GOAL_CPU:.0f}%")
    def split(r: Run) -> str:
        ui, follower = (100 * r.thread_cpu.get(k, float("nan")) for k in ("UI", "follower"))
        return f"{ui:.1f}/{follower:.1f}/{100 * (r.cpu - sum(r.thread_cpu.values())):.1f}"

    line("  UI / follower / rest", [split(r) for r in runs])
    line("writer CPU (apart)", [f"{100 * r.writer_cpu:.1f}%" for r in runs])
    line("frames / seconds", [f"{len(r.frame_ms)} / {r.seconds:.0f}" for r in runs])
    line("every rank at last step", [f"{'yes' if r.caught_up else 'NO'} ({r.last_written})" for r in runs])
    for r in runs:
        worst = sorted(r.stalls, reverse=True)[:5]
        print(f"{r.ranks} ranks, worst stalls (late ms / UI-thread CPU ms / process CPU ms): "
              + ", ".join(f"{a:.0f}/{b:.0f}/{c:.0f}" for a, b, c in worst)
              + "; GC: " + ", ".join(f"gen{g} x{sum(1 for x, *_ in r.gc_ms if x == g)} max "
                                     f"{max((ms for x, ms, *_ in r.gc_ms if x == g), default=0):.0f} ms "
                                     f"(CPU {max((c for x, _, c, _ in r.gc_ms if x == g), default=0):.0f})"
                                     for g in (0, 1, 2)))
        print("   gen2:", [tuple(round(v) for v in x) for x in r.gc_ms if x[0] == 2])
    main = runs[0]
    goals = [("frame p95", pct(main.frame_ms, .95) <= GOAL_FRAME_MS),
             ("longest stall", max(main.late_ms, default=0) <= GOAL_STALL_MS),
             ("CPU", main.cpu <= GOAL_CPU), ("caught up", all(r.caught_up for r in runs))]
    print(f"goals at {main.ranks} ranks: " + "; ".join(f"{name} {verdict(ok)}" for name, ok in goals))
    return all(ok for _, ok in goals)


def one_run(ranks: int, seconds: float, prefill_steps: int, keep: bool) -> Run:
    """One configuration in a process of its own (run by ``main``): no objects, caches or garbage
    of the other run in its heap, and its CPU is its own."""
    out = subprocess.run([sys.executable, __file__, "--one", str(ranks), str(seconds), str(prefill_steps)]
                         + (["--keep"] if keep else []), stdout=subprocess.PIPE, text=True)
    lines = out.stdout.splitlines()
    if out.returncode != 0 or not lines:
        raise SystemExit(f"the {ranks}-rank run failed (exit {out.returncode})")
    for line in lines[:-1]:
        print(line)
    data = json.loads(lines[-1])
    run = Run(ranks, seconds)
    for key, value in data.items():
        setattr(run, key, set(value) if key in ("followed_last", "once_last") else value)
    return run


def run_here(ranks: int, seconds: float, prefill_steps: int, keep: bool) -> int:
    tmp = Path(tempfile.mkdtemp(prefix=f"mfctl-live-{ranks}-"))
    try:
        run = asyncio.run(measure(tmp, ranks, seconds, prefill_steps))
    finally:
        if keep:
            print(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    data = {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(run).items()}
    print(json.dumps(data))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", type=int, default=1024)
    ap.add_argument("--baseline-ranks", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=30.0, help="live window per run (default 30)")
    ap.add_argument("--prefill", type=int, default=120,
                    help="steps per rank written before the dashboard opens")
    ap.add_argument("--keep", action="store_true", help="keep the generated log directories")
    args = ap.parse_args(argv)

    load = os.getloadavg()
    print(f"live benchmark: follower -> collector -> dashboard {SIZE[0]}x{SIZE[1]} headless; one step per "
          f"rank per second for {args.seconds:.0f} s after {args.prefill} prefilled steps; load average "
          f"{load[0]:.2f} on {os.cpu_count()} CPUs")
    runs = [one_run(ranks, args.seconds, args.prefill, args.keep)
            for ranks in (args.ranks, args.baseline_ranks)]
    return 0 if report(runs) else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--writer":
        sys.exit(writer(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])))
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        sys.exit(run_here(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), "--keep" in sys.argv))
    sys.exit(main())
