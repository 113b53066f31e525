"""The mutants of the reference pool: patches that apply, and clauses that exist."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from conformance import mutation
from conformance.paths import reference_ext_dir
from conformance.verdicts import load_contract


def test_every_mutant_has_a_patch_and_every_patch_a_mutant() -> None:
    names = {m.name for m in mutation.load_mutants()} - {mutation.CONTROL}
    patches = {p.stem for p in mutation.mutants_dir().glob("*.patch")}
    assert names == patches


@pytest.mark.parametrize(
    "mutant", [m for m in mutation.load_mutants() if m.name != mutation.CONTROL], ids=str
)
def test_patch_applies_exactly(mutant: mutation.Mutant, tmp_path: Path) -> None:
    src = mutation.mutant_source(mutant, tmp_path)  # patch -F0: no fuzz
    changed = subprocess.run(
        ["diff", "-r", "-q", str(reference_ext_dir() / "src"), str(src / "src")],
        capture_output=True,
        text=True,
    )
    sql = (reference_ext_dir() / "bgw_pool--1.0.sql").read_text() != (src / "bgw_pool--1.0.sql").read_text()
    assert changed.returncode == 1 or sql, f"{mutant.name}: the patch changes nothing"


def test_every_mutant_names_clauses_of_the_contract() -> None:
    contract = load_contract()
    for m in mutation.load_mutants():
        assert (m.name == mutation.CONTROL) == (not m.kill), m.name
        assert set(m.kill) <= set(contract), f"{m.name}: unknown clauses {set(m.kill) - set(contract)}"


def test_a_mutant_limited_to_some_majors_names_supported_ones() -> None:
    from conformance.majors import SUPPORTED_MAJORS as MAJORS

    limited = [m for m in mutation.load_mutants() if m.majors]
    assert limited, "DBC-6's mutant is limited to the majors where DBC-6 judges"
    for m in limited:
        assert set(m.majors) < set(MAJORS), f"{m.name}: majors {m.majors} must be a strict subset of {MAJORS}"
        assert all(m.applies_to(x) == (x in m.majors) for x in MAJORS)


def test_production_sources_carry_no_mutant_switch() -> None:
    for path in [*(reference_ext_dir() / "src").iterdir(), reference_ext_dir() / "Makefile"]:
        assert not re.search(r"MUTANT", path.read_text()), path


def test_failed_clauses_reads_the_recorded_outcomes_not_the_message() -> None:
    # CRASH-1's scenario passed, then the after-test check failed INV-1/INV-2
    own = {"CRASH-1": "pass", "INV-1": "fail", "INV-2": "fail"}
    test = {
        "clauses": ["CRASH-1"],
        "message": "AssertionError: whatever",
        "properties": {"clause_outcomes": own},
    }
    assert mutation.failed_clauses(test) == {"INV-1", "INV-2"}
    own = {"TERM-1": "pass", "INV-1": "pass", "INV-2": "pass", "INV-3": "fail"}
    assert mutation.failed_clauses({"clauses": ["TERM-1"], "properties": {"clause_outcomes": own}}) == {
        "INV-3"
    }
    # a message that names an invariant is no outcome: the test failed its own clause
    test = {"clauses": ["TERM-1"], "message": "AssertionError: INV-3 violated after the test: 5 + 1 submits"}
    assert mutation.failed_clauses(test) == {"TERM-1"}
    test = {
        "clauses": ["SLOTS-1", "SLOTS-2"],
        "properties": {"clause_outcomes": {"SLOTS-1": "pass", "SLOTS-2": "fail"}},
    }
    assert mutation.failed_clauses(test) == {"SLOTS-2"}


def test_mutation_table_shows_each_major_and_kills_for_another_reason(tmp_path: Path) -> None:
    from conformance import report

    def run(major: int, verdict: str) -> dict[str, object]:
        mutant = {"name": "no_lock", "bug": "b", "precedent": "p", "kill": ["EXH-5"], "verdict": verdict}
        mutant |= {"as_expected": verdict == "killed", "detail": "", "seconds": 1.0}
        mutant["killed_by"] = [{"test": "t", "clauses": ["LIFE-1"], "outcome": "fail"}]
        return {"major": major, "kill_ratio": 1.0 if verdict == "killed" else 0.0, "mutants": [mutant]}

    for i, (major, verdict) in enumerate([(17, "killed-other"), (17, "killed"), (18, "killed-other")]):
        out = tmp_path / f"mutants-2026120{i}-pg{major}"
        out.mkdir()
        (out / "mutants.json").write_text(json.dumps(run(major, verdict)))
    runs = report.latest_mutants(tmp_path)
    assert [(r["major"], r["mutants"][0]["verdict"]) for r in runs] == [(17, "killed"), (18, "killed-other")]
    html = report.render_mutation_table(runs)
    assert "id='mutants-pg17'" in html and "id='mutants-pg18'" in html
    assert html.count("killed for another reason") == 1
    assert "<td class='fail'>killed for another reason</td>" in html
