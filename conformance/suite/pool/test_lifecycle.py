"""LIFE: a launcher, workers whose pids agree everywhere, slots freed and reused."""

from __future__ import annotations

import pytest

from conformance.deadlines import LAUNCHER_START_S
from conformance.suite.pool_under_test import LONG_MS, Pool


@pytest.mark.clause("LIFE-1")
def test_one_launcher_runs_visible_in_sql_and_os(pool: Pool) -> None:
    pid = pool.wait_launcher(LAUNCHER_START_S)
    types = pool.target.sql("SELECT backend_type FROM pg_stat_activity WHERE pid = %s", pid)
    assert len(types) == 1 and pool.profile.is_pool_backend_type("launcher", types[0][0]), types
    [proc] = pool.os_launchers()
    assert proc.pid == pid and proc.ppid == pool.target.postmaster_pid()


@pytest.mark.clause("LIFE-2")
def test_worker_pid_agrees_in_pool_activity_and_os(pool: Pool) -> None:
    h = pool.adapter.submit("sleep", {"ms": LONG_MS})
    assert h.pid is not None
    slot = pool.slot(h.slot)
    assert (slot.state, slot.pid, slot.generation) == ("running", h.pid, h.generation)
    rows = pool.target.sql("SELECT backend_type FROM pg_stat_activity WHERE pid = %s", h.pid)
    assert len(rows) == 1 and pool.profile.is_pool_backend_type("worker", rows[0][0]), rows
    [proc] = [p for p in pool.os_workers() if p.pid == h.pid]
    assert proc.ppid == pool.target.postmaster_pid()
    assert pool.adapter.terminate(h)
    pool.wait_freed(h)


@pytest.mark.clause("LIFE-3")
def test_natural_exit_frees_slot_and_records_code(pool: Pool) -> None:
    h = pool.adapter.submit("sleep", {"ms": 200})
    slot = pool.wait_freed(h)
    assert slot.state == "free" and slot.pid is None
    assert slot.last_exit_code == 0
    pool.wait_gone({h.os_pid}, 2, "the finished worker's process")


@pytest.mark.clause("LIFE-3")
def test_exit_code_is_recorded(pool: Pool) -> None:
    h = pool.adapter.submit("exit", {"code": 1})
    assert pool.wait_freed(h).last_exit_code == 1


@pytest.mark.clause("LIFE-4")
def test_generation_rises_on_reuse(pool: Pool) -> None:
    seen: dict[int, int] = {}
    for _ in range(pool.adapter.capacity() * 2):
        h = pool.adapter.submit("exit", {"code": 0})
        assert h.generation > seen.get(h.slot, -1), (h, seen)
        seen[h.slot] = h.generation
        pool.wait_freed(h)
    assert all(s.generation >= seen.get(s.slot, 0) for s in pool.adapter.slots())


@pytest.mark.clause("LIFE-5")
def test_workers_on_several_databases(pool: Pool) -> None:
    dbs = ["bgwc_life_a", "bgwc_life_b"]
    for db in dbs:
        pool.target.sql(f"DROP DATABASE IF EXISTS {db}")
        pool.target.sql(f"CREATE DATABASE {db}")
    try:
        handles = {db: pool.adapter.submit("sleep", {"ms": LONG_MS}, dbname=db) for db in [*dbs, "postgres"]}
        for db, h in handles.items():
            assert pool.slot(h.slot).database == db
            pool.target.wait_until(
                lambda h=h: pool.target.scalar("SELECT datname FROM pg_stat_activity WHERE pid = %s", h.pid),
                5,
                what=f"worker {h.pid} connected",
            )
            assert pool.target.scalar("SELECT datname FROM pg_stat_activity WHERE pid = %s", h.pid) == db
        pool.stop_all(list(handles.values()))
    finally:
        for db in dbs:
            pool.target.sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
