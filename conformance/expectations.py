"""Expectations: what an extension is known to do, kept outside the tests
(as web-platform-tests keeps its metadata), so that a CI gate fails on
unexpected results only.

One TOML file per profile, by default beside it: ``<profile>.expectations.toml``::

    [[expect]]
    test = "bgworker/test_orphan.py::test_every_process_exits_with_the_postmaster"
    # or: clause = "ORPHAN-1" (every test of the clause)
    targets = ["pg17", "pg18"]   # or majors = [17, 18]; neither: every target
    outcome = "fail"             # fail | flaky | skip
    reason = "the launcher outlives the postmaster while a job runs"
    link = "https://github.com/citusdata/pg_cron/issues/12"

A test's status in a run, from its outcome and the entries that cover it:

- ``pass``, ``fail``, ``error``: as it ran, nothing expected otherwise;
- ``expected-fail``: it failed (or errored) and every clause it failed is
  expected to fail there; never shown green;
- ``unexpected-pass``: it passed where an entry says it fails (a ``test``
  entry; a ``clause`` entry is judged on the clause: none of its tests failed);
- ``flaky``: an entry says it may pass or fail; not a pass;
- ``skip``: not run (an entry with ``outcome = "skip"``, or skipped);
- ``not-applicable``: the profile does not claim it or the adapter cannot
  express it;
- ``not-reached``: never evaluated (an earlier step of its scenario failed, or
  its server could not be restored): a harness error, never a product failure.

Unexpected results (the gate): ``fail``, ``error``, ``unexpected-pass``.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.errors import KitError
from conformance.targets.spec import all_names, major_of

EXPECTABLE = ("fail", "flaky", "skip")
STATUSES = (
    "pass",
    "fail",
    "error",
    "expected-fail",
    "unexpected-pass",
    "flaky",
    "not-reached",
    "skip",
    "not-applicable",
)
UNEXPECTED = ("fail", "error", "unexpected-pass")
_KEYS = {"test", "clause", "targets", "majors", "outcome", "reason", "link"}


class ExpectationsError(KitError):
    """An expectations file that does not follow its schema."""


@dataclass(frozen=True)
class Expectation:
    outcome: str  # fail | flaky | skip
    reason: str
    test: str | None = None  # a test id without its target: "tier/test_file.py::name[params]"
    clause: str | None = None
    targets: tuple[str, ...] = ()
    majors: tuple[int, ...] = ()
    link: str = ""

    def applies_to(self, target: str, major: int | None) -> bool:
        if self.targets and target not in self.targets:
            return False
        return not self.majors or major in self.majors

    def covers(self, test_id: str, clause: str | None = None) -> bool:
        if self.test is not None:
            return self.test == test_id
        return clause is not None and self.clause == clause


@dataclass(frozen=True)
class Expectations:
    path: Path | None
    entries: tuple[Expectation, ...] = field(default_factory=tuple)


def default_path(profile_path: Path) -> Path:
    """The expectations file of a profile: beside it, ``<stem>.expectations.toml``."""
    return profile_path.with_name(f"{profile_path.stem}.expectations.toml")


def _header(profile: str) -> str:
    return (
        f"# Expected outcomes of {profile} under bgw-conformance: per test or clause, per target or major.\n"
        "# Gating uses unexpected results only: a failure not listed here, or a listed failure that passes.\n"
        "# `bgw-conformance expectations update --profile P REPORTS...` rewrites this file from runs;\n"
        "# give each entry a reason and, where there is one, a link.\n"
        "#\n"
        '# [[expect]]\n# test = "bgworker/test_orphan.py::test_every_process_exits_with_the_postmaster"  '
        '# or clause = "ORPHAN-1"\n'
        '# targets = ["pg17"]   # or majors = [17]; neither: every target\n'
        '# outcome = "fail"     # fail | flaky | skip\n'
        '# reason = "why"\n# link = "https://..."\n'
    )


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def render(profile: str, entries: list[Expectation] | tuple[Expectation, ...] = ()) -> str:
    """The text of an expectations file: the header, then each entry."""
    out = _header(profile)
    for e in entries:
        out += "\n[[expect]]\n"
        out += (
            f"test = {_toml_str(e.test)}\n"
            if e.test is not None
            else f"clause = {_toml_str(e.clause or '')}\n"
        )
        if e.targets:
            out += f"targets = [{', '.join(_toml_str(t) for t in e.targets)}]\n"
        if e.majors:
            out += f"majors = [{', '.join(str(m) for m in e.majors)}]\n"
        out += f"outcome = {_toml_str(e.outcome)}\nreason = {_toml_str(e.reason)}\n"
        if e.link:
            out += f"link = {_toml_str(e.link)}\n"
    return out


def _entry(path: Path, i: int, raw: Any) -> Expectation:
    where = f"{path}: [[expect]] #{i + 1}"
    if not isinstance(raw, dict):
        raise ExpectationsError(f"{where}: not a table")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ExpectationsError(f"{where}: unknown key {unknown[0]!r} (keys: {', '.join(sorted(_KEYS))})")
    if ("test" in raw) == ("clause" in raw):
        raise ExpectationsError(f"{where}: give exactly one of test or clause")
    for key in ("test", "clause", "outcome", "reason", "link"):
        if key in raw and not isinstance(raw[key], str):
            raise ExpectationsError(f"{where}: {key} must be a string")
    outcome = raw.get("outcome")
    if outcome not in EXPECTABLE:
        raise ExpectationsError(f"{where}: outcome {outcome!r} is not one of {', '.join(EXPECTABLE)}")
    if not str(raw.get("reason", "")).strip():
        raise ExpectationsError(f"{where}: give a reason")
    targets = raw.get("targets", [])
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise ExpectationsError(f'{where}: targets must be a list of names like "pg17" or "local"')
    majors = raw.get("majors", [])
    if not isinstance(majors, list) or not all(
        isinstance(m, int) and not isinstance(m, bool) for m in majors
    ):
        raise ExpectationsError(f"{where}: majors must be a list of integers like 17")
    return Expectation(
        outcome=outcome,
        reason=raw["reason"].strip(),
        test=raw.get("test"),
        clause=raw.get("clause"),
        targets=tuple(targets),
        majors=tuple(majors),
        link=raw.get("link", ""),
    )


def load(path: Path) -> Expectations:
    """Read and validate an expectations file; a missing file is an error
    (ask for ``default_path`` only when it exists)."""
    if not path.is_file():
        raise ExpectationsError(f"no expectations file {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ExpectationsError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"expect"})
    if unknown:
        raise ExpectationsError(f"{path}: unknown table {unknown[0]!r} (only [[expect]] entries)")
    raw = data.get("expect", [])
    if not isinstance(raw, list):
        raise ExpectationsError(f"{path}: expect must be an array of tables ([[expect]])")
    return Expectations(path, tuple(_entry(path, i, r) for i, r in enumerate(raw)))


# -- a test's status in a run ------------------------------------------------------
def test_id(nodeid: str, target: str | None) -> str:
    """A test's id without its target: ``pool/test_jobs.py::test_x[pg17-drop]`` -> ``...::test_x[drop]``."""
    if not target or not nodeid.endswith("]") or "[" not in nodeid:
        return nodeid
    head, params = nodeid[:-1].split("[", 1)
    parts = params.split("-")
    if target in parts:  # the target's id is one whole component
        parts.remove(target)
    rest = "-".join(parts)
    return f"{head}[{rest}]" if rest else head


