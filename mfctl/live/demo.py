"""``mfctl demo``: real pretraining on this machine, from nothing, in one command.

A text corpus that needs no network (the documentation that ships inside Python's standard
library, written as WikiText), a sentencepiece tokenizer trained on it, a MindRecord dataset,
a tiny-llama job with 2 data-parallel workers, launched under the real msrun through the local
transport, followed live, and summed up with the checkpoints it wrote.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mfctl.cluster.health import ACTIVE_STATES, JobState
from mfctl.errors import BadInput, OperationFailed

if TYPE_CHECKING:
    from rich.console import Console

    from mfctl.jobs.jobdir import Job
    from mfctl.jobs.status import StatusReport
    from mfctl.live.session import LiveSession
    from mfctl.metrics.types import Snapshot
    from mfctl.records.record import JobRecord

DEMO_SEQ = 64
DEMO_VOCAB = 1000
DEMO_WORKERS = 2
DEMO_BATCH = 4
MIN_STEPS = 40


@dataclass
class DemoSummary:
    job_id: str
    job_dir: Path
    state: str
    cause: str | None
    steps: dict[int, int]
    first_loss: dict[int, float]
    last_loss: dict[int, float]
    samples_per_s: float | None
    tokens_per_s: float | None
    wall_s: float
    checkpoints: dict[int, list[Path]] = field(default_factory=dict)
    logs: list[Path] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job_id, "job_dir": str(self.job_dir), "state": self.state, "cause": self.cause,
            "steps": self.steps, "first_loss": self.first_loss, "last_loss": self.last_loss,
            "samples_per_s": self.samples_per_s, "tokens_per_s": self.tokens_per_s,
            "wall_s": round(self.wall_s, 1),
            "checkpoints": {r: [str(p) for p in ps] for r, ps in self.checkpoints.items()},
            "logs": [str(p) for p in self.logs],
        }


def free_port() -> int:
    """A port nobody listens on now, so the demo does not collide with a job on 8118."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def default_dir() -> Path:
    return Path.cwd() / time.strftime("mfctl-demo-%Y%m%d-%H%M%S")


