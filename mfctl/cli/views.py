"""Everything mfctl prints with rich: tables, one-line summaries, progress bars.

The commands decide what to show; these functions decide how. Tables keep job ids, hosts and rank
lists whole at any terminal width (see ``table``). ``out`` is stdout, ``err`` is stderr: notes,
progress and errors go to ``err`` so that stdout stays the answer (and ``--json`` stays JSON).
"""

from __future__ import annotations

import datetime as dt
import json

from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console()
err = Console(stderr=True)

STATE_COLOURS = {"running": "green", "failed": "red", "finished": "cyan"}


def print_json(value, **kwargs) -> None:
    """Plain print, not rich: JSON must not be wrapped or highlighted."""
    print(json.dumps(value, indent=2, **kwargs))


def say(text: str) -> None:
    """A progress line of a long-running command (stderr, dimmed dash)."""
    err.print(f"[dim]-[/] {text}", highlight=False)


def note(text: str) -> None:
    err.print(f"[yellow]note:[/] {text}")


def table(headers: list[str], rows: list[list[str]], keep: tuple[int, ...], **kwargs) -> Table:
    """A table whose ``keep`` columns (job ids, hosts, rank lists: what the user types next) are
    never cut: they are as wide as their longest value, and every other column wraps or folds first.
    The outer frame is left off: at 80 columns its two cells are what a 29-character id needs."""
    from rich.cells import cell_len
    from rich.text import Text

    t = Table(show_edge=False, **kwargs)
    for i, header in enumerate(headers):
        if i in keep:
            width = max([cell_len(header)] + [cell_len(Text.from_markup(r[i]).plain) for r in rows])
            t.add_column(header, no_wrap=True, overflow="fold", min_width=width)
        else:
            t.add_column(header, overflow="fold")
    for r in rows:
        t.add_row(*r)
    return t


def print_table(headers: list[str], rows: list[list[str]], keep: tuple[int, ...]) -> None:
    """Print ``table(headers, rows, keep)`` on stdout.

    When every row fits the terminal on one line (the usual case) the lines are laid out here, as
    rich lays out that table, in one ``Text``: rich's table layout costs ~0.5 ms a row, which was a
    tenth of ``mfctl check``'s CPU per node. Anything that needs wrapping or folding goes to rich.
    """
    from rich.text import Text

    parsed = [[Text.from_markup(c) if "[" in c else c for c in r] for r in rows]
    plain = [[c if isinstance(c, str) else c.plain for c in r] for r in parsed]
    if any("\n" in c for r in plain for c in r):
        out.print(table(headers, rows, keep))
        return
    cells = [[_cell_width(c) for c in r] for r in plain]  # each cell's width, measured once
    widths = [max([_cell_width(h)] + [r[i] for r in cells]) for i, h in enumerate(headers)]
    if sum(widths) + 3 * len(widths) - 1 > out.width:
        out.print(table(headers, rows, keep))
        return
    text = Text(no_wrap=True, overflow="ignore")
    for i, h in enumerate(headers):
        if i:
            text.append("┃")
        text.append(" " + _pad(h, widths[i]) + " ", "table.header")
    text.append("\n" + "╇".join("━" * (w + 2) for w in widths))
    for r, w in zip(parsed, cells):
        text.append("\n")
        for i, cell in enumerate(r):
            if i:
                text.append("│")
            text.append(" ")
            text.append(cell)
            text.append(" " * (widths[i] - w[i] + 1))
    out.print(text, highlight=False, soft_wrap=True)


def _cell_width(s: str) -> int:
    if s.isascii():
        return len(s)
    from rich.cells import cell_len

    return cell_len(s)


def _pad(s: str, width: int) -> str:
    return s + " " * (width - _cell_width(s))


# --------------------------------------------------------------------------- job: init / plan

def print_created(job, directory) -> None:
    if job.layout_note:
        out.print(f"[yellow]note:[/] {job.layout_note}")
    out.print(f"Created job [bold]{job.spec.name}[/] in {job.spec_path}: {job.preset.name}, "
              f"{len(job.entries)} node(s) x {job.devices_per_node} devices, "
              f"dp {job.layout.data_parallel} mp {job.layout.model_parallel} "
              f"pp {job.layout.pipeline_stage}.")
    out.print(f"Next: [bold]cd {directory} && mfctl plan[/], then [bold]mfctl launch[/].")


