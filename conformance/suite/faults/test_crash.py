"""CRASH: workers and the launcher failing in every way a process can."""

from __future__ import annotations

import contextlib
import re
import signal
import time
from collections.abc import Callable

import psycopg
import pytest

from conformance.deadlines import CRASH_RECOVERY_S, SLOT_FREE_S
from conformance.figures import Figures
from conformance.suite.checks import Checks
from conformance.suite.pool_under_test import LONG_MS, Pool

CRASH_RESTART_LOG = "terminating any other active server processes|reinitializing"


def _assert_no_restart(pool: Pool, postmaster: int | None, launcher: int | None, offset: int) -> None:
    assert pool.target.postmaster_pid() == postmaster
    assert pool.adapter.launcher_pid() == launcher, "the launcher changed: the cluster restarted"
    log = pool.target.log_since(offset)
    assert not re.search(CRASH_RESTART_LOG, log), log


def _ends_without_restart(pool: Pool, clause: str, kind: str, message: str, checks: Checks) -> None:
    """A job ending by ``kind`` (error, fatal): two promises, each judged on
    its own, so that a cluster restarted by the job is reported as such even
    when the slot's record is wrong too."""
    pm, launcher = pool.target.postmaster_pid(), pool.adapter.launcher_pid()
    offset = pool.target.log_offset()
    h = pool.adapter.submit(kind, {"message": message})
    with checks.promise(clause, "the slot is freed with exit code 1"):
        assert pool.wait_freed(h).last_exit_code == 1
        pool.target.wait_for_log(message, offset, 5)
    with checks.promise(clause, "the cluster does not restart"):
        _assert_no_restart(pool, pm, launcher, offset)
    checks.done()


@pytest.mark.clause("CRASH-1")
def test_error_frees_slot_without_restart(pool: Pool, record_property: Callable[[str, object], None]) -> None:
    _ends_without_restart(pool, "CRASH-1", "error", "bgwc planned error", Checks(record_property))


@pytest.mark.clause("CRASH-2")
def test_fatal_frees_slot_without_restart(pool: Pool, record_property: Callable[[str, object], None]) -> None:
    _ends_without_restart(pool, "CRASH-2", "fatal", "bgwc planned fatal", Checks(record_property))


def _crash_and_recover(pool: Pool, crash: str, figures: Figures, clause: str) -> None:
    pm = pool.target.postmaster_pid()
    launcher = pool.adapter.launcher_pid()
    survivors = [pool.adapter.submit("sleep", {"ms": LONG_MS}) for _ in range(2)]
    offset = pool.target.log_offset()
    t0 = time.monotonic()
    if crash == "abort":
        # the crash-restart may end this very session before the submit returns;
        # it is never retried (a second crash job would be a second fault)
        with contextlib.suppress(psycopg.OperationalError):
            pool.adapter.submit("crash")
    elif crash == "kill-worker":
        pool.target.kill(survivors[0].os_pid, signal.SIGKILL)
    else:
        assert launcher is not None, "no launcher to kill"
        pool.target.kill(launcher, signal.SIGKILL)
    pool.target.wait_for_log("all server processes terminated; reinitializing", offset, CRASH_RECOVERY_S)
    pool.wait_fresh(CRASH_RECOVERY_S, not_launcher=launcher)
    figures.add(clause, f"{crash} → fresh pool", time.monotonic() - t0, CRASH_RECOVERY_S)
    assert pool.target.postmaster_pid() == pm, "the postmaster itself must survive a crash-restart"
    pool.wait_gone({s.pid for s in survivors if s.pid}, CRASH_RECOVERY_S, "workers of before the crash")
    h = pool.adapter.submit("sleep", {"ms": 100})
    pool.wait_freed(h)


@pytest.mark.clause("CRASH-3")
def test_worker_abort_crash_restarts_to_fresh_pool(pool: Pool, figures: Figures) -> None:
    _crash_and_recover(pool, "abort", figures, "CRASH-3")


@pytest.mark.clause("CRASH-4")
def test_worker_sigkill_crash_restarts_to_fresh_pool(pool: Pool, figures: Figures) -> None:
    _crash_and_recover(pool, "kill-worker", figures, "CRASH-4")


@pytest.mark.clause("CRASH-5")
def test_launcher_sigkill_crash_restarts_to_fresh_pool(pool: Pool, figures: Figures) -> None:
    _crash_and_recover(pool, "kill-launcher", figures, "CRASH-5")


@pytest.mark.clause("CRASH-6")
def test_no_restart_after_crash_then_plain_start(pool: Pool) -> None:
    pool.target.set_conf(restart_after_crash="off")
    h = pool.adapter.submit("sleep", {"ms": LONG_MS})
    pool.target.kill(h.os_pid, signal.SIGKILL)
    pool.target.wait_until(
        lambda: not pool.target.processes(),
        CRASH_RECOVERY_S,
        what="the server to go down with restart_after_crash = off",
    )
    assert not pool.target.is_running()
    pool.target.start()
    pool.wait_fresh(CRASH_RECOVERY_S)
    pool.wait_freed(pool.adapter.submit("exit_at_once"))


@pytest.mark.clause("CRASH-7")
def test_worker_that_never_runs_fails_the_submit_and_frees_its_slot(pool: Pool) -> None:
    started = time.monotonic()
    with pytest.raises(psycopg.Error) as err:
        pool.adapter.submit("fail_to_start")
    assert time.monotonic() - started < 5, "the submit waited for its startup timeout"
    assert err.value.sqlstate is not None and not err.value.sqlstate.startswith(("XX", "58")), err.value
    pool.target.wait_until(lambda: not pool.adapter.busy(), SLOT_FREE_S, what="every slot free")


@pytest.mark.clause("CRASH-4")
@pytest.mark.parametrize("point", ["worker-before-exit-hook", "worker-before-attach"])
def test_worker_sigkill_in_the_handshake_crash_restarts_to_fresh_pool(
    pool: Pool, point: str, record_property: Callable[[str, object], None]
) -> None:
    """SIGKILL of a worker held in the handshake (before its exit hook
    exists, or connected but not attached): a crash-restart, a fresh pool,
    and the waiting submitter is told nothing ran (no handle)."""
    checks = Checks(record_property)
    pm, launcher = pool.target.postmaster_pid(), pool.adapter.launcher_pid()
    offset = pool.target.log_offset()
    with pool.paused(point):
        sub = pool.submit_in_background("sleep", {"ms": LONG_MS})
        worker = pool.wait_paused(point)
        pool.target.kill(worker, signal.SIGKILL)
        pool.target.wait_for_log("all server processes terminated; reinitializing", offset, CRASH_RECOVERY_S)
    with checks.promise("CRASH-4", "the waiting submitter is told nothing ran"):
        sub.wait(pool, CRASH_RECOVERY_S)
        assert sub.handle is None and sub.error is not None, sub.handle
    with checks.promise("CRASH-4", "a fresh pool after the crash-restart"):
        pool.wait_fresh(CRASH_RECOVERY_S, not_launcher=launcher)
        assert pool.target.postmaster_pid() == pm
        h = pool.adapter.submit("sleep", {"ms": 100})
        pool.wait_freed(h)
    checks.done()
