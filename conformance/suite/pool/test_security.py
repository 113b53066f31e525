"""SEC: a job never runs with more rights than its submitter.

An unprivileged role is granted the pool (``grant_submit``) and tries what a
careless grant would let it do: gain privileges, reach a database it may
not connect to, crash or hang the cluster, stop others' jobs, or have its
code run by a superuser through the search_path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from conformance.adapters import Handle
from conformance.deadlines import SHUTDOWN_S
from conformance.errors import TargetError
from conformance.figures import Figures
from conformance.suite.checks import Checks
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


#: SEC-8: an ignore_sigterm just beyond the bound every pool must keep (30 s)
IGNORE_BEYOND_MS = 30_001

#: SEC-6: a superuser's SECURITY DEFINER wrapper that submits, the function its
#: job calls unqualified, and the table each look-alike of it writes its name into
WRAPPER = "public.bgwc_sec_wrap"
REPORT = "bgwc_report"
CALLS = "public.bgwc_sec_calls"
#: SEC-7: the point whose waiter has its signals blocked, in the pool that has one
BLOCKING_POINT = "worker-before-exit-hook"


def _drop_role(pool: Pool) -> None:
    t = pool.target
    if t.scalar("SELECT count(*) FROM pg_roles WHERE rolname = %s", ROLE, idempotent=True):
        pool.stop_every_job()
        t.sql("DROP SCHEMA IF EXISTS bgwc_sec, bgwc_evil CASCADE", idempotent=True)
        pool.drop_roles(ROLE)
    # SEC-6's superuser-owned objects, whether the role was there or not
    t.sql(f"DROP FUNCTION IF EXISTS {WRAPPER}(), public.{REPORT}()", idempotent=True)
    t.sql(f"DROP TABLE IF EXISTS {CALLS}", idempotent=True)


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


def _unmake_superuser(pool: Pool) -> None:
    """The intruder plain again, after a promise it broke: the next promise is judged on its own."""
    pool.target.sql(f"ALTER ROLE {ROLE} NOSUPERUSER", idempotent=True)


def _run_sql_job(pool: Pool, conn: psycopg.Connection, query: str) -> None:
    """Submit an sql job from ``conn`` and wait until it has ended."""
    try:
        h = pool.adapter.submit("sql", {"query": query}, conn=conn)
    except psycopg.Error:
        return  # refused outright: nothing ran
    pool.wait_freed(h)


@pytest.mark.clause("SEC-1")
def test_job_runs_as_its_submitter(
    pool: Pool, intruder: psycopg.Connection, record_property: Callable[[str, object], None]
) -> None:
    """Three promises, each judged on its own (a role made superuser by one is
    made plain again before the next)."""
    checks = Checks(record_property)
    with checks.promise("SEC-1", "the job's current_user and session_user are its submitter"):
        _run_sql_job(
            pool,
            intruder,
            "CREATE TABLE bgwc_sec.probe AS SELECT current_user::text AS cu, session_user::text AS su",
        )
        assert pool.target.sql("SELECT cu, su FROM bgwc_sec.probe") == [(ROLE, ROLE)]
    with checks.promise("SEC-1", "the job cannot change role"):
        gained = []
        for query in ESCAPES:
            _run_sql_job(pool, intruder, query)
            if _superuser(pool):
                gained.append(query)
                _unmake_superuser(pool)
        assert not gained, f"an intruder's job gained SUPERUSER with: {gained}"
    with checks.promise("SEC-1", "a superuser that SET ROLE to the role submits as it"):
        with pool.target.connect() as conn:
            conn.execute(f"SET ROLE {ROLE}")
            _run_sql_job(pool, conn, f"ALTER ROLE {ROLE} SUPERUSER")
        gained_by_set_role = _superuser(pool)
        _unmake_superuser(pool)
        assert not gained_by_set_role, "a superuser's job after SET ROLE to the intruder ran as the superuser"
    checks.done()


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


@pytest.mark.clause("SEC-8")
def test_superusers_ignore_sigterm_is_bounded(pool: Pool) -> None:
    """Even a superuser's hang is bounded: a fast shutdown must not wait for days."""
    try:
        h = pool.adapter.submit("ignore_sigterm", {"ms": IGNORE_BEYOND_MS})
    except psycopg.Error as exc:
        assert exc.sqlstate == "22023", exc
        return
    # its worker would hold a fast shutdown as long: nothing of it may outlive the test
    pool.target.restart("immediate")
    pytest.fail(
        f"a superuser's ignore_sigterm of {IGNORE_BEYOND_MS} ms was accepted ({h}), not refused with 22023: "
        f"its worker would hold a fast shutdown for {IGNORE_BEYOND_MS / 1000:g} s "
        "(the server was restarted, immediate)"
    )


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
def test_only_the_jobs_role_may_stop_it(
    pool: Pool, intruder: psycopg.Connection, record_property: Callable[[str, object], None]
) -> None:
    checks = Checks(record_property)
    theirs = pool.adapter.submit("sleep", {"ms": LONG_MS})
    assert theirs.slot is not None
    with checks.promise("SEC-5", "another role's job: 42501, and it keeps running"):
        with pytest.raises(psycopg.Error) as err:
            pool.adapter.terminate(theirs, conn=intruder)
        assert err.value.sqlstate == "42501", err.value
        slot = pool.slot(theirs.slot)
        assert slot.state == "running" and slot.pid == theirs.pid, (
            f"the superuser's job after the stop: {slot}"
        )
    with checks.promise("SEC-5", "its own job: the role stops it"):
        mine = pool.adapter.submit("sleep", {"ms": LONG_MS}, conn=intruder)
        assert pool.adapter.terminate(mine, conn=intruder) is True, (
            "the role's stop of its own job was not taken"
        )
        pool.wait_freed(mine)
    pool.stop_all([theirs])
    checks.done()


