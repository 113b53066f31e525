"""``bgw-conformance run`` in GitHub Actions: a Markdown step summary and one
workflow command per unexpected result, rendered from the run's records
(``results.json`` and the summary ``conformance.summary`` made of them; this
module judges nothing).

- On: ``--github``; off: ``--no-github``; neither given: on when the
  environment says ``GITHUB_ACTIONS=true`` (as every Actions runner does).
- The step summary is appended to the file ``$GITHUB_STEP_SUMMARY`` names
  (none named: no summary): the run's verdict, each target's tier verdicts,
  the counts, and a table of the unexpected results (clause, test, target,
  outcome, reason) each linking into the run's page
  (``reports/<run>/index.html#<test anchor>``, a path in the job's reports/).
- ``::error title=<CLAUSES>::<message>`` on stdout for each unexpected result
  that gates (exit 1), ``::warning`` for one that does not (a SHOULD clause's),
  ``::error title=HARNESS ERROR::`` (or INTERRUPTED) when the run broke.  Values
  are escaped as the runner reads them back: ``%``, CR and LF in the message,
  and also ``:`` and ``,`` in a property.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conformance import report, summary, verdicts

ENV_ACTIONS = "GITHUB_ACTIONS"
ENV_SUMMARY = "GITHUB_STEP_SUMMARY"
#: the longest reason shown in a table cell or an annotation
REASON_CHARS = 300


def enabled(flag: bool | None, env: Mapping[str, str] = os.environ) -> bool:
    """GitHub mode: ``--github`` or ``--no-github`` when given, else ``GITHUB_ACTIONS=true``."""
    return flag if flag is not None else env.get(ENV_ACTIONS) == "true"


def escape_data(text: str) -> str:
    """A workflow command's message: ``%``, CR and LF as ``%25``, ``%0D``, ``%0A``."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: as a message, and ``:`` and ``,`` as ``%3A``, ``%2C``."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(level: str, title: str, message: str) -> str:
    """``::level title=TITLE::MESSAGE``, escaped."""
    return f"::{level} title={escape_property(title)}::{escape_data(message)}"


def _record(u: dict[str, Any], results: dict[str, Any]) -> dict[str, Any] | None:
    """The test record an unexpected result is about: its own, or (a clause entry) the clause's first test."""
    tests = results["tests"]
    if u.get("nodeid"):
        return next((t for t in tests if t["nodeid"] == u["nodeid"]), None)
    return next(
        (t for t in tests if t.get("target") == u.get("target") and u["clauses"][0] in t["clauses"]), None
    )


def _reason(u: dict[str, Any], results: dict[str, Any]) -> str:
    """The failure's first line, with each failed kind's detail where the test judged kind by kind."""
    lines = (u.get("message") or "").strip().splitlines()
    rec = _record(u, results) if u.get("nodeid") else None
    kinds = ((rec or {}).get("properties") or {}).get("kinds") or {}
    failed = [f"{k}: {v.get('detail', '')}" for k, v in kinds.items() if v.get("outcome") == "fail"]
    reason = "; ".join(lines[:1] + failed)
    return reason[: REASON_CHARS - 1] + "…" if len(reason) > REASON_CHARS else reason


def link(u: dict[str, Any], results: dict[str, Any], index: Path) -> str:
    """Where the run's page shows an unexpected result: ``index.html#<test anchor>``."""
    rec = _record(u, results)
    return f"{index}#{report.test_anchor(rec) if rec else 'clauses'}"


def _kind(u: dict[str, Any]) -> str:
    return u["status"].removeprefix("unexpected-")


def annotations(summ: dict[str, Any], results: dict[str, Any], index: Path) -> list[str]:
    """The workflow commands of a run: one per unexpected result, or the harness's cause."""
    if summ["verdict"] in (summary.HARNESS_ERROR, summary.INTERRUPTED):
        return [command("error", summ["verdict"], f"{summ['cause']} (exit 2); report: {index}")]
    out = []
    for u in summ["unexpected"]:
        what = u.get("test") or f"every test of {u['clause']}"
        reason = _reason(u, results)
        said = f": {reason}" if reason else ""
        gate = "" if summary.gates(u) else " (SHOULD: does not gate)"
        message = (
            f"unexpected {_kind(u)}{gate} on {u['target']}: {what}{said}; report: {link(u, results, index)}"
        )
        out.append(command("error" if summary.gates(u) else "warning", " ".join(u["clauses"]), message))
    return out


