"""The slow-machine pass (``bgw-conformance run --slow FACTOR``): the same
selection run again with the server's CPU cut to 1/FACTOR of one core,
and the clauses whose outcome flips from pass to fail there reported as
timing-window findings.

A flip is the clause's failure ("only when slow"): a worker that meets its
promise only on a fast machine fails on a user's slow one (pg_background
#110: a cancel escalated to SIGKILL only on slow builders).  Only the
deadlines named in ``deadlines.SCALED_WHEN_SLOW`` scale in the slow pass;
the normal run's record gets the flips, the slow run's directory and those
names (``run.slow``), and each flipped test shows the slow run's failure.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from conformance import expectations
from conformance.deadlines import SCALED_WHEN_SLOW
from conformance.expectations import Expectations, test_id
from conformance.verdicts import clause_outcomes


def _key(t: dict[str, Any]) -> str:
    return test_id(t["nodeid"], t.get("target"))


def _outcomes(t: dict[str, Any]) -> dict[str, str]:
    """Each clause's outcome in a test: the ones it judged one by one, else the test's."""
    return {**{c: t["outcome"] for c in t.get("clauses", [])}, **clause_outcomes(t)}


def flips(normal: dict[str, Any], slow: dict[str, Any]) -> list[dict[str, str]]:
    """The (test, clause) pairs that passed in the normal run and failed in the slow one."""
    slow_tests = {_key(t): t for t in slow.get("tests", [])}
    found = []
    for t in normal.get("tests", []):
        other = slow_tests.get(_key(t))
        if other is None:
            continue
        before, after = _outcomes(t), _outcomes(other)
        for clause, outcome in before.items():
            if outcome == "pass" and after.get(clause) == "fail":
                found.append(
                    {"test": _key(t), "clause": clause, "slow_summary": str(other.get("summary") or "")[:600]}
                )
    return found


def apply(
    normal: dict[str, Any],
    slow: dict[str, Any],
    factor: float,
    slow_run: Path,
    exp: Expectations | None = None,
) -> dict[str, Any]:
    """The normal run's record with the slow pass's flips as failures of their
    clauses, judged again against the expectations ``exp`` (the gate's input)."""
    merged = copy.deepcopy(normal)
    found = flips(normal, slow)
    merged["run"]["slow"] = {
        "factor": factor,
        "run": str(slow_run),
        "scaled_deadlines": list(SCALED_WHEN_SLOW),
        "flips": found,
    }
    by_test: dict[str, list[dict[str, str]]] = {}
    for f in found:
        by_test.setdefault(f["test"], []).append(f)
    for t in merged.get("tests", []):
        mine = by_test.get(_key(t))
        if not mine:
            continue
        props = t.setdefault("properties", {})
        outcomes = _outcomes(t)
        for f in mine:
            outcomes[f["clause"]] = "fail"
        props["clause_outcomes"] = outcomes
        props["only_when_slow"] = [f["clause"] for f in mine]
        t["outcome"] = "fail"
        t["summary"] = (
            f"only when slow (CPU 1/{factor:g}): {', '.join(props['only_when_slow'])} passed at full "
            f"speed and failed in the slow pass: {mine[0]['slow_summary']}"
        )[:800]
    if found:
        merged["run"]["unexpected"] = expectations.apply(merged, exp)
    return merged
