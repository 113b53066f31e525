"""What changed between two runs (``bgw-conformance report diff A B``).

``compare`` is a pure function from two run records of one target (results.json,
``conformance.results``) to a ``RunDiff``: each tier's verdict that changed,
the clauses and tests that changed status (newly failing, passing, flaky,
not-reached, not-applicable, skipped; appeared, disappeared, renamed), and the
figures (``conformance.figures``) that moved by more than a factor.  ``pair``
splits runs into (profile, target) slices and pairs those of A with those of
B (the newest run of a pair on each side), saying what it could not pair.
Statuses and verdicts come from ``conformance.verdicts``; nothing here judges
a run.  Rendering: ``conformance.diff_report``.

Every figure the kit records is better lower (a time, log lines, CPU time,
bytes, lateness): a figure that rose is worse, one that fell is better.  So
that noise near zero does not count, each value is first raised to a floor:
the figure's own measured ``floor`` when it has one (a latency: the same step
without the extension), else ``FLOOR_SHARE`` of its deadline, else
``NO_DEADLINE_FLOOR`` of its unit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance import figures as figs
from conformance.expectations import test_id
from conformance.verdicts import Clause, claimed_tiers, clause_status, load_contract, tier_verdicts

DEFAULT_FACTOR = 2.0
#: a figure's noise floor, as a share of its deadline
FLOOR_SHARE = 0.05
#: the noise floor of a figure with neither a measured floor nor a deadline, by unit
NO_DEADLINE_FLOOR = {"s": 0.05, "ms": 50.0, "bytes": 4096.0}
NOT_CLAIMED = "not claimed"

#: a status's group: a change is a move from one group to another
_GROUP = {
    "fail": "failing",
    "error": "failing",
    "expected-fail": "failing",
    "flaky": "flaky",
    "not-reached": "not-reached",
    "not-applicable": "not-applicable",
    NOT_CLAIMED: "not-applicable",
    "skip": "skipped",
    "pass": "passing",
    "unexpected-pass": "passing",
}
#: the categories of a change, in the order they are shown
CATEGORIES = (
    "newly failing",
    "newly flaky",
    "newly not-reached",
    "newly not-applicable",
    "newly skipped",
    "newly passing",
    "appeared",
    "disappeared",
    "renamed",
)
#: what ``--fail-on-regression`` counts: a clause or test failing or flaky in B that was neither in A
_BAD = ("failing", "flaky")


def group(status: str | None) -> str | None:
    return None if status is None else _GROUP.get(status, status)


@dataclass(frozen=True)
class RunRef:
    """One side of a pair: a run's slice of one target."""

    path: str
    profile: str
    target: str
    started: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.profile, self.target)

    def label(self) -> str:
        return f"{self.profile} · {self.target} @ {self.started} ({self.path})"


@dataclass(frozen=True)
class TierChange:
    tier: str
    before: str  # the verdict's text ("CONFORMANT", "1 MUST failed", "not run", ...)
    after: str
    before_status: str  # one of verdicts.TIER_STATUSES (or "not packaged"); "" when the tier was absent
    after_status: str


@dataclass(frozen=True)
class Change:
    """A clause (``kind`` "clause") or test ("test") whose status changed; None: absent on that side."""

    kind: str
    name: str
    before: str | None
    after: str | None
    category: str
    detail: str = ""  # B's failure, the failing tests of a clause, or a renamed test's old id

    @property
    def regression(self) -> bool:
        """Failing or flaky in B, and neither in A (or absent there)."""
        return group(self.after) in _BAD and group(self.before) not in _BAD


@dataclass(frozen=True)
class Moved:
    """A figure that moved by more than the factor, values raised to its noise floor first."""

    test: str
    clause: str
    name: str
    before: dict[str, Any]
    after: dict[str, Any]
    ratio: float  # >= 1: the larger floored value over the smaller
    floor: float

    @property
    def worse(self) -> bool:
        return float(self.after["value"]) > float(self.before["value"])


@dataclass
class RunDiff:
    """What changed between two runs of one (profile, target)."""

    a: RunRef
    b: RunRef
    factor: float
    tiers: list[TierChange] = field(default_factory=list)
    clauses: list[Change] = field(default_factory=list)
    tests: list[Change] = field(default_factory=list)
    figures: list[Moved] = field(default_factory=list)
    figures_compared: int = 0
    figures_unpaired: int = 0  # figures measured on one side only

    @property
    def regressions(self) -> list[Change]:
        return [c for c in [*self.clauses, *self.tests] if c.regression]

    @property
    def empty(self) -> bool:
        return not (self.tiers or self.clauses or self.tests or self.figures)


