"""The contract is complete: every clause has a test, every test a clause."""

from __future__ import annotations

import ast
from pathlib import Path

from conformance import verdicts
from conformance.paths import suite_dir


def contract_clauses() -> dict[str, str]:
    """Clause id -> MUST or SHOULD, as the verdicts read the contract."""
    return {cid: c.level for cid, c in verdicts.load_contract().items()}


def clauses_tested() -> dict[str, list[str]]:
    """Map clause id -> test names, read from the suite's source."""
    found: dict[str, list[str]] = {}
    unmarked: list[str] = []
    for path in sorted(suite_dir().rglob("test_*.py")):
        if path.name == Path(__file__).name:
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                ids = [
                    arg.value
                    for dec in node.decorator_list
                    if isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") == "clause"
                    for arg in dec.args
                    if isinstance(arg, ast.Constant)
                ]
                if not ids:
                    unmarked.append(f"{path.name}::{node.name}")
                for cid in ids:
                    found.setdefault(cid, []).append(f"{path.name}::{node.name}")
    assert not unmarked, f"tests without a clause: {unmarked}"
    return found


def test_every_clause_has_a_test_and_every_test_a_clause() -> None:
    clauses = contract_clauses()
    assert len(clauses) >= 20
    tested = clauses_tested()
    assert sorted(set(clauses) - set(tested)) == [], "clauses without a test"
    assert sorted(set(tested) - set(clauses)) == [], "tests naming unknown clauses"
