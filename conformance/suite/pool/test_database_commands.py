"""DBC: a database command that needs its database to itself, while pool jobs
are attached to that database.  From 19 on, core terminates background
workers that declare BGWORKER_INTERRUPTIBLE; before 19 the pool must stop
its own.  Either way the command completes and no slot leaks.  Each result
records how long the command took and who stopped the workers, so the matrix
shows where 19 differs.

DBC-5 and DBC-6 are the other side: a command that core will refuse, and a
command by a role that may not stop the jobs attached, stop no job."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from conformance.adapters import Handle
from conformance.deadlines import DB_COMMAND_S, SLOT_FREE_S
from conformance.figures import Figures
from conformance.suite.checks import Checks
from conformance.suite.pool_under_test import LONG_MS, Pool
from conformance.waiting import POLL_INTERVAL_S

DB = "bgwc_dbc"
MOVED = "bgwc_dbc_renamed"
TABLESPACE = "bgwc_dbc_space"
JOBS = 2


def _clean(pool: Pool) -> None:
    for db in (DB, MOVED):
        pool.target.sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", idempotent=True)
    pool.target.sql(f"DROP TABLESPACE IF EXISTS {TABLESPACE}", idempotent=True)


def _with_jobs_attached(
    pool: Pool, clause: str, command: str, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    """Run ``command`` on DB while JOBS jobs are attached to it; check that it
    completes, the workers are gone and no slot leaked; record who stopped them."""
    _clean(pool)
    pool.target.sql(f"CREATE DATABASE {DB}")
    if TABLESPACE in command:
        # an in-place tablespace (a directory under pg_tblspc): no path on the server's host needed
        with pool.target.connect() as conn:
            conn.execute("SET allow_in_place_tablespaces = on")
            conn.execute(f"CREATE TABLESPACE {TABLESPACE} LOCATION ''")
    try:
        jobs = [pool.adapter.submit("sleep", {"ms": LONG_MS}, dbname=DB) for _ in range(JOBS)]
        pids = {h.pid for h in jobs if h.pid is not None}
        assert len(pids) == JOBS, f"{JOBS} jobs, pids {pids}: {jobs}"
        connected = pool.target.sql("SELECT pid FROM pg_stat_activity WHERE datname = %s", DB)
        assert {r[0] for r in connected} >= pids, f"jobs {jobs} not connected to {DB}: {connected}"
        offset = pool.target.log_offset()
        with pool.target.connect() as conn:
            backend = conn.info.backend_pid
            conn.execute(f"SET statement_timeout = '{int(DB_COMMAND_S * 1000)}ms'")
            t0 = time.monotonic()
            try:
                conn.execute(command)
            except psycopg.Error as exc:
                pytest.fail(
                    f"{command} with {JOBS} jobs attached: {exc.sqlstate} {exc} "
                    f"after {time.monotonic() - t0:.1f}s\n{pool.target.log_since(offset)[-3000:]}"
                )
            took = time.monotonic() - t0
        figures.add(clause, command, took, DB_COMMAND_S)
        assert took <= DB_COMMAND_S, f"{command} took {took:.1f}s"
        # the workers are gone from the OS and from pg_stat_activity, their slots free
        pool.wait_gone(pids, SLOT_FREE_S, f"the jobs' workers after {command}")
        left = pool.target.sql("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", list(pids))
        assert not left, f"still in pg_stat_activity after {command}: {left}"
        for h in jobs:
            pool.wait_freed(h)
        # who stopped them: the extension, speaking in the backend that ran the
        # command (core logs nothing there for a command that succeeds), or the server
        spoke = [ln for ln in pool.target.log_since(offset).splitlines() if f"[{backend}]" in ln]
        record_property("stopped_by", "extension" if spoke else "server")
        record_property("evidence", "\n".join(spoke[-3:]) or "no line from the command's backend")
        # no slot leaked: exactly capacity jobs run at once again
        pool.capacity_witness()
    finally:
        _clean(pool)


@pytest.mark.clause("DBC-1")
def test_drop_database_stops_attached_jobs(
    pool: Pool, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    _with_jobs_attached(pool, "DBC-1", f"DROP DATABASE {DB}", record_property, figures)


@pytest.mark.clause("DBC-2")
def test_drop_database_force_stops_attached_jobs(
    pool: Pool, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    _with_jobs_attached(pool, "DBC-2", f"DROP DATABASE {DB} WITH (FORCE)", record_property, figures)


@pytest.mark.clause("DBC-3")
def test_rename_database_stops_attached_jobs(
    pool: Pool, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    _with_jobs_attached(pool, "DBC-3", f"ALTER DATABASE {DB} RENAME TO {MOVED}", record_property, figures)


@pytest.mark.clause("DBC-4")
def test_move_database_stops_attached_jobs(
    pool: Pool, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    _with_jobs_attached(
        pool, "DBC-4", f"ALTER DATABASE {DB} SET TABLESPACE {TABLESPACE}", record_property, figures
    )


# -- DBC-5, DBC-6: a job stopped only where core would let the command's role stop it --

#: a role that owns a database, and is not granted the pool
OWNER = "bgwc_dbowner"
OWNED = "bgwc_owned"
OWNED_MOVED = "bgwc_owned2"
NO_SUCH_SPACE = "bgwc_no_such_space"
SUPERUSER = "the kit's superuser"
#: the first major whose core terminates background workers that declare
#: BGWORKER_INTERRUPTIBLE for these commands: CountOtherDBBackends calls
#: TerminateBackgroundWorkersForDatabase (postmaster/bgworker.h of 19), whoever
#: runs the command; the clause cannot tell such a stop from the pool's own
CORE_TERMINATES_SINCE = 19


def _drop_owned(pool: Pool) -> None:
    t = pool.target
    for job in pool.adapter.jobs():
        pool.adapter.terminate(job.handle)
    for db in (OWNED, OWNED_MOVED):
        t.sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", idempotent=True)
    t.sql(f"DROP ROLE IF EXISTS {OWNER}", idempotent=True)


@pytest.fixture
def owned(pool: Pool, request: pytest.FixtureRequest) -> Iterator[str]:
    """Database OWNED, owned by OWNER (a LOGIN role, not a superuser, not
    granted the pool, with CREATEDB when the test is parametrized so);
    the test submits its own jobs there.  Yields the database's name."""
    createdb = getattr(request, "param", False)
    _drop_owned(pool)
    pool.target.sql(
        f"CREATE ROLE {OWNER} LOGIN NOSUPERUSER {'CREATEDB' if createdb else 'NOCREATEDB'} NOCREATEROLE"
    )
    try:
        pool.target.sql(f"CREATE DATABASE {OWNED} OWNER {OWNER}")
        yield OWNED
    finally:
        _drop_owned(pool)