def _major_of(target: str | None, major: int | None) -> int | None:
    return major if major is not None else major_of(target)


@dataclass(frozen=True)
class Judged:
    """A test's status and the entry that made it so (None: nothing expected)."""

    status: str
    entry: Expectation | None = None

    @property
    def unexpected(self) -> bool:
        return self.status in UNEXPECTED or (self.status in ("skip", "flaky") and self.entry is None)


def entries_for(
    exp: Expectations | None, tid: str, target: str | None, major: int | None
) -> list[Expectation]:
    """The entries about a test (by its id or any of its clauses are judged by caller) on a target."""
    if exp is None:
        return []
    m = _major_of(target, major)
    return [
        e for e in exp.entries if e.applies_to(target or "", m) and (e.test == tid or e.clause is not None)
    ]


def judge(
    exp: Expectations | None,
    tid: str,
    target: str | None,
    major: int | None,
    outcome: str,
    clauses: list[str],
    clause_outcomes: dict[str, str] | None = None,
) -> Judged:
    """The status of one test from its raw outcome (pass, fail, error, skip, not-applicable)."""
    entries = entries_for(exp, tid, target, major)
    own = [e for e in entries if e.test == tid]
    by_clause = {c: [e for e in entries if e.clause == c] for c in clauses}
    if outcome == "not-reached":
        return Judged(outcome)
    if outcome in ("skip", "not-applicable"):
        skip = next(
            (e for e in own + [e for es in by_clause.values() for e in es] if e.outcome == "skip"), None
        )
        return Judged(outcome, skip)
    if outcome == "flaky":  # repeated, it both passed and failed: expected only by a flaky entry
        flaky = next(
            (e for e in own + [e for es in by_clause.values() for e in es] if e.outcome == "flaky"), None
        )
        return Judged("flaky", flaky)
    if outcome in ("fail", "error"):
        failed = [c for c in clauses if (clause_outcomes or {}).get(c, "fail") in ("fail", "error")]
        if not failed and "not-reached" in (clause_outcomes or {}).values():
            return Judged("not-reached")  # it failed only before judging the rest: nothing of the extension's
        failed = failed or clauses
        covering: list[Expectation] = []
        for c in failed or [""]:
            e = next((e for e in own + by_clause.get(c, []) if e.outcome in ("fail", "flaky")), None)
            if e is None:
                return Judged(outcome)
            covering.append(e)
        flaky = next((e for e in covering if e.outcome == "flaky"), None)
        return Judged("flaky", flaky) if flaky else Judged("expected-fail", covering[0])
    # passed
    flaky = next(
        (e for e in own + [e for es in by_clause.values() for e in es] if e.outcome == "flaky"), None
    )
    if flaky is not None:
        return Judged("flaky", flaky)
    fail = next((e for e in own if e.outcome == "fail"), None)
    return Judged("unexpected-pass", fail) if fail else Judged("pass")


