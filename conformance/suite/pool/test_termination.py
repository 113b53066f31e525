"""TERM: stopping workers by handle, by signal, and stopping the launcher."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from conformance.adapters import Handle
from conformance.deadlines import LAUNCHER_START_S, SLOT_FREE_S
from conformance.figures import Figures
from conformance.suite.checks import Checks
from conformance.suite.pool_under_test import LONG_MS, Pool

#: the table TERM-6's job writes into, if it ever runs
TERM6_MARKS = "bgwc_term6_marks"
#: TERM-6's submitter waits far longer than the scenario holds its worker:
#: a submit that timed out would free the slot, and the job not run for that reason
TERM6_STARTUP_TIMEOUT_MS = 30_000


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
def test_pg_terminate_backend_frees_slot_without_restart(
    pool: Pool, record_property: Callable[[str, object], None]
) -> None:
    checks = Checks(record_property)
    launcher = pool.adapter.launcher_pid()
    h = pool.adapter.submit("sleep", {"ms": LONG_MS})
    assert pool.target.scalar("SELECT pg_terminate_backend(%s)", h.pid) is True
    with checks.promise("TERM-3", "the slot is freed, its exit recorded"):
        slot = pool.wait_freed(h)
        assert slot.last_exit_code == 1, slot
        pool.wait_gone({h.os_pid}, SLOT_FREE_S, "the worker stopped by pg_terminate_backend")
    with checks.promise("TERM-3", "no crash-restart (the same launcher)"):
        assert pool.adapter.launcher_pid() == launcher
    checks.done()


@pytest.mark.clause("TERM-5")
def test_terminated_launcher_returns_and_reconciles(
    pool: Pool, figures: Figures, record_property: Callable[[str, object], None]
) -> None:
    checks = Checks(record_property)
    running = [pool.adapter.submit("sleep", {"ms": LONG_MS}) for _ in range(2)]
    launcher = pool.adapter.launcher_pid()
    offset = pool.target.log_offset()
    back = pool.profile.launcher_restart_s + 5
    with checks.promise("TERM-5", "the launcher comes back, alone"):
        with figures.timing("TERM-5", "launcher terminated → launcher back", back):
            assert pool.target.scalar("SELECT pg_terminate_backend(%s)", launcher) is True
            new = pool.wait_launcher(back, not_pid=launcher)
        assert new != launcher
        assert len(pool.os_launchers()) == 1
    with checks.promise("TERM-5", "its exit does not crash the cluster"):
        assert not re.search("reinitializing", pool.target.log_since(offset)), (
            "the launcher's exit crashed the cluster"
        )
    if pool.profile.launcher_restart_policy == "adopt":
        with checks.promise("TERM-5", "the running workers adopted: running, listed, terminable"):
            workers = pool.os_workers()
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
    else:
        with checks.promise("TERM-5", "the running workers terminated, their slots freed"):
            for h in running:
                pool.wait_freed(h)
    pool.stop_every_job()  # what a failed promise left running
    pool.wait_gone({h.os_pid for h in running}, SLOT_FREE_S, "workers of the old launcher")
    checks.done()


@pytest.mark.clause("TERM-6")
def test_stop_before_attach_is_honoured(pool: Pool, record_property: Callable[[str, object], None]) -> None:
    """A stop asked while the job's worker stands before attaching (held at
    worker-before-attach) is honoured: released, the worker never runs the
    job.  The launcher is held before it reads its handles meanwhile (at
    launcher-before-reap), as a restarting or busy launcher would be: the
    stop must be honoured by the pool's own record of it, not only by a
    signal the launcher may send in time or not."""
    t = pool.target
    t.sql(f"DROP TABLE IF EXISTS public.{TERM6_MARKS}")
    t.sql(f"CREATE TABLE public.{TERM6_MARKS} (mark text NOT NULL)")
    spec = pool.profile.pool
    settings = {spec.startup_timeout: TERM6_STARTUP_TIMEOUT_MS} if spec and spec.startup_timeout else {}
    try:
        with pool.paused("worker-before-attach"):
            sub = pool.submit_in_background(
                "sql", {"query": f"INSERT INTO public.{TERM6_MARKS} VALUES ('ran')"}, **settings
            )
            worker = pool.wait_paused("worker-before-attach")
            with pool.paused("launcher-before-reap"):
                pool.wait_paused("launcher-before-reap", LAUNCHER_START_S)
                starting = [s for s in pool.adapter.slots() if s.state == "starting"]
                assert len(starting) == 1, (
                    f"one slot starting expected while worker {worker} stands: {starting}"
                )
                h = Handle(starting[0].slot, starting[0].generation, None)
                assert pool.adapter.terminate(h) is True, (
                    f"terminate of slot {h.slot} gen {h.generation}, whose worker {worker} has not attached, "
                    "was not taken"
                )
                pool.adapter.pause_release("worker-before-attach")
                # with the launcher held, the worker ends by itself: its job run or not
                pool.wait_gone({worker}, SLOT_FREE_S, f"worker {worker}, stopped before it attached, to end")
                pool.wait_freed(h)
                ran = int(t.scalar(f"SELECT count(*) FROM public.{TERM6_MARKS}"))
        sub.wait(pool, SLOT_FREE_S)
        record_property(
            "submit", f"returned {sub.handle}" if sub.handle is not None else f"raised {sub.error!r}"
        )
        assert ran == 0, (
            f"a stop asked before the worker attached was ignored: worker {worker} of slot {h.slot} "
            f"gen {h.generation} ran its job once released (its INSERT is in {TERM6_MARKS}; "
            f"the submit {'returned ' + str(sub.handle) if sub.handle else 'raised ' + repr(sub.error)})"
        )
    finally:
        t.sql(f"DROP TABLE IF EXISTS public.{TERM6_MARKS}")
