"""INV: the pool's own check and the OS agree with it, after mixed work.

The same checks run after every test of the suite (conftest); these tests
state them once more on purpose-made states."""

from __future__ import annotations

import pytest

from conformance.deadlines import SLOT_FREE_S
from conformance.figures import Figures
from conformance.suite.pool_under_test import LONG_MS, Pool


@pytest.mark.clause("INV-1")
def test_check_is_empty_on_fresh_and_busy_pool(pool: Pool) -> None:
    assert pool.adapter.check() == []
    handles = [pool.adapter.submit("sleep", {"ms": LONG_MS}) for _ in range(pool.adapter.capacity() - 1)]
    assert pool.adapter.check() == []
    pool.stop_all(handles)
    assert pool.adapter.check() == []


@pytest.mark.clause("INV-2")
def test_pool_and_os_agree_on_worker_pids(pool: Pool, figures: Figures) -> None:
    handles = [pool.adapter.submit("sleep", {"ms": LONG_MS}) for _ in range(2)]
    assert pool.agreement() == []
    assert {p.pid for p in pool.os_workers()} == {h.pid for h in handles}
    pool.stop_all(handles)
    # a freed slot's worker may still be in its exit: the pool and the OS agree
    # once it is gone, within the deadline of a slot's release
    with figures.timing("INV-2", "slots freed → pool and OS agree", SLOT_FREE_S):
        pool.wait_agreement(SLOT_FREE_S)


@pytest.mark.clause("INV-3")
def test_capacity_comes_back_by_every_path_and_holds_while_jobs_run(pool: Pool) -> None:
    """Slots freed by natural exit, ERROR, FATAL, exit codes, terminate and
    pg_terminate_backend: each time exactly the configured capacity runs at
    once.  While jobs run, exactly the rest of it does."""
    ends = [("exit", {"code": 0}), ("exit", {"code": 1}), ("error", {"message": "inv3"})]
    ends += [("fatal", {"message": "inv3"}), ("sleep", {"ms": 50})]
    for kind, args in ends:
        h = pool.adapter.submit(kind, args)
        pool.wait_gone({h.os_pid}, SLOT_FREE_S, f"the {kind} job's worker")
        pool.wait_freed(h)
        pool.capacity_witness()
    for stop in ("terminate", "pg_terminate_backend"):
        h = pool.adapter.submit("sleep", {"ms": LONG_MS})
        pool.capacity_witness(occupied=frozenset({h.os_pid}))
        if stop == "terminate":
            assert pool.adapter.terminate(h) is True
        else:
            assert pool.target.scalar("SELECT pg_terminate_backend(%s)", h.os_pid) is True
        pool.wait_freed(h)
        pool.wait_gone({h.os_pid}, SLOT_FREE_S, f"the worker stopped by {stop}")
        pool.capacity_witness()
