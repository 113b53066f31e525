"""INV: the pool's own check and the OS agree with it, after mixed work.

The same checks run after every test of the suite (conftest); these tests
state them once more on purpose-made states."""

from __future__ import annotations

import pytest

from conformance.suite.harness import LONG_MS, Pool


@pytest.mark.clause("INV-1")
def test_check_is_empty_on_fresh_and_busy_pool(pool: Pool) -> None:
    assert pool.adapter.check() == []
    handles = [pool.adapter.submit("sleep", {"ms": LONG_MS}) for _ in range(pool.adapter.capacity() - 1)]
    assert pool.adapter.check() == []
    pool.stop_all(handles)
    assert pool.adapter.check() == []


@pytest.mark.clause("INV-2")
def test_pool_and_os_agree_on_worker_pids(pool: Pool) -> None:
    handles = [pool.adapter.submit("sleep", {"ms": LONG_MS}) for _ in range(2)]
    assert pool.agreement() == []
    assert {p.pid for p in pool.os_workers()} == {h.pid for h in handles}
    pool.stop_all(handles)
    assert pool.agreement() == []