@dataclass
class Diff:
    """Every pair's diff, and the runs that could not be paired or were superseded by a newer one."""

    pairs: list[RunDiff]
    only_a: list[RunRef]
    only_b: list[RunRef]
    superseded: list[RunRef]
    factor: float

    @property
    def regressions(self) -> list[tuple[RunDiff, Change]]:
        return [(p, c) for p in self.pairs for c in p.regressions]


def _target_of(res: dict[str, Any]) -> str:
    targets = res["run"].get("targets") or []
    return targets[0] if targets else "?"


def ref(path: Path | str, res: dict[str, Any]) -> RunRef:
    run = res["run"]
    return RunRef(str(path), run.get("profile") or "(no profile)", _target_of(res), run["started"])


def slices(res: dict[str, Any]) -> list[dict[str, Any]]:
    """A run's records, one per target it ran on (a test without a target belongs to each)."""
    run = res["run"]
    targets = list(run.get("targets") or []) or sorted({t["target"] for t in res["tests"] if t.get("target")})
    if len(targets) <= 1:
        return [res]
    return [
        {
            "run": {
                **run,
                "targets": [target],
                "servers": [s for s in run.get("servers") or [] if s.get("target") == target],
            },
            "tests": [t for t in res["tests"] if t.get("target") in (target, None)],
        }
        for target in targets
    ]


def _statuses(res: dict[str, Any], contract: dict[str, Clause]) -> dict[str, str]:
    """Each clause's status; a clause of a tier the run does not claim is "not claimed"."""
    claimed = claimed_tiers(res, contract)
    return {
        cid: NOT_CLAIMED if cid in contract and contract[cid].tier not in claimed else st
        for cid, st in clause_status(res).items()
    }


def _test_status(t: dict[str, Any]) -> str:
    return t.get("status") or t["outcome"]


def _said(t: dict[str, Any]) -> str:
    """A test's failure in one line."""
    said = t.get("summary") or next((ln for ln in (t.get("message") or "").splitlines() if ln.strip()), "")
    return said.strip()[:300]


def _change(kind: str, name: str, before: str | None, after: str | None, detail: str = "") -> Change | None:
    if before is None and after is None:
        return None
    if before is None:
        return Change(kind, name, None, after, "appeared", detail)
    if after is None:
        return Change(kind, name, before, None, "disappeared", detail)
    if group(before) == group(after):
        return None
    return Change(kind, name, before, after, f"newly {group(after)}", detail)


def _order(changes: list[Change]) -> list[Change]:
    return sorted(changes, key=lambda c: (CATEGORIES.index(c.category), c.name))