def _superusers_job(pool: Pool) -> Handle:
    """A superuser's long job in OWNED, connected there."""
    job = pool.adapter.submit("sleep", {"ms": LONG_MS}, dbname=OWNED)
    pid = job.os_pid
    pool.target.wait_until(
        lambda: pool.target.scalar("SELECT datname FROM pg_stat_activity WHERE pid = %s", pid) == OWNED,
        SLOT_FREE_S,
        what=f"the superuser's job (pid {pid}) connected to {OWNED}",
    )
    return job


def _run_as(pool: Pool, command: str, user: str = OWNER) -> tuple[float, psycopg.Error | None]:
    """Run ``command`` as ``user`` (SUPERUSER: the kit's own session), from the
    postgres database, under DB_COMMAND_S: the seconds it took and the error it
    failed with, if any."""
    with pool.target.connect(**({} if user == SUPERUSER else {"user": user})) as conn:
        conn.execute(f"SET statement_timeout = '{int(DB_COMMAND_S * 1000)}ms'")
        t0 = time.monotonic()
        try:
            conn.execute(command)
        except psycopg.Error as exc:
            return time.monotonic() - t0, exc
        return time.monotonic() - t0, None


def _gone(pool: Pool, job: Handle) -> str | None:
    """Why ``job`` no longer runs as submitted (its pid left the pool's list
    or the OS), or None while it does."""
    listed = {j.handle.pid: j.state for j in pool.adapter.jobs()}
    if listed.get(job.pid) != "running":
        return f"the pool lists {sorted(listed.items())}, not pid {job.pid} running"
    if not pool.target.pid_alive(job.os_pid):
        return f"pid {job.pid} is gone from the OS"
    return None


def _still_running(pool: Pool, job: Handle) -> str | None:
    """Watch ``job`` for SLOT_FREE_S (a stop asked lands within that, TERM-1):
    why it stopped running, or None if it ran throughout."""
    end = time.monotonic() + SLOT_FREE_S
    while (why := _gone(pool, job)) is None and time.monotonic() < end:
        time.sleep(POLL_INTERVAL_S)  # ok-sleep: an observation window, ended at the first change
    return why


