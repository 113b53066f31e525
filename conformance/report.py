"""Reports a person reads: the HTML of one run, the clause-by-run matrix of
many, and the terminal summary.  All are rendered from ``results.json``
(conformance.results) and ``CONTRACT.md`` as ``conformance.verdicts`` judges
them: this module only renders.  The HTML is self-contained (no external
assets) and works offline."""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

from conformance import charts, majors
from conformance import figures as figs
from conformance.expectations import STATUSES
from conformance.verdicts import (
    Clause,
    TierVerdict,
    claimed_tiers,
    clause_status,
    load_contract,
    load_tiers,
    overall,
    tier_label,
    tier_line,
    tier_verdicts,
)

_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) UTC (.*)$")
OUTCOMES = STATUSES


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def test_anchor(t: dict[str, Any]) -> str:
    return "t-" + re.sub(r"[^A-Za-z0-9]+", "-", t["nodeid"]).strip("-")


def run_label(results: dict[str, Any]) -> str:
    run = results["run"]
    servers = run.get("servers") or [{"target": t} for t in run["targets"]]
    profile = f"{run['profile']} · " if run.get("profile") else ""
    return profile + ", ".join(server_label(s) for s in servers) + f" @ {run['started']}"


def server_label(server: dict[str, Any]) -> str:
    """A server as reports name it: its target, and its topology when it has a standby
    (``pg17 primary+standby``)."""
    topology = server.get("topology") or "primary"
    if topology == "primary":
        return str(server["target"])
    return f"{str(server['target']).split('+')[0]} {topology}"


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f2f2f2}.pass{background:#d9f2d9}.fail,.error{background:#f8d0d0}.skip{background:#eee}
.not-applicable{background:#e6e6f7}.not-reached{background:#d4d4d4;color:#444}.flaky{background:#fbeec1}
.expected-fail{background:repeating-linear-gradient(45deg,#f3d9b8 0 6px,#fbeedd 6px 12px)}
.unexpected-pass{background:#f3c6f3;font-weight:bold;outline:2px solid #a020a0}
#gate{padding:6px 10px;border:2px solid #888;margin:.6em 0}#gate.gate-fail{border-color:#a01010;background:#fdf0f0}
#gate.gate-pass{border-color:#176317}#gate.gate-broke{border-color:#a06000;background:#fff4e0}.verdict-ok{color:#176317}.verdict-bad{color:#a01010}
pre{background:#f7f7f7;padding:6px;max-height:22em;overflow:auto;white-space:pre-wrap}
details{margin:.3em 0}summary{cursor:pointer}.fault{color:#a01010;font-weight:bold}.muted{color:#777}
a{color:#1a4fa0}.cell a{display:block;color:inherit;text-decoration:none}
tr.tier-head th{background:#dde4f0}
.release{color:#8a4b00;font-weight:bold}.fig{display:block;white-space:nowrap}.fig.near{color:#a05a00}
figure.figure-chart{margin:.6em 0}figcaption{font-size:.9em}.note{display:block;font-size:.8em;color:#444}
"""

_FILTER_JS = """
function applyFilter(){
  var o=document.getElementById('f-outcome').value, f=document.getElementById('f-family').value, shown=0;
  document.querySelectorAll('tr.test').forEach(function(r){
    var ok=(!o||r.dataset.outcome===o)&&(!f||r.dataset.family===f);
    r.style.display=ok?'':'none'; if(ok){shown++;}
  });
  document.getElementById('f-count').textContent=shown+' shown';
}
function fromHash(){
  var h=decodeURIComponent(location.hash.slice(1));
  if(h.indexOf('t-')===0){var d=document.getElementById(h);if(d){d.open=true;d.scrollIntoView();}return;}
  h.split('&').forEach(function(kv){var p=kv.split('=');
    if(p[0]==='outcome')document.getElementById('f-outcome').value=p[1]||'';
    if(p[0]==='family')document.getElementById('f-family').value=p[1]||'';});
  applyFilter();
}
window.addEventListener('hashchange',fromHash);document.addEventListener('DOMContentLoaded',fromHash);
"""


def _escalations(t: dict[str, Any]) -> str:
    """The escalation ladder's steps this test made necessary: faults the extension caused."""
    steps = t.get("escalations") or []
    if not steps:
        return ""
    rows = "".join(
        f"<tr><td>{_e(s['step'])}</td><td class='{'pass' if s['ok'] else 'fail'}'>{'done' if s['ok'] else 'failed'}"
        f"</td><td>{s['took_s']:g} s</td><td>{_e(s['why'])}{(' — ' + _e(s['error'])) if s.get('error') else ''}</td></tr>"
        for s in steps
    )
    return (
        "<h3 class='fault'>escalations: the server had to be forced after this test</h3>"
        f"<table class='escalations'><tr><th>step</th><th></th><th>took</th><th>why</th></tr>{rows}</table>"
    )


def _timeline(t: dict[str, Any]) -> str:
    """Injected faults against server log events, in seconds from the test's start."""
    rows: list[tuple[float, str, str]] = [
        (f["t"], "fault", f"{f['what']}: {f['detail']}") for f in t["faults"]
    ]
    start = t.get("started_at")
    if start:
        for line in t.get("log_excerpt", "").splitlines():
            m = _LOG_TIME.match(line)
            if m:
                when = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=dt.UTC)
                rows.append((round(when.timestamp() - start, 3), "server", m.group(2)))
    if not rows:
        return "<p class=muted>no faults injected, no server events</p>"
    body = "".join(
        f"<tr><td>{t_:+.3f}</td><td class='{'fault' if kind == 'fault' else ''}'>{kind}</td><td>{_e(text)}</td></tr>"
        for t_, kind, text in sorted(rows, key=lambda r: r[0])
    )
    return f"<table><tr><th>s</th><th>source</th><th>event</th></tr>{body}</table>"


def _shown_status(raw: str | None, claimed: bool) -> tuple[str, str]:
    """A clause's cell class and text in one run: the tests of an unclaimed tier never show as passes."""
    if not claimed:
        return "not-applicable", "not claimed"
    return raw or "skip", raw or "no test"


def _tier_heading(tier: str, tiers: dict[str, str]) -> str:
    desc = tiers.get(tier, "")
    return f"Tier {_e(tier_label(tier))}" + (f": {_e(desc)}" if desc else "")


def _claims(results: dict[str, Any]) -> str:
    run = results["run"]
    claims = run.get("tiers")
    what = ", ".join(claims) if claims is not None else "every tier (the results record no claims)"
    return f"{run.get('profile') or '(no profile)'}, claiming {what}"


def _tier_table(verdicts: dict[str, TierVerdict], tiers: dict[str, str]) -> str:
    rows = "".join(
        f"<tr id='tier-{_e(v.label)}'><td>{_e(v.label)}</td><td>{_e(tiers.get(v.tier, ''))}</td>"
        f"<td>{'yes' if v.claimed else 'no'}</td><td class='{v.css}'>{_e(v.text)}</td></tr>"
        for v in verdicts.values()
    )
    head = "<tr><th>tier</th><th>description</th><th>claimed</th><th>verdict</th></tr>"
    return f"<table id='tiers'>{head}{rows}</table>"


def _verdict_paragraph(verdicts: dict[str, TierVerdict]) -> str:
    ok = overall(verdicts)
    if any(v.status == "not packaged" for v in verdicts.values()):
        return (
            f'<p class="muted" id="verdict"><b>{_e(tier_line(verdicts))}</b> — NOT PACKAGED: '
            "Debian has no package of the extension for this major; no test ran.</p>"
        )
    if ok:
        why = "every claimed tier that ran is conformant"
    elif any(v.status == "failed" for v in verdicts.values()):
        why = "a claimed tier failed"
    else:
        why = "no claimed tier ran"
    return (
        f'<p class="{"verdict-ok" if ok else "verdict-bad"}" id="verdict"><b>{_e(tier_line(verdicts))}</b>'
        f" — {'CONFORMANT' if ok else 'NOT CONFORMANT'}: {why}.</p>"
    )


def _clause_rows(
    contract: dict[str, Clause],
    verdicts: dict[str, TierVerdict],
    tiers: dict[str, str],
    status: dict[str, str],
    by_clause: dict[str, list[dict[str, Any]]],
) -> str:
    """The run page's clause table body, a header row per tier."""
    body, tier = "", None
    for c in contract.values():
        v = verdicts[c.tier]
        if c.tier != tier:
            tier = c.tier
            body += (
                f"<tr class='tier-head'><th colspan='6'>{_tier_heading(c.tier, tiers)} — "
                f"<span class='{v.css}'>{_e(v.text)}</span></th></tr>"
            )
        css, text = _shown_status(status.get(c.id), v.claimed)
        links = " ".join(f"<a href='#{test_anchor(t)}'>{_e(t['name'])}</a>" for t in by_clause.get(c.id, []))
        body += (
            f"<tr><td>{_e(c.id)}</td><td>{c.level}</td><td class='{css}'>{text}</td>"
            f"<td>{_e(c.text)}</td><td>{links}</td><td>{_clause_figures(c.id, by_clause.get(c.id, []))}</td></tr>"
        )
    return body


def _figure_name(f: dict[str, Any]) -> str:
    """Its name, and the step it timed when the name is generic (the closest wait)."""
    return f"{f['name']} ({f['what']})" if f.get("what") else f["name"]


def _figure_span(f: dict[str, Any], named: bool = True) -> str:
    """ "name: measured / deadline", flagged when above half its deadline."""
    near = figs.near(f)
    flag = " <b>▲ above half its deadline</b>" if near else ""
    name = f"{_e(_figure_name(f))}: " if named else ""
    return f"<span class='fig{' near' if near else ''}'>{name}{_e(figs.text(f))}{flag}</span>"


def _clause_figures(clause: str, tests: list[dict[str, Any]]) -> str:
    return "".join(_figure_span(f) for t in tests for f in figs.of(t) if f["clause"] == clause)


def _figures(t: dict[str, Any]) -> str:
    """What the test measured, each against its deadline, then its other recorded properties;
    under repetition, every repetition's value."""
    measured = figs.of(t)
    rows = "".join(
        f"<tr><th>{_e(f['clause'])}</th><td>{_e(_figure_name(f))}</td><td>{_figure_span(f, named=False)}</td>"
        f"<td>{_e(' '.join(f'{v:.3g}' for v in f.get('values', [])))}</td></tr>"
        for f in measured
    )
    table = (
        "<h3>figures</h3><table class='figures'><tr><th>clause</th><th>figure</th>"
        f"<th>measured / deadline</th><th>each repetition</th></tr>{rows}</table>"
        if rows
        else ""
    )
    props = {
        k: v for k, v in (t.get("properties") or {}).items() if k not in ("tier", "figures", *_SEQUENCES)
    }
    other = "".join(f"<tr><th>{_e(k)}</th><td>{_e(json.dumps(v))}</td></tr>" for k, v in props.items())
    return table + (f"<h3>properties</h3><table class='properties'>{other}</table>" if other else "")


_SEQUENCES = ("replay", "sequences", "minimal_sequences")


def _sequences(t: dict[str, Any]) -> str:
    """A randomized test's replay command, the minimal failing sequences it shrank to, and what it ran."""
    props = t.get("properties") or {}
    out = f"<h3>replay</h3><pre class='replay'>{_e(props['replay'])}</pre>" if props.get("replay") else ""
    for m in props.get("minimal_sequences") or []:
        out += (
            f"<h3>minimal failing sequence</h3><pre class='minimal'>{_e(m['error'])}\n{_e(m['script'])}</pre>"
        )
    ran = props.get("sequences") or []
    if ran:
        body = "\n".join(f"{i}: " + ", ".join(seq) for i, seq in enumerate(ran, 1))
        out += f"<details><summary>{len(ran)} sequence(s) run</summary><pre>{_e(body)}</pre></details>"
    return out


def _extension_text(run: dict[str, Any]) -> str:
    """What was installed, and the versions the servers report."""
    ext = run["extension"]
    parts = [ext["name"]]
    if ext.get("packages"):
        parts.append("packages " + " ".join(ext["packages"]))
    if ext.get("source_hash"):
        parts.append(
            f"sources {ext['source_hash']}" + (f" built by {ext['recipe']!r}" if ext.get("recipe") else "")
        )
    if ext.get("library"):
        parts.append(f"preload {ext['library']}")
    versions = sorted(
        {
            f"{n} {v}"
            for s in run.get("servers", [])
            for n, v in (s.get("extensions") or {}).items()
            if n != "plpgsql"
        }
    )
    if versions:
        parts.append("installed: " + ", ".join(versions))
    return "; ".join(parts)


def _status(t: dict[str, Any]) -> str:
    return t.get("status") or t["outcome"]


def _gate(summary: dict[str, Any] | None) -> str:
    """The gate above everything: what was unexpected (a listed failure that passed most of all),
    or why the run says nothing about the extension."""
    if summary is None:
        return ""
    if summary["verdict"] in ("HARNESS ERROR", "INTERRUPTED"):
        return (
            f"<div id='gate' class='gate-broke'><b>{_e(summary['verdict'])}</b>: {_e(summary['cause'])}. "
            "The results below are what ran; they are no verdict on the extension.</div>"
        )
    items = "".join(
        f"<li class='{_e(u['status'])}'><b>{_e(u['status'])}</b> {_e(', '.join(u['clauses']))} on "
        f"{_e(u['target'])}: {_e(u.get('test') or u.get('clause'))}"
        + (f" — {_e(u['message'])}" if u.get("message") else "")
        + ("" if u["level"] == "MUST" else " <i>(SHOULD: does not gate)</i>")
        + "</li>"
        for u in summary["unexpected"]
    )
    stale = any(u["status"] == "unexpected-pass" for u in summary["unexpected"])
    known = len(summary["expected"])
    head = (
        f"Gate: FAIL — {len(summary['unexpected'])} unexpected result(s)"
        if summary["gate"] == "fail"
        else "Gate: PASS — no unexpected result"
    ) + (f"; {known} known in the expectations file" if known else "")
    hint = (
        "<p><b>A listed failure passed: update the expectations file</b> "
        f"(<code>bgw-conformance expectations update --profile {_e(summary['profile'])} REPORTS</code>) "
        "and commit it.</p>"
        if stale
        else ""
    )
    css = "gate-fail" if summary["gate"] == "fail" else "gate-pass"
    return f"<div id='gate' class='{css}'><b>{_e(head)}</b>{f'<ul>{items}</ul>' if items else ''}{hint}</div>"


def _repeats(t: dict[str, Any]) -> str:
    """Under verify: how many of the repetitions passed."""
    reps = t.get("repeats")
    if not reps:
        return ""
    passed = sum(r["outcome"] == "pass" for r in reps)
    return f" ({passed} of {len(reps)} repetitions passed)"


def _expected_note(t: dict[str, Any]) -> str:
    exp = t.get("expected")
    if not exp:
        return ""
    link = f" <a href='{_e(exp['link'])}'>{_e(exp['link'])}</a>" if exp.get("link") else ""
    return f"<p class='expected'>expected: {_e(exp['outcome'])} — {_e(exp['reason'])}{link}</p>"


def render_run(
    results: dict[str, Any],
    contract: dict[str, Clause] | None = None,
    mutants: list[dict[str, Any]] | None = None,
    tiers: dict[str, str] | None = None,
    summary: dict[str, Any] | None = None,
) -> str:
    """One run's page.  ``tiers`` (name -> description) defaults to those of CONTRACT.md;
    ``summary`` (``conformance.summary``) adds the gate."""
    contract = contract or load_contract()
    tiers = load_tiers() if tiers is None else tiers
    run, tests = results["run"], results["tests"]
    counts = Counter(_status(t) for t in tests)
    status = clause_status(results)
    verdicts = tier_verdicts(results, contract)
    families = sorted({t["family"] for t in tests})
    by_clause: dict[str, list[dict[str, Any]]] = {}
    for t in tests:
        for cid in t["clauses"]:
            by_clause.setdefault(cid, []).append(t)

    clause_rows = _clause_rows(contract, verdicts, tiers, status, by_clause)
    test_rows = "".join(
        f"<tr class='test' data-outcome='{_status(t)}' data-family='{_e(t['family'])}'>"
        f"<td class='{_status(t)}'>{_status(t)}{_repeats(t)}</td><td><a href='#{test_anchor(t)}'>{_e(t['name'])}</a></td>"
        f"<td>{_e(t['family'])}</td><td>{_e(', '.join(t['clauses']))}</td><td>{t['duration']:.2f}s</td></tr>"
        for t in tests
    )
    details = "".join(
        f"<details id='{test_anchor(t)}'><summary><span class='{_status(t)}'>{_status(t)}</span> "
        f"{_e(t['nodeid'])}</summary>"
        + _expected_note(t)
        + (
            f"<p class='fault'>the harness broke: {_e(t['harness_error'])}</p>"
            if t.get("harness_error")
            else ""
        )
        + (f"<h3>message</h3><pre>{_e(t['message'])}</pre>" if t.get("message") else "")
        + _escalations(t)
        + _sequences(t)
        + _figures(t)
        + f"<h3>timeline</h3>{_timeline(t)}<h3>server log</h3><pre>{_e(t.get('log_excerpt') or '(empty)')}</pre>"
        + "</details>"
        for t in tests
    )
    servers = "".join(
        f"<tr><td>{_e(server_label(s))}</td><td>{_e(s.get('version'))}"
        f"{' ' + release_mark({'run': {'servers': [s]}})}</td><td>{_e(s.get('image') or '')}</td></tr>"
        for s in run.get("servers", [])
    )
    options = "".join(f"<option value='{o}'>{o}</option>" for o in OUTCOMES)
    fam_options = "".join(f"<option value='{_e(f)}'>{_e(f)}</option>" for f in families)
    mutation = render_mutation_table(mutants) if mutants else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>bgw-conformance: {_e(run_label(results))}</title>
<style>{_CSS}</style><script>{_FILTER_JS}</script></head><body>
<h1>bgw-conformance report</h1>
{_gate(summary)}
{_verdict_paragraph(verdicts)}
{_tier_table(verdicts, tiers)}
<p id="counts">{" · ".join(f"{counts.get(o, 0)} {o}" for o in OUTCOMES)}</p>
<table><tr><th>profile</th><td>{_e(_claims(results))}</td></tr>
<tr><th>extension</th><td>{_e(_extension_text(run))}</td></tr>
<tr><th>kit</th><td>{_e(run["kit_version"])} {_e(run.get("kit_commit") or "")}</td></tr>
<tr><th>host kernel</th><td>{_e(run["host_kernel"])}</td></tr><tr><th>seed</th><td>{_e(run.get("seed"))}</td></tr>
<tr><th>expectations</th><td>{_e((run.get("expectations") or {}).get("path") or "none")}</td></tr>
<tr><th>time</th><td>{_e(run["started"])} → {_e(run["finished"])}</td></tr></table>
<table><tr><th>target</th><th>server</th><th>image</th></tr>{servers}</table>
<h2>Clauses</h2><table id="clauses"><tr><th>clause</th><th>level</th><th>status</th><th>rule</th><th>tests</th><th>measured / deadline</th></tr>
{clause_rows}</table>
<h2>Tests</h2><p>outcome <select id="f-outcome" onchange="applyFilter()"><option value="">all</option>{options}</select>
family <select id="f-family" onchange="applyFilter()"><option value="">all</option>{fam_options}</select>
<span id="f-count"></span></p>
<table id="tests"><tr><th>outcome</th><th>test</th><th>family</th><th>clauses</th><th>duration</th></tr>{test_rows}</table>
{_slow_section(run)}{mutation}
<h2>Details</h2>{details}
</body></html>"""


def _slow_section(run: dict[str, Any]) -> str:
    """``run --slow``: the clauses that passed at full speed and failed with the CPU cut."""
    slow = run.get("slow")
    if not slow:
        return ""
    rows = "".join(
        f"<tr><td class='fail'>{_e(f['clause'])}</td><td>{_e(f['test'])}</td><td>{_e(f['slow_summary'])}</td></tr>"
        for f in slow["flips"]
    )
    return (
        f"<h2 id='slow'>Only when slow: the server's CPU cut to 1/{slow['factor']:g} of a core</h2>"
        f"<p>{len(slow['flips'])} timing-window finding(s): each a failure of its clause. The slow pass: "
        f"{_e(slow['run'])}; deadlines scaled by the factor there: {_e(', '.join(slow['scaled_deadlines']))} "
        "(no other).</p>"
        + (
            f"<table><tr><th>clause</th><th>test</th><th>in the slow pass</th></tr>{rows}</table>"
            if rows
            else ""
        )
    )


_MUTANT_VERDICT_TEXT = {"killed-other": "killed for another reason"}


def render_mutation_table(runs: list[dict[str, Any]]) -> str:
    """One table per major: each mutant, its verdict, the clauses that must
    kill it and those that did.  A verdict is green only when expected."""
    out = ""
    for run in runs:
        rows = ""
        for m in run["mutants"]:
            expected = m.get("as_expected", (m["verdict"] == "killed") != (m["name"] == "none"))
            killers = sorted({c for k in m["killed_by"] for c in k["clauses"]})
            verdict = _MUTANT_VERDICT_TEXT.get(m["verdict"], m["verdict"])
            rows += (
                f"<tr><td>{_e(m['name'])}</td><td class='{'pass' if expected else 'fail'}'>{_e(verdict)}</td>"
                f"<td>{_e(m['bug'])}</td><td>{_e(m['precedent'])}</td>"
                f"<td>{_e(', '.join(m.get('kill') or []))}</td><td>{_e(', '.join(killers))}</td>"
                f"<td>{_e(m.get('detail') or '')}</td></tr>"
            )
        out += (
            f"<h2>Mutation testing (pg{run['major']}): {run['kill_ratio']:.0%} killed by their own clauses</h2>"
            f"<table class='mutants' id='mutants-pg{run['major']}'><tr><th>mutant</th><th>verdict</th><th>bug</th>"
            f"<th>precedent</th><th>must be killed by</th><th>killed by</th><th>note</th></tr>{rows}</table>"
        )
    return out


def release_mark(res: dict[str, Any]) -> str:
    """A run's server when it is not a current release: end of life, or pre-release."""
    server = (res["run"].get("servers") or [{}])[0]
    note = majors.release_note(server.get("major"), server.get("version", ""))
    return f"<span class='release'>{_e(note)}</span>" if note else ""


def _matrix_head(res: dict[str, Any], verdicts: dict[str, TierVerdict]) -> str:
    ok = overall(verdicts)
    version = (res["run"].get("servers") or [{}])[0].get("version", "")[:40]
    marks = "<br>".join(
        f"<span class='tier-mark {v.css}'>{_e(v.label)} {_e(v.short)}</span>" for v in verdicts.values()
    )
    css, word = ("pass", "conformant") if ok else ("fail", "NON-CONFORMANT")
    if res["run"].get("not_packaged"):
        css, word = "skip", "not packaged"
    release = release_mark(res)
    return (
        f"<th class='{css}'>{_e(run_label(res))}<br>{_e(version)}{'<br>' + release if release else ''}"
        f"<br>{word}<br>{marks}</th>"
    )


def _cell_note(t: dict[str, Any] | None) -> str:
    """What a matrix cell adds to its status: who stopped the workers (DBC), and in how long."""
    props = (t or {}).get("properties") or {}
    if "stopped_by" not in props:
        return ""
    took = "".join(f", {f['value']:.3g} {f['unit']}" for f in figs.of(t or {})[:1])
    return f"<span class='note'>by {_e(props['stopped_by'])}{took}</span>"


#: a matrix column: one run's results, clause statuses, tier verdicts and the link to its page
_Column = tuple[dict[str, Any], dict[str, str], dict[str, TierVerdict], str]


def _matrix_tier_row(tier: str, cols: list[_Column], tiers: dict[str, str]) -> str:
    """A tier's header row: its name and description, then its verdict in each run."""
    marks = "".join(f"<th class='{vs[tier].css}'>{_e(vs[tier].text)}</th>" for _, _, vs, _ in cols)
    return (
        f"<tr class='tier-head' id='matrix-tier-{_e(tier_label(tier))}'>"
        f"<th colspan='2'>{_tier_heading(tier, tiers)}</th>{marks}</tr>"
    )


def render_matrix(
    runs: list[tuple[Path, dict[str, Any]]],
    contract: dict[str, Clause] | None = None,
    out_dir: Path | None = None,
    mutants: list[dict[str, Any]] | None = None,
    tiers: dict[str, str] | None = None,
    zoo: list[dict[str, Any]] | None = None,
) -> str:
    """Rows: clauses by tier and family; columns: runs (target, server, machine)."""
    contract = contract or load_contract()
    tiers = load_tiers() if tiers is None else tiers
    cols: list[_Column] = []
    for path, res in runs:
        link_base = (
            os.path.relpath(path.parent / "index.html", out_dir)
            if out_dir
            else str(path.parent / "index.html")
        )
        cols.append((res, clause_status(res), tier_verdicts(res, contract), link_base))
    head = "".join(_matrix_head(res, verdicts) for res, _, verdicts, _ in cols)
    body, tier, family = "", None, None
    for c in contract.values():
        if c.tier != tier:
            tier, family = c.tier, None
            body += _matrix_tier_row(tier, cols, tiers)
        if c.family != family:
            family = c.family
            body += f"<tr><th colspan='{len(cols) + 2}'>{_e(family)}</th></tr>"
        cells = ""
        for res, status, verdicts, link in cols:
            claimed = verdicts[c.tier].claimed
            st = status.get(c.id, "no test") if claimed else "not claimed"
            if claimed and res["run"].get("not_packaged"):
                st = "not packaged"
            first = next((t for t in res["tests"] if c.id in t["clauses"]), None)
            href = f"{link}#{test_anchor(first)}" if first else link
            css = {"not claimed": "not-applicable", "not packaged": "skip"}.get(st, st)
            cells += f"<td class='cell {css}'><a href='{_e(href)}'>{st}{_cell_note(first)}</a></td>"
        body += f"<tr><td title='{_e(c.text)}'>{c.id}</td><td>{c.level}</td>{cells}</tr>"
    mutation = render_mutation_table(mutants) if mutants else ""
    figures = charts.charts_section([(chart_label(res), res) for res, _, _, _ in cols])
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>bgw-conformance matrix</title>
<style>{_CSS}</style></head><body><h1>bgw-conformance: clauses by runs</h1>
<table id="matrix"><tr><th>clause</th><th>level</th>{head}</tr>{body}</table>{figures}{mutation}{render_zoo_table(zoo or [])}</body></html>"""


def chart_label(res: dict[str, Any]) -> str:
    """A run in a chart: its profile, targets and, under verify, its repetitions."""
    run = res["run"]
    rep = f" (verify, {run['repeat']} runs)" if run.get("repeat") else ""
    return f"{run.get('profile') or '?'} · {', '.join(run['targets'])}{rep}"


def find_results(paths: list[Path]) -> list[Path]:
    """results.json files given directly or under directories (mutant and zoo runs excluded)."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found += [
                f
                for f in sorted(p.rglob("results.json"))
                if not any(part.startswith(("mutants-", "zoo-", "slow-")) for part in f.relative_to(p).parts)
            ]
        elif p.is_file():
            found.append(p)
    return found


def zoo_tables(root: Path) -> list[dict[str, Any]]:
    """The zoo's tables under ``root`` (``zoo-pgNN/zoo.json``), one per major."""
    return [json.loads(f.read_text()) for f in sorted(root.glob("zoo-pg*/zoo.json"))]


def render_zoo_table(tables: list[dict[str, Any]]) -> str:
    """The bgworker tier's mutation test: each member of the zoo, the clauses
    that must flag it and those that did, its wall time against its budget."""
    out = ""
    for table in tables:
        rows = ""
        for m in table["members"]:
            ok = m["as_expected"] and m["wall_s"] <= m["budget_s"] and not m["containers_left"]
            # a member run with a hot standby beside its primary says so (rows before it: a lone server)
            topology = m.get("topology", "primary")
            where = f" <small>({_e(topology)})</small>" if topology != "primary" else ""
            rows += (
                f"<tr><td>{_e(m['name'])}{where}</td><td>{_e(m['defect'])}</td><td>{_e(m['precedent'])}</td>"
                f"<td>{_e(', '.join(m['expected']) or 'none')}</td>"
                f"<td class='{'pass' if ok else 'fail'}'>{_e(', '.join(m['flagged']) or 'none')}</td>"
                f"<td class='not-reached'>{_e(', '.join(m['not_reached']))}</td>"
                f"<td>{m['wall_s']:g} / {m['budget_s']:g} s</td><td>{m['escalations']}</td></tr>"
            )
        out += (
            f"<h2>The zoo (pg{table['major']}): each member flagged by its own clauses only</h2>"
            f"<table class='zoo' id='zoo-pg{table['major']}'><tr><th>member</th><th>defect</th>"
            "<th>precedent</th><th>must be flagged by</th><th>flagged by</th><th>not reached</th>"
            f"<th>wall time / budget</th><th>escalations</th></tr>{rows}</table>"
        )
    return out


def latest_mutants(root: Path) -> list[dict[str, Any]]:
    """The newest mutation run of each major under ``root``."""
    newest: dict[int, dict[str, Any]] = {}
    for f in sorted(root.glob("mutants-*/mutants.json")):  # names sort by time
        run = json.loads(f.read_text())
        newest[run["major"]] = run
    return [newest[m] for m in sorted(newest)]


def terminal_summary(
    results: dict[str, Any], report: Path, color: bool, contract: dict[str, Clause] | None = None
) -> str:
    contract = contract or load_contract()
    status = clause_status(results)
    paint = {"pass": "32", "fail": "31", "error": "31", "skip": "33", "not-applicable": "36", "flaky": "35"}

    def c(text: str, st: str) -> str:
        return f"\033[{paint.get(st, '0')}m{text}\033[0m" if color else text

    families: dict[str, list[Clause]] = {}
    for cl in contract.values():
        families.setdefault(cl.id.split("-")[0], []).append(cl)
    claimed = claimed_tiers(results, contract)
    lines = []
    for fam, clauses in families.items():
        cells = " ".join(c(cl.id.split("-")[1], status.get(cl.id, "no test")) for cl in clauses)
        if clauses[0].tier and clauses[0].tier not in claimed:
            lines.append(f"  {fam:<6} {cells}   not claimed ({clauses[0].tier})")
            continue
        bad = [
            f"{cl.id} {status.get(cl.id, 'no test')}"
            for cl in clauses
            if status.get(cl.id) not in ("pass", "not-applicable")
        ]
        outs = {status.get(cl.id) for cl in clauses}
        good = "not applicable" if outs == {"not-applicable"} else "all pass"
        lines.append(f"  {fam:<6} {cells}   {'; '.join(bad) if bad else good}")
    lines.append(tier_line(tier_verdicts(results, contract)) + f"; report: {report}")
    return "\n".join(lines)
