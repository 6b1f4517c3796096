"""The acceptance check of the live path, as a user runs it: ``mfctl watch --logs DIR`` in a real
terminal (a pseudo-terminal of 200x60 whose output is read and dropped) on rank logs growing one
step per rank per second, then ``mfctl watch --logs DIR --once --json``.

``bench/live.py`` measures frames and stalls inside a headless app; this one runs the command
itself, so the escape sequences written to the terminal and the process's start-up are real, and
reports its CPU share from ``/proc/PID/stat`` (the writer is another process, as in
``bench/live.py``, whose prefill and writer it reuses). Linux only.

    python bench/live_cli.py                       # 1024 ranks, 60 s; 16 ranks, 60 s
    python bench/live_cli.py --ranks 1024 --seconds 30 --baseline-ranks 16

Goals: <= 25% of one core while the logs grow; afterwards every rank at the last step written.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script from a checkout: make `mfctl` and `bench` importable
    sys.path.insert(0, str(ROOT))

from bench.live import GOAL_CPU, SEQ_LENGTH, prefill  # noqa: E402

ROWS, COLS = 60, 200
SETTLE_S = 15.0  # start-up and catching up on the prefill, before the measured window


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Terminal:
    """``mfctl watch --logs DIR`` on a pseudo-terminal; its output is read (and dropped) as a
    terminal would, so the app never blocks on a full pty buffer."""

    def __init__(self, directory: Path) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the command, as typed
            os.environ["TERM"] = "xterm-256color"
            os.execv(sys.executable, [sys.executable, "-m", "mfctl", "watch", "--logs", str(directory),
                                      "--seq-length", str(SEQ_LENGTH)])
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        self.written = 0

    def drain(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if ready:
                try:
                    self.written += len(os.read(self.fd, 1 << 16))
                except OSError:
                    return

    def quit(self) -> int:
        os.write(self.fd, b"q")
        self.drain(3.0)
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


def run(ranks: int, seconds: float, prefill_steps: int) -> dict:
    directory = Path(tempfile.mkdtemp(prefix=f"mfctl-live-cli-{ranks}-"))
    try:
        prefill(directory, ranks, prefill_steps)
        term = Terminal(directory)
        term.drain(SETTLE_S)
        c0, t0, w0 = proc_cpu(term.pid), time.monotonic(), term.written
        writer = subprocess.Popen([sys.executable, str(ROOT / "bench" / "live.py"), "--writer",
                                   str(directory), str(ranks), str(prefill_steps + 1), str(seconds)],
                                  stdout=subprocess.PIPE, text=True)
        while writer.poll() is None:
            term.drain(0.2)
        c1, t1 = proc_cpu(term.pid), time.monotonic()
        last = int(writer.stdout.read().strip())
        term.drain(3.0)  # the last step reaches the screen
        exit_code = term.quit()
        once = subprocess.run([sys.executable, "-m", "mfctl", "watch", "--logs", str(directory), "--once",
                               "--json"], capture_output=True, text=True)
        shown = json.loads(once.stdout)["ranks"] if once.returncode == 0 else []
        if once.returncode != 0:
            print(f"mfctl watch --logs DIR --once --json exited {once.returncode}: {once.stderr.strip()}")
        return {"ranks": ranks, "cpu": (c1 - c0) / (t1 - t0), "kib_s": (term.written - w0) / (t1 - t0) / 1024,
                "last": last, "once_ranks": len(shown), "once_steps": sorted({r["step"] for r in shown}),
                "exit": exit_code}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", type=int, default=1024)
    ap.add_argument("--baseline-ranks", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--prefill", type=int, default=120)
    args = ap.parse_args(argv)
    load = os.getloadavg()
    print(f"mfctl watch --logs DIR in a {COLS}x{ROWS} pty, one step per rank per second for "
          f"{args.seconds:.0f} s after {args.prefill} prefilled steps; load average {load[0]:.2f} "
          f"on {os.cpu_count()} CPUs")
    ok = True
    for ranks in (args.ranks, args.baseline_ranks):
        r = run(ranks, args.seconds, args.prefill)
        caught_up = r["once_ranks"] == ranks and r["once_steps"] == [r["last"]]
        ok &= caught_up and r["exit"] == 0 and (ranks != args.ranks or r["cpu"] <= GOAL_CPU)
        print(f"{ranks:>5} ranks: CPU {100 * r['cpu']:.1f}% of one core (goal <= {100 * GOAL_CPU:.0f}%), "
              f"{r['kib_s']:.0f} KiB/s to the terminal, quit with exit {r['exit']}; --once --json after: "
              f"{r['once_ranks']} ranks at steps {r['once_steps']} (last written {r['last']}): "
              f"{'every rank at its last step' if caught_up else 'NOT CAUGHT UP'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
