"""TIME: the settings that bound how long the pool makes a caller wait."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from conformance.adapters import NotApplicable
from conformance.deadlines import SLOT_FREE_S
from conformance.figures import Figures
from conformance.suite.checks import Checks
from conformance.suite.pool_under_test import LONG_MS, Pool

#: how long after its startup timeout a submit may take to fail
STARTUP_SLACK_S = 1.0
#: how early: the timeout is a promise to wait, not only a bound
EARLY_S = 0.05


@pytest.mark.clause("TIME-1")
@pytest.mark.parametrize("timeout_ms", [500, 2_000])
def test_startup_timeout_fails_the_submit_and_frees_the_slot(
    pool: Pool, timeout_ms: int, figures: Figures, record_property: Callable[[str, object], None]
) -> None:
    spec = pool.profile.pool
    if spec is None or spec.startup_timeout is None or spec.startup_timeout_sqlstate is None:
        raise NotApplicable("the profile declares no startup timeout ([pool] startup_timeout)")
    timeout_s = timeout_ms / 1000
    checks = Checks(record_property)
    with pool.paused("worker-before-attach"):  # the worker stalls: connected, never attaching
        sub = pool.submit_in_background("sleep", {"ms": LONG_MS}, **{spec.startup_timeout: timeout_ms})
        worker = pool.wait_paused("worker-before-attach")
        with checks.promise("TIME-1", "the submit fails with the timeout's SQLSTATE, on time"):
            sub.wait(pool, timeout_s + STARTUP_SLACK_S + 1, expected=timeout_s)
            assert sub.took_s is not None
            figures.add(
                "TIME-1",
                f"{timeout_ms} ms startup timeout → submit failed, late by",
                sub.took_s - timeout_s,
                STARTUP_SLACK_S,
            )
            assert sub.handle is None, f"the submit succeeded while its worker never attached: {sub.handle}"
            assert isinstance(sub.error, psycopg.Error), sub.error
            assert sub.error.sqlstate == spec.startup_timeout_sqlstate, sub.error
            assert timeout_s - EARLY_S <= sub.took_s <= timeout_s + STARTUP_SLACK_S, (
                f"failed after {sub.took_s:.3f}s with a startup timeout of {timeout_s:g}s"
            )
        with checks.promise("TIME-1", "the slot is free at once, while the stalled worker stands"):
            pool.wait_all_free(SLOT_FREE_S)
            assert pool.target.pid_alive(worker), "the stalled worker was gone before it was released"
            assert not pool.adapter.jobs()
    with checks.promise("TIME-1", "released, the worker exits without running its job"):
        pool.wait_gone({worker}, SLOT_FREE_S, f"the stalled worker {worker} once released")
        assert pool.adapter.check() == []
        pool.capacity_witness()
    checks.done()
