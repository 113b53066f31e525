"""TERM: stopping workers by handle, by signal, and stopping the launcher."""

from __future__ import annotations

import re

import pytest

from conformance.adapters import Handle
from conformance.deadlines import SLOT_FREE_S
from conformance.figures import Figures
from conformance.suite.pool_under_test import LONG_MS, Pool


@pytest.mark.clause("TERM-1")
def test_terminate_by_handle_frees_slot_and_process(pool: Pool, figures: Figures) -> None:
    h = pool.adapter.submit("sleep", {"ms": LONG_MS})
    with figures.timing("TERM-1", "terminate → slot free", SLOT_FREE_S):
        assert pool.adapter.terminate(h) is True
        slot = pool.wait_freed(h, SLOT_FREE_S)
    assert slot.pid is None
    assert slot.generation == h.generation and slot.last_exit_code is not None, (
        f"the worker did not run its exit cleanup: {slot}"
    )
    pool.wait_gone({h.os_pid}, SLOT_FREE_S, "the terminated worker's process")


@pytest.mark.clause("TERM-2")
def test_stale_handle_is_a_noop_even_after_reuse(pool: Pool) -> None:
    old = pool.adapter.submit("exit", {"code": 0})
    pool.wait_freed(old)
    # occupy every slot, so the old handle's slot is reused for sure
    fresh = [pool.adapter.submit("sleep", {"ms": LONG_MS}) for _ in range(pool.adapter.capacity())]
    reused = next(h for h in fresh if h.slot == old.slot)
    assert reused.generation > old.generation
    assert pool.adapter.terminate(old) is False
    assert pool.adapter.terminate(Handle(old.slot, old.generation, reused.pid)) is False
    slot = pool.slot(old.slot)
    assert (slot.state, slot.pid, slot.generation) == ("running", reused.pid, reused.generation)
    assert pool.target.pid_alive(reused.os_pid)
    pool.stop_all(fresh)


@pytest.mark.clause("TERM-3")
def test_pg_terminate_backend_frees_slot_without_restart(pool: Pool) -> None:
    launcher = pool.adapter.launcher_pid()
    h = pool.adapter.submit("sleep", {"ms": LONG_MS})
    assert pool.target.scalar("SELECT pg_terminate_backend(%s)", h.pid) is True
    slot = pool.wait_freed(h)
    assert slot.last_exit_code == 1
    pool.wait_gone({h.os_pid}, SLOT_FREE_S, "the worker stopped by pg_terminate_backend")
    assert pool.adapter.launcher_pid() == launcher


@pytest.mark.clause("TERM-5")
def test_terminated_launcher_returns_and_reconciles(pool: Pool, figures: Figures) -> None:
    running = [pool.adapter.submit("sleep", {"ms": LONG_MS}) for _ in range(2)]
    launcher = pool.adapter.launcher_pid()
    offset = pool.target.log_offset()
    back = pool.profile.launcher_restart_s + 5
    with figures.timing("TERM-5", "launcher terminated → launcher back", back):
        assert pool.target.scalar("SELECT pg_terminate_backend(%s)", launcher) is True
        new = pool.wait_launcher(back, not_pid=launcher)
    assert new != launcher
    assert len(pool.os_launchers()) == 1
    assert not re.search("reinitializing", pool.target.log_since(offset)), (
        "the launcher's exit crashed the cluster"
    )
    workers = pool.os_workers()
    if pool.profile.launcher_restart_policy == "adopt":
        assert sorted(p.pid for p in workers) == sorted(h.pid for h in running), workers
        for h in running:
            slot = pool.slot(h.slot)
            assert (slot.state, slot.pid, slot.generation) == ("running", h.pid, h.generation)
        # while the adopted workers still run: the pool's lists, the OS and its capacity agree
        assert pool.adapter.check() == [] and pool.agreement() == []
        pool.capacity_witness(occupied=frozenset(h.os_pid for h in running))
        for h in running:
            assert pool.adapter.terminate(h) is True
    for h in running:
        pool.wait_freed(h)
    pool.wait_gone({h.os_pid for h in running}, SLOT_FREE_S, "workers of the old launcher")
