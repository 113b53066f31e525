"""BOUND and LEAK: every numeric argument at its documented limits and just
past them, its effect measured; every way a submit fails, each followed by
the capacity witness.

Each test judges a table of cells, each on its own (``PerKind``): one cell's
failure never hides another's, and the test fails listing every failing
cell.  A cell the adapter cannot express is not applicable, never an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from conformance.adapters import Handle, NotApplicable
from conformance.deadlines import CRASH_RECOVERY_S, LONG_JOB_WATCH_S, SLOT_FREE_S
from conformance.suite.checks import PerKind
from conformance.suite.pool_under_test import LONG_MS, Pool
from conformance.waiting import POLL_INTERVAL_S

Cell = tuple[str, Callable[[], None]]

#: BOUND-1: the last sleep whose microseconds fit an int32, the first that does not, 40 minutes
INT32_US_LAST_MS = (2**31 - 1) // 1000
LONG_SLEEPS_MS = (INT32_US_LAST_MS, INT32_US_LAST_MS + 1, 40 * 60 * 1000, 2**31 - 1)
#: BOUND-1: a short sleep, seen running for most of it and gone soon after it
SHORT_SLEEP_MS = 1500
#: a handle's generation shifted by this is another generation, equal in its low 32 bits
GEN_WRAP = 2**32
#: LEAK-1: a startup timeout short enough to wait out in each cell
LEAK_TIMEOUT_MS = 500
ROLE = "bgwc_bounds"
#: a value past its SQL type is refused by PostgreSQL before the pool sees it: out of range, or,
#: sent as a wider type by the driver, no such function signature
PAST_TYPE = ("22003", "42883")


def run_cells(
    per: PerKind,
    cells: list[Cell],
    record: Callable[[str, object], None],
    cleanup: Callable[[], None] | None = None,
) -> int:
    """Judge every cell, each on its own; a cell that raises NotApplicable is
    recorded so.  ``cleanup`` runs after each cell, however it ended, so that
    what a failing cell left running fails no other.  Returns how many cells
    applied."""
    applicable = 0
    for name, cell in cells:
        try:
            with per.judging(name):
                try:
                    cell()
                except psycopg.Error as exc:
                    raise AssertionError(f"unexpected {exc.sqlstate}: {str(exc).splitlines()[0]}") from None
                finally:
                    if cleanup is not None:
                        cleanup()
            applicable += 1
        except NotApplicable as exc:
            per.kinds[name] = {"outcome": "not-applicable", "detail": str(exc)}
            record("kinds", dict(per.kinds))
    return applicable


def finish(per: PerKind, applicable: int) -> None:
    """Not applicable when no cell applied; else fail listing each failing cell."""
    if not applicable:
        raise NotApplicable(f"no cell of {per.clause} can be expressed by this pool's adapter")
    per.done()


def not_applicable(why: str) -> Callable[[], None]:
    def cell() -> None:
        raise NotApplicable(why)

    return cell


def refused(call: Callable[[], object], sqlstate: str, *also: str) -> None:
    """``call`` fails with ``sqlstate`` (or one of ``also``)."""
    try:
        got = call()
    except psycopg.Error as exc:
        assert exc.sqlstate in (sqlstate, *also), (
            f"{exc.sqlstate} ({str(exc).splitlines()[0]}), not {sqlstate}"
        )
    else:
        raise AssertionError(f"accepted ({got}), not {sqlstate}")


def nothing_taken(pool: Pool) -> None:
    """No slot busy and no worker in the OS."""
    busy = [(s.slot, s.state) for s in pool.adapter.slots() if s.state != "free"]
    workers = [p.pid for p in pool.os_workers()]
    assert not busy and not workers, f"after a refusal: busy slots {busy}, workers {workers}"


def why_not_running(pool: Pool, h: Handle) -> str | None:
    listed = {j.handle.pid: j.state for j in pool.adapter.jobs()}
    if listed.get(h.pid) not in ("running", "stopping"):
        return f"the pool lists {sorted(listed.items())}, not pid {h.pid}"
    if not pool.target.pid_alive(h.os_pid):
        return f"pid {h.pid} is gone from the OS"
    return None


def watch_running(pool: Pool, handles: dict[str, Handle], seconds: float) -> dict[str, str]:
    """Watch every handle for ``seconds``: why each that stopped running did (by name)."""
    stopped: dict[str, str] = {}
    end = time.monotonic() + seconds
    while True:
        for name, h in handles.items():
            if name not in stopped and (why := why_not_running(pool, h)) is not None:
                stopped[name] = why
        if time.monotonic() >= end or len(stopped) == len(handles):
            return stopped
        time.sleep(POLL_INTERVAL_S)  # ok-sleep: an observation window, polled


def ends_by_itself(pool: Pool, h: Handle, within: float) -> None:
    pool.target.wait_until(
        lambda: why_not_running(pool, h) is not None, within, what=f"job {h} to end by itself"
    )


def limits(pool: Pool, key: str) -> tuple[int, int]:
    return pool.adapter.argument_limits()[key]


# -- BOUND-1: durations ------------------------------------------------------------


def _long_sleeps(pool: Pool) -> Iterator[Cell]:
    """Every long sleep submitted at once, watched together: one window for all."""
    handles: dict[str, Handle] = {}
    errors: dict[str, str] = {}
    for ms in LONG_SLEEPS_MS:
        try:
            handles[f"sleep {ms} ms"] = pool.adapter.submit("sleep", {"ms": ms})
        except psycopg.Error as exc:
            errors[f"sleep {ms} ms"] = f"refused: {exc.sqlstate} {str(exc).splitlines()[0]}"
    stopped = watch_running(pool, handles, LONG_JOB_WATCH_S)
    for h in handles.values():
        pool.adapter.terminate(h)
    for ms in LONG_SLEEPS_MS:
        name = f"sleep {ms} ms"

        def cell(name: str = name) -> None:
            assert name not in errors, errors.get(name)
            assert name not in stopped, (
                f"not running {LONG_JOB_WATCH_S:g} s after its submit: {stopped[name]}"
            )

        yield name, cell
    pool.target.wait_until(
        lambda: all(why_not_running(pool, h) for h in handles.values()),
        SLOT_FREE_S,
        what="long sleeps stopped",
    )


def _short_sleep(pool: Pool, ms: int) -> None:
    t0 = time.monotonic()
    h = pool.adapter.submit("sleep", {"ms": ms})
    early = watch_running(pool, {"it": h}, max(0.0, ms / 1000 - 0.3 - (time.monotonic() - t0)))
    assert not early, f"gone before its {ms} ms: {early}"
    ends_by_itself(pool, h, ms / 1000 + SLOT_FREE_S)


def _ignore_sigterm_at_limit(pool: Pool) -> None:
    """At its limit, ignore_sigterm ignores a stop for the watch window (its
    submitting transaction held open), and ends once that transaction rolls back."""
    _, top = limits(pool, "ignore_sigterm.ms")
    with pool.target.connect() as conn:
        conn.execute("BEGIN")
        h = pool.adapter.submit("ignore_sigterm", {"ms": top}, conn=conn)
        assert pool.adapter.terminate(h), "terminate said the job was not there"
        stopped = watch_running(pool, {"it": h}, LONG_JOB_WATCH_S)
        conn.execute("ROLLBACK")
    assert not stopped, f"a stop ended it within {LONG_JOB_WATCH_S:g} s: {stopped}"
    pool.wait_gone({h.os_pid}, SLOT_FREE_S, "the worker once its submitter rolled back")


@pytest.mark.clause("BOUND-1")
def test_long_durations_run_their_length(pool: Pool, record_property: Callable[[str, object], None]) -> None:
    per = PerKind("BOUND-1", record_property, noun="cells")
    cells: list[Cell] = list(_long_sleeps(pool))
    cells += [
        ("sleep 0 ms", lambda: ends_by_itself(pool, pool.adapter.submit("sleep", {"ms": 0}), SLOT_FREE_S)),
        (f"sleep {SHORT_SLEEP_MS} ms", lambda: _short_sleep(pool, SHORT_SLEEP_MS)),
        ("ignore_sigterm at its limit", lambda: _ignore_sigterm_at_limit(pool)),
    ]
    finish(per, run_cells(per, cells, record_property))


# -- BOUND-2: the other numeric arguments ----------------------------------------------


def _exit_code(pool: Pool, code: int) -> None:
    h = pool.adapter.submit("exit", {"code": code})
    slot = pool.wait_freed(h)
    assert slot.generation != h.generation or slot.last_exit_code == code, (
        f"exit {code}: the slot records exit code {slot.last_exit_code}"
    )


def _exit_code_crash(pool: Pool, code: int) -> None:
    """An exit code other than 0 and 1 is a crash to the postmaster: the cluster restarts."""
    launcher = pool.adapter.launcher_pid()
    pool.adapter.submit("exit", {"code": code})
    pool.wait_fresh(CRASH_RECOVERY_S, not_launcher=launcher)


def _text_at_limit(pool: Pool) -> None:
    """An sql job whose query is exactly the limit runs, its text whole."""
    _, top = limits(pool, "text.bytes")
    pool.target.sql("DROP TABLE IF EXISTS bgwc_bounds_text")
    pool.target.sql("CREATE TABLE bgwc_bounds_text (v text)")
    head = "INSERT INTO bgwc_bounds_text VALUES ('"
    query = head + "x" * (top - len(head) - 2) + "')"
    assert len(query.encode()) == top
    pool.wait_freed(pool.adapter.submit("sql", {"query": query}))
    rows = pool.target.sql("SELECT length(v) FROM bgwc_bounds_text")
    pool.target.sql("DROP TABLE bgwc_bounds_text")
    assert rows == [(top - len(head) - 2,)], f"a {top}-byte query inserted {rows}"


def _error_at_limit(pool: Pool) -> None:
    """An error job whose message is exactly the limit runs: it ends by ERROR, exit code 1."""
    _, top = limits(pool, "text.bytes")
    h = pool.adapter.submit("error", {"message": "m" * top})
    slot = pool.wait_freed(h)
    assert slot.generation != h.generation or slot.last_exit_code == 1, (
        f"a {top}-byte error message: the slot records exit code {slot.last_exit_code}"
    )


def _not_an_integer(pool: Pool) -> None:
    limits(pool, "sleep.ms")  # documented as integers, or not applicable
    _refuse_submit(pool, "sleep", {"ms": 1.5}, "22023")


def _refuse_submit(pool: Pool, kind: str, args: dict[str, Any], sqlstate: str) -> None:
    # the worker of an earlier cell may still be in its exit, its slot already free
    pool.target.wait_until(lambda: not pool.os_workers(), SLOT_FREE_S, what="no worker before the refusal")
    refused(lambda: pool.adapter.submit(kind, args), sqlstate)
    nothing_taken(pool)


def _arg_cells(pool: Pool) -> list[Cell]:
    cells: list[Cell] = []
    for key, kind, field in (
        ("sleep.ms", "sleep", "ms"),
        ("ignore_sigterm.ms", "ignore_sigterm", "ms"),
        ("exit.code", "exit", "code"),
    ):
        for past in ("below", "above"):

            def cell(key: str = key, kind: str = kind, field: str = field, past: str = past) -> None:
                low, high = limits(pool, key)
                _refuse_submit(pool, kind, {field: low - 1 if past == "below" else high + 1}, "22023")

            cells.append((f"{key} just {past} its limits", cell))
    cells += [
        ("exit.code 0", lambda: _exit_code(pool, limits(pool, "exit.code")[0])),
        ("exit.code 1", lambda: _exit_code(pool, 1)),
        ("sleep.ms not an integer (1.5)", lambda: _not_an_integer(pool)),
        ("text at its limit", lambda: _text_at_limit(pool)),
        ("error message at its limit", lambda: _error_at_limit(pool)),
        (
            "text just past its limit",
            lambda: _refuse_submit(
                pool, "sql", {"query": "SELECT " + "1" * (limits(pool, "text.bytes")[1] - 6)}, "54000"
            ),
        ),
        (
            "error message just past its limit",
            lambda: _refuse_submit(
                pool, "error", {"message": "m" * (limits(pool, "text.bytes")[1] + 1)}, "54000"
            ),
        ),
    ]
    return cells


def _terminate_cells(pool: Pool) -> tuple[list[Cell], list[Handle]]:
    """terminate's slot and generation at their limits and past them, with a
    job in the first and the last slot that must run on through every miss."""
    capacity = pool.configured_capacity()
    handles = [pool.adapter.submit("sleep", {"ms": LONG_MS}) for _ in range(capacity)]
    by_slot = {h.slot: h for h in handles}
    first, last = by_slot.get(0), by_slot.get(capacity - 1)

    def miss(h: Handle | None, generation: int) -> None:
        assert h is not None and h.generation is not None, f"no job in the slot: {sorted(by_slot)}"
        assert pool.adapter.terminate(Handle(h.slot, generation, h.pid)) is False, "terminate said true"
        assert why_not_running(pool, h) is None, "the job stopped"

    def hit(h: Handle | None) -> None:
        assert h is not None, f"no job in the slot: {sorted(by_slot)}"
        assert pool.adapter.terminate(h) is True, "terminate said false"
        pool.wait_freed(h)

    gen = last.generation if last is not None and last.generation is not None else 0
    cells: list[Cell] = [
        (
            "terminate slot -1",
            lambda: refused(lambda: pool.adapter.terminate(Handle(-1, gen, None)), "22023"),
        ),
        (
            "terminate slot = capacity",
            lambda: refused(lambda: pool.adapter.terminate(Handle(capacity, gen, None)), "22023"),
        ),
        (
            "terminate slot 2^31",
            lambda: refused(lambda: pool.adapter.terminate(Handle(2**31, gen, None)), *PAST_TYPE),
        ),
        (
            "terminate generation -1",
            lambda: refused(lambda: pool.adapter.terminate(Handle(0, -1, None)), "22023"),
        ),
        (
            "terminate generation 2^63",
            lambda: refused(lambda: pool.adapter.terminate(Handle(0, 2**63, None)), *PAST_TYPE),
        ),
        ("terminate generation 2^63 - 1", lambda: miss(last, 2**63 - 1)),
        ("terminate generation + 2^32", lambda: miss(last, gen + GEN_WRAP)),
        ("terminate generation mod 2^32", lambda: miss(last, gen % GEN_WRAP if gen >= GEN_WRAP else gen + 1)),
        ("terminate generation 0", lambda: miss(last, 0)),
        ("terminate the first slot", lambda: hit(first)),
        ("terminate the last slot", lambda: hit(last)),
    ]
    return cells, handles


@contextmanager
def _session_with(pool: Pool, setting: str, value: int) -> Iterator[psycopg.Connection[Any]]:
    with pool.target.connect() as conn:
        conn.execute(f"SET {setting} = {value}")
        yield conn


def _startup_timeout_cells(pool: Pool) -> list[Cell]:
    spec = pool.profile.pool
    if spec is None or spec.startup_timeout is None or spec.startup_timeout_sqlstate is None:
        return [("startup timeout", not_applicable("the profile declares no startup timeout"))]
    name, sqlstate = spec.startup_timeout, spec.startup_timeout_sqlstate
    low, high = (
        int(v) for v in pool.target.sql("SELECT min_val, max_val FROM pg_settings WHERE name = %s", name)[0]
    )

    def past(value: int) -> None:
        with pool.target.connect() as conn:
            refused(lambda: conn.execute(f"SET {name} = {value}"), "22023")

    def at_min() -> None:
        with pool.paused("worker-before-attach"), _session_with(pool, name, low) as conn:
            t0 = time.monotonic()
            refused(lambda: pool.adapter.submit("sleep", {"ms": LONG_MS}, conn=conn), sqlstate)
            took = time.monotonic() - t0
            assert took <= low / 1000 + 1.0, f"failed after {took:.3f} s with a timeout of {low} ms"
            pool.wait_all_free()
        pool.target.wait_until(lambda: not pool.os_workers(), SLOT_FREE_S, what="the held worker gone")

    def at_max() -> None:
        with pool.paused("worker-before-attach"):
            sub = pool.submit_in_background("sleep", {"ms": LONG_MS}, **{name: high})
            pool.wait_paused("worker-before-attach")
            end = time.monotonic() + LONG_JOB_WATCH_S
            pool.target.wait_until(lambda: sub.done.is_set() or time.monotonic() >= end, LONG_JOB_WATCH_S + 1)
            answered = sub.done.is_set()
            pool.target.sql("SELECT pg_cancel_backend(%s)", sub.pid)
            sub.wait(pool, SLOT_FREE_S)
            pool.wait_all_free()
        pool.target.wait_until(lambda: not pool.os_workers(), SLOT_FREE_S, what="the held worker gone")
        assert not answered, (
            f"a {high} ms startup timeout answered within {LONG_JOB_WATCH_S:g} s: {sub.error}"
        )

    return [
        (f"{name} just below its minimum", lambda: past(low - 1)),
        (f"{name} just above its maximum", lambda: past(high + 1)),
        (f"{name} at its minimum", at_min),
        (f"{name} at its maximum", at_max),
    ]


@pytest.mark.clause("BOUND-2")
def test_numeric_arguments_at_and_past_their_limits(
    pool: Pool, record_property: Callable[[str, object], None]
) -> None:
    per = PerKind("BOUND-2", record_property, noun="cells")
    applicable = run_cells(per, _arg_cells(pool), record_property)
    try:
        cells, handles = _terminate_cells(pool)
    except NotApplicable as exc:
        cells, handles = [("terminate", not_applicable(str(exc).removeprefix("not applicable: ")))], []
    try:
        applicable += run_cells(per, cells, record_property)
    finally:
        pool.stop_all([h for h in handles if why_not_running(pool, h) is None])
    applicable += run_cells(per, _startup_timeout_cells(pool), record_property, pool.stop_every_job)
    # last: the limit exit code crash-restarts the cluster
    crash = [("exit.code at its maximum", lambda: _exit_code_crash(pool, limits(pool, "exit.code")[1]))]
    finish(per, applicable + run_cells(per, crash, record_property))


# -- LEAK-1: every way a submit fails, each followed by the capacity witness -------------


def _leak_cells(pool: Pool, failer: psycopg.Connection[Any], granted: bool) -> list[Cell]:
    """The failing submits, each from ``failer``: a session that stays open
    through the witness, as a client's pooled connection does (a slot held
    for its submitter is held while that session lives)."""

    def fails(
        kind: str, args: dict[str, Any], sqlstate: str, dbname: str | None = None
    ) -> Callable[[], None]:
        return lambda: refused(lambda: pool.adapter.submit(kind, args, dbname, conn=failer), sqlstate)

    def pool_full() -> None:
        handles = [pool.adapter.submit("sleep", {"ms": LONG_MS}) for _ in range(pool.configured_capacity())]
        try:
            fails("sleep", {"ms": LONG_MS}, "53000")()
        finally:
            pool.stop_all(handles)

    def startup_timeout() -> None:
        spec = pool.profile.pool
        if spec is None or spec.startup_timeout is None or spec.startup_timeout_sqlstate is None:
            raise NotApplicable("the profile declares no startup timeout")
        failer.execute(f"SET {spec.startup_timeout} = {LEAK_TIMEOUT_MS}")
        try:
            with pool.paused("worker-before-attach"):
                fails("sleep", {"ms": LONG_MS}, spec.startup_timeout_sqlstate)()
        finally:
            failer.execute(f"RESET {spec.startup_timeout}")

    def cancelled() -> None:
        with pool.paused("worker-before-attach"):
            sub = pool.submit_in_background("sleep", {"ms": LONG_MS})
            pool.wait_paused("worker-before-attach")
            pool.target.sql("SELECT pg_cancel_backend(%s)", sub.pid)
            sub.wait(pool, SLOT_FREE_S)
        assert isinstance(sub.error, psycopg.Error) and sub.error.sqlstate == "57014", sub.error or sub.handle

    def as_role(
        kind: str, args: dict[str, Any], sqlstate: str, no_connect: bool = False
    ) -> Callable[[], None]:
        def cell() -> None:
            if not granted:
                raise NotApplicable("the pool cannot be granted to a role")
            with pool.target.connect() as conn:
                conn.execute(f"SET ROLE {ROLE}")
                if no_connect:  # the role's CONNECT on its own database, revoked while it is connected
                    pool.target.sql("REVOKE CONNECT ON DATABASE postgres FROM PUBLIC")
                try:
                    refused(lambda: pool.adapter.submit(kind, args, conn=conn), sqlstate)
                finally:
                    pool.target.sql("GRANT CONNECT ON DATABASE postgres TO PUBLIC", idempotent=True)
                _witness_beside(pool)

        return cell

    return [
        ("pool full (53000)", pool_full),
        ("worker not started (fail_to_start)", fails("fail_to_start", {}, "53000")),
        ("startup timeout", startup_timeout),
        ("cancelled while waiting (57014)", cancelled),
        ("unknown job kind (22023)", fails("bgwc_no_such_kind", {}, "22023")),
        ("sleep ms past its limit (22023)", fails("sleep", {"ms": -1}, "22023")),
        ("text past its limit (54000)", fails("sql", {"query": "SELECT " + "1" * 1017}, "54000")),
        ("missing database (3D000)", fails("sleep", {"ms": 100}, "3D000", "bgwc_bounds_missing")),
        ("database not accepting connections (55000)", fails("sleep", {"ms": 100}, "55000", "template0")),
        ("no CONNECT privilege (42501)", as_role("sleep", {"ms": 100}, "42501", no_connect=True)),
        ("fault kind from a non-superuser (42501)", as_role("crash", {}, "42501")),
    ]


def _witness_beside(pool: Pool) -> None:
    """The capacity witness, within the cell that failed a submit."""
    pool.target.wait_until(lambda: not pool.os_workers(), SLOT_FREE_S, what="no worker left by the failure")
    pool.capacity_witness()


@pytest.fixture
def granted_role(pool: Pool) -> Iterator[bool]:
    """A role granted the pool (False where the pool cannot be granted)."""
    pool.drop_roles(ROLE)
    pool.target.sql(f"CREATE ROLE {ROLE} LOGIN NOSUPERUSER")
    try:
        try:
            pool.adapter.grant_submit(ROLE)
        except NotApplicable:
            yield False
        else:
            yield True
    finally:
        pool.target.sql("GRANT CONNECT ON DATABASE postgres TO PUBLIC", idempotent=True)
        pool.drop_roles(ROLE)


@pytest.mark.clause("LEAK-1")
def test_no_reservation_outlives_a_failed_submit(
    pool: Pool, granted_role: bool, record_property: Callable[[str, object], None]
) -> None:
    per = PerKind("LEAK-1", record_property, noun="cells")
    pool.configured_capacity()  # NotApplicable for a pool with no capacity to witness
    applicable = 0
    with pool.target.connect() as failer:
        for name, cell in _leak_cells(pool, failer, granted_role):

            def with_witness(cell: Callable[[], None] = cell, name: str = name) -> None:
                cell()
                if "42501" not in name:  # those witness within their own session
                    _witness_beside(pool)

            applicable += run_cells(per, [(name, with_witness)], record_property, pool.stop_every_job)
    finish(per, applicable)
