"""INTR: a blocking call of the pool answers cancel, statement_timeout and
pg_terminate_backend; a submitter that leaves at any step of the handshake
leaves a pool that answers; a late worker of an abandoned request never takes
over its slot's next request.

The handshake is held at each step with the pool's pause points (a pool
without them makes these clauses not applicable).  Every call that could
meet a self-deadlocked pool (an LWLock wait, which no cancel, timeout or
deadlock detector breaks) runs in a thread and a session of its own; a
server that still holds one is restarted (immediate).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from conformance.adapters import Handle, NotApplicable
from conformance.deadlines import INTERRUPT_S, LIVENESS_S, SLOT_FREE_S
from conformance.figures import Figures
from conformance.suite.checks import Checks
from conformance.suite.pool_under_test import LONG_MS, Pool, writer
from conformance.targets import Target

#: the submitter's startup timeout where it waits for its worker: far past
#: INTERRUPT_S, so that a wait deaf to interrupts shows
HELD_STARTUP_MS = 30_000
#: at the step "past its deadline, worker attached" the submitter must reach its deadline first
DEADLINE_STARTUP_MS = 1_000
#: the statement_timeout of a submitter that leaves by it: past the time every step takes to reach
TIMEOUT_MS = 3_000
#: INTR-4: the job that ignores SIGTERM, and the command's statement_timeout, well within it
IGNORE_MS = 5_000
COMMAND_TIMEOUT_MS = 1_000
#: a command active this long without a wait event is waiting in a loop of core's
WAITING_S = 0.3

#: a step of the handshake -> the pause points that hold it, the one a process is awaited at last
STEPS: dict[str, tuple[str, ...]] = {
    "not-registered": ("launcher-before-register",),
    "before-exit-hook": ("worker-before-exit-hook",),
    "before-connect": ("worker-before-connect",),
    "before-attach": ("worker-before-attach",),
    "attached-past-deadline": ("worker-before-attach", "submit-deadline"),
}
LEAVES = ("cancel", "timeout", "terminate", "disconnect")


@dataclass
class _Call:
    """A call into the pool in a thread and a session of its own."""

    what: str
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None
    took_s: float | None = None
    conn: psycopg.Connection[Any] | None = None
    pid: int = 0

    def start(self, body: Callable[[_Call], Any]) -> _Call:
        def run() -> None:
            t0 = time.monotonic()
            try:
                self.result = body(self)
            except BaseException as exc:  # noqa: BLE001 - the test judges it
                self.error = exc
            finally:
                self.took_s = time.monotonic() - t0
                if self.conn is not None:
                    self.conn.close()
                self.done.set()

        threading.Thread(target=run, daemon=True, name=self.what).start()
        return self

    def interrupt(self, t: Target, leave: str) -> tuple[bool, float, float]:
        """End the call's wait by ``leave`` (cancel, terminate, or its own
        statement_timeout of COMMAND_TIMEOUT_MS): whether it ended within its
        allowance, how long that took (from the signal, or the call's own time),
        and the allowance."""
        t0 = time.monotonic()
        if leave != "timeout":
            fn = "pg_cancel_backend" if leave == "cancel" else "pg_terminate_backend"
            t.scalar(f"SELECT {fn}(%s)", self.pid)
        allowed = INTERRUPT_S + (COMMAND_TIMEOUT_MS / 1000 if leave == "timeout" else 0.0)
        ended = self.done.wait(allowed)
        took = (self.took_s or 0.0) if leave == "timeout" else time.monotonic() - t0
        return ended, took, allowed


def _submit_held(pool: Pool, tag: str, startup_ms: int, **settings: object) -> _Call:
    """A submit of a job writing ``tag``, in a session of its own (kept on the call)."""
    spec = pool.profile.pool
    setting = spec.startup_timeout if spec is not None else None
    if setting is None:
        raise NotApplicable("the profile names no setting bounding a submit's wait ([pool] startup_timeout)")
    conn: psycopg.Connection[Any] = pool.target.connect()
    conn.execute(f"SET {setting} = {startup_ms}")
    for name, value in settings.items():
        conn.execute(f"SET {name} = {value}")
    call = _Call(f"submit {tag}", conn=conn, pid=conn.info.backend_pid)
    return call.start(lambda c: pool.adapter.submit("sql", writer(tag), conn=conn))


def _still_waiting(call: _Call, where: str) -> None:
    """The step exists for this pool only if its submit still waits there."""
    if call.done.is_set():
        raise NotApplicable(
            f"the submit returned ({call.result or call.error!r}) while {where}: it does not wait there"
        )


def _disconnect(conn: psycopg.Connection[Any]) -> None:
    """The client goes away: its socket shut down under the running statement."""
    sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
    try:
        sock.shutdown(socket.SHUT_RDWR)
    finally:
        sock.close()


def _alive(pool: Pool) -> tuple[bool, str]:
    """Another session reads the pool's status and submits, within LIVENESS_S;
    a server that holds the probe is restarted (immediate)."""

    def probe(c: _Call) -> Handle:
        c.conn = pool.target.connect()
        pool.adapter.slots(conn=c.conn)
        return pool.adapter.submit("exit_at_once", conn=c.conn)

    call = _Call("liveness probe").start(probe)
    try:
        pool.target.wait_until(call.done.is_set, LIVENESS_S, what="status and a submit from another session")
    except AssertionError:
        waits = pool.target.sql(
            "SELECT pid, wait_event_type, wait_event, left(query, 60) FROM pg_stat_activity"
            " WHERE state = 'active' AND pid <> pg_backend_pid()",
        )
        pool.target.restart("immediate")
        return False, f"the pool did not answer status and submit within {LIVENESS_S:g} s; sessions: {waits}"
    if call.error is not None:
        return False, f"status and submit from another session: {call.error!r}"
    return True, ""


@pytest.mark.clause("INTR-1", "INTR-2")
@pytest.mark.parametrize("leave", LEAVES)
@pytest.mark.parametrize("step", list(STEPS))
def test_submitter_leaves_at_each_step(
    pool: Pool, step: str, leave: str, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    checks = Checks(record_property)
    t = pool.target
    points = STEPS[step]
    for point in points:
        pool.adapter.paused_at(point)  # NotApplicable for a pool without pause points
    pool.create_witness()
    settings: dict[str, object] = {}
    if leave == "timeout":
        settings["statement_timeout"] = TIMEOUT_MS
    if leave == "disconnect" and t.major >= 14:
        settings["client_connection_check_interval"] = 100
    past_deadline = step == "attached-past-deadline"
    held: set[int] = set()  # the request's worker, where one is held
    with pool.paused(*points):
        startup_ms = DEADLINE_STARTUP_MS if past_deadline else HELD_STARTUP_MS
        sub = _submit_held(pool, "left", startup_ms, **settings)
        first = pool.wait_paused(points[0])
        if points[0].startswith("worker-"):
            held.add(first)
        if past_deadline:
            pool.wait_paused("submit-deadline", expected=DEADLINE_STARTUP_MS / 1000)
            pool.adapter.pause_release("worker-before-attach")
            t.wait_until(
                lambda: any(s.pid in held and s.state == "running" for s in pool.adapter.slots()),
                SLOT_FREE_S,
                what="the worker attached while its submitter stands past its deadline",
            )
        _still_waiting(sub, f"the handshake stands at {step}")
        t0 = time.monotonic()
        if leave in ("cancel", "terminate"):
            fn = "pg_cancel_backend" if leave == "cancel" else "pg_terminate_backend"
            t.scalar(f"SELECT {fn}(%s)", sub.pid)
        elif leave == "disconnect":
            assert sub.conn is not None
            _disconnect(sub.conn)
        # a disconnect is noticed during a statement only with client_connection_check_interval
        judged = leave != "disconnect" or t.major >= 14
        allowed = INTERRUPT_S + (TIMEOUT_MS / 1000 if leave == "timeout" else 0.0)
        if leave in ("terminate", "disconnect") and judged:
            try:
                pool.wait_gone({sub.pid}, allowed, what=f"the submitter {sub.pid}, after its {leave}")
                gone = True
            except AssertionError:
                gone = False
            figures.add("INTR-1", f"submit at {step}, {leave}", time.monotonic() - t0, allowed)
            checks.check(
                "INTR-1",
                gone,
                f"a submitter at {step}, after its {leave}: backend still there {allowed:g} s later",
            )
        elif judged:
            ended = sub.done.wait(allowed)
            took = (sub.took_s or 0.0) if leave == "timeout" else time.monotonic() - t0
            figures.add("INTR-1", f"submit at {step}, {leave}", took, allowed)
            state = getattr(sub.error, "sqlstate", None)
            checks.check(
                "INTR-1",
                ended and state == "57014",
                f"a submit at {step} left by {leave}: "
                + (f"answered {state} ({sub.error!r}, handle {sub.result})" if ended else "still waiting")
                + f" {allowed:g} s after the interrupt; expected 57014 within it",
            )
    # the points released: the held worker, the launcher go on
    ok, why = _alive(pool)
    if not checks.check("INTR-2", ok, f"after a submitter left by {leave} at {step}: {why}"):
        checks.done()
    sub.done.wait(LIVENESS_S)
    try:
        pool.wait_gone(held, SLOT_FREE_S, what=f"the worker of the request left at {step}")
        t.wait_until(lambda: not pool.os_workers(), SLOT_FREE_S, what="no worker left in the OS")
        pool.wait_all_free()
        problems = pool.adapter.check()
        # on 13 a disconnected client's submit goes on, and commits: its job may run
        ran = pool.job_ran("left") if judged else 0
        consistent = not problems and ran == 0
        why = f"check: {problems}; the left request's job ran {ran} times"
    except AssertionError as exc:
        consistent, why = False, str(exc).splitlines()[0]
    checks.check("INTR-2", consistent, f"after a submitter left by {leave} at {step}: {why}")
    checks.done()


@pytest.mark.clause("INTR-3")
def test_late_worker_of_abandoned_request(pool: Pool) -> None:
    """A request abandoned while its worker stands before attaching; the slot
    taken by a new request, whose worker the launcher has not registered yet;
    the old worker released: it must not attach to the new request, and its
    job never runs."""
    t = pool.target
    pool.adapter.paused_at("worker-before-attach")  # NotApplicable without pause points
    pool.create_witness()
    capacity = pool.configured_capacity()
    # every slot but one taken, so that the new request gets the abandoned one's slot
    others = [pool.adapter.submit("sleep", {"ms": LONG_MS}) for _ in range(capacity - 1)]
    try:
        with pool.paused("worker-before-attach"):
            old = _submit_held(pool, "old", HELD_STARTUP_MS)
            late = pool.wait_paused("worker-before-attach")
            _still_waiting(old, "its worker stands before attaching")
            assert t.scalar("SELECT pg_cancel_backend(%s)", old.pid) is True
            t.wait_until(old.done.is_set, INTERRUPT_S, what="the abandoned submit to return")
            assert old.result is None, f"the submit returned {old.result} though it was cancelled"
            freed = t.wait_until(
                lambda: next((s for s in pool.adapter.slots() if s.state == "free"), None),
                SLOT_FREE_S,
                what="the abandoned request's slot free",
            )
            with pool.paused("launcher-before-register"):
                new = _submit_held(pool, "new", HELD_STARTUP_MS)
                pool.wait_paused("launcher-before-register")
                pool.adapter.pause_release("worker-before-attach")
                # the late worker tries to attach while the new request is pending
                pool.wait_gone({late}, SLOT_FREE_S, what=f"the late worker {late} gone")
        t.wait_until(new.done.is_set, SLOT_FREE_S, what="the new submit to return")
        assert new.error is None, f"the new request failed: {new.error!r}"
        h: Handle = new.result
        assert h.slot == freed.slot and h.generation != freed.generation, (h, freed)
        assert h.pid != late, f"the new request's handle {h} names the late worker of the abandoned one"
        t.wait_until(lambda: pool.job_ran("new") == 1 or None, SLOT_FREE_S, what="the new request's job ran")
        pool.wait_freed(h)
        assert pool.job_ran("old") == 0, "the abandoned request's job ran"
    finally:
        pool.stop_all(others)


@pytest.mark.clause("INTR-4")
@pytest.mark.parametrize("leave", ("cancel", "timeout", "terminate"))
@pytest.mark.parametrize("command", ("drop", "rename"))
def test_database_command_wait_is_interruptible(
    pool: Pool, command: str, leave: str, figures: Figures
) -> None:
    """DROP DATABASE or ALTER DATABASE ... RENAME while a job that ignores
    SIGTERM is attached: the command's wait for the pool's workers ends on a
    cancel, its statement_timeout or pg_terminate_backend within INTERRUPT_S."""
    t = pool.target
    db, renamed = "bgwc_intr_db", "bgwc_intr_db2"
    for name in (db, renamed):
        t.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", idempotent=True)
    t.sql(f"CREATE DATABASE {db}")
    job: Handle | None = None
    try:
        job = pool.adapter.submit("ignore_sigterm", {"ms": IGNORE_MS}, dbname=db)  # NotApplicable in SQL
        sql = f"DROP DATABASE {db}" if command == "drop" else f"ALTER DATABASE {db} RENAME TO {renamed}"

        def run(c: _Call) -> None:
            c.conn = t.connect()
            c.pid = c.conn.info.backend_pid
            c.conn.execute(f"SET statement_timeout = {COMMAND_TIMEOUT_MS if leave == 'timeout' else 20_000}")
            c.conn.execute(sql)

        call = _Call(sql).start(run)
        t.wait_until(lambda: call.pid or None, 10, what="the command's session")
        # the command waits (for the pool's workers, or in core's own wait for its database,
        # which shows no wait event): active with a wait event, or for WAITING_S already
        t.wait_until(
            lambda: (
                call.done.is_set()
                or t.scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND state = 'active'"
                    " AND query = %s AND (wait_event_type IS NOT NULL"
                    " OR clock_timestamp() - query_start > %s * interval '1 s')",
                    call.pid,
                    sql,
                    WAITING_S,
                )
            ),
            10,
            what=f"{sql} waiting",
        )
        assert not call.done.is_set(), f"{sql} did not wait: {call.error!r}"
        ended, took, allowed = call.interrupt(t, leave)
        figures.add("INTR-4", f"{command}, {leave}", took, allowed)
        assert ended, f"{sql} still running {allowed:g} s after its {leave}"
        if leave == "terminate":
            pool.wait_gone({call.pid}, INTERRUPT_S, what=f"the session of {sql}, terminated")
        else:
            assert getattr(call.error, "sqlstate", None) == "57014", f"{sql} ended by {call.error!r}"
        assert t.scalar("SELECT count(*) FROM pg_database WHERE datname = %s", db) == 1
        ok, why = _alive(pool)
        assert ok, why
    finally:
        if job is not None and t.is_running():
            pool.adapter.terminate(job)
            pool.wait_freed(job, 10)
        for name in (db, renamed):
            t.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", idempotent=True)


#: INTR-5: an unprivileged role granted the pool, and another whose job it asks to stop
STOPPER, OWNER = "bgwc_intr_stopper", "bgwc_intr_owner"
#: the catalog terminate's privilege check between two roles reads (has_privs_of_role)
MEMBERS = "pg_catalog.pg_auth_members"


@pytest.fixture
def roles(pool: Pool) -> Iterator[tuple[str, str]]:
    with pool.granted_roles(STOPPER, OWNER):
        yield STOPPER, OWNER


@pytest.mark.clause("INTR-5")
@pytest.mark.parametrize("leave", ("cancel", "timeout", "terminate"))
def test_terminate_waiting_for_a_catalog_is_interruptible(
    pool: Pool, roles: tuple[str, str], leave: str, figures: Figures
) -> None:
    """A role's terminate of another role's job waits for a lock on the
    catalog its privilege check reads: a cancel, its statement_timeout or
    pg_terminate_backend ends it within INTERRUPT_S."""
    t = pool.target
    stopper, owner = roles
    with t.connect(user=owner) as conn:
        job = pool.adapter.submit("sleep", {"ms": LONG_MS}, conn=conn)
    holder = t.connect()
    fresh = t.connect(user=stopper)  # no role membership cached yet
    try:
        fresh.execute(f"SET statement_timeout = {COMMAND_TIMEOUT_MS if leave == 'timeout' else 20_000}")
        fresh.execute("SET lock_timeout = 0")
        holder.execute("BEGIN")
        holder.execute(f"LOCK TABLE {MEMBERS} IN ACCESS EXCLUSIVE MODE")
        call = _Call("terminate", conn=fresh, pid=fresh.info.backend_pid)
        call.start(lambda c: pool.adapter.terminate(job, conn=fresh))
        t.wait_until(
            lambda: (
                call.done.is_set()
                or t.scalar("SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", call.pid)
            ),
            INTERRUPT_S,
            what=f"the terminate waiting for its lock on {MEMBERS}",
        )
        ended, took, allowed = call.interrupt(t, leave)
        figures.add("INTR-5", f"terminate, {leave}", took, allowed)
        if leave == "terminate":
            pool.wait_gone({call.pid}, allowed, what=f"the terminate's session {call.pid}, terminated")
        else:
            assert ended, f"the terminate still waits {allowed:g} s after its {leave}"
            assert getattr(call.error, "sqlstate", None) == "57014", f"the terminate ended by {call.error!r}"
    finally:
        holder.close()  # its lock with it
    ok, why = _alive(pool)
    assert ok, why
    assert pool.target.pid_alive(job.os_pid), "the job whose stop was given up was stopped"
    pool.stop_all([job])
