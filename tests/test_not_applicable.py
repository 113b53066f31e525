"""An operation an adapter cannot offer skips its clause as "not applicable",
with the reason, and results.json records it so: never as a pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = "from conformance.suite.conftest import pytest_runtest_call  # noqa: F401\n"
TEST = """
import pytest
from conformance.adapters import NotApplicable

@pytest.mark.clause("TERM-5")
def test_needs_what_the_adapter_lacks():
    raise NotApplicable("this pool has no launcher to terminate")

@pytest.fixture
def granted():
    raise NotApplicable("the profile does not say how to grant the pool to a role")

@pytest.mark.clause("SEC-1")
def test_whose_fixture_needs_what_the_adapter_lacks(granted):
    assert False, "never reached"

@pytest.mark.clause("LIFE-1")
def test_plain():
    assert True
"""


def test_not_applicable_is_a_reasoned_skip_not_a_pass(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_na=TEST)
    result = pytester.runpytest_subprocess("-rs", "--bgwc-target=local", f"--bgwc-results={tmp_path}")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*not applicable: this pool has no launcher to terminate*"])
    records = {t["name"]: t for t in json.loads((tmp_path / "results.json").read_text())["tests"]}
    assert records["test_needs_what_the_adapter_lacks"]["outcome"] == "not-applicable"
    assert "no launcher" in records["test_needs_what_the_adapter_lacks"]["message"]
    assert records["test_whose_fixture_needs_what_the_adapter_lacks"]["outcome"] == "not-applicable"
    assert records["test_plain"]["outcome"] == "pass"
