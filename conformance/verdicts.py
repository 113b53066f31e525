"""One place judges a run: the contract model, each clause's outcome, each
tier's verdict and the run's.

- The contract model: ``CONTRACT.md`` parsed into its clauses (``Clause``:
  id, MUST or SHOULD, text, family, tier) and its tiers (``load_contract``,
  ``load_tiers``).
- Clause outcomes: what the tests of one run (``results.json``) say of each
  clause (``clause_status``).  A test's outcome is its clauses' unless it
  recorded per-clause outcomes (``clause_outcomes``: a scenario judging
  several clauses, or the after-test invariant checks of the pool, INV-1 to
  INV-3, which judge clauses that are not the test's own).
- Tier verdicts: each tier conformant, failed, incomplete, not claimed or not
  run (``tier_verdicts``), and the run's overall verdict (``overall``,
  ``verdict``).

Reports (``conformance.report``), the summary and exit status
(``conformance.summary``) and mutation testing (``conformance.mutation``)
render or use these; none of them judges a run on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTRACT = Path(__file__).resolve().parent / "CONTRACT.md"
_CLAUSE = re.compile(r"^- \*\*([A-Z]+-\d+) \((MUST|SHOULD)\)\*\* (.*?)(?=^- \*\*|^#{1,6} |\Z)", re.M | re.S)
#: a family heading: ``### FAM: title`` under a tier, or the untiered ``## FAM: title``
_FAMILY = re.compile(r"^###? ([A-Z]+): (.*)$", re.M)
_TIER = re.compile(r"^## Tier `([^`]+)`: (.*)$", re.M)
_SECTION = re.compile(r"^## .*$", re.M)
#: a clause's status from its tests' statuses, worst first
_PRECEDENCE = (
    "fail",
    "error",
    "flaky",
    "expected-fail",
    "not-reached",
    "skip",
    "unexpected-pass",
    "pass",
    "not-applicable",
)
#: clause statuses that fail a claimed tier (MUST) or are counted against it (SHOULD)
_FAILED = ("fail", "error", "flaky", "expected-fail")
#: clause statuses that mean a test of the clause actually ran
_RAN = ("pass", "fail", "error", "flaky", "expected-fail", "unexpected-pass")
#: a test's raw outcomes under which its recorded per-clause outcomes count
_JUDGED = ("pass", "fail", "error")
TIER_STATUSES = ("conformant", "failed", "incomplete", "not claimed", "not run")


@dataclass(frozen=True)
class Clause:
    id: str
    level: str  # MUST or SHOULD
    text: str
    family: str
    tier: str = ""  # "" for a clause outside any ``## Tier`` section (the untiered contract)


@dataclass(frozen=True)
class TierVerdict:
    """One tier's verdict in one run; ``status`` is one of TIER_STATUSES."""

    tier: str
    claimed: bool
    status: str
    must_failed: int
    should_failed: int
    text: str  # e.g. "CONFORMANT", "2 MUST failed", "not claimed", "not run"
    must_skipped: int = 0  # MUST clauses whose tests were skipped: the tier is not conformant either
    must_expected: int = 0  # of must_failed, those the expectations file lists
    must_not_reached: int = 0  # MUST clauses never evaluated: the tier is incomplete, not failed

    @property
    def label(self) -> str:
        return tier_label(self.tier)

    @property
    def short(self) -> str:
        """The matrix's form: ``✓``, ``✗ 2``, an en dash (not claimed) or ``not run``."""
        if self.status == "conformant":
            return "✓"
        if self.status == "failed":
            return (
                "✗"
                + (f" {self.must_failed}" if self.must_failed else "")
                + (f" {self.must_skipped} skipped" if self.must_skipped else "")
            )
        return "\u2013" if self.status == "not claimed" else self.status

    @property
    def css(self) -> str:
        return {"conformant": "pass", "failed": "fail", "not claimed": "not-applicable"}.get(
            self.status, "skip"
        )


def tier_label(tier: str) -> str:
    return tier or "contract"


def _tier_at(sections: list[tuple[int, str]], pos: int) -> str:
    """The tier of the ``## `` section holding position ``pos`` ("" outside a ``## Tier`` section)."""
    return next((tier for start, tier in reversed(sections) if start < pos), "")


def load_contract(path: Path = CONTRACT) -> dict[str, Clause]:
    text = path.read_text()
    families = {m.group(1): m.group(2).strip() for m in _FAMILY.finditer(text)}
    sections = [
        (m.start(), t.group(1) if (t := _TIER.match(m.group(0))) else "") for m in _SECTION.finditer(text)
    ]
    out = {}
    for m in _CLAUSE.finditer(text):
        cid, level, body = m.groups()
        fam = cid.split("-")[0]
        out[cid] = Clause(
            cid,
            level,
            " ".join(body.split()),
            f"{fam}: {families.get(fam, '')}",
            _tier_at(sections, m.start()),
        )
    return out


def load_tiers(path: Path = CONTRACT) -> dict[str, str]:
    """Tier name -> description, in the contract's (display) order."""
    return {m.group(1): m.group(2).strip() for m in _TIER.finditer(path.read_text())}


def clause_outcomes(test: dict[str, Any]) -> dict[str, str]:
    """The per-clause outcomes a test recorded (``clause_outcomes``): the
    clauses its scenario judged one by one, and the INV clauses the pool's
    after-test checks judged.  Empty when it recorded none."""
    return (test.get("properties") or {}).get("clause_outcomes") or {}


