"""HANG: workers that ignore SIGTERM (the faults tier's ``ignore_sigterm`` job kind)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conformance.deadlines import SLOT_FREE_S
from conformance.suite.checks import Checks
from conformance.suite.pool_under_test import Pool

IGNORE_MS = 3_000


@pytest.mark.clause("HANG-1")
def test_worker_ignoring_sigterm_is_not_reported_stopped(
    pool: Pool, record_property: Callable[[str, object], None]
) -> None:
    checks = Checks(record_property)
    h = pool.adapter.submit("ignore_sigterm", {"ms": IGNORE_MS})
    with checks.promise("HANG-1", "not reported stopped while it runs"):
        assert pool.adapter.terminate(h) is True
        # it ignores SIGTERM: for as long as it runs, its slot keeps its live pid
        pool.target.wait_until(
            lambda: pool.slot(h.slot).state == "stopping",
            SLOT_FREE_S,
            what="the slot to show the stop was asked",
        )
        slot = pool.slot(h.slot)
        assert slot.pid == h.pid and slot.generation == h.generation, slot
        assert pool.target.pid_alive(h.os_pid)
        assert pool.agreement() == []
    with checks.promise("HANG-1", "a fast shutdown completes once it ends"):
        pool.target.stop("fast")
        assert not pool.target.processes()
    pool.target.start()
    checks.done()
