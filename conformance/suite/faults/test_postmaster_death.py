"""PMD: the postmaster dies with SIGKILL; nothing of the pool may outlive it."""

from __future__ import annotations

import time

import pytest

from conformance.deadlines import CRASH_RECOVERY_S, PM_DEATH_S
from conformance.figures import Figures
from conformance.suite.pool_under_test import LONG_MS, Pool

#: bgw_pool bounds ignore_sigterm to 30 s (a fast shutdown waits for it)
IGNORE_MS = 30_000


def _kill_postmaster_with_busy_pool(pool: Pool) -> set[int]:
    for _ in range(pool.adapter.capacity() - 1):
        pool.adapter.submit("sleep", {"ms": LONG_MS})
    pool.adapter.submit("ignore_sigterm", {"ms": IGNORE_MS})  # must still notice the death
    pids = {p.pid for p in pool.os_workers() + pool.os_launchers()}
    assert len(pids) == pool.adapter.capacity() + 1
    pool.target.kill_postmaster()
    return pids


@pytest.mark.clause("PMD-1")
def test_launcher_and_workers_exit_with_the_postmaster(pool: Pool, figures: Figures) -> None:
    pids = _kill_postmaster_with_busy_pool(pool)
    killed_at = pool.target.last_signal_at
    try:
        left = max(0.0, PM_DEATH_S - (time.monotonic() - killed_at))
        pool.wait_gone(pids, left, "the launcher and every worker after SIGKILL of the postmaster")
    finally:
        figures.add("PMD-1", "postmaster SIGKILL → all gone", time.monotonic() - killed_at, PM_DEATH_S)


@pytest.mark.clause("PMD-2")
def test_next_start_succeeds_without_stale_shared_memory(pool: Pool) -> None:
    _kill_postmaster_with_busy_pool(pool)
    pool.wait_all_gone()
    offset = pool.target.log_offset()
    pool.target.start()
    log = pool.target.log_since(offset)
    assert "pre-existing shared memory block" not in log, log


@pytest.mark.clause("PMD-3")
def test_pool_is_fresh_after_postmaster_death(pool: Pool) -> None:
    _kill_postmaster_with_busy_pool(pool)
    pool.wait_all_gone()
    pool.target.start()
    pool.wait_fresh(CRASH_RECOVERY_S)
    h = pool.adapter.submit("sleep", {"ms": 100})
    pool.wait_freed(h)
