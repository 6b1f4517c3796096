"""The report's curves: the steps saved per rank into plotly figures, written without plotly's
per-value validation (``mfctl report``; ``report.py`` lays out the page).

A long run's record holds ~1M steps (64 ranks x 12,000 steps; three charts of them): the columns
are split per rank in C (``map``), consecutive steps become plotly's ``x0``/``dx``, the band is
summarised a step at a time across ranks, and each chart's data is one ``json.dumps`` (plotly's own
figure objects validated every value and its encoder made three passes: seconds per chart).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

MANY_RANKS = 32  # above this, ranks start hidden and the band carries the picture
SHOWN_WHEN_MANY = 8

# (series, chart title, unit on the axis)
CHARTS = (("loss", "loss", ""), ("tokens_per_s", "throughput per rank", "tokens/s"),
          ("step_time_ms", "step time per rank", "ms"))

Columns = tuple[list[int], list[float]]  # a rank's steps and values of one metric


def per_rank(rows: Iterable[tuple], seq_length: int | None) -> dict[str, dict[int, Columns]]:
    """Per metric, per rank, its steps and values in step order (steps whose value is unknown or
    not finite left out); throughput in tokens/s when the sequence length is known, else samples/s."""
    out: dict[str, dict[int, Columns]] = {name: {} for name, _, _ in CHARTS}
    of_rank: dict[int, list[tuple]] = {}
    for row in rows:  # the store gives them by time, then rank: the ranks interleaved
        run = of_rank.get(row[0])
        if run is None:
            run = of_rank[row[0]] = []
        run.append(row)
    for rank in sorted(of_rank):
        run = of_rank[rank]
        run.sort(key=itemgetter(1))
        # (zip(*run) transposes too, but 12,000 arguments make it 10x slower than a map per column)
        steps, loss, ms, sps = (list(map(itemgetter(i), run)) for i in (1, 3, 4, 5))
        if seq_length:
            sps = [v * seq_length if v is not None else None for v in sps]
        for name, col in (("loss", loss), ("tokens_per_s", sps), ("step_time_ms", ms)):
            if None not in col and _all_finite(col):  # the usual case, checked in C
                out[name][rank] = (steps, list(map(float, col)))
                continue
            keep = [i for i, v in enumerate(col) if v is not None and v.__class__ in _NUMBER and math.isfinite(v)]
            if keep:
                out[name][rank] = ([steps[i] for i in keep], [float(col[i]) for i in keep])
    return out


_NUMBER = (int, float)


def _all_finite(col: Sequence[Any]) -> bool:
    try:
        return all(map(math.isfinite, col))
    except TypeError:  # not a number
        return False


def figure(name: str, title: str, unit: str, series: dict[int, Columns], log_y: bool) -> dict[str, Any]:
    """One chart as plotly's figure dict (traces as plain dicts: a long run has a million points,
    and plotly's per-value validation of ``go.Scatter`` took seconds per chart)."""
    import plotly.io as pio

    data: list[dict[str, Any]] = []
    ranks = sorted(series)
    many = len(ranks) > MANY_RANKS
    if many:
        steps, lows, mids, highs = _band(series)
        xs = _xs(steps)
        data.append({"type": "scatter", **xs, "y": highs, "name": "max over ranks", "mode": "lines",
                     "line": {"width": 0}, "hoverinfo": "skip", "showlegend": False})
        data.append({"type": "scatter", **xs, "y": lows, "name": "min..max over ranks", "mode": "lines",
                     "line": {"width": 0}, "fill": "tonexty", "fillcolor": "rgba(120,120,120,0.25)"})
        data.append({"type": "scatter", **xs, "y": mids, "name": "median over ranks", "mode": "lines",
                     "line": {"color": "#555", "dash": "dot"}})
    for i, rank in enumerate(ranks):
        steps, values = series[rank]
        data.append({
            "type": "scatter", **_xs(steps), "y": values, "name": f"rank {rank}",
            "mode": "lines+markers", "marker": {"size": 4},
            "visible": True if not many or i < SHOWN_WHEN_MANY else "legendonly",
            "hovertemplate": f"rank {rank}<br>step %{{x}}<br>{title} %{{y:.6g}}<extra></extra>"})
    layout: dict[str, Any] = {
        "title": {"text": title + (f" ({unit})" if unit else "")}, "height": 380,
        "margin": {"l": 60, "r": 20, "t": 50, "b": 40}, "hovermode": "closest",
        "template": pio.templates["plotly_white"].to_plotly_json(),
        # "normal": a filled band would otherwise turn the legend upside down (rank 63 first).
        "legend": {"title": {"text": "click: show/hide · double-click: only this"}, "traceorder": "normal"},
        "xaxis": {"title": {"text": "step"}}, "yaxis": {"type": "log" if log_y else "linear"}}
    if not ranks:
        layout["annotations"] = [{"text": "no points recorded", "showarrow": False, "xref": "paper",
                                  "yref": "paper", "x": 0.5, "y": 0.5}]
    return {"data": data, "layout": layout}


