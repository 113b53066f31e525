"""What changed between runs, as a person reads it: text for the terminal and a
self-contained HTML page (inline CSS, no script), from ``conformance.diff``."""

from __future__ import annotations

import html

from conformance import figures as figs
from conformance.diff import (
    CATEGORIES,
    FLOOR_SHARE,
    NO_DEADLINE_FLOOR,
    NOT_CLAIMED,
    Change,
    Diff,
    Moved,
    RunDiff,
    RunRef,
)
from conformance.report import _CSS

_EXTRA_CSS = ".worse{color:#a01010;font-weight:bold}.better{color:#176317}.none{color:#777}"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def floor_rule(factor: float) -> str:
    """How figures are compared, in one sentence."""
    units = ", ".join(f"{v:g} {u}" for u, v in NO_DEADLINE_FLOOR.items())
    return (
        f"figures moved by more than {factor:g}x either way (every figure is better lower); "
        "noise floor: each value is raised to the figure's measured floor (a latency), else "
        f"{FLOOR_SHARE:.0%} of its deadline, else {units}"
    )


def _status(s: str | None) -> str:
    return s if s is not None else "absent"


def _num(x: object) -> str:
    return f"{float(x):.3g}" if isinstance(x, int | float) else "none"


def _value(f: dict[str, object]) -> str:
    return _num(f["value"])


def moved_text(m: Moved) -> str:
    """ "STOP-1 terminate → launcher back [test]: 1.05 → 9.8 s (deadline 6 s), 9.3x worse" """
    unit = m.after.get("unit") or ""
    da, db = (_num(f.get("deadline")) for f in (m.before, m.after))
    deadline = f"deadline {db} {unit}" if da == db else f"deadline {da} → {db} {unit}"
    values = f"{_value(m.before)} → {_value(m.after)} {unit}"
    moved = f"{m.ratio:.1f}x {_way(m)} (floor {m.floor:.3g} {unit})"
    return f"{m.clause} {m.name}{_what(m)} [{m.test}]: {values} ({deadline}), {moved}"


def _what(m: Moved) -> str:
    """The step a generic figure (the closest wait) timed, in B."""
    return f" ({m.after['what']})" if m.after.get("what") else ""


def _change_text(c: Change) -> str:
    line = f"{c.name}: {_status(c.before)} → {_status(c.after)}"
    return line + (f" — {c.detail}" if c.detail else "")


def _pair_head(p: RunDiff) -> str:
    return f"{p.a.profile} · {p.a.target}: A {p.a.path} ({p.a.started}) → B {p.b.path} ({p.b.started})"


def text(d: Diff) -> str:
    """The diff for the terminal: per pair, verdicts, clauses, tests and figures that changed."""
    lines: list[str] = []
    for p in d.pairs:
        lines.append(_pair_head(p))
        for t in p.tiers:
            lines.append(f"  verdict {t.tier or 'contract'}: {t.before} → {t.after}")
        for kind, changes in (("clauses", p.clauses), ("tests", p.tests)):
            for cat in CATEGORIES:
                mine = [c for c in changes if c.category == cat]
                if mine:
                    lines.append(f"  {kind} {cat} ({len(mine)}):")
                    lines += [f"    {_change_text(c)}" for c in mine]
        one_side = f"; {p.figures_unpaired} measured in one run only" if p.figures_unpaired else ""
        if p.figures:
            lines.append(f"  figures moved ({len(p.figures)} of {p.figures_compared} compared{one_side}):")
            lines += [f"    {moved_text(m)}" for m in p.figures]
        elif p.empty:
            said = f"{p.figures_compared} compared{one_side}"
            lines.append(f"  no change: same verdicts and statuses, no figure moved ({said})")
        else:
            lines.append(f"  figures: none moved ({p.figures_compared} compared{one_side})")
    lines += [f"not paired: A {r.label()}: no run of {r.profile} on {r.target} in B" for r in d.only_a]
    lines += [f"not paired: B {r.label()}: no run of {r.profile} on {r.target} in A" for r in d.only_b]
    lines += [
        f"not compared: {r.label()} (a newer run of the same profile and target was)" for r in d.superseded
    ]
    reg = d.regressions
    lines.append(
        f"{len(d.pairs)} pair(s) compared, {len(d.only_a) + len(d.only_b)} run(s) not paired; "
        f"{len(reg)} newly failing or flaky clause(s)/test(s); {floor_rule(d.factor)}"
    )
    return "\n".join(lines)


def _css(status: str | None) -> str:
    """A status's cell class, as the run page colours it (absent: grey)."""
    return {None: "skip", NOT_CLAIMED: "not-applicable"}.get(status, _e(status))


