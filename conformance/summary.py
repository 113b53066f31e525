"""A run's outcome in one object: ``summary.json``, ``run --json``, the
terminal's last lines, and the exit status.

Exit status: 0 when nothing unexpected happened; 1 when the extension has an
unexpected result (a failure of a MUST clause not in the expectations, or a
listed failure that passed); 2 when the harness broke or the run was
interrupted.  A run whose harness broke is ``HARNESS ERROR``, an interrupted
one ``INTERRUPTED``, each with its cause: never ``NOT CONFORMANT``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from conformance import verdicts

EXIT_OK, EXIT_UNEXPECTED, EXIT_HARNESS = 0, 1, 2
CONFORMANT, NOT_CONFORMANT = "CONFORMANT", "NOT CONFORMANT"
HARNESS_ERROR, INTERRUPTED = "HARNESS ERROR", "INTERRUPTED"
#: Debian has no package of the extension for the target's major: nothing ran, nothing failed
NOT_PACKAGED = "NOT PACKAGED"

#: pytest's exit codes that mean the run itself did not happen as asked
_PYTEST_BROKE = {
    3: "the harness raised an internal error (see the output above)",
    4: "pytest refused its command line (see the output above)",
    5: "no test was selected",
}


def _level(clauses: list[str], contract: dict[str, verdicts.Clause]) -> str:
    """MUST when any of the clauses is a MUST (or the test names none: a check of the kit itself)."""
    levels = {contract[c].level for c in clauses if c in contract}
    return "MUST" if "MUST" in levels or not clauses else "SHOULD"


def gates(u: dict[str, Any]) -> bool:
    """Whether an unexpected result fails the gate (exit 1): a MUST clause's, or a flaky test
    whatever its level (flaky is never a pass).  A SHOULD clause's is reported, never gating."""
    return u["level"] == "MUST" or u["status"] == "flaky"


def _cause(results: dict[str, Any], pytest_code: int) -> tuple[str | None, str]:
    """(HARNESS ERROR or INTERRUPTED or None, the cause)."""
    run, tests = results["run"], results["tests"]
    if pytest_code == 2:
        ran = sum(1 for t in tests if t["outcome"] != "skip")
        return INTERRUPTED, f"interrupted after {ran} of {run.get('collected') or '?'} tests"
    broken = [t for t in tests if t.get("harness_error")]
    if broken:
        first = broken[0]
        lines = first["harness_error"].splitlines()
        fatal = next((ln.strip() for ln in lines if " FATAL: " in ln or " PANIC: " in ln), "")
        said = lines[0][:300] + (f" … {fatal[:300]}" if fatal else "")
        return HARNESS_ERROR, f"{len(broken)} test(s) could not run: {said} (first: {first['nodeid']})"
    if pytest_code in _PYTEST_BROKE:
        return HARNESS_ERROR, _PYTEST_BROKE[pytest_code]
    return None, ""


def _not_reached(tests: list[dict[str, Any]]) -> list[str]:
    """Clauses never evaluated, as ``CLAUSE (test)``: a test that was not
    reached, or a clause its scenario failed before judging."""
    out = []
    for t in tests:
        own = verdicts.clause_outcomes(t)
        for c in t["clauses"]:
            if t["outcome"] == "not-reached" or own.get(c) == "not-reached":
                out.append(f"{c} ({t.get('test') or t['nodeid']})")
    return out


