"""``mfctl report``: one self-contained HTML page about a job, to keep or to paste into a report.

The page is built from what the job record keeps (``JobStore``): the plan and spec, the per-rank
steps the collector saved while the job was watched (or read once from the nodes' logs when none
were saved), the alerts, the state changes, restarts and the exit cause. The charts are Plotly
figures with plotly.js inlined (``include_plotlyjs=True``): the file opens offline, from a mail
attachment or a CI artifact, and nothing in it points outside it. One trace per rank: a click on a
legend entry hides or shows that rank, a double click isolates it, hovering shows the values.
Above ``report_charts.MANY_RANKS`` ranks the traces of all but the first few start hidden (still one click away)
and the band of the ranks (min / median / max) is drawn instead, so the page stays light.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from operator import itemgetter, lt
from pathlib import Path
from typing import Any

from mfctl.cluster.health import JobState
from mfctl.jobs.report_charts import CHARTS, chart_div, figure, per_rank, plotlyjs
from mfctl.metrics.mfu import mfu_summary
from mfctl.metrics.types import Snapshot
from mfctl.records.record import JobRecord
from mfctl.records.store import JobStore

#: Reads a job's logs once, saving its steps to the store; returns the snapshot and the step rows
#: it saved (the report draws them without reading a million rows back from the store).
Collect = Callable[[JobRecord, JobStore], tuple[Snapshot, list[tuple]]]


@dataclass
class ReportData:
    record: JobRecord
    rows: list[tuple]  # (rank, step, total_steps, loss, step_time_ms, samples_per_s, time)
    alerts: list[dict[str, Any]]
    events: list[tuple[float, str, str]]  # (time, kind, message), alerts excluded
    seq_length: int | None
    notes: list[str] = field(default_factory=list)
    #: The job's MFU as last recorded (``mfctl.metrics.mfu.mfu_summary``): chip, peak, per rank.
    mfu: dict[str, Any] | None = None


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _duration(a: float | None, b: float | None) -> str:
    if a is None or b is None or b < a:
        return "-"
    s = int(b - a)
    return f"{s // 3600}h{(s % 3600) // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def summary_rows(data: ReportData) -> list[tuple[str, str]]:
    rec = data.record
    plan, spec = rec.plan, rec.spec
    par = plan.layout.as_dict()
    rows = [
        ("job", rec.id), ("name", rec.name), ("model", str(spec.get("model", "-"))),
        ("state", rec.state), ("exit cause", rec.exit_cause or "-"),
        ("created", _when(rec.created_at)), ("started", _when(rec.started_at)),
        ("ended", _when(rec.ended_at)), ("run time", _duration(rec.started_at, rec.ended_at)),
        ("restarts", str(rec.restarts) + (f" (resumed from {rec.resumed_from})" if rec.resumed_from else "")),
        ("world size", str(plan.world_size)),
        ("nodes", ", ".join(f"{n.host} (NODE_RANK {n.node_rank}, ranks "
                            f"{n.ranks[0]}-{n.ranks[-1]})" for n in plan.nodes if n.ranks) or "-"),
        ("layout", " ".join(f"{k} {v}" for k, v in par.items()) or "-"),
        ("launcher", f"{plan.launcher}, master {plan.master_addr}:{plan.master_port}"),
        ("job directory", rec.job_dir),
    ]
    train = spec.get("train") or {}
    rows += [(f"train.{k}", json.dumps(v) if not isinstance(v, str) else v) for k, v in sorted(train.items())]
    if data.seq_length:
        rows.append(("sequence length", str(data.seq_length)))
    if data.mfu:
        m = data.mfu
        rows.append(("chip", f"{m['chip']}: peak {m['peak_tflops']:g} TFLOPS dense BF16/FP16 ({m['source']})"))
        rows.append(("MFU", f"{_percent(m.get('mfu'))}, mean of {len(m.get('ranks') or [])} ranks"
                            + (f" at step {m['step']}" if m.get("step") is not None else "")
                            + " (train_throughput_per_npu over the peak; README, 'MFU')"))
    steps = [r[1] for r in data.rows]
    if steps:
        rows.append(("steps recorded", f"{len(data.rows)} points, steps {min(steps)}-{max(steps)}, "
                                       f"{len({r[0] for r in data.rows})} ranks"))
    return rows


def _percent(fraction: Any) -> str:
    return f"{100.0 * fraction:.1f}%" if isinstance(fraction, (int, float)) else "-"


def _mfu_table(m: dict[str, Any] | None) -> str:
    """Each rank's TFLOPS and MFU, as last recorded."""
    if not m or not m.get("ranks"):
        return ('<p class="muted">no MFU: the chip or the ranks&#x27; TFLOPS are unknown '
                '(README, &quot;MFU&quot;)</p>')
    rows = [(str(rank), "-" if tflops is None else f"{tflops:g}", _percent(mfu))
            for rank, tflops, mfu in sorted(m["ranks"], key=lambda r: r[0])]
    return _table(("rank", "TFLOPS", f"MFU of {m['peak_tflops']:g} TFLOPS ({m['chip']})"), rows)