def _changes_table(kind: str, changes: list[Change]) -> str:
    if not changes:
        return f"<p class='none'>no {kind} changed</p>"
    rows = "".join(
        f"<tr class='change' data-category='{_e(c.category)}'><td>{_e(c.category)}</td><td>{_e(c.name)}</td>"
        f"<td class='{_css(c.before)}'>{_e(_status(c.before))}</td>"
        f"<td class='{_css(c.after)}'>{_e(_status(c.after))}</td><td>{_e(c.detail)}</td></tr>"
        for c in changes
    )
    return (
        f"<table class='{kind}'><tr><th>change</th><th>{kind[:-1]}</th><th>A</th><th>B</th>"
        f"<th>detail</th></tr>{rows}</table>"
    )


def _way(m: Moved) -> str:
    return "worse" if m.worse else "better"


def _figures_table(p: RunDiff) -> str:
    if not p.figures:
        return f"<p class='none'>no figure moved ({p.figures_compared} compared)</p>"
    rows = "".join(
        f"<tr class='moved'><td>{_e(m.clause)}</td><td>{_e(m.name)}{_e(_what(m))}</td><td>{_e(m.test)}</td>"
        f"<td>{_e(figs.text(m.before))}</td><td>{_e(figs.text(m.after))}</td>"
        f"<td class='{_way(m)}'>{m.ratio:.1f}x {_way(m)}</td>"
        f"<td>{m.floor:.3g} {_e(m.after.get('unit') or '')}</td></tr>"
        for m in p.figures
    )
    return (
        f"<p>{len(p.figures)} of {p.figures_compared} figures compared moved.</p>"
        "<table class='figures'><tr><th>clause</th><th>figure</th><th>test</th>"
        "<th>A (measured / deadline)</th><th>B (measured / deadline)</th>"
        f"<th>moved</th><th>noise floor</th></tr>{rows}</table>"
    )


def _pair_section(p: RunDiff) -> str:
    tiers = "".join(
        f"<tr><td>{_e(t.tier or 'contract')}</td><td>{_e(t.before)}</td><td>{_e(t.after)}</td></tr>"
        for t in p.tiers
    )
    verdicts = (
        f"<table class='tiers'><tr><th>tier</th><th>A</th><th>B</th></tr>{tiers}</table>"
        if tiers
        else "<p class='none'>no tier verdict changed</p>"
    )
    anchor = _e(f"pair-{p.a.profile}-{p.a.target}")
    return (
        f"<section class='pair' id='{anchor}'><h2>{_e(p.a.profile)} · {_e(p.a.target)}</h2>"
        f"<p>A: {_e(p.a.path)} ({_e(p.a.started)})<br>B: {_e(p.b.path)} ({_e(p.b.started)})</p>"
        f"<h3>Tier verdicts</h3>{verdicts}<h3>Clauses</h3>{_changes_table('clauses', p.clauses)}"
        f"<h3>Tests</h3>{_changes_table('tests', p.tests)}<h3>Figures</h3>{_figures_table(p)}</section>"
    )


def _unpaired(d: Diff) -> str:
    def row(side: str, r: RunRef, why: str) -> str:
        cells = "".join(f"<td>{_e(x)}</td>" for x in (side, r.profile, r.target, r.path, why))
        return f"<tr>{cells}</tr>"

    rows = "".join(row("A", r, "no run of its profile and target in B") for r in d.only_a)
    rows += "".join(row("B", r, "no run of its profile and target in A") for r in d.only_b)
    rows += "".join(row("", r, "a newer run of its profile and target was compared") for r in d.superseded)
    if not rows:
        return ""
    return (
        "<h2>Not compared</h2><table id='unpaired'><tr><th>side</th><th>profile</th><th>target</th>"
        f"<th>results</th><th>why</th></tr>{rows}</table>"
    )


def render(d: Diff) -> str:
    """The diff as a self-contained page."""
    reg = d.regressions
    summary = (
        f"{len(d.pairs)} pair(s) compared, {len(d.only_a) + len(d.only_b)} run(s) not paired; "
        f"{len(reg)} newly failing or flaky clause(s)/test(s)"
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>bgw-conformance: what changed</title>
<style>{_CSS}{_EXTRA_CSS}</style></head><body><h1>bgw-conformance: what changed between runs</h1>
<p id="diff-summary" class="{"verdict-bad" if reg else "verdict-ok"}"><b>{_e(summary)}</b></p>
<p class="muted">{_e(floor_rule(d.factor))}.</p>
{"".join(_pair_section(p) for p in d.pairs)}{_unpaired(d)}</body></html>"""