def _cell(text: object) -> str:
    """A Markdown table cell: one line, pipes escaped, no HTML tag opened."""
    return " ".join(str(text).split()).replace("|", "\\|").replace("<", "&lt;")


def _tier_rows(summ: dict[str, Any], results: dict[str, Any], contract: dict[str, verdicts.Clause]) -> str:
    """A row per target of its tier verdicts (the run's own when it has one target)."""
    targets = results["run"].get("targets") or []
    per_target: dict[str, dict[str, str]] = {}
    if len(targets) == 1:
        per_target[targets[0]] = {label: v["text"] for label, v in summ["tiers"].items()}
    else:
        for target in targets:
            mine = {**results, "tests": [t for t in results["tests"] if t.get("target") == target]}
            per_target[target] = {v.label: v.text for v in verdicts.tier_verdicts(mine, contract).values()}
    labels = list(next(iter(per_target.values()), {}))
    if not labels:
        return ""
    head = "| target | " + " | ".join(labels) + " |\n|---|" + "---|" * len(labels) + "\n"
    rows = "".join(
        f"| {_cell(t)} | " + " | ".join(_cell(tiers[lb]) for lb in labels) + " |\n"
        for t, tiers in per_target.items()
    )
    return head + rows


def step_summary(
    summ: dict[str, Any],
    results: dict[str, Any],
    index: Path,
    contract: dict[str, verdicts.Clause] | None = None,
) -> str:
    """The run's Markdown step summary."""
    contract = contract or verdicts.load_contract()
    run = results["run"]
    who = f"{run.get('profile') or 'extension'} on {', '.join(run.get('targets') or [])}"
    out = [f"## bgw-conformance: {who}: {summ['verdict']} (exit {summ['exit_status']})", ""]
    if summ.get("cause"):
        out += [f"{summ['cause']}", ""]
    tiers = _tier_rows(summ, results, contract)
    if tiers:
        out += [tiers]
    counts = summ.get("counts") or {}
    if counts:
        out += [" · ".join(f"{n} {status}" for status, n in sorted(counts.items())), ""]
    unexpected = summ["unexpected"]
    if unexpected:
        out += [f"### Gate: {summ['gate'].upper()}: {len(unexpected)} unexpected result(s)", ""]
        out += ["| clause | test | target | outcome | reason | report |", "|---|---|---|---|---|---|"]
        for u in unexpected:
            kind = _kind(u) + ("" if summary.gates(u) else " (SHOULD: does not gate)")
            what = u.get("test") or f"every test of {u['clause']}"
            row = (", ".join(u["clauses"]), what, u["target"], kind, _reason(u, results))
            out.append("| " + " | ".join(_cell(c) for c in row) + f" | [page]({link(u, results, index)}) |")
        out.append("")
    elif summ["verdict"] not in (summary.HARNESS_ERROR, summary.INTERRUPTED):
        known = len(summ.get("expected") or [])
        out += [
            "Gate: PASS: no unexpected result"
            + (f" ({known} known failure(s) in the expectations file)" if known else ""),
            "",
        ]
    out += [f"Report: `{index}` (in the job's reports/ artifact)", ""]
    return "\n".join(out) + "\n"


def publish(
    summ: dict[str, Any],
    results: dict[str, Any],
    run_dir: Path,
    env: Mapping[str, str] = os.environ,
) -> None:
    """Append the step summary to ``$GITHUB_STEP_SUMMARY`` (when named) and print the annotations."""
    index = run_dir / "index.html"
    with contextlib.suppress(ValueError):  # reports/<run>/index.html, as the job's workspace holds it
        index = index.relative_to(Path.cwd())
    path = env.get(ENV_SUMMARY)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(step_summary(summ, results, index))
    for line in annotations(summ, results, index):
        print(line, flush=True)
