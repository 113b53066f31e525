"""Inline SVG charts of figures across runs, for the matrix page: one chart
per figure (clause and name), one bar per run, each drawn against its
deadline (a solid line) and half of it (a dashed line).  Plain SVG, no
script and no external asset."""

from __future__ import annotations

import html
from typing import Any

from conformance import figures as figs

BAR_H, GAP, LABEL_W, PLOT_W, VALUE_W = 16, 6, 230, 360, 140


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def figure_series(
    runs: list[tuple[str, dict[str, Any]]],
) -> dict[tuple[str, str], list[tuple[str, dict[str, Any]]]]:
    """(clause, figure name) -> [(run label, figure)], in the order of the runs;
    a figure measured more than once in a run (several tests or repetitions) counts with its worst."""
    series: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = {}
    for label, res in runs:
        worst: dict[tuple[str, str], dict[str, Any]] = {}
        for t in res["tests"]:
            for f in figs.of(t):
                key = (f["clause"], f["name"])
                if key not in worst or f["value"] > worst[key]["value"]:
                    worst[key] = f
        for key, f in worst.items():
            series.setdefault(key, []).append((label, f))
    return dict(sorted(series.items()))


def chart(clause: str, name: str, points: list[tuple[str, dict[str, Any]]]) -> str:
    """One horizontal bar chart: a bar per run, the deadline and its half as lines
    across the chart; when the runs' deadlines differ (the closest wait of one run
    may be another step than another's), each bar's own, as ticks beside it."""
    deadlines = [float(f["deadline"]) for _, f in points if f.get("deadline")]
    deadline = max(deadlines) if deadlines else None
    shared = len(set(deadlines)) == 1 and len(deadlines) == len(points)
    top = max([f["value"] for _, f in points] + ([deadline] if deadline else [])) or 1.0
    scale = PLOT_W / (top * 1.05)
    height = len(points) * (BAR_H + GAP) + GAP + 18
    width = LABEL_W + PLOT_W + VALUE_W
    unit = points[0][1].get("unit") or ""
    parts = [
        f"<svg class='chart' role='img' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' data-clause='{_e(clause)}' data-figure='{_e(name)}'>",
        f"<title>{_e(clause)}: {_e(name)} ({_e(unit)})</title>",
    ]
    for i, (label, f) in enumerate(points):
        y = GAP + i * (BAR_H + GAP)
        w = max(1.0, f["value"] * scale)
        css = "bar near" if figs.near(f) else "bar"
        fill = "#d98a1c" if figs.near(f) else "#4a7fc1"
        parts.append(
            f"<text x='{LABEL_W - 6}' y='{y + BAR_H - 4}' text-anchor='end' font-size='11'>{_e(label)}</text>"
            f"<rect class='{css}' x='{LABEL_W}' y='{y}' width='{w:.1f}' height='{BAR_H}' fill='{fill}' "
            f"data-value='{f['value']}'><title>{_e(label)}: {_e(figs.text(f))}{_e(_what(f))}</title></rect>"
            f"<text class='value' x='{LABEL_W + w + 4:.1f}' y='{y + BAR_H - 4}' font-size='11'>"
            f"{_e(figs.text(f))}</text>"
        )
        if f.get("deadline") and not shared:
            for frac, dash, what in ((1.0, "", "deadline"), (figs.NEAR, "4 3", "half")):
                x = LABEL_W + float(f["deadline"]) * frac * scale
                parts.append(
                    f"<line class='{what} own' x1='{x:.1f}' x2='{x:.1f}' y1='{y - 2}' y2='{y + BAR_H + 2}' "
                    f"stroke='#a01010' stroke-width='1'{f' stroke-dasharray={dash!r}' if dash else ''}/>"
                )
        if f.get("floor") is not None:
            fx = LABEL_W + float(f["floor"]) * scale
            parts.append(
                f"<line class='floor' x1='{fx:.1f}' x2='{fx:.1f}' y1='{y}' y2='{y + BAR_H}' "
                "stroke='#222' stroke-width='2'/>"
            )
    bottom = height - 16
    if deadline and shared:
        for frac, dash, what in ((1.0, "", "deadline"), (figs.NEAR, "4 3", "half")):
            x = LABEL_W + deadline * frac * scale
            parts.append(
                f"<line class='{what}' x1='{x:.1f}' x2='{x:.1f}' y1='2' y2='{bottom}' stroke='#a01010' "
                f"stroke-width='1'{f' stroke-dasharray={dash!r}' if dash else ''}/>"
                f"<text x='{x:.1f}' y='{height - 4}' font-size='10' text-anchor='middle'>"
                f"{_e(what)} {deadline * frac:g}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _what(f: dict[str, Any]) -> str:
    return f" ({f['what']})" if f.get("what") else ""


def charts_section(runs: list[tuple[str, dict[str, Any]]]) -> str:
    """The matrix page's figures: every figure's chart, by clause."""
    series = figure_series(runs)
    if not series:
        return ""
    body = "".join(
        f"<figure class='figure-chart'><figcaption><b>{_e(clause)}</b> {_e(name)}</figcaption>"
        f"{chart(clause, name, points)}</figure>"
        for (clause, name), points in series.items()
    )
    return (
        "<h2 id='figures'>Figures across runs</h2><p>Each bar is the worst a run measured; the solid line "
        "is the clause's deadline, the dashed one half of it (bars past it are orange); where runs differ "
        "in deadline, each bar has its own as short red lines; a black tick is "
        f"the floor.</p><div id='charts'>{body}</div>"
    )