def _tests(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    target = _target_of(res)
    return {test_id(t["nodeid"], target): t for t in res["tests"]}


def _renamed(changes: list[Change], tests_a: dict[str, Any], tests_b: dict[str, Any]) -> list[Change]:
    """A test that disappeared and one that appeared in a file of the same name (a tier's directory
    may have moved it), with the same clauses, each the only one so: renamed (its statuses on both
    sides kept: a renamed test can newly fail)."""

    def key(tid: str, t: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
        return (tid.split("::")[0].rsplit("/", 1)[-1], tuple(sorted(t["clauses"])))

    gone: dict[tuple[str, tuple[str, ...]], list[Change]] = {}
    new: dict[tuple[str, tuple[str, ...]], list[Change]] = {}
    for c in changes:
        if c.category == "disappeared":
            gone.setdefault(key(c.name, tests_a[c.name]), []).append(c)
        elif c.category == "appeared":
            new.setdefault(key(c.name, tests_b[c.name]), []).append(c)
    out = list(changes)
    for k, olds in gone.items():
        news = new.get(k, [])
        if len(olds) == 1 and len(news) == 1 and k[1]:
            old, newc = olds[0], news[0]
            out.remove(old)
            out.remove(newc)
            said = "; ".join(x for x in (f"was {old.name}", newc.detail) if x)
            out.append(Change("test", newc.name, old.before, newc.after, "renamed", said))
    return out


def _said_of(t: dict[str, Any]) -> str:
    return _said(t) if group(_test_status(t)) in _BAD else ""


def _figures(res: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(test id, clause, figure name) -> the figure, at its worst when a test recorded it twice."""
    target = _target_of(res)
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for t in res["tests"]:
        for f in figs.of(t):
            key = (test_id(t["nodeid"], target), f["clause"], f["name"])
            if key not in out or f["value"] > out[key]["value"]:
                out[key] = f
    return out


def noise_floor(a: dict[str, Any], b: dict[str, Any]) -> float:
    """The value below which a figure's changes are noise: see the module's docstring."""
    measured = [float(f["floor"]) for f in (a, b) if f.get("floor") is not None]
    if measured:
        return max(measured)
    deadlines = [float(f["deadline"]) for f in (a, b) if f.get("deadline")]
    if deadlines:
        return FLOOR_SHARE * max(deadlines)
    return NO_DEADLINE_FLOOR.get(b.get("unit") or a.get("unit") or "", 1.0)


def moved_by(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float]:
    """(ratio, floor): the larger of the two values over the smaller, each raised to the floor."""
    floor = noise_floor(a, b)
    va, vb = max(float(a["value"]), floor), max(float(b["value"]), floor)
    if min(va, vb) <= 0:  # a floor of 0 (a deadline of 0): only equal values did not move
        return (1.0 if va == vb else float("inf")), floor
    return max(va, vb) / min(va, vb), floor


def compare(
    a: dict[str, Any],
    b: dict[str, Any],
    factor: float = DEFAULT_FACTOR,
    contract: dict[str, Clause] | None = None,
    paths: tuple[str, str] = ("A", "B"),
) -> RunDiff:
    """What changed from run ``a`` to run ``b`` (each a results.json record of one target)."""
    contract = contract or load_contract()
    diff = RunDiff(ref(paths[0], a), ref(paths[1], b), factor)

    va, vb = tier_verdicts(a, contract), tier_verdicts(b, contract)
    for tier in dict.fromkeys([*va, *vb]):
        x, y = va.get(tier), vb.get(tier)
        if x is None or y is None or (x.status, x.text) != (y.status, y.text):
            diff.tiers.append(
                TierChange(
                    tier,
                    x.text if x else "absent",
                    y.text if y else "absent",
                    x.status if x else "",
                    y.status if y else "",
                )
            )

    tests_a, tests_b = _tests(a), _tests(b)
    sa, sb = _statuses(a, contract), _statuses(b, contract)
    clauses = []
    for cid in sorted(set(sa) | set(sb)):
        failing = [
            f"{tid}: {_said(t)}"
            for tid, t in tests_b.items()
            if cid in t["clauses"] and group(_test_status(t)) in _BAD
        ]
        if (c := _change("clause", cid, sa.get(cid), sb.get(cid), "; ".join(failing)[:600])) is not None:
            clauses.append(c)
    diff.clauses = _order(clauses)

    tests = []
    for tid in sorted(set(tests_a) | set(tests_b)):
        ta, tb = tests_a.get(tid), tests_b.get(tid)
        before, after = (_test_status(ta) if ta else None), (_test_status(tb) if tb else None)
        if (c := _change("test", tid, before, after, _said_of(tb) if tb else "")) is not None:
            tests.append(c)
    diff.tests = _order(_renamed(tests, tests_a, tests_b))

    fa, fb = _figures(a), _figures(b)
    both = fa.keys() & fb.keys()
    diff.figures_compared = len(both)
    diff.figures_unpaired = len(fa.keys() ^ fb.keys())
    moved = []
    for key in sorted(both):
        ratio, floor = moved_by(fa[key], fb[key])
        if ratio > factor:
            moved.append(Moved(*key, fa[key], fb[key], ratio, floor))
    diff.figures = sorted(moved, key=lambda m: (not m.worse, -m.ratio, m.clause, m.name))
    return diff


def pair(
    runs_a: list[tuple[Path, dict[str, Any]]],
    runs_b: list[tuple[Path, dict[str, Any]]],
    factor: float = DEFAULT_FACTOR,
    contract: dict[str, Clause] | None = None,
) -> Diff:
    """Pair A's runs with B's by (profile, target), each target of a run on its own; on a side with
    several runs of one pair, the newest is compared and the others are superseded."""
    contract = contract or load_contract()
    superseded: list[RunRef] = []

    def newest(
        runs: list[tuple[Path, dict[str, Any]]],
    ) -> dict[tuple[str, str], tuple[RunRef, dict[str, Any]]]:
        out: dict[tuple[str, str], tuple[RunRef, dict[str, Any]]] = {}
        for path, res in runs:
            for one in slices(res):
                r = ref(path, one)
                if r.key in out:
                    older, newer = sorted([out[r.key], (r, one)], key=lambda x: x[0].started)
                    superseded.append(older[0])
                    out[r.key] = newer
                else:
                    out[r.key] = (r, one)
        return out

    side_a, side_b = newest(runs_a), newest(runs_b)
    pairs = [
        compare(side_a[k][1], side_b[k][1], factor, contract, (side_a[k][0].path, side_b[k][0].path))
        for k in sorted(side_a.keys() & side_b.keys())
    ]
    return Diff(
        pairs,
        [side_a[k][0] for k in sorted(side_a.keys() - side_b.keys())],
        [side_b[k][0] for k in sorted(side_b.keys() - side_a.keys())],
        superseded,
        factor,
    )