@pytest.mark.clause("DBC-5")
@pytest.mark.parametrize(
    ("command", "by", "sqlstate"),
    [
        (f"ALTER DATABASE {OWNED} RENAME TO {OWNED_MOVED}", OWNER, "42501"),
        (f"ALTER DATABASE {OWNED} SET TABLESPACE {NO_SUCH_SPACE}", OWNER, "42704"),
        # a superuser may stop the job, so only the command's own checks stand between
        (f"ALTER DATABASE {OWNED} SET TABLESPACE {NO_SUCH_SPACE}", SUPERUSER, "42704"),
        (f"ALTER DATABASE {OWNED} RENAME TO template1", SUPERUSER, "42P04"),
    ],
    ids=[
        "rename-without-createdb",
        "set-tablespace-missing",
        "superuser-set-tablespace-missing",
        "superuser-rename-to-a-taken-name",
    ],
)
def test_command_bound_to_fail_stops_no_job(
    pool: Pool,
    owned: str,
    command: str,
    by: str,
    sqlstate: str,
    figures: Figures,
    record_property: Callable[[str, object], None],
) -> None:
    """The owner (no CREATEDB), or a superuser, runs a command that core
    refuses on its own checks: it fails with core's error, and the
    superuser's job attached to the database still runs, with the same pid."""
    checks = Checks(record_property)
    job = _superusers_job(pool)
    took, err = _run_as(pool, command, by)
    figures.add("DBC-5", command, took, DB_COMMAND_S)
    with checks.promise("DBC-5", "the job attached runs on"):
        stopped = _still_running(pool, job)
        assert stopped is None, (
            f"a database command bound to fail stopped a job: {command} by {by} "
            f"({'failed with ' + str(err.sqlstate) if err else 'succeeded'}) stopped the superuser's job "
            f"{job}: {stopped}"
        )
    with checks.promise("DBC-5", f"the command fails with core's {sqlstate}"):
        assert err is not None, f"{command} by {by} succeeded; core refuses it with {sqlstate}"
        assert err.sqlstate == sqlstate, (
            f"{command} by {by} failed with {err.sqlstate} {err}, not core's own {sqlstate}"
        )
    checks.done()


@pytest.mark.clause("DBC-6")
@pytest.mark.parametrize("owned", [True], indirect=True, ids=["owner-with-createdb"])
def test_command_stops_only_jobs_its_role_may_stop(
    pool: Pool, owned: str, figures: Figures, record_property: Callable[[str, object], None]
) -> None:
    """The owner (CREATEDB, not a superuser) renames the database while a
    superuser's job is attached: core's role rules (TerminateOtherDBBackends,
    as DROP DATABASE WITH (FORCE) uses them) let no one but a superuser stop
    a superuser's process, so the pool must not stop it either; the command
    then fails as core would (55006, after core's 5 s wait) and the job runs on."""
    if pool.target.major >= CORE_TERMINATES_SINCE:
        pytest.skip(
            f"not applicable: from PostgreSQL {CORE_TERMINATES_SINCE} core itself terminates the "
            "background workers that declare BGWORKER_INTERRUPTIBLE for this command "
            "(CountOtherDBBackends calls TerminateBackgroundWorkersForDatabase): what core does "
            "is not the extension's"
        )
    job = _superusers_job(pool)
    command = f"ALTER DATABASE {OWNED} RENAME TO {OWNED_MOVED}"
    took, err = _run_as(pool, command)
    figures.add("DBC-6", command, took, DB_COMMAND_S)
    record_property("command_outcome", f"{err.sqlstate} {err}".strip() if err else "succeeded")
    checks = Checks(record_property)
    with checks.promise("DBC-6", "the superuser's job runs on"):
        stopped = _still_running(pool, job)
        assert stopped is None, (
            f"the pool stopped a process its role may not stop: {command} by {OWNER} (not a superuser) "
            f"stopped the superuser's job {job} ({stopped}); the command "
            f"{'then failed with ' + str(err.sqlstate) if err else 'then succeeded'}"
        )
    with checks.promise("DBC-6", "the command fails with core's 55006"):
        assert err is not None and err.sqlstate == "55006", (
            f"{command} with a superuser's job attached: "
            f"{f'{err.sqlstate} {err}' if err else 'succeeded'}, "
            "not core's 55006 (being accessed by other users)"
        )
    checks.done()
