"""Reports a person reads: the HTML of one run, the clause-by-run matrix of
many, and the terminal summary.  All are rendered from ``results.json``
(conformance.results) and ``CONTRACT.md``; the HTML is self-contained (no
external assets) and works offline."""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTRACT = Path(__file__).resolve().parent / "CONTRACT.md"
_CLAUSE = re.compile(r"^- \*\*([A-Z]+-\d+) \((MUST|SHOULD)\)\*\* (.*?)(?=^- \*\*|^## |\Z)", re.M | re.S)
_FAMILY = re.compile(r"^## ([A-Z]+): (.*)$", re.M)
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) UTC (.*)$")
OUTCOMES = ("pass", "fail", "error", "skip", "not-applicable", "flaky")
#: a clause's status from its tests' outcomes, worst first
_PRECEDENCE = ("fail", "error", "flaky", "skip", "pass", "not-applicable")


@dataclass(frozen=True)
class Clause:
    id: str
    level: str  # MUST or SHOULD
    text: str
    family: str


def load_contract(path: Path = CONTRACT) -> dict[str, Clause]:
    text = path.read_text()
    families = {m.group(1): m.group(2) for m in _FAMILY.finditer(text)}
    out = {}
    for cid, level, body in _CLAUSE.findall(text):
        fam = cid.split("-")[0]
        out[cid] = Clause(cid, level, " ".join(body.split()), f"{fam}: {families.get(fam, '')}")
    return out


def clause_status(results: dict[str, Any]) -> dict[str, str]:
    """Each clause's status in one run: its worst test outcome."""
    seen: dict[str, list[str]] = {}
    for t in results["tests"]:
        for cid in t["clauses"]:
            seen.setdefault(cid, []).append(t["outcome"])
    return {cid: next(o for o in _PRECEDENCE if o in outs) for cid, outs in seen.items()}


def verdict(results: dict[str, Any], contract: dict[str, Clause]) -> bool:
    """Conformant: every MUST clause has tests and none of them failed."""
    status = clause_status(results)
    return all(
        status.get(cid) in ("pass", "not-applicable") for cid, c in contract.items() if c.level == "MUST"
    )


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def test_anchor(t: dict[str, Any]) -> str:
    return "t-" + re.sub(r"[^A-Za-z0-9]+", "-", t["nodeid"]).strip("-")


