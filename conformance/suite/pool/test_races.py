"""RACE: startup races and databases that cannot or no longer take workers."""

from __future__ import annotations

import re
import threading

import psycopg
import pytest

from conformance.suite.harness import Pool

LONG_MS = 60_000
#: more lines than this about one database in a few seconds is a retry storm
STORM_LINES = 3


@pytest.mark.clause("RACE-1")
def test_job_exiting_at_once_is_a_success(pool: Pool) -> None:
    for _ in range(5):
        h = pool.adapter.submit("exit_at_once")
        assert h.generation is not None
        slot = pool.wait_freed(h)
        assert slot.last_exit_code == 0 or slot.generation != h.generation
    assert all(s.state == "free" for s in pool.adapter.slots())


@pytest.mark.clause("RACE-2")
def test_database_not_accepting_connections(pool: Pool) -> None:
    offset = pool.target.log_offset()
    before = pool.adapter.slots()
    with pytest.raises(psycopg.Error) as err:
        pool.adapter.submit("sleep", {"ms": 100}, dbname="template0")
    assert err.value.sqlstate is not None and not err.value.sqlstate.startswith(("XX", "58"))
    assert "template0" in str(err.value)
    assert [(s.slot, s.state) for s in pool.adapter.slots()] == [(s.slot, s.state) for s in before]
    _no_storm(pool, offset, "template0")


@pytest.mark.clause("RACE-3")
def test_dropped_database(pool: Pool) -> None:
    pool.target.sql("DROP DATABASE IF EXISTS bgwc_gone")
    pool.target.sql("CREATE DATABASE bgwc_gone")
    pool.target.sql("DROP DATABASE bgwc_gone")
    offset = pool.target.log_offset()
    with pytest.raises(psycopg.Error) as err:
        pool.adapter.submit("sleep", {"ms": 100}, dbname="bgwc_gone")
    assert err.value.sqlstate == "3D000", err.value
    assert all(s.state == "free" for s in pool.adapter.slots())
    _no_storm(pool, offset, "bgwc_gone")


@pytest.mark.clause("RACE-4")
def test_drop_database_force_with_attached_workers(pool: Pool) -> None:
    pool.target.sql("DROP DATABASE IF EXISTS bgwc_force")
    pool.target.sql("CREATE DATABASE bgwc_force")
    handles = [pool.adapter.submit("sleep", {"ms": LONG_MS}, dbname="bgwc_force") for _ in range(2)]
    for h in handles:
        pool.target.wait_until(
            lambda h=h: pool.target.scalar("SELECT datname FROM pg_stat_activity WHERE pid = %s", h.pid),
            5,
            what="worker connected to bgwc_force",
        )
    offset = pool.target.log_offset()
    done = threading.Event()
    failure: list[BaseException] = []

    def drop() -> None:
        try:
            with pool.target.connect() as conn:
                conn.execute("DROP DATABASE bgwc_force WITH (FORCE)")
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=drop, daemon=True).start()
    pool.target.wait_until(done.is_set, 10, what="DROP DATABASE ... WITH (FORCE) to finish")
    assert not failure, failure
    for h in handles:
        pool.wait_freed(h)
    assert pool.target.scalar("SELECT count(*) FROM pg_database WHERE datname = 'bgwc_force'") == 0
    _no_storm(pool, offset, "bgwc_force")


def _no_storm(pool: Pool, offset: int, dbname: str) -> None:
    """A bounded number of log lines about ``dbname``: nothing retries in a loop."""
    pool.wait_launcher()
    lines = [
        line for line in pool.target.log_since(offset).splitlines() if re.search(re.escape(dbname), line)
    ]
    assert len(lines) <= STORM_LINES * 2, "\n".join(lines[-20:])
