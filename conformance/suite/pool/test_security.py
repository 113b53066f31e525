"""SEC: a job never runs with more rights than its submitter.

An unprivileged role is granted the pool (``grant_submit``) and tries what a
careless grant would let it do: gain privileges, reach a database it may
not connect to, crash or hang the cluster, stop others' jobs, or have its
code run by a superuser through the search_path.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from conformance.suite.pool_under_test import LONG_MS, Pool

ROLE = "bgwc_intruder"
PRIVATE_DB = "bgwc_private"
#: the statements an intruder's sql job tries, to gain the superuser bit
ESCAPES = [
    f"ALTER ROLE {ROLE} SUPERUSER",
    f"RESET ROLE; ALTER ROLE {ROLE} SUPERUSER",
    f"SET ROLE postgres; ALTER ROLE {ROLE} SUPERUSER",
    f"SET SESSION AUTHORIZATION postgres; ALTER ROLE {ROLE} SUPERUSER",
]


def _drop_role(pool: Pool) -> None:
    t = pool.target
    if t.scalar("SELECT count(*) FROM pg_roles WHERE rolname = %s", ROLE, idempotent=True):
        for job in pool.adapter.jobs():
            pool.adapter.terminate(job.handle)
        pool.wait_all_free()
        t.sql("DROP SCHEMA IF EXISTS bgwc_sec, bgwc_evil CASCADE", idempotent=True)
        t.sql(f"DROP OWNED BY {ROLE}", idempotent=True)
        t.sql(f"DROP ROLE {ROLE}", idempotent=True)


@pytest.fixture
def intruder(pool: Pool) -> Iterator[psycopg.Connection]:
    """A session of an unprivileged role granted the pool."""
    _drop_role(pool)
    pool.target.sql(f"CREATE ROLE {ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
    try:
        pool.adapter.grant_submit(ROLE)  # NotApplicable for a pool that cannot be granted
        pool.target.sql(f"CREATE SCHEMA bgwc_sec AUTHORIZATION {ROLE}")
        with pool.target.connect(user=ROLE) as conn:
            yield conn
    finally:
        _drop_role(pool)


def _superuser(pool: Pool) -> bool:
    return bool(pool.target.scalar("SELECT rolsuper FROM pg_roles WHERE rolname = %s", ROLE, idempotent=True))


def _run_sql_job(pool: Pool, conn: psycopg.Connection, query: str) -> None:
    """Submit an sql job from ``conn`` and wait until it has ended."""
    try:
        h = pool.adapter.submit("sql", {"query": query}, conn=conn)
    except psycopg.Error:
        return  # refused outright: nothing ran
    pool.wait_freed(h)


@pytest.mark.clause("SEC-1")
def test_job_runs_as_its_submitter(pool: Pool, intruder: psycopg.Connection) -> None:
    _run_sql_job(
        pool,
        intruder,
        "CREATE TABLE bgwc_sec.probe AS SELECT current_user::text AS cu, session_user::text AS su",
    )
    assert pool.target.sql("SELECT cu, su FROM bgwc_sec.probe") == [(ROLE, ROLE)]
    for query in ESCAPES:
        _run_sql_job(pool, intruder, query)
        assert not _superuser(pool), f"an intruder's job gained SUPERUSER with: {query}"
    # a superuser that SET ROLE to the intruder submits as the intruder
    with pool.target.connect() as conn:
        conn.execute(f"SET ROLE {ROLE}")
        _run_sql_job(pool, conn, f"ALTER ROLE {ROLE} SUPERUSER")
    assert not _superuser(pool)


@pytest.mark.clause("SEC-2")
def test_database_without_connect_privilege(pool: Pool, intruder: psycopg.Connection) -> None:
    pool.target.sql(f"DROP DATABASE IF EXISTS {PRIVATE_DB}")
    pool.target.sql(f"CREATE DATABASE {PRIVATE_DB}")
    pool.target.sql(f"REVOKE CONNECT ON DATABASE {PRIVATE_DB} FROM PUBLIC")
    try:
        with pytest.raises(psycopg.Error) as err:
            pool.adapter.submit("sql", {"query": "SELECT 1"}, dbname=PRIVATE_DB, conn=intruder)
        assert err.value.sqlstate == "42501", err.value
        assert all(s.state == "free" for s in pool.adapter.slots())
        assert pool.os_workers() == [], "a worker runs for a refused submit"
    finally:
        pool.target.sql(f"DROP DATABASE {PRIVATE_DB} WITH (FORCE)")


@pytest.mark.clause("SEC-3")
@pytest.mark.parametrize(
    ("kind", "args"),
    [("crash", {}), ("exit", {"code": 2}), ("exit", {"code": 255}), ("ignore_sigterm", {"ms": 1000})],
    ids=["crash", "exit-2", "exit-255", "ignore_sigterm"],
)
def test_no_crash_or_hang_for_the_unprivileged(
    pool: Pool, intruder: psycopg.Connection, kind: str, args: dict[str, object]
) -> None:
    postmaster = pool.target.postmaster_pid()
    with pytest.raises(psycopg.Error) as err:
        pool.adapter.submit(kind, args, conn=intruder)
    assert err.value.sqlstate == "42501", err.value
    assert all(s.state == "free" for s in pool.adapter.slots())
    assert pool.target.postmaster_pid() == postmaster
    # and even a superuser's hang is bounded: a fast shutdown must not wait for days
    with pytest.raises(psycopg.Error) as err:
        pool.adapter.submit("ignore_sigterm", {"ms": 10**9})
    assert err.value.sqlstate == "22023", err.value


@pytest.mark.clause("SEC-4")
def test_search_path_cannot_hijack_a_superusers_submit(pool: Pool, intruder: psycopg.Connection) -> None:
    """The intruder plants look-alikes of what submit calls in a schema a
    superuser puts before pg_catalog; a superuser's submit must not run them."""
    pool.target.sql(f"CREATE SCHEMA bgwc_evil AUTHORIZATION {ROLE}")
    grab = f"EXECUTE 'ALTER ROLE {ROLE} SUPERUSER'"
    intruder.execute(
        "CREATE FUNCTION bgwc_evil.jsonb_typeof(jsonb) RETURNS text LANGUAGE plpgsql"
        f" AS $$ BEGIN {grab}; RETURN pg_catalog.jsonb_typeof($1); END $$"
    )
    intruder.execute(
        "CREATE FUNCTION bgwc_evil.arrow(jsonb, text) RETURNS text LANGUAGE plpgsql"
        f" AS $$ BEGIN {grab}; RETURN pg_catalog.jsonb_object_field_text($1, $2); END $$"
    )
    intruder.execute(
        "CREATE OPERATOR bgwc_evil.->> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = bgwc_evil.arrow)"
    )
    intruder.execute("GRANT USAGE ON SCHEMA bgwc_evil TO PUBLIC")
    with pool.target.connect() as conn:
        conn.execute("SET search_path = bgwc_evil, pg_catalog, public")
        h = pool.adapter.submit("sleep", {"ms": 10}, conn=conn)
    pool.wait_freed(h)
    assert not _superuser(pool), "a superuser's submit ran the intruder's code"


@pytest.mark.clause("SEC-5")
def test_only_the_jobs_role_may_stop_it(pool: Pool, intruder: psycopg.Connection) -> None:
    theirs = pool.adapter.submit("sleep", {"ms": LONG_MS})
    assert theirs.slot is not None
    with pytest.raises(psycopg.Error) as err:
        pool.adapter.terminate(theirs, conn=intruder)
    assert err.value.sqlstate == "42501", err.value
    slot = pool.slot(theirs.slot)
    assert slot.state == "running" and slot.pid == theirs.pid
    mine = pool.adapter.submit("sleep", {"ms": LONG_MS}, conn=intruder)
    assert pool.adapter.terminate(mine, conn=intruder) is True
    pool.wait_freed(mine)
    pool.stop_all([theirs])