def prepare_demo_job(directory: Path, say: Callable[[str], None],
                     progress: Callable[[int, int], None] | None = None, workers: int = DEMO_WORKERS,
                     min_steps: int = MIN_STEPS) -> Job:
    """Corpus, tokenizer, dataset and job spec in ``directory``; returns the loaded Job."""
    from mfctl.data.corpus import write_pydoc_corpus
    from mfctl.data.prepare import prepare_dataset
    from mfctl.jobs.create import create_job

    if directory.exists() and any(directory.iterdir()):
        raise BadInput(f"{directory}: not empty; give 'mfctl demo' a new --dir")
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in directory.resolve().name)[:64]
    data = directory / "data"
    corpus = data / "pydoc.train.tokens"
    articles = write_pydoc_corpus(corpus)
    say(f"corpus: {articles} articles of Python's own documentation -> {corpus}")
    summary = prepare_dataset([str(corpus)], data / f"pydoc-seq{DEMO_SEQ}.mindrecord", DEMO_SEQ,
                              train_tokenizer_vocab=DEMO_VOCAB, max_vocab=DEMO_VOCAB, progress=progress)
    say(f"dataset: {summary.documents} documents, {summary.tokens} tokens, {summary.samples} samples "
        f"of {DEMO_SEQ + 1} tokens -> {summary.output}")
    per_epoch = summary.samples // (DEMO_BATCH * workers)
    if per_epoch < 1:
        raise OperationFailed("the demo corpus is too small for one step")
    epochs = max(1, math.ceil(min_steps / per_epoch))
    return create_job(
        directory, model="tiny-llama", master_port=free_port(), model_config=None, nodes=None, devices_per_node=workers,
        dataset=str(summary.output.resolve()), name=name, python=sys.executable, force=False,
        dp=workers, mp=1, pp=1,
        train={"epochs": epochs, "batch_size": DEMO_BATCH, "vocab_size": DEMO_VOCAB,
               "seq_length": DEMO_SEQ, "save_checkpoint_steps": max(1, per_epoch * epochs // 2)},
    )


def wait_for_end(record: JobRecord, on_tick: Callable[[], None] | None = None, poll_s: float = 2.0,
                 timeout_s: float = 3600.0) -> StatusReport:
    """Poll until no process of the job is left; return the final status report."""
    from mfctl.jobs.status import collect_status

    deadline = time.monotonic() + timeout_s
    while True:
        report = collect_status(record.id, Path(record.job_dir))
        if report.record.state not in ACTIVE_STATES:
            return report
        if time.monotonic() > deadline:
            raise OperationFailed(f"job {record.id} still runs after {timeout_s:.0f} s")
        end = time.monotonic() + poll_s
        while time.monotonic() < end:
            if on_tick:
                on_tick()
            time.sleep(0.2)


def checkpoints(job_dir: Path) -> dict[int, list[Path]]:
    out: dict[int, list[Path]] = {}
    for rank_dir in sorted((job_dir / "output" / "checkpoint").glob("rank_*")):
        try:
            rank = int(rank_dir.name.split("_", 1)[1])
        except ValueError:
            continue
        out[rank] = sorted(rank_dir.glob("*.ckpt"))
    return out


def summarize(record: JobRecord, state_snapshot: Snapshot, history: dict[int, list[tuple[int, float]]],
              report: StatusReport, wall_s: float) -> DemoSummary:
    job_dir = Path(record.job_dir)
    ranks = state_snapshot.get("ranks", [])
    cluster = state_snapshot.get("cluster", {})
    return DemoSummary(
        job_id=record.id, job_dir=job_dir, state=report.record.state, cause=report.record.exit_cause,
        steps={r["rank"]: r.get("step") or 0 for r in ranks},
        first_loss={rank: pts[0][1] for rank, pts in history.items() if pts},
        last_loss={rank: pts[-1][1] for rank, pts in history.items() if pts},
        samples_per_s=cluster.get("samples_per_s"), tokens_per_s=cluster.get("tokens_per_s"),
        wall_s=wall_s, checkpoints=checkpoints(job_dir),
        logs=sorted((job_dir / "output" / "msrun_log").glob("*.log")),
    )


class LossHistory:
    """What the demo prints of the session's steps: every new step's loss, per rank."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.points: dict[int, list[tuple[int, float]]] = {}
        self.new_lines: list[tuple[int, int, float]] = []

    def on_steps(self, rows: list[tuple]) -> None:
        # rows: (rank, step, total_steps, loss, step_time_ms, samples_per_s, time)
        with self.lock:
            for rank, step, _total, loss, *_ in rows:
                if loss is not None:
                    self.points.setdefault(rank, []).append((step, loss))
                    self.new_lines.append((rank, step, loss))

    def drain(self) -> list[tuple[int, int, float]]:
        with self.lock:
            lines, self.new_lines = self.new_lines, []
            return lines


#: Shows the dashboard on a session until the job ends: (session) -> None. The CLI passes it in
#: (``live`` does not import the dashboard).
Dashboard = Callable[["LiveSession"], None]


def run_demo_cli(directory: Path | None, headless: bool, as_json: bool, out: Console, err: Console,
                 dashboard: Dashboard | None = None) -> int:
    """The whole demo with rich output; returns the exit code (0: trained and the loss fell)."""
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from mfctl.jobs.launch import launch
    from mfctl.jobs.status import stop_job
    from mfctl.live.session import LiveSession
    from mfctl.records.store import JobStore
    from mfctl.remote.connect import SshOptions

    directory = directory or default_dir()
    t0 = time.monotonic()
    say = (lambda text: err.print(f"[dim]-[/] {text}")) if not as_json else (lambda text: None)
    with Progress(TextColumn("[dim]-[/] tokenizing"), BarColumn(), MofNCompleteColumn(), console=err,
                  transient=True, disable=as_json) as bar:
        task = bar.add_task("tok", total=None)
        job = prepare_demo_job(directory, say, lambda d, t: bar.update(task, completed=d, total=t))
    say(f"job: {job.spec_path} (tiny-llama, {job.world_size} data-parallel workers on this machine)")
    record = launch(job.dir, opts=SshOptions()).launched
    say(f"launched {record.id}: msrun with {job.world_size} workers; logs in "
        f"{job.dir / 'output' / 'msrun_log'}")

    # One session: one follower and one metrics state, for the printed lines and the dashboard.
    history = LossHistory()
    session = LiveSession(record, JobStore(), on_steps=history.on_steps).start()
    use_tui = not headless and sys.stdout.isatty()
    try:
        if dashboard is not None and use_tui:
            session.start_supervisor()
            dashboard(session)
            report = wait_for_end(record, poll_s=1.0)
        else:
            report = _watch_headless(record, session, history, err, as_json)
    except KeyboardInterrupt:
        session.close()
        stop_job(record.id, job.dir, grace=5, cause="demo interrupted")
        err.print(f"interrupted: job {record.id} stopped")
        return 130
    finally:
        session.close()
    summary = summarize(record, session.snapshot(), history.points, report, time.monotonic() - t0)
    if as_json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        _print_summary(summary, out)
    fell = all(summary.last_loss.get(r, 1e9) < summary.first_loss.get(r, -1e9) for r in summary.first_loss)
    ok = summary.state == JobState.FINISHED and bool(summary.first_loss) and fell
    return 0 if ok else 1


def _watch_headless(record: JobRecord, session: LiveSession, history: LossHistory, err: Console,
                    quiet: bool) -> StatusReport:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[dim]-[/] training"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=err,
                  disable=quiet) as bar:
        task = bar.add_task("train", total=None, info="compiling the graph...")

        def tick() -> None:
            snap_total = (session.snapshot().get("cluster") or {}).get("total_steps") or 0
            for rank, step, loss in history.drain():
                # A line per rank every 16 steps (and the first and last) keeps the output readable.
                if not quiet and (step == 1 or step % 16 == 0 or step == snap_total):
                    bar.console.print(f"  rank {rank} step {step:>4}  loss {loss:.6f}", highlight=False)
            cluster = session.snapshot().get("cluster", {})
            if cluster.get("total_steps"):
                tps = cluster.get("tokens_per_s")
                info = f"{tps:,.0f} tokens/s" if tps else ""
                bar.update(task, completed=cluster.get("step") or 0, total=cluster["total_steps"], info=info)

        report = wait_for_end(record, on_tick=tick, poll_s=2.0)
        time.sleep(0.5)
        tick()
    return report


def _print_summary(s: DemoSummary, out: Console) -> None:
    colour = "green" if s.state == "finished" else "red"
    out.print(f"\n[bold]{s.job_id}[/]: [{colour}]{s.state}[/]" + (f" ({s.cause})" if s.cause else "")
              + f" in {s.wall_s:.0f} s")
    for rank in sorted(s.first_loss):
        out.print(f"  rank {rank}: {s.steps.get(rank, 0)} steps, loss {s.first_loss[rank]:.4f} -> "
                  f"{s.last_loss[rank]:.4f}")
    if s.samples_per_s:
        out.print(f"  throughput: {s.samples_per_s:.1f} samples/s, "
                  f"{(s.tokens_per_s or 0):,.0f} tokens/s (all ranks)")
    out.print(f"  job dir:     {s.job_dir}")
    out.print(f"  worker logs: {s.job_dir / 'output' / 'msrun_log'} ({len(s.logs)} files)")
    for rank, files in sorted(s.checkpoints.items()):
        last = files[-1] if files else None
        out.print(f"  checkpoints rank {rank}: {len(files)} file(s)" + (f", last {last}" if last else ""))