# -- a run's results judged ---------------------------------------------------------
def _clause_failed(rec: dict[str, Any], clause: str) -> bool:
    if rec["outcome"] not in ("fail", "error"):
        return False
    own = (rec.get("properties") or {}).get("clause_outcomes") or {}
    return own.get(clause, "fail") in ("fail", "error")


def apply(
    results: dict[str, Any], exp: Expectations | None, judged: dict[str, Judged] | None = None
) -> list[dict[str, Any]]:
    """Give each test record its ``status`` (and ``expected``: the entry's outcome,
    reason and link), record the file in the run, and return the unexpected
    results: each test with an unexpected status, and each ``clause`` entry
    expecting a failure where every test of the clause ran and none failed it.
    ``judged``: tests already judged as they were reported (by node id), kept
    as they are when their record's outcome is the one judged; the others
    (skipped, not reached, folded repetitions) are judged here."""
    run = results["run"]
    majors = {s["target"]: s.get("major") for s in run.get("servers", [])}
    run["expectations"] = (
        {"path": str(exp.path) if exp.path else None, "entries": len(exp.entries)} if exp else None
    )
    unexpected: list[dict[str, Any]] = []
    for rec in results["tests"]:
        target = rec.get("target")
        tid = rec.get("test") or test_id(rec["nodeid"], target)
        own = (rec.get("properties") or {}).get("clause_outcomes")
        j = (judged or {}).get(rec["nodeid"])
        if j is None or rec["outcome"] not in ("pass", "fail", "error"):
            j = judge(exp, tid, target, majors.get(target or ""), rec["outcome"], rec["clauses"], own)
        rec["test"], rec["status"] = tid, j.status
        rec["expected"] = (
            {"outcome": j.entry.outcome, "reason": j.entry.reason, "link": j.entry.link} if j.entry else None
        )
        if j.unexpected:
            unexpected.append(
                {
                    "test": tid,
                    "nodeid": rec["nodeid"],
                    "target": target,
                    "clauses": [c for c in rec["clauses"] if _clause_failed(rec, c)] or rec["clauses"],
                    "status": j.status,
                    "message": rec.get("summary") or (j.entry.reason if j.entry else ""),
                }
            )
    for e in exp.entries if exp else ():
        if e.clause is None or e.outcome != "fail":
            continue
        for target in run.get("targets", []):
            if not e.applies_to(target, _major_of(target, majors.get(target))):
                continue
            tests = [r for r in results["tests"] if r.get("target") == target and e.clause in r["clauses"]]
            ran = [r for r in tests if r["outcome"] in ("pass", "fail", "error")]
            if ran and not any(_clause_failed(r, e.clause) for r in ran):
                unexpected.append(
                    {
                        "clause": e.clause,
                        "target": target,
                        "clauses": [e.clause],
                        "status": "unexpected-pass",
                        "message": f"expected to fail ({e.reason}), but every test of {e.clause} passed",
                    }
                )
    return unexpected


# -- accepting runs: ``bgw-conformance expectations update`` --------------------------


def _without(e: Expectation, target: str, major: int | None) -> Expectation | None:
    """The entry no longer covering ``target`` (None when it covers nothing any more)."""
    if e.targets:
        rest = tuple(t for t in e.targets if t != target)
        return Expectation(e.outcome, e.reason, e.test, e.clause, rest, e.majors, e.link) if rest else None
    if e.majors:
        left = tuple(m for m in e.majors if m != major)
        return Expectation(e.outcome, e.reason, e.test, e.clause, (), left, e.link) if left else None
    rest = tuple(t for t in all_names() if t != target)
    return Expectation(e.outcome, e.reason, e.test, e.clause, rest, (), e.link)