def run_label(results: dict[str, Any]) -> str:
    run = results["run"]
    servers = run.get("servers") or [{"target": t} for t in run["targets"]]
    return ", ".join(s["target"] for s in servers) + f" @ {run['started']}"


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f2f2f2}.pass{background:#d9f2d9}.fail,.error{background:#f8d0d0}.skip{background:#eee}
.not-applicable{background:#e6e6f7}.flaky{background:#fbeec1}.verdict-ok{color:#176317}.verdict-bad{color:#a01010}
pre{background:#f7f7f7;padding:6px;max-height:22em;overflow:auto;white-space:pre-wrap}
details{margin:.3em 0}summary{cursor:pointer}.fault{color:#a01010;font-weight:bold}.muted{color:#777}
a{color:#1a4fa0}.cell a{display:block;color:inherit;text-decoration:none}
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


def render_run(
    results: dict[str, Any], contract: dict[str, Clause] | None = None, mutants: dict[str, Any] | None = None
) -> str:
    contract = contract or load_contract()
    run, tests = results["run"], results["tests"]
    counts = Counter(t["outcome"] for t in tests)
    status = clause_status(results)
    ok = verdict(results, contract)
    families = sorted({t["family"] for t in tests})
    by_clause: dict[str, list[dict[str, Any]]] = {}
    for t in tests:
        for cid in t["clauses"]:
            by_clause.setdefault(cid, []).append(t)

    clause_rows = "".join(
        f"<tr><td>{_e(c.id)}</td><td>{c.level}</td><td class='{status.get(c.id, 'skip')}'>"
        f"{status.get(c.id, 'no test')}</td><td>{_e(c.text)}</td><td>"
        + " ".join(f"<a href='#{test_anchor(t)}'>{_e(t['name'])}</a>" for t in by_clause.get(c.id, []))
        + "</td></tr>"
        for c in contract.values()
    )
    test_rows = "".join(
        f"<tr class='test' data-outcome='{t['outcome']}' data-family='{_e(t['family'])}'>"
        f"<td class='{t['outcome']}'>{t['outcome']}</td><td><a href='#{test_anchor(t)}'>{_e(t['name'])}</a></td>"
        f"<td>{_e(t['family'])}</td><td>{_e(', '.join(t['clauses']))}</td><td>{t['duration']:.2f}s</td></tr>"
        for t in tests
    )
    details = "".join(
        f"<details id='{test_anchor(t)}'><summary><span class='{t['outcome']}'>{t['outcome']}</span> "
        f"{_e(t['nodeid'])}</summary>"
        + (f"<h3>message</h3><pre>{_e(t['message'])}</pre>" if t.get("message") else "")
        + f"<h3>timeline</h3>{_timeline(t)}<h3>server log</h3><pre>{_e(t.get('log_excerpt') or '(empty)')}</pre>"
        + "</details>"
        for t in tests
    )
    servers = "".join(
        f"<tr><td>{_e(s['target'])}</td><td>{_e(s.get('version'))}</td><td>{_e(s.get('image') or '')}</td></tr>"
        for s in run.get("servers", [])
    )
    ext = run["extension"]
    options = "".join(f"<option value='{o}'>{o}</option>" for o in OUTCOMES)
    fam_options = "".join(f"<option value='{_e(f)}'>{_e(f)}</option>" for f in families)
    mutation = render_mutation_table(mutants) if mutants else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>bgw-conformance: {_e(run_label(results))}</title>
<style>{_CSS}</style><script>{_FILTER_JS}</script></head><body>
<h1>bgw-conformance report</h1>
<p class="{"verdict-ok" if ok else "verdict-bad"}" id="verdict"><b>{"CONFORMANT" if ok else "NOT CONFORMANT"}</b>:
{"every MUST clause passed" if ok else "a MUST clause failed or has no passing test"}.</p>
<p id="counts">{" · ".join(f"{counts.get(o, 0)} {o}" for o in OUTCOMES)}</p>
<table><tr><th>extension</th><td>{_e(ext["name"])} {_e(ext.get("version"))} (sources {_e(ext["source_hash"])})</td></tr>
<tr><th>kit</th><td>{_e(run["kit_version"])} {_e(run.get("kit_commit") or "")}</td></tr>
<tr><th>host kernel</th><td>{_e(run["host_kernel"])}</td></tr><tr><th>seed</th><td>{_e(run.get("seed"))}</td></tr>
<tr><th>time</th><td>{_e(run["started"])} → {_e(run["finished"])}</td></tr></table>
<table><tr><th>target</th><th>server</th><th>image</th></tr>{servers}</table>
<h2>Clauses</h2><table id="clauses"><tr><th>clause</th><th>level</th><th>status</th><th>rule</th><th>tests</th></tr>
{clause_rows}</table>
<h2>Tests</h2><p>outcome <select id="f-outcome" onchange="applyFilter()"><option value="">all</option>{options}</select>
family <select id="f-family" onchange="applyFilter()"><option value="">all</option>{fam_options}</select>
<span id="f-count"></span></p>
<table id="tests"><tr><th>outcome</th><th>test</th><th>family</th><th>clauses</th><th>duration</th></tr>{test_rows}</table>
{mutation}
<h2>Details</h2>{details}
</body></html>"""


def render_mutation_table(mutants: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{_e(m['name'])}</td><td class='{'pass' if (m['verdict'] == 'killed') != (m['name'] == 'none') else 'fail'}'>"
        f"{_e(m['verdict'])}</td><td>{_e(m['bug'])}</td><td>{_e(m['precedent'])}</td><td>"
        f"{_e(', '.join(sorted({c for k in m['killed_by'] for c in k['clauses']})))}</td></tr>"
        for m in mutants["mutants"]
    )
    return (
        f"<h2>Mutation testing (pg{mutants['major']}): kill ratio {mutants['kill_ratio']:.0%}</h2>"
        f"<table id='mutants'><tr><th>mutant</th><th>verdict</th><th>bug</th><th>precedent</th>"
        f"<th>killed by</th></tr>{rows}</table>"
    )


def render_matrix(
    runs: list[tuple[Path, dict[str, Any]]],
    contract: dict[str, Clause] | None = None,
    out_dir: Path | None = None,
    mutants: dict[str, Any] | None = None,
) -> str:
    """Rows: clauses by family; columns: runs (target, server, machine)."""
    contract = contract or load_contract()
    cols = []
    for path, res in runs:
        link_base = (
            os.path.relpath(path.parent / "index.html", out_dir)
            if out_dir
            else str(path.parent / "index.html")
        )
        cols.append((res, clause_status(res), verdict(res, contract), link_base))
    head = "".join(
        f"<th class='{'pass' if ok else 'fail'}'>{_e(run_label(res))}<br>{_e((res['run'].get('servers') or [{}])[0].get('version', '')[:40])}"
        f"<br>{'conformant' if ok else 'NON-CONFORMANT'}</th>"
        for res, _, ok, _ in cols
    )
    body, family = "", None
    for c in contract.values():
        if c.family != family:
            family = c.family
            body += f"<tr><th colspan='{len(cols) + 2}'>{_e(family)}</th></tr>"
        cells = ""
        for res, status, _, link in cols:
            st = status.get(c.id, "no test")
            first = next((t for t in res["tests"] if c.id in t["clauses"]), None)
            href = f"{link}#{test_anchor(first)}" if first else link
            cells += f"<td class='cell {st}'><a href='{_e(href)}'>{st}</a></td>"
        body += f"<tr><td title='{_e(c.text)}'>{c.id}</td><td>{c.level}</td>{cells}</tr>"
    mutation = render_mutation_table(mutants) if mutants else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>bgw-conformance matrix</title>
<style>{_CSS}</style></head><body><h1>bgw-conformance: clauses by runs</h1>
<table id="matrix"><tr><th>clause</th><th>level</th>{head}</tr>{body}</table>{mutation}</body></html>"""


def find_results(paths: list[Path]) -> list[Path]:
    """results.json files given directly or under directories (mutant runs excluded)."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found += [
                f
                for f in sorted(p.rglob("results.json"))
                if not any(part.startswith("mutants-") for part in f.relative_to(p).parts)
            ]
        elif p.is_file():
            found.append(p)
    return found


def latest_mutants(root: Path) -> dict[str, Any] | None:
    files = sorted(root.glob("mutants-*/mutants.json"))
    return json.loads(files[-1].read_text()) if files else None


def terminal_summary(results: dict[str, Any], report: Path, color: bool) -> str:
    contract = load_contract()
    status = clause_status(results)
    paint = {"pass": "32", "fail": "31", "error": "31", "skip": "33", "not-applicable": "36", "flaky": "35"}

    def c(text: str, st: str) -> str:
        return f"\033[{paint.get(st, '0')}m{text}\033[0m" if color else text

    families: dict[str, list[Clause]] = {}
    for cl in contract.values():
        families.setdefault(cl.id.split("-")[0], []).append(cl)
    lines = []
    for fam, clauses in families.items():
        cells = " ".join(c(cl.id.split("-")[1], status.get(cl.id, "no test")) for cl in clauses)
        bad = [
            f"{cl.id} {status.get(cl.id, 'no test')}"
            for cl in clauses
            if status.get(cl.id) not in ("pass", "not-applicable")
        ]
        lines.append(f"  {fam:<6} {cells}   {'; '.join(bad) if bad else 'all pass'}")
    ok = verdict(results, contract)
    lines.append(("CONFORMANT" if ok else "NOT CONFORMANT") + f"; report: {report}")
    return "\n".join(lines)