def _test_clause_status(t: dict[str, Any], cid: str, own: dict[str, str]) -> str:
    """What test ``t`` says of clause ``cid``: its own outcome where it recorded one."""
    raw = t["outcome"]
    outcome = t.get("status") or raw
    if not own or raw not in _JUDGED:
        return outcome
    if cid not in t["clauses"]:
        # judged by the test's after-test checks: the test's expectation covers it only when it failed
        return own[cid] if outcome in _JUDGED or own[cid] == "pass" else outcome
    mine = own.get(cid, "error" if raw == "fail" else raw)
    if outcome in _JUDGED or (mine == "pass" and outcome != "unexpected-pass"):
        return mine  # nothing expected of it, or it passed in a test that failed another
    return outcome


def clause_status(results: dict[str, Any]) -> dict[str, str]:
    """Each clause's status in one run: its worst test outcome.  A test that
    judges several clauses in one scenario records each one's own outcome
    (``clause_outcomes``); a clause it did not reach before failing is an
    error (not judged), never a pass.  A clause a test's outcomes name that
    is not among its clauses (INV-1 to INV-3, judged after every pool test)
    counts that outcome too."""
    seen: dict[str, list[str]] = {}
    for t in results["tests"]:
        own = clause_outcomes(t)
        for cid in dict.fromkeys([*t["clauses"], *own]):
            seen.setdefault(cid, []).append(_test_clause_status(t, cid, own))
    return {cid: next(o for o in _PRECEDENCE if o in outs) for cid, outs in seen.items()}


def claimed_tiers(results: dict[str, Any], contract: dict[str, Clause]) -> set[str]:
    """The contract's tiers the run's profile claims: ``run.tiers``, or every tier when the results
    predate tiers.  The untiered part of a contract ("") is always claimed."""
    tiers = {c.tier for c in contract.values()}
    claims = results["run"].get("tiers")
    return tiers if claims is None else {t for t in tiers if t == "" or t in claims}


def _tier_verdict(tier: str, claimed: bool, clauses: list[Clause], status: dict[str, str]) -> TierVerdict:
    if not claimed:
        return TierVerdict(tier, False, "not claimed", 0, 0, "not claimed")
    seen = [(c.level, status.get(c.id)) for c in clauses]
    if not any(st in _RAN for _, st in seen):
        return TierVerdict(tier, True, "not run", 0, 0, "not run")
    must_failed = sum(1 for level, st in seen if level == "MUST" and st in _FAILED)
    must_expected = sum(1 for level, st in seen if level == "MUST" and st == "expected-fail")
    must_skipped = sum(1 for level, st in seen if level == "MUST" and st == "skip")
    must_not_reached = sum(1 for level, st in seen if level == "MUST" and st == "not-reached")
    should_failed = sum(1 for level, st in seen if level == "SHOULD" and st in _FAILED)
    expected = f" ({must_expected} expected)" if must_expected else ""
    parts = [f"{must_failed} MUST failed{expected}"] if must_failed else []
    parts += [f"{must_skipped} MUST skipped"] if must_skipped else []
    unreached = [f"{must_not_reached} MUST not reached"] if must_not_reached else []
    text = ", ".join(parts + unreached) or "CONFORMANT"
    musts = [st for level, st in seen if level == "MUST"]
    if None in musts:  # a selection (-k, --bgwc-clauses): say how much of the tier it judged
        text += f" on {sum(st is not None for st in musts)} of {len(musts)} MUST clauses"
    if should_failed:
        text += f" ({should_failed} SHOULD failed)"
    st = "failed" if parts else "incomplete" if unreached else "conformant"
    return TierVerdict(
        tier, True, st, must_failed, should_failed, text, must_skipped, must_expected, must_not_reached
    )


def tier_verdicts(results: dict[str, Any], contract: dict[str, Clause]) -> dict[str, TierVerdict]:
    """Each tier's verdict, in contract order.  An unclaimed tier is "not claimed" whatever its tests
    did.  A claimed tier fails when a MUST clause's tests failed, errored, were flaky or were skipped;
    MUST clauses with no test in the run (a ``-k`` selection) do not fail it, and its text says how
    many of its MUST clauses were judged; SHOULD failures are
    counted but do not fail it; when no test of its clauses ran it is "not run"."""
    status = clause_status(results)
    claimed = claimed_tiers(results, contract)
    by_tier: dict[str, list[Clause]] = {}
    for c in contract.values():
        by_tier.setdefault(c.tier, []).append(c)
    if results["run"].get("not_packaged"):
        return {
            tier: TierVerdict(
                tier,
                tier in claimed,
                *(
                    ("not packaged", 0, 0, "not packaged")
                    if tier in claimed
                    else ("not claimed", 0, 0, "not claimed")
                ),
            )
            for tier in by_tier
        }
    return {tier: _tier_verdict(tier, tier in claimed, clauses, status) for tier, clauses in by_tier.items()}


def overall(verdicts: dict[str, TierVerdict]) -> bool:
    """The run's verdict from its tiers': see ``verdict``."""
    claimed = [v for v in verdicts.values() if v.claimed]
    return all(v.status in ("conformant", "not run") for v in claimed) and any(
        v.status == "conformant" for v in claimed
    )


def verdict(results: dict[str, Any], contract: dict[str, Clause]) -> bool:
    """Conformant: every claimed tier is conformant or not run, and at least one claimed tier ran."""
    return overall(tier_verdicts(results, contract))


def tier_line(verdicts: dict[str, TierVerdict]) -> str:
    """``bgworker: CONFORMANT · pool: 2 MUST failed · faults: not claimed``"""
    return " · ".join(f"{v.label}: {v.text}" for v in verdicts.values())
