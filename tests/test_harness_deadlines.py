"""The harness survives what it judges, on every target: real servers, real
signals.  Every harness session has a deadline, a statement that runs out
names what blocked it, the escalation ladder brings down a server that will
not stop, and a wait measured from a fault counts from the fault."""

from __future__ import annotations

import signal
import time

import pytest

from conformance.census import CRASH_RESTART, Census
from conformance.config import KitConfig
from conformance.deadlines import CRASH_RECOVERY_S
from conformance.targets import Target
from conformance.targets.base import LADDER_STEP_S, LOCK_TIMEOUT_S, STATEMENT_TIMEOUT_S, BlockedStatement


def test_every_harness_session_has_a_statement_and_a_lock_deadline(target: Target) -> None:
    with target.connect() as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == (f"{int(STATEMENT_TIMEOUT_S)}s",)
        assert conn.execute("SHOW lock_timeout").fetchone() == (f"{int(LOCK_TIMEOUT_S)}s",)
    assert target.scalar("SHOW statement_timeout") == f"{int(STATEMENT_TIMEOUT_S)}s"


def test_a_blocked_statement_fails_naming_its_blocker(target: Target) -> None:
    target.sql("CREATE TABLE IF NOT EXISTS bgwc_blocked (v int)")
    with target.connect() as holder:
        holder.autocommit = False
        holder.execute("LOCK TABLE bgwc_blocked IN ACCESS EXCLUSIVE MODE")
        blocker = holder.info.backend_pid
        target.sql("SET lock_timeout = '500ms'")  # the kept session only, to keep the test short
        try:
            t0 = time.monotonic()
            with pytest.raises(BlockedStatement) as err:
                target.sql("SELECT count(*) FROM bgwc_blocked")
            assert time.monotonic() - t0 < LOCK_TIMEOUT_S
        finally:
            target.sql("RESET lock_timeout")
        holder.rollback()
    said = str(err.value)
    assert "blocked by:" in said and "lock timeout" in said, said
    assert f"pid {blocker} (client backend)" in said, said


def test_the_ladder_brings_down_a_server_that_will_not_stop(target: Target) -> None:
    """A stopped postmaster (SIGSTOP) ignores fast and immediate stops alike:
    the ladder escalates to SIGKILL of every server process, records each step
    against the current test, and the server starts again from its data."""
    target.begin_test("test_the_ladder")
    before = len(target.escalations)
    pm = target.postmaster_pid()
    assert pm is not None
    target.kill(pm, signal.SIGSTOP)
    t0 = time.monotonic()
    target.bring_down("a postmaster that cannot answer")
    took = time.monotonic() - t0
    steps = [(e.step, e.ok, e.test) for e in target.escalations[before:]]
    assert steps == [("immediate", False, "test_the_ladder"), ("SIGKILL", True, "test_the_ladder")], steps
    assert took < 3 * LADDER_STEP_S + 5, f"the ladder took {took:.1f}s"
    assert not target.processes()
    target.start()
    assert target.scalar("SELECT 1") == 1


def test_a_wait_measured_from_a_fault_counts_from_the_fault(target: Target, bgwc_config: KitConfig) -> None:
    """Figures are measured from the fault (``since``), and so is the
    deadline: a wait whose deadline passed before it began succeeds only if
    what it waits for already holds, and reports the time since the fault."""
    fault = time.monotonic() - 3.0
    took = target.wait_until(lambda: time.monotonic() - fault, 0.0, what="the server's clock")
    assert took >= 3.0
    workers = Census(target, bgwc_config.profile)
    if not workers.at_rest():
        pytest.skip("not applicable: the profile promises no process at rest")
    assert workers.wait_at_rest(1.0, since=fault) >= 3.0
    spec = workers.at_rest()[0]
    old = set(workers.census()[spec.name])
    fault = time.monotonic()
    workers.terminate(spec, min(old))
    took, _ = workers.wait_back(spec, old, spec.restart_s + 5, since=fault - 1.0)
    assert took >= 1.0, f"{took:.2f}s since a fault 1 s before the termination"
    with pytest.raises(AssertionError):
        workers.wait_back(spec, set(workers.census()[spec.name]), 1.0, since=time.monotonic() - 5.0)


def test_a_kill_figure_counts_from_the_kill(target: Target, bgwc_config: KitConfig) -> None:
    """KILL-1's clock starts at the SIGKILL, not at the end of the wait for the
    crash-restart's log line: the figure holds at least that wait."""
    workers = Census(target, bgwc_config.profile)
    if not workers.at_rest():
        pytest.skip("not applicable: the profile promises no process at rest")
    workers.wait_at_rest()
    spec = workers.at_rest()[0]
    old = set(workers.census()[spec.name])
    offset = target.log_offset()
    target.kill(min(old), signal.SIGKILL)
    killed_at = target.last_signal_at
    target.wait_for_log(CRASH_RESTART.pattern, offset, CRASH_RECOVERY_S)
    logged = time.monotonic() - killed_at
    took, _ = workers.wait_back(spec, old, CRASH_RECOVERY_S, since=killed_at)
    assert took >= logged > 0, (
        f"figure {took:.3f}s, yet the crash-restart was logged {logged:.3f}s after the kill"
    )


def test_a_server_that_will_not_start_is_rebuilt_fresh(pg_target: Target, bgwc_config: KitConfig) -> None:
    """The ladder's last rung: a data directory that cannot start (a broken
    setting) survives a restart and a SIGKILL of what is left, so the server is
    replaced by a fresh one from the same inputs, which starts; each step is
    recorded.  On a server of its own, so that no other test sees it."""
    from conformance.targets import make_target

    server = make_target(pg_target.name, bgwc_config)
    try:
        server.begin_test("test_fresh")
        server.stop("fast")
        server.run(["sh", "-c", f"echo 'no_such_setting = 1' >> {server.datadir}/postgresql.auto.conf"])
        server.recover("a data directory that cannot start")
        steps = [(e.step, e.ok) for e in server.escalations]
        assert steps == [("restart", False), ("SIGKILL", True), ("restart", False), ("fresh", True)], steps
        assert server.generation == 1
        assert server.scalar("SELECT 1") == 1
    finally:
        server.close()