def _check(alert: dict[str, Any]) -> str:
    """A CANN alert's code and what to check (``mfctl.metrics.cann``); "" for others."""
    if not alert.get("hint"):
        return ""
    return f"{alert['code']}: {alert['hint']}" if alert.get("code") else str(alert["hint"])


def _who(alert: dict[str, Any]) -> str:
    """The rank of an alert, or the ranks of one that stands for several."""
    ranks = alert.get("ranks")
    if isinstance(ranks, (list, tuple)) and ranks:
        return ", ".join(str(r) for r in ranks)
    return "-" if alert.get("rank") is None else str(alert["rank"])


def _alerts_figure(alerts: Sequence[dict[str, Any]], events: Sequence[tuple[float, str, str]]):
    import plotly.graph_objects as go

    fig = go.Figure()
    kinds: dict[str, list[dict[str, Any]]] = {}
    for a in alerts:
        kinds.setdefault(str(a.get("kind") or "alert"), []).append(a)
    for kind, items in sorted(kinds.items()):
        fig.add_trace(go.Scatter(
            x=[dt.datetime.fromtimestamp(a["time"]) for a in items], y=[kind] * len(items), mode="markers",
            name=kind, marker={"size": 10},
            text=[html.escape(f"rank {_who(a)}, step {a.get('step')}: {a.get('message')}") for a in items],
            hovertemplate="%{x}<br>%{text}<extra>" + html.escape(kind) + "</extra>"))
    states = [e for e in events if e[1] == "state"]
    if states:
        fig.add_trace(go.Scatter(
            x=[dt.datetime.fromtimestamp(t) for t, _, _ in states], y=["job state"] * len(states),
            mode="markers+text", name="job state", marker={"symbol": "diamond", "size": 11},
            text=[m.split(":")[0] for _, _, m in states], textposition="top center",
            hovertext=[html.escape(m) for _, _, m in states], hovertemplate="%{x}<br>%{hovertext}<extra></extra>"))
    fig.update_layout(title={"text": "alerts and state changes"}, height=300, template="plotly_white",
                      margin={"l": 100, "r": 20, "t": 50, "b": 40}, hovermode="closest")
    return fig


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1300px;
       color: #222; padding: 0 16px; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.92em; }