def print_plan(job, launch_plan) -> None:
    if launch_plan.layout_note:
        note(launch_plan.layout_note)
    lay = launch_plan.layout
    out.print(f"[bold]{job.spec.name}[/]: {job.preset.name}, world size {launch_plan.world_size}, "
              f"master {launch_plan.master_addr}:{launch_plan.master_port}, launcher {launch_plan.launcher}, "
              f"dp {lay.data_parallel} mp {lay.model_parallel} pp {lay.pipeline_stage} "
              f"micro_batch_num {lay.micro_batch_num}")
    if launch_plan.batch is not None:
        b = launch_plan.batch
        out.print(f"global batch: {b.sequences:,} sequences x {b.seq_length:,} tokens = {b.tokens:,} "
                  f"tokens per step ({b.formula()})")
    devices = launch_plan.nodes[0].devices
    if devices is not None:
        out.print(f"devices on each node: {','.join(map(str, devices))} (ASCEND_RT_VISIBLE_DEVICES)",
                  highlight=False)
    set_env = job.spec.ascend.set_env
    if set_env is not None:
        out.print(f"CANN environment: {', '.join(escape(p) for p in set_env) or 'none'} (ascend.set_env)",
                  highlight=False)
    rows = []
    for node in launch_plan.nodes:
        ranks = f"{node.ranks[0]}-{node.ranks[-1]}" if len(node.ranks) > 1 else str(node.ranks[0])
        rows.append([escape(node.host), str(node.node_rank), ranks, escape(node.command)])
    out.print(table(["node", "NODE_RANK", "ranks", "command"], rows, keep=(0, 2), show_lines=True))


# --------------------------------------------------------------------------- run: check / launch

def print_checks(checks, as_json: bool) -> None:
    if as_json:
        print_json({"ok": all(c.ok for c in checks), "nodes": [c.to_json() for c in checks]})
        return
    rows = []
    for c in checks:
        f = c.facts
        free = f.get("disk_free_kb", "")
        rows.append([
            escape(c.host), str(c.node_rank), f.get("python", "-"), f.get("mindspore", "-"),
            f.get("mindformers", "-"), "yes" if f.get("msrun", "MISSING") != "MISSING" and f else "-",
            f.get("dataset", "-"), f"{int(free) // (1024 * 1024)} GiB" if free.isdigit() else "-",
            f.get("port", ""), "[green]ok[/]" if c.ok else "[red]FAIL[/]",
        ])
    print_table(["node", "rank", "python", "mindspore", "mindformers", "msrun", "dataset",
                 "free disk", "port", "result"], rows, keep=(0, 9))
    if any(c.npu for c in checks):
        print_table(["node", "NPUs", "not OK", "busy", "links up", "net health", "driver", "firmware", "CANN"],
                    [_npu_row(c.host, c.npu) for c in checks if c.npu], keep=(0,))
    for c in checks:
        for problem in c.problems:
            out.print(f"[red]{c.host}[/]: {escape(problem)}", highlight=False)
        for warning in c.warnings:
            out.print(f"[yellow]{c.host}[/]: warning: {escape(warning)}", highlight=False)


def _npu_row(host: str, npu: dict) -> list[str]:
    """One node's line of ``check``'s NPU table (its ``--json`` ``npu``, shortened)."""
    chips, links, versions = npu.get("chips", []), npu.get("links", []), npu.get("versions", {})
    models = sorted({c["name"] for c in chips})
    bad = [f"{c['id']}:{c['health']}" for c in chips if c["health"].upper() != "OK"]
    busy = [str(c["id"]) for c in chips if c["processes"]]
    health = sorted({str(x["net_health"]) for x in links if x["net_health"]})
    return [escape(host), f"{len(chips)} x {'/'.join(models)}" if chips else "-", ", ".join(bad) or "-",
            ", ".join(busy) or "-",
            f"{sum(1 for x in links if str(x['link']).upper() == 'UP')}/{len(links)}" if links else "-",
            "/".join(health) or "-", versions.get("driver") or versions.get("npu_smi", "-"),
            versions.get("firmware", "-"), versions.get("cann", "-")]