def summarize(
    results: dict[str, Any],
    pytest_code: int,
    run_dir: Path | None = None,
    contract: dict[str, verdicts.Clause] | None = None,
) -> dict[str, Any]:
    contract = contract or verdicts.load_contract()
    run, tests = results["run"], results["tests"]
    broke, cause = _cause(results, pytest_code)
    by_tier = verdicts.tier_verdicts(results, contract)
    unexpected = [{**u, "level": _level(u["clauses"], contract)} for u in run.get("unexpected", [])]
    gating = [u for u in unexpected if gates(u)]
    unreached = _not_reached(tests)
    if broke:
        verdict, status = broke, EXIT_HARNESS
    elif unreached and not gating:
        # a clause never evaluated gates as the harness's, never as the extension's failure
        verdict, status = HARNESS_ERROR, EXIT_HARNESS
        cause = f"{len(unreached)} clause(s) not reached: {', '.join(unreached[:8])}"
    elif missing := run.get("not_packaged"):
        verdict, status = NOT_PACKAGED, EXIT_OK
        cause = (
            f"Debian ({missing['suite']}) has no {', '.join(missing['packages'])}: "
            f"{run['profile']} is not packaged for {', '.join(run['targets'])}"
        )
    else:
        verdict = CONFORMANT if verdicts.verdict(results, contract) else NOT_CONFORMANT
        status = EXIT_UNEXPECTED if gating else EXIT_OK
    files = {}
    if run_dir is not None:
        files = {
            name: str(run_dir / name) for name in ("index.html", "results.json", "junit.xml", "summary.json")
        }
    return {
        "verdict": verdict,
        "cause": cause or None,
        "exit_status": status,
        "gate": "pass" if status == EXIT_OK else "fail",
        "profile": run.get("profile"),
        "targets": run.get("targets"),
        "expectations": run.get("expectations"),
        "tiers": {
            v.label: {"status": v.status, "text": v.text, "must_failed": v.must_failed}
            for v in by_tier.values()
        },
        "counts": dict(Counter(t.get("status") or t["outcome"] for t in tests)),
        "unexpected": unexpected,
        "expected": [
            {
                "test": t.get("test") or t["nodeid"],
                "target": t.get("target"),
                "clauses": t["clauses"],
                "status": t["status"],
                **t["expected"],
            }
            for t in tests
            if t.get("expected")
        ],
        "files": files,
    }


def harness_error(cause: str, profile: str | None = None, targets: list[str] | None = None) -> dict[str, Any]:
    """The summary of a run that broke before any test ran (e.g. an image that would not build)."""
    return {
        "verdict": HARNESS_ERROR,
        "cause": cause,
        "exit_status": EXIT_HARNESS,
        "gate": "fail",
        "profile": profile,
        "targets": targets,
        "expectations": None,
        "tiers": {},
        "counts": {},
        "unexpected": [],
        "expected": [],
        "files": {},
    }


def _unexpected_line(u: dict[str, Any]) -> str:
    what = u.get("test") or u.get("clause")
    clauses = ",".join(u["clauses"])
    first = (u.get("message") or "").strip().splitlines()[:1]
    gate = "" if gates(u) else " (SHOULD: does not gate)"
    kind = u["status"].removeprefix("unexpected-").upper()
    said = f": {first[0][:200]}" if first else ""
    return f"  UNEXPECTED {kind}{gate} {clauses} on {u['target']}: {what}{said}"


def terminal(summary: dict[str, Any], results_dir: Path | None) -> str:
    """The run's last lines: its verdict or cause, then the gate and what it caught."""
    if summary["verdict"] in (HARNESS_ERROR, INTERRUPTED):
        where = f"; results so far: {results_dir}" if results_dir else ""
        return f"{summary['verdict']}: {summary['cause']}{where} (exit 2)"
    if summary["verdict"] == NOT_PACKAGED:
        where = f"; report: {results_dir / 'index.html'}" if results_dir else ""
        return f"{NOT_PACKAGED}: {summary['cause']}; no test ran{where} (exit 0)"
    counts = summary["counts"]
    expected = counts.get("expected-fail", 0) + counts.get("flaky", 0)
    lines = []
    if summary["unexpected"]:
        lines.append(f"gate: {summary['gate'].upper()}: {len(summary['unexpected'])} unexpected result(s)")
        lines += [_unexpected_line(u) for u in summary["unexpected"]]
        if any(u["status"] == "unexpected-pass" for u in summary["unexpected"]):
            where = results_dir or "REPORTS"
            lines.append(
                "  a listed failure passed: update the expectations file "
                f"(bgw-conformance expectations update --profile {summary['profile']} {where})"
            )
    else:
        lines.append(
            "gate: PASS: no unexpected result"
            + (f" ({expected} known failure(s) in the expectations file)" if expected else "")
        )
    lines.append(f"{summary['verdict']} (exit {summary['exit_status']})")
    return "\n".join(lines)