def plotlyjs() -> str:
    """plotly.js itself, inline (as ``to_html(include_plotlyjs=True)`` writes it)."""
    from plotly.offline import get_plotlyjs

    return ('<script type="text/javascript">window.PlotlyConfig = {MathJaxConfig: \'local\'};</script>\n'
            f'<script charset="utf-8" type="text/javascript">{get_plotlyjs()}</script>\n')


def chart_div(fig: dict[str, Any], div_id: str, config: dict[str, Any]) -> str:
    """A chart's div and the script that draws it, its data as one JSON text (plotly's own
    encoder makes three passes over a million numbers: encode, decode, encode). The values are
    finite numbers and strings, which ``json`` writes as JavaScript reads them; "</" is written
    "<\\/" so no text in it ends the script element."""
    def js(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")

    height = fig["layout"].get("height")
    return (f'<div id="{div_id}" class="plotly-graph-div" style="height:{height}px; width:100%;"></div>\n'
            '<script type="text/javascript">window.PLOTLYENV=window.PLOTLYENV || {};\n'
            f'if (document.getElementById("{div_id}")) {{ Plotly.newPlot("{div_id}", {js(fig["data"])}, '
            f'{js(fig["layout"])}, {js(config)}); }}</script>\n')


def _xs(steps: list[int]) -> dict[str, Any]:
    """A trace's x: consecutive steps as plotly's ``x0`` and ``dx`` (the same points; a long
    run's page is half the size), others as the list."""
    if len(steps) > 1 and steps[-1] - steps[0] == len(steps) - 1:
        return {"x0": steps[0], "dx": 1}
    return {"x": steps}


def _band(series: dict[int, Columns]) -> tuple[list[int], list[float], list[float], list[float]]:
    """Per step, the (min, median, max) of the ranks' values: steps, lows, medians, highs."""
    columns = list(series.values())
    first = columns[0][0] if columns else []
    steps: list[int]
    at_step: Iterable[Sequence[float]]
    if all(steps_of == first for steps_of, _values in columns):
        # Every rank has the same steps (the usual case): the ranks' values of a step side by side.
        steps, at_step = first, zip(*(values_of for _steps, values_of in columns))
    else:
        at: dict[int, list[float]] = {}
        for steps_of, values_of in columns:
            for step, value in zip(steps_of, values_of):
                values = at.get(step)
                if values is None:
                    at[step] = [value]
                else:
                    values.append(value)
        steps = sorted(at)
        at_step = (at[step] for step in steps)
    lows, mids, highs = [], [], []
    for column in at_step:
        values = sorted(column)
        n = len(values)
        lows.append(values[0])
        mids.append(values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2.0)
        highs.append(values[-1])
    return steps, lows, mids, highs
