"""Attach benchmark: how long the dashboard takes to show every rank's last step of a long run.

Runs ``mfctl watch --logs DIR`` (the dashboard, following the directory) in a detached tmux session
of ``--size`` columns x rows over the long-run corpus of ``bench/ingest.py`` (64 rank logs x 12,000
steps by default, 6-7 MB each), and reads the screen (``tmux capture-pane``) every 20 ms until the
header says ``= 64 ranks`` and ``step 12000/12000`` (the slowest rank's step: every rank is at its
last step). The figure is the time from starting the command to that screen, the least of
``--repeat`` runs; the start-up of the interpreter and of the dashboard is included.

Baseline measured in the same run: the same command on a directory holding only the first rank's
log cut to its header and first step (what starting the dashboard costs with next to nothing to read).

    python bench/attach.py [--ranks 64] [--steps 12000] [--repeat 3] [--corpus DIR]

Goal: every rank's last step on screen within 1.5 s. Needs tmux.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import ROOT, generate, mfctl_command  # a sibling script, not a package

GOAL_S = 1.5


def time_to_screen(cmd: list[str], env: dict[str, str], wanted: list[str], size: tuple[int, int],
                   timeout_s: float) -> tuple[float, str]:
    """Seconds from starting ``cmd`` in a fresh tmux session until the screen holds every string
    of ``wanted``; and the last screen read."""
    name = f"mfctl-attach-{os.getpid()}-{time.monotonic_ns()}"
    tmux = ["tmux", "-L", name]  # a server of its own: other tmux sessions on the machine are left alone
    shell_cmd = " ".join(f"'{c}'" for c in cmd)  # bench paths only: no quote in them
    env_args = [a for k in ("PYTHONPATH", "TERM") if env.get(k) for a in ("-e", f"{k}={env[k]}")]
    t0 = time.perf_counter()
    subprocess.run([*tmux, "new-session", "-d", "-s", name, "-x", str(size[0]), "-y", str(size[1]),
                    *env_args, shell_cmd], check=True, env=env)
    screen = ""
    try:
        while time.perf_counter() - t0 < timeout_s:
            screen = subprocess.run([*tmux, "capture-pane", "-p", "-t", name], capture_output=True,
                                    text=True, env=env).stdout
            if all(w in screen for w in wanted):
                return time.perf_counter() - t0, screen
            time.sleep(0.02)
        return float("inf"), screen
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, env=env)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", type=int, default=64)
    ap.add_argument("--steps", type=int, default=12000)
    ap.add_argument("--ckpt-every", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size", default="200x50", help="terminal columns x rows (default 200x50)")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--corpus", type=Path, help="keep (and reuse) the generated logs in this directory")
    args = ap.parse_args(argv)
    if shutil.which("tmux") is None:
        raise SystemExit("tmux not found: install it (apt-get install tmux)")
    size = tuple(int(x) for x in args.size.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="mfctl-attach-"))
    corpus = args.corpus or tmp / "logs"
    try:
        n = generate(corpus, args.ranks, args.steps, args.ckpt_every)
        small = tmp / "small"
        small.mkdir()
        lines = (corpus / "worker_0.log").read_text(encoding="utf-8").split("\n")
        first = next(i for i, l in enumerate(lines) if "step:[" in l)
        (small / "worker_0.log").write_text("\n".join(lines[:first + 2]) + "\n", encoding="utf-8")
        env = dict(os.environ, TERM="xterm-256color", PYTHONPATH=os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
        print(f"{n:,} lines in {args.ranks} files; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        rows = []
        for label, directory, wanted in (
                ("one step of one rank (baseline)", small, ["= 1 ranks", f"step 1/{args.steps}"]),
                (f"{args.ranks} ranks x {args.steps:,} steps", corpus,
                 [f"= {args.ranks} ranks", f"step {args.steps}/{args.steps}"])):
            cmd = [*mfctl_command(), "watch", "--logs", str(directory)]
            times = []
            for _ in range(args.repeat):
                seconds, screen = time_to_screen(cmd, env, wanted, size, args.timeout)
                times.append(seconds)
                if seconds == float("inf"):
                    print(f"{label}: not on screen within {args.timeout} s; the last screen:\n{screen}")
            rows.append((label, min(times), times))
        for label, least, times in rows:
            print(f"{label:40s} {least:6.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times)})")
        least = rows[-1][1]
        print(f"goal: every rank's last step on screen within {GOAL_S} s: {least:.2f} s, "
              f"{'met' if least <= GOAL_S else 'not met'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