td, th { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.k { color: #555; white-space: nowrap; }
.state-finished { color: #1a7f37; font-weight: bold; } .state-failed { color: #c62828; font-weight: bold; }
.note { color: #8a5a00; } .muted { color: #777; }
"""


def _table(headers: Sequence[str] | None, rows: Iterable[Sequence[str]], key_col: bool = False) -> str:
    parts = ["<table>"]
    if headers:
        parts.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr>")
    for row in rows:
        cells = [f'<td class="k">{html.escape(c)}</td>' if key_col and i == 0 else f"<td>{html.escape(c)}</td>"
                 for i, c in enumerate(row)]
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    return "\n".join(parts)


def build_html(data: ReportData) -> str:
    """The whole page as one string: styles, plotly.js, data and markup inline."""
    import plotly.io as pio

    rec = data.record
    world = rec.plan.world_size
    series = per_rank(data.rows, data.seq_length)
    if not data.seq_length:
        series_titles = {"tokens_per_s": ("throughput per rank", "samples/s")}
    else:
        series_titles = {}
    figures: list[tuple[str, Any]] = []
    for name, title, unit in CHARTS:
        title, unit = series_titles.get(name, (title, unit))
        # A log axis when the values span more than 20x: the first step's graph compilation would
        # otherwise flatten every other step time, and a diverging loss every healthy one.
        lows = [min(values) for _steps, values in series[name].values()]
        highs = [max(values) for _steps, values in series[name].values()]
        log_y = name != "tokens_per_s" and bool(lows) and min(lows) > 0 and max(highs) / min(lows) > 20
        figures.append((name, figure(name, title, unit, series[name], log_y)))
    figures.append(("alerts", _alerts_figure(data.alerts, data.events)))

    # No logo link and no "edit in Chart Studio" button: the page links nowhere.
    config = {"displaylogo": False, "responsive": True, "showSendToCloud": False}
    divs = []
    for i, (name, fig) in enumerate(figures):
        # plotly.js goes in once, with the first chart; the others use it.
        div = chart_div(fig, f"chart-{name}", config) if isinstance(fig, dict) else pio.to_html(
            fig, full_html=False, include_plotlyjs=False, include_mathjax=False, config=config,
            div_id=f"chart-{name}")
        divs.append((plotlyjs() if i == 0 else "") + div)
    # plotly.js carries a few links as text inside its strings (map attributions, its logo), which
    # this page never shows. "\x68" is "h" in a JS string: the same strings to the script, and no
    # ``href="http`` left in the file for anyone checking that it points nowhere.
    divs[0] = divs[0].replace('href="http', 'href="\\x68ttp').replace("href='http", "href='\\x68ttp")

    state_class = f"state-{rec.state}" if rec.state in (JobState.FINISHED, JobState.FAILED) else ""
    alert_rows = [(_when(a.get("time")), str(a.get("kind") or ""), _who(a),
                   "-" if a.get("step") is None else str(a["step"]), str(a.get("message") or ""), _check(a))
                  for a in data.alerts]
    event_rows = [(_when(t), kind, message) for t, kind, message in data.events]
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in data.notes)
    generated = dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    alerts_table = (_table(("time", "kind", "rank", "step", "message", "what to check"), alert_rows) if alert_rows
                    else '<p class="muted">no alerts were recorded</p>')
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mfctl report: {html.escape(rec.id)}</title>
<style>{CSS}</style>
</head>
<body>
<h1>{html.escape(rec.id)}</h1>
<p><span class="{state_class}">{html.escape(rec.state)}</span>
{html.escape(": " + rec.exit_cause) if rec.exit_cause else ""}
<span class="muted"> · {world} ranks · restarts {rec.restarts} · report generated {generated} by mfctl</span></p>
{notes}
<h2>Plan and configuration</h2>
{_table(None, summary_rows(data), key_col=True)}
<h2>Curves per rank</h2>
<p class="muted">Hover a curve for its values; click a rank in a legend to hide or show it,
double-click to see only that rank.</p>
{divs[0]}
{divs[1]}
{divs[2]}
<h2>Model FLOPs utilisation</h2>
{_mfu_table(data.mfu)}
<h2>Alerts, restarts and exit</h2>
<p>Exit cause: <b>{html.escape(rec.exit_cause or "-")}</b> · restarts: <b>{rec.restarts}</b>
{("· resumed from <b>" + html.escape(rec.resumed_from) + "</b>") if rec.resumed_from else ""}</p>
{divs[3]}
<h3>Alerts ({len(alert_rows)})</h3>
{alerts_table}
<h3>Job events</h3>
{_table(("time", "kind", "message"), event_rows) if event_rows else '<p class="muted">no events</p>'}
</body>
</html>
"""


def last_saved(rows: list[tuple]) -> list[tuple]:
    """As the store keeps them: one row per rank and step, the last one saved. A single read
    saves each rank's steps in order, (rank, step) rising: then nothing repeats and the rows stand
    as they are (checked in C; the dict of a long run's 768k keys took 0.24 s)."""
    keys = list(map(itemgetter(0, 1), rows))
    if all(map(lt, keys, islice(keys, 1, None))):
        return rows
    return list(dict(zip(keys, rows)).values())


def load_report_data(record: JobRecord, store, collect: Collect | None = None) -> ReportData:
    """What the store keeps about ``record``; with ``collect`` and no saved steps, the nodes'
    logs are read once (and saved) first: ``collect(record, store)`` returns the snapshot and the
    rows it saved (live's
    read-once, handed in by the CLI: one-shot jobs code does not run the live pipeline itself)."""
    from mfctl.jobs.status import seq_length_of

    notes: list[str] = []
    mfu: dict[str, Any] | None = None
    rows = list(store.metrics(record.id))
    if not rows and collect is not None:
        from mfctl.errors import MfctlError

        try:
            snap, saved = collect(record, store)
            mfu = mfu_summary(snap)
            rows = last_saved(saved)
            for host, why in (snap.get("unreachable") or {}).items():
                notes.append(f"{host}: could not read its logs: {why}")
        except (MfctlError, OSError) as exc:
            notes.append(f"no metrics were saved for this job and its logs could not be read: {exc}")
    if not rows:
        notes.append("no steps recorded: the charts are empty")
    alerts, seen = [], set()
    for a in store.alerts(record.id):
        key = (a.get("kind"), a.get("rank"), a.get("step"), a.get("message"), a.get("time"))
        if key not in seen:  # the demo's dashboard and its summary may both have kept one
            seen.add(key)
            alerts.append(a)
    events = [e for e in store.events(record.id) if e[1] not in ("alert", "mfu")]
    if mfu is None:  # the latest MFU a session recorded (mfctl.live.session)
        recorded = [e[2] for e in store.events(record.id) if e[1] == "mfu"]
        mfu = json.loads(recorded[-1]) if recorded else None
    return ReportData(record, rows, alerts, events, seq_length_of(record), notes, mfu)


def write_report(record: JobRecord, store, output: Path | None = None,
                 collect: Collect | None = None) -> dict[str, Any]:
    """Write the page (default ``<job dir>/report.html``); returns what was written."""
    data = load_report_data(record, store, collect)
    path = output or Path(record.job_dir) / "report.html"
    page = build_html(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return {"job": record.id, "path": str(path), "bytes": len(page.encode()), "points": len(data.rows),
            "ranks": sorted({r[0] for r in data.rows}), "alerts": len(data.alerts), "notes": data.notes}
