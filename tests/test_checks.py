"""One promise per assertion chain (issue 28): ``Checks.promise`` judges each
promise of a test on its own, so that the first failure never hides the next."""

from __future__ import annotations

import pytest

from conformance import verdicts
from conformance.suite.checks import Checks


def _recorder() -> tuple[dict[str, object], Checks]:
    props: dict[str, object] = {}
    return props, Checks(lambda name, value: props.__setitem__(name, value))


def test_a_failed_promise_does_not_hide_the_next() -> None:
    props, checks = _recorder()
    with checks.promise("SEC-3", "refused to a non-superuser"):
        assert False, "accepted"  # noqa: B011 - a failed promise
    with checks.promise("SEC-3", "refused with 42501"), pytest.raises(ValueError):
        pass  # pytest.raises that does not raise fails its promise too
    with checks.promise("SEC-8", "a superuser's hang is bounded"):
        assert 22023 == 22023
    with checks.promise("SEC-8", "another"), pytest.raises(ValueError):
        raise ValueError
    assert props["clause_outcomes"] == {"SEC-3": "fail", "SEC-8": "pass"}
    promises = props["promises"]
    assert isinstance(promises, dict)
    assert {k: v["outcome"] for k, v in promises.items()} == {
        "SEC-3: refused to a non-superuser": "fail",
        "SEC-3: refused with 42501": "fail",
        "SEC-8: a superuser's hang is bounded": "pass",
        "SEC-8: another": "pass",
    }
    assert promises["SEC-3: refused to a non-superuser"]["detail"].startswith("accepted")
    with pytest.raises(AssertionError) as err:
        checks.done()
    assert "refused to a non-superuser: accepted" in str(err.value)
    assert "refused with 42501: DID NOT RAISE" in str(err.value)


def test_a_clause_that_failed_stays_failed() -> None:
    props, checks = _recorder()
    assert not checks.check("JOB-4", False, "slow")
    with checks.promise("JOB-4", "capacity back"):
        pass
    assert props["clause_outcomes"] == {"JOB-4": "fail"}


def test_a_broken_scenario_ends_the_test_and_leaves_the_clause_unjudged() -> None:
    props, checks = _recorder()
    with checks.promise("EXH-2", "refused"):
        pass
    with pytest.raises(RuntimeError), checks.promise("EXH-4", "capacity back"):
        raise RuntimeError("the server went away")
    # EXH-4 was never judged: it takes the test's own outcome (an error), never a pass
    assert props["clause_outcomes"] == {"EXH-2": "pass"}
    promises = props["promises"]
    assert isinstance(promises, dict)
    assert promises["EXH-4: capacity back"]["outcome"] == "not-reached"
    record = {
        "clauses": ["EXH-2", "EXH-4"],
        "outcome": "fail",
        "properties": {"clause_outcomes": props["clause_outcomes"]},
    }
    assert verdicts.clause_status({"tests": [record]}) == {"EXH-2": "pass", "EXH-4": "error"}


def test_each_clause_of_a_chain_keeps_its_own_status() -> None:
    """The chain EXH-2 then EXH-4: EXH-2 failing no longer makes EXH-4 unjudged."""
    props, checks = _recorder()
    with checks.promise("EXH-2", "refused with 53000"):
        pytest.fail("DID NOT RAISE")
    with checks.promise("EXH-4", "capacity back"):
        pass
    record = {
        "clauses": ["EXH-2", "EXH-4"],
        "outcome": "fail",
        "properties": {"clause_outcomes": props["clause_outcomes"]},
    }
    assert verdicts.clause_status({"tests": [record]}) == {"EXH-2": "fail", "EXH-4": "pass"}
