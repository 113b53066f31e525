"""LOCK: the pool keeps answering while a lock it might need is held elsewhere.

A pool function that reads a catalog (a role's memberships, to check a
privilege) while it holds the pool's own LWLock makes every other caller of
the pool wait for that catalog's lock: an LWLock wait that no
statement_timeout, cancel or deadlock detector breaks.  The clause holds
such a catalog lock in one session, has a role granted the pool ask for
something that reads it, and asks the pool for its status and a submit from
a third session, each in a thread of its own with its own deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psycopg
import pytest

from conformance.adapters import Handle
from conformance.deadlines import LOCK_ANSWER_S, LOCK_UNWIND_S
from conformance.figures import Figures
from conformance.suite.pool_under_test import LONG_MS, Pool

ROLE = "bgwc_member"
#: another unprivileged role granted the pool: whether ROLE may stop its job
#: is a question only pg_auth_members answers (a superuser's job is not:
#: only a superuser may stop it, which needs no membership read)
OTHER = "bgwc_other"
#: the catalog a privilege check between roles reads (has_privs_of_role)
CATALOG = "pg_catalog.pg_auth_members"


@pytest.fixture
def member(pool: Pool) -> Iterator[str]:
    """An unprivileged role granted the pool (and OTHER, another)."""
    with pool.granted_roles(ROLE, OTHER):
        yield ROLE


@dataclass
class _Call:
    """A call into the pool in a thread and a session of its own: an LWLock
    wait cannot be cancelled, so no other session may wait with it."""

    what: str
    done: threading.Event = field(default_factory=threading.Event)
    result: object = None
    error: BaseException | None = None
    took_s: dict[str, float] = field(default_factory=dict)  # each step, from the call's start

    def start(self, body: Callable[[_Call], object]) -> threading.Thread:
        def run() -> None:
            try:
                self.result = body(self)
            except BaseException as exc:  # noqa: BLE001 - the test judges it
                self.error = exc
            finally:
                self.done.set()

        thread = threading.Thread(target=run, daemon=True, name=self.what)
        thread.start()
        return thread


@pytest.mark.clause("LOCK-1")
def test_pool_answers_while_a_catalog_lock_is_held(
    pool: Pool, member: str, figures: Figures, record_property: Callable[[str, object], None]
) -> None:
    t = pool.target
    with t.connect(user=OTHER) as other:
        theirs = pool.adapter.submit("sleep", {"ms": LONG_MS}, conn=other)  # another role's job
    own = t.connect(user=member)
    # a fresh session of the role: no role membership of it cached yet
    fresh = t.connect(user=member)
    holder = t.connect()
    handles: list[Handle] = [theirs]
    threads: list[threading.Thread] = []
    try:
        handles.append(pool.adapter.submit("sleep", {"ms": LONG_MS}, conn=own))  # the role's own job
        holder.execute("BEGIN")
        holder.execute(f"LOCK TABLE {CATALOG} IN ACCESS EXCLUSIVE MODE")
        # the role asks to stop the other role's job: its privilege check reads
        # the locked catalog, and may wait for the lock (without the pool's)
        stopper = _Call("the role's terminate of another role's job")
        threads.append(stopper.start(lambda c: pool.adapter.terminate(theirs, conn=fresh)))
        fresh_pid = fresh.info.backend_pid
        t.wait_until(
            lambda: (
                stopper.done.is_set()
                or t.scalar("SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", fresh_pid)
            ),
            LOCK_ANSWER_S,
            what=f"the role's terminate waiting for the lock on {CATALOG}, or done",
        )
        # a third session asks the pool for its status, then submits
        probe = _Call("status and submit from a third session")

        def ask(c: _Call) -> Handle:
            t0 = time.monotonic()
            with t.connect() as conn:
                pool.adapter.slots(conn=conn)
                c.took_s["status"] = time.monotonic() - t0
                h = pool.adapter.submit("exit_at_once", conn=conn)
                c.took_s["submit"] = time.monotonic() - t0
                return h

        asked = time.monotonic()
        threads.append(probe.start(ask))
        try:
            t.wait_until(probe.done.is_set, LOCK_ANSWER_S, what="the pool's answer (status, submit)")
        except AssertionError:
            pass  # judged below, once the lock is released and the sessions unwound
        frozen = not probe.done.is_set()
        waits = (
            t.sql(
                "SELECT pid, usename, wait_event_type, wait_event, left(query, 60) FROM pg_stat_activity"
                " WHERE state = 'active' AND pid <> pg_backend_pid()"
            )
            if frozen
            else []
        )
    finally:
        try:
            holder.execute("ROLLBACK")
        except psycopg.Error:
            pass  # a session that broke has no lock left either
        holder.close()
        unwound = _unwound(pool, threads)
        for conn in (fresh, own):
            conn.close()
    record_property("stopper", f"{stopper.result!r}" if stopper.error is None else f"{stopper.error!r}")
    answered_after = max(probe.took_s.values(), default=time.monotonic() - asked)
    for step, took in probe.took_s.items():
        figures.add("LOCK-1", f"{step} while {CATALOG} is locked", took, LOCK_ANSWER_S)
    assert not frozen, (
        f"the pool stopped answering (status, submit) for {answered_after:.1f} s while a session held "
        f"a lock on pg_auth_members: a catalog read under the pool's LWLock; sessions then: {waits}"
        + ("" if unwound else f"; still not answered {LOCK_UNWIND_S:g} s after the lock was released")
    )
    assert unwound, f"the scenario's sessions did not end within {LOCK_UNWIND_S:g} s of the lock's release"
    assert probe.error is None, f"the pool's answer while {CATALOG} was locked: {probe.error!r}"
    assert isinstance(probe.result, Handle)
    handles.append(probe.result)
    pool.stop_all(handles)


def _unwound(pool: Pool, threads: list[threading.Thread]) -> bool:
    """Wait for every call of the scenario to return once the lock is
    released; a server that holds them still is restarted (immediate), so
    that nothing of the scenario outlives the test."""
    try:
        pool.target.wait_until(
            lambda: not any(th.is_alive() for th in threads),
            LOCK_UNWIND_S,
            what="the scenario's calls to return after the lock's release",
        )
        return True
    except AssertionError:
        pool.target.restart("immediate")
        return False