@pytest.mark.clause("SEC-6")
def test_job_settings_come_from_the_role_it_runs_as(
    pool: Pool, intruder: psycopg.Connection, record_property: Callable[[str, object], None]
) -> None:
    """A superuser's SECURITY DEFINER wrapper (with its own safe search_path)
    submits an sql job that calls a function unqualified; the intruder may
    call the wrapper and has set its own role's search_path to a schema of
    its own, where a look-alike of that function makes it superuser.  The
    job runs as the wrapper's owner, so with that role's settings: never
    with those of the intruder's session."""
    t = pool.target
    submit = pool.adapter.submit_sql(f"SELECT {REPORT}()")  # NotApplicable: no SQL text of a submit
    t.sql(f"CREATE TABLE {CALLS} (fn text NOT NULL)")
    t.sql(f"GRANT INSERT ON {CALLS} TO PUBLIC")
    t.sql(
        f"CREATE FUNCTION public.{REPORT}() RETURNS void LANGUAGE sql"
        f" AS $$ INSERT INTO {CALLS} VALUES ('public.{REPORT}') $$"
    )
    t.sql(
        f"CREATE FUNCTION {WRAPPER}() RETURNS jsonb LANGUAGE sql SECURITY DEFINER"
        f" SET search_path = pg_catalog, public AS $$ SELECT to_jsonb(s) FROM ({submit}) AS s $$"
    )
    t.sql(f"REVOKE ALL ON FUNCTION {WRAPPER}() FROM PUBLIC")
    t.sql(f"GRANT EXECUTE ON FUNCTION {WRAPPER}() TO {ROLE}")
    t.sql(f"CREATE SCHEMA bgwc_evil AUTHORIZATION {ROLE}")
    intruder.execute(
        f"CREATE FUNCTION bgwc_evil.{REPORT}() RETURNS void LANGUAGE plpgsql AS $$ BEGIN"
        f" EXECUTE 'ALTER ROLE {ROLE} SUPERUSER'; INSERT INTO {CALLS} VALUES ('bgwc_evil.{REPORT}'); END $$"
    )
    intruder.execute(f"ALTER ROLE {ROLE} SET search_path = bgwc_evil, public")
    with t.connect(user=ROLE) as session:  # a role's settings apply at the next login
        path = session.execute("SHOW search_path").fetchone()
        assert path is not None and path[0] == "bgwc_evil, public", f"the intruder's search_path is {path}"
        try:
            row = session.execute(f"SELECT {WRAPPER}()").fetchone()
        except psycopg.Error as exc:
            row = None
            record_property("wrapper_submit", f"refused: {exc.sqlstate} {exc}")
    if row is not None:
        h = Handle.from_row(row[0])
        record_property("wrapper_submit", str(h))
        pool.wait_freed(h)
    calls = [fn for (fn,) in t.sql(f"SELECT fn FROM {CALLS}")]
    record_property("called", calls)
    assert not _superuser(pool), (
        "a job submitted through a superuser's SECURITY DEFINER wrapper ran with the intruder's "
        "session-user settings (search_path = bgwc_evil, public): the intruder became SUPERUSER "
        f"(the job's unqualified {REPORT}() ran {', '.join(calls) or 'nothing recorded'})"
    )


@pytest.mark.clause("SEC-7")
def test_no_pause_point_holds_a_production_server(
    pool: Pool, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    """Restarted without the settings that exist only for tests (the
    adapter's ``test_only_settings``), the pool refuses to arm a pause
    point; one that accepts must not let the point, with a worker waiting
    there with its signals blocked, hold a fast shutdown."""
    t = pool.target
    pool.adapter.paused_at(BLOCKING_POINT)  # NotApplicable for a pool without pause points
    settings = pool.adapter.test_only_settings()
    record_property("production_without", list(settings))
    try:
        postmaster = t.postmaster_pid()
        t.set_conf(**dict.fromkeys(settings))
        if t.postmaster_pid() == postmaster:  # set_conf only reloaded: a setting it does not know
            t.restart()
        pool.wait_launcher()
        try:
            pool.adapter.pause_arm(BLOCKING_POINT)
        except psycopg.Error as exc:
            record_property("pause_arm", f"refused: {exc.sqlstate} {exc}")
            # and nothing waits at the point: a job's worker passes it
            h = pool.adapter.submit("sleep", {"ms": 10})
            pool.wait_freed(h)
            assert pool.adapter.paused_at(BLOCKING_POINT) == []
            return
        record_property("pause_arm", "accepted")
        sub = pool.submit_in_background("sleep", {"ms": 10})
        worker = pool.wait_paused(BLOCKING_POINT)
        t0 = time.monotonic()
        try:
            t.stop("fast", timeout=SHUTDOWN_S)
            held = False
        except TargetError:
            held = True
        name = "fast shutdown, a worker waiting at a pause point"
        figures.add("SEC-7", name, time.monotonic() - t0, SHUTDOWN_S)
        if held:
            t.bring_down(f"a fast shutdown held by worker {worker} at {BLOCKING_POINT}", "fast", tried=True)
            pytest.fail(
                f"a pause point armed on a production configuration held a fast shutdown for more than "
                f"{SHUTDOWN_S:g} s: worker {worker} waited at {BLOCKING_POINT} with its signals blocked "
                f"(server started without {', '.join(settings) or 'any test setting'})"
            )
        sub.wait(pool, SHUTDOWN_S)
    finally:
        t.ensure_baseline()  # the suite's own settings back, its pause points with them