def _failure_reason(rec: dict[str, Any]) -> str:
    """What the failure said, as the first draft of a reason (to be edited)."""
    said = (rec.get("summary") or "").removeprefix("AssertionError: ")[:200]
    verb = "fails" if rec["outcome"] == "fail" else "errors"
    failed = [c for c in rec["clauses"] if _clause_failed(rec, c)] or rec["clauses"]
    return f"{', '.join(failed) or 'the test'} {verb}: {said}"


def update(exp: Expectations | None, runs: list[dict[str, Any]]) -> tuple[list[Expectation], list[str]]:
    """The entries after accepting ``runs`` (results.json of one profile), and what changed.

    For each test and target the runs saw: one that only failed gets a ``fail``
    entry (a reason taken from its failure, to be edited), one that both passed
    and failed a ``flaky`` entry; an entry expecting a failure that only passed
    stops covering that target (a ``clause`` entry when every test of the
    clause there only passed).  Targets the runs did not see keep their
    entries; ``skip`` entries are left as written."""
    entries = list(exp.entries if exp else ())
    changes: list[str] = []
    seen: dict[tuple[str, str], dict[str, Any]] = {}  # (test id, target) -> outcomes, a record, major
    for res in runs:
        majors = {s["target"]: s.get("major") for s in res["run"].get("servers", [])}
        for rec in res["tests"]:
            target = rec.get("target")
            if target is None or rec["outcome"] not in ("pass", "fail", "error") or rec.get("harness_error"):
                continue
            tid = rec.get("test") or test_id(rec["nodeid"], target)
            cell = seen.setdefault((tid, target), {"outs": set(), "rec": rec, "major": majors.get(target)})
            cell["outs"].add("pass" if rec["outcome"] == "pass" else "fail")
            if rec["outcome"] != "pass":
                cell["rec"] = rec

    def replace(old: Expectation, new: Expectation | None, why: str) -> None:
        i = entries.index(old)
        if new is None:
            del entries[i]
        else:
            entries[i] = new
        changes.append(why)

    for (tid, target), cell in sorted(seen.items()):
        major, rec = _major_of(target, cell["major"]), cell["rec"]
        mine = [e for e in entries if e.test == tid and e.applies_to(target, major)]
        if cell["outs"] == {"pass"}:
            for e in (e for e in mine if e.outcome == "fail"):
                replace(e, _without(e, target, major), f"- {tid} on {target}: passes now")
            continue
        status = judge(
            Expectations(None, tuple(entries)),
            tid,
            target,
            major,
            rec["outcome"],
            rec["clauses"],
            (rec.get("properties") or {}).get("clause_outcomes"),
        )
        outcome = "flaky" if cell["outs"] == {"pass", "fail"} else "fail"
        if status.status == "expected-fail" and outcome == "flaky" and status.entry is not None:
            e = status.entry
            replace(e, _without(e, target, major), f"~ {tid} on {target}: flaky, not failing")
        elif status.status not in ("fail", "error") and not (outcome == "flaky" and status.entry is None):
            continue
        reason = _failure_reason(rec) if outcome == "fail" else "passed and failed in the runs accepted"
        entries.append(Expectation(outcome, reason, tid, None, (target,)))
        changes.append(f"+ {tid} on {target}: {outcome}")
    for clause_entry in [e for e in entries if e.clause is not None and e.outcome == "fail"]:
        current: Expectation | None = clause_entry
        for target in sorted({t for _, t in seen}):
            cells = [
                c for (_, t), c in seen.items() if t == target and clause_entry.clause in c["rec"]["clauses"]
            ]
            if current is None or not cells:
                continue
            major = _major_of(target, cells[0]["major"])
            if current.applies_to(target, major) and all(c["outs"] == {"pass"} for c in cells):
                new = _without(current, target, major)
                replace(current, new, f"- {current.clause} on {target}: passes now")
                current = new
    return _merged(entries), changes


def _merged(entries: list[Expectation]) -> list[Expectation]:
    """Entries that differ only in their targets, as one; sorted by what they name."""
    out: dict[tuple[Any, ...], Expectation] = {}
    for e in entries:  # reasons that differ in numbers only (pids, ports, targets) are the same
        key = (e.test, e.clause, e.outcome, re.sub(r"\d+", "N", e.reason), e.link, e.majors, bool(e.targets))
        if key in out and e.targets:
            prev = out[key]
            out[key] = Expectation(
                e.outcome,
                prev.reason,
                e.test,
                e.clause,
                tuple(sorted({*prev.targets, *e.targets})),
                e.majors,
                e.link,
            )
        elif key in out:
            continue
        else:
            out[key] = e
    return sorted(out.values(), key=lambda e: (e.test or "", e.clause or "", e.targets, e.majors))
