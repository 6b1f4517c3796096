"""How ``mfctl plan`` prints the memory estimate (and DryRun's figures beside it)."""

from __future__ import annotations

from rich.markup import escape

from mfctl.cli.views import note, out, print_table


def _gb(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_memory(memory: dict | None, dryrun: dict | None = None) -> None:
    """The per-stage table of ``memory`` (``MemoryEstimate.to_json()``); ``dryrun``: DryRun's
    result per stage (``{"stages": {stage: {...}}}`` or ``{"skipped": why}``)."""
    if memory is None:
        out.print("\nmemory: not estimated: CPU training has no device memory limit", highlight=False)
        return
    if not memory["stages"]:
        out.print("\nmemory: not estimated: " + escape("; ".join(memory.get("unaccounted", []))),
                  highlight=False)
        return
    limit = memory["limit_gb"]
    out.print(f"\nmemory per device, GiB (limit {limit:g} from {memory['limit_source']}):",
              highlight=False)
    measured = {m["stage"]: m for m in (dryrun or {}).get("stages") or []}
    headers = ["stage", "layers", "params", "grads", "optim", "activ", "other", "total", "of limit"]
    if measured:
        headers.append("dryrun peak")
    rows = []
    for s in memory["stages"]:
        over = s["total_gb"] > limit
        total = f"[red]{s['total_gb']:.1f}[/]" if over else f"{s['total_gb']:.1f}"
        row = [str(s["stage"]), str(s["layers"]), _gb(s["params_gb"]), _gb(s["grads_gb"]),
               _gb(s["optimizer_gb"]), _gb(s["activations_gb"]), _gb(s["other_gb"]), total,
               f"{100 * s['total_gb'] / limit:.0f}%"]
        if measured:
            m = measured.get(s["stage"])
            row.append(_gb(m.get("peak_gb")) if m else "-")
        rows.append(row)
    print_table(headers, rows, keep=(0,))
    for text in memory.get("assumptions", []):
        note(escape(text))
    for text in memory.get("unaccounted", []):
        note(f"could not account for: {escape(text)}")
    if dryrun and dryrun.get("skipped"):
        note(f"dryrun: {escape(dryrun['skipped'])}")
    for m in measured.values():
        if m.get("problem"):
            note(f"dryrun stage {m['stage']} (rank {m['rank']}, exit {m['rc']}): {escape(m['problem'])}")
    if memory["fits"]:
        out.print(f"fits: the largest stage ({memory['peak_stage']}) needs "
                  f"{max(s['total_gb'] for s in memory['stages']):.1f} of {limit:g} GiB", highlight=False)
    else:
        out.print(f"[red]does not fit:[/] {escape(memory.get('refusal', ''))}", highlight=False)
