"""DBC: a database command that needs its database to itself, while pool jobs
are attached to that database.  From 19 on, core terminates background
workers that declare BGWORKER_INTERRUPTIBLE; before 19 the pool must stop
its own.  Either way the command completes and no slot leaks.  Each result
records how long the command took and who stopped the workers, so the matrix
shows where 19 differs."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pytest

from conformance.deadlines import DB_COMMAND_S, SLOT_FREE_S
from conformance.figures import Figures
from conformance.suite.pool_under_test import LONG_MS, Pool

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