class RichProgress:
    """The launch's progress on stderr: one line per stage, a bar while files are pushed."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None
        self.task = None

    def stage(self, text: str) -> None:
        self._finish()
        if not self.quiet:
            err.print(f"[dim]-[/] {text}")

    def start_push(self, total: int) -> None:
        if self.quiet:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.bar = Progress(TextColumn("  files"), BarColumn(), MofNCompleteColumn(), console=err,
                            transient=True)
        self.bar.start()
        self.task = self.bar.add_task("push", total=total)

    def advance_push(self) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)

    def _finish(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def print_dry_run(launch_plan) -> None:
    out.print("[bold]Dry run[/]: nothing was contacted or written. Each node would get bundle/ "
              "(config.yaml, launch.sh, node/train.py) in its job dir and run:")
    for node in launch_plan.nodes:
        out.print(f"  [bold]{node.host}[/] (NODE_RANK {node.node_rank}, ranks "
                  f"{node.ranks[0]}-{node.ranks[-1]}) in {escape(node.cwd)}:\n    {escape(node.command)}")


def print_launched(rec, launch_plan) -> None:
    out.print(f"Launched [bold]{rec.id}[/] on {len(launch_plan.nodes)} node(s), world size "
              f"{launch_plan.world_size}.")
    out.print(f"Follow it: [bold]mfctl watch {rec.id}[/]  |  [bold]mfctl status {rec.id}[/]  |  "
              f"[bold]mfctl logs {rec.id} --rank 0 --follow[/]  |  stop: [bold]mfctl stop {rec.id}[/]")


def print_verdict(job_id: str, verdict, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"job": job_id, "state": verdict.state, "cause": verdict.cause}))
    else:
        colour = "green" if verdict.state == "finished" else "red"
        out.print(f"{job_id}: [{colour}]{verdict.state}[/] ({verdict.cause})")


# --------------------------------------------------------------------------- run: jobs / status / stop

def print_jobs(records, notes: dict[str, str] | None = None) -> None:
    """``notes``: what a scheduler says about a job still active (Slurm: "pending (Resources)")."""
    if not records:
        out.print("No jobs yet: 'mfctl launch' in a job directory starts one.")
        return
    rows = []
    for r in records:
        when = dt.datetime.fromtimestamp(r.started_at or r.created_at).strftime("%Y-%m-%d %H:%M:%S")
        colour = STATE_COLOURS.get(r.state, "white")
        rows.append([escape(r.id), f"[{colour}]{r.state}[/]", str(len(r.plan.nodes)),
                     str(r.plan.world_size), when, escape(r.exit_cause or (notes or {}).get(r.id, ""))])
    # The state too keeps its width: it is one word, and "finishe/d" reads worse than a taller cause.
    print_table(["job", "state", "nodes", "world", "started", "cause"], rows, keep=(0, 1))


def print_status(report) -> None:
    rec = report.record
    colour = STATE_COLOURS.get(rec.state, "white")
    cause = f" ({escape(rec.exit_cause)})" if rec.exit_cause else ""
    out.print(f"[bold]{rec.id}[/]: [{colour}]{rec.state}[/]{cause}")
    nodes = [[escape(n.host), str(n.node_rank), str(len(n.procs)) if n.reachable else "-",
              "" if n.exit_code is None else str(n.exit_code), escape(n.error or n.note or "")]
             for n in report.nodes]
    print_table(["node", "NODE_RANK", "processes", "exit code", "note"], nodes, keep=(0,))
    ranks = []
    for r in report.snapshot["ranks"]:
        step = f"{r['step']}/{r['total_steps']}" if r.get("step") is not None else "-"
        loss = f"{r['loss']:.6f}" if isinstance(r.get("loss"), float) else "-"
        ranks.append([str(r["rank"]), escape(str(r.get("node") or "")), step, loss,
                      str(r.get("step_time_ms") if r.get("step_time_ms") is not None else "-"),
                      str(r.get("samples_per_s") if r.get("samples_per_s") is not None else "-"),
                      _percent(r.get("mfu")), str(r.get("state", ""))])
    print_table(["rank", "node", "step", "loss", "step ms", "samples/s/p", "MFU", "state"], ranks, keep=(0, 1))
    # CANN/HCCL failures the logs name by their code, with what to check (the cause's first part).
    for a in [a for a in report.snapshot.get("alerts", []) if a.get("hint")][-5:]:
        out.print(f"[yellow]{escape(str(a.get('kind')))}[/] {escape(str(a.get('message')))}", highlight=False)
        out.print(f"  check: {escape(str(a['hint']))}", highlight=False)


def print_stopped(result: dict) -> None:
    for host, left in result["nodes"].items():
        state = "[green]no process left[/]" if left == 0 else f"[red]{left}[/]"
        out.print(f"{host}: {state}")
    if result.get("scheduler"):
        out.print(escape(result["scheduler"]))
    out.print(f"Job {result['job']} is {result['state']}.")


# --------------------------------------------------------------------------- watch / report

def print_state(snap: dict, as_json: bool) -> None:
    if as_json:
        print_json(snap, default=str)
        return
    if snap.get("scheduler"):
        out.print(f"scheduler: {escape(snap['scheduler'])}")
    c = snap.get("cluster", {})
    chip = (f"  chip {escape(str(c['chip']))} (peak {c.get('peak_tflops'):g} TFLOPS)  MFU {_percent(c.get('mfu'))}"
            if c.get("chip") else "")
    out.print(f"step {c.get('step')}/{c.get('total_steps')}  loss {c.get('loss')}  "
              f"samples/s {c.get('samples_per_s')}  tokens/s {c.get('tokens_per_s')}  state {c.get('state')}{chip}")
    rows = [[str(r["rank"]), escape(str(r.get("node") or "")), f"{r.get('step')}/{r.get('total_steps')}",
             str(r.get("loss")), str(r.get("step_time_ms")), str(r.get("samples_per_s")),
             str(r.get("tflops")), _percent(r.get("mfu")),
             str(r.get("state")), escape(str(r.get("reason") or ""))] for r in snap.get("ranks", [])]
    print_table(["rank", "node", "step", "loss", "step ms", "samples/s/p", "TFLOPS", "MFU", "state", "reason"],
                rows, keep=(0, 1))
    for a in snap.get("alerts", [])[-10:]:
        out.print(f"[yellow]alert[/] {a.get('kind')}: {escape(str(a.get('message')))}", highlight=False)
        if a.get("hint"):  # a CANN failure: what it usually means and what to check
            out.print(f"  check: {escape(str(a['hint']))}", highlight=False)


def _percent(fraction) -> str:
    """An MFU fraction as a percentage (``41.2%``), ``-`` when unknown."""
    if not isinstance(fraction, (int, float)):
        return "-"
    pct = 100.0 * fraction
    return f"{pct:.2g}%" if 0 < pct < 1 else f"{pct:.1f}%"


def print_report_written(result: dict) -> None:
    for text in result["notes"]:
        err.print(f"[yellow]note:[/] {escape(text)}", highlight=False)
    out.print(f"{result['path']}  ({result['points']} points of {len(result['ranks'])} ranks, "
              f"{result['alerts']} alerts, {result['bytes'] // 1024} KiB)", highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------- data

def tokenize_progress(quiet: bool):
    """The bar of ``data prepare`` (stderr, gone when done)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("tokenizing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err, transient=True,
                    # Off a terminal a transient bar leaves a blank line before any error.
                    disable=quiet or not err.is_terminal)


def print_dataset_summary(summary) -> None:
    out.print(f"Wrote {summary.samples} samples of {summary.seq_length + 1} tokens "
              f"({summary.documents} documents, {summary.tokens} tokens) to {summary.output}")
    out.print(f"Tokenizer: {summary.tokenizer} ({summary.vocab_size} pieces). Use it with "
              f"--dataset {summary.output} in 'mfctl init'.")
