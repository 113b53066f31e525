"""JOB: what any pool with an SQL API owes its callers, seen through submit,
stop and list alone, with the OS and pg_stat_activity as witnesses."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pytest

from conformance.adapters import Handle
from conformance.census import Census
from conformance.deadlines import CAPACITY_BACK_S, SLOT_FREE_S
from conformance.figures import Figures, percentile
from conformance.suite.checks import Checks
from conformance.suite.pool_under_test import LONG_MS, Pool

SUBMIT_REFUSED_S = 5.0
LATENCY_ROUNDS = 20
INSUFFICIENT_RESOURCES_CLASS = "53"


def _pid(pool: Pool, h: Handle) -> int:
    """The worker of ``h``: its pid from the submit, else from the list."""
    if h.pid is not None:
        return h.pid
    listed = [j.handle.pid for j in pool.adapter.jobs() if j.handle == h and j.handle.pid]
    assert listed, f"handle {h} carries no pid and the pool does not list one"
    return int(listed[0])


def _wait_worker_gone(pool: Pool, pid: int, what: str) -> float:
    t0 = time.monotonic()
    pool.target.wait_until(
        lambda: not pool.target.pid_alive(pid) and pid not in {j.handle.pid for j in pool.adapter.jobs()},
        SLOT_FREE_S,
        what=what,
    )
    return time.monotonic() - t0


@pytest.mark.clause("JOB-1")
def test_submitted_job_runs_in_a_visible_worker(pool: Pool) -> None:
    h = pool.adapter.submit("sleep", {"ms": LONG_MS})
    pid = _pid(pool, h)
    [proc] = [p for p in pool.os_workers() if p.pid == pid]
    assert proc.ppid == pool.target.postmaster_pid()
    rows = pool.target.sql("SELECT backend_type FROM pg_stat_activity WHERE pid = %s", pid)
    assert len(rows) == 1 and pool.profile.is_pool_backend_type("worker", rows[0][0]), rows
    assert pid in {j.handle.pid for j in pool.adapter.jobs()}
    pool.adapter.terminate(h)
    _wait_worker_gone(pool, pid, "the stopped job's worker")


@pytest.mark.clause("JOB-1")
def test_submit_latency_against_the_direct_launch_floor(pool: Pool, figures: Figures) -> None:
    """Submit to return, p50 and p95 of LATENCY_ROUNDS jobs that each run and
    exit 0; beside the floor (a backend launching a worker itself) where the
    profile gives one, against the startup timeout where it declares one."""
    spec = pool.profile.pool
    assert spec is not None
    timeout_ms = (
        float(pool.target.scalar("SELECT setting FROM pg_settings WHERE name = %s", spec.startup_timeout))
        if spec.startup_timeout
        else None
    )
    took: list[float] = []
    for _ in range(LATENCY_ROUNDS):
        t0 = time.monotonic()
        h = pool.adapter.submit("exit", {"code": 0})
        took.append((time.monotonic() - t0) * 1000)
        assert pool.wait_freed(h).last_exit_code == 0, f"job {h} did not run to its exit"
    floor = (
        [float(pool.target.scalar(spec.direct_launch_ms)) for _ in range(LATENCY_ROUNDS)]
        if spec.direct_launch_ms
        else None
    )
    for name, q in (("p50", 0.5), ("p95", 0.95)):
        figures.add(
            "JOB-1",
            f"submit → returned, {name}",
            percentile(took, q),
            timeout_ms,
            "ms",
            floor=percentile(floor, q) if floor else None,
        )


@pytest.mark.clause("JOB-2")
def test_stop_ends_the_worker(pool: Pool, figures: Figures) -> None:
    h = pool.adapter.submit("sleep", {"ms": LONG_MS})
    pid = _pid(pool, h)
    assert pool.adapter.terminate(h) is True
    took = _wait_worker_gone(pool, pid, f"worker {pid} gone from the OS and the list after stop")
    figures.add("JOB-2", "stop → worker gone", took, SLOT_FREE_S)


@pytest.mark.clause("JOB-3")
def test_finished_job_leaves(pool: Pool, figures: Figures) -> None:
    h = pool.adapter.submit("sleep", {"ms": 200})
    pid = _pid(pool, h)
    figures.add(
        "JOB-3",
        "finished → worker gone",
        _wait_worker_gone(pool, pid, f"worker {pid} of a finished job gone"),
        SLOT_FREE_S,
    )


@pytest.mark.clause("JOB-4")
def test_no_worker_slot_is_a_prompt_53xxx_and_leaves_nothing(
    pool: Pool, figures: Figures, record_property: Callable[[str, object], None]
) -> None:
    checks = Checks(record_property)
    at_rest = len(Census(pool.target, pool.profile).background_workers())
    pool.target.set_conf(max_worker_processes=at_rest + 1)
    if pool.profile.pool is not None and pool.profile.pool.launcher is not None:
        pool.wait_launcher()
    first = pool.adapter.submit("sleep", {"ms": LONG_MS})
    first_pid = _pid(pool, first)
    with checks.promise("JOB-4", "a prompt class-53 refusal that leaves nothing behind"):
        t0 = time.monotonic()
        with pytest.raises(psycopg.Error) as err:
            pool.adapter.submit("sleep", {"ms": LONG_MS})
        took = time.monotonic() - t0
        figures.add("JOB-4", "no worker slot → submit refused", took, SUBMIT_REFUSED_S)
        assert took <= SUBMIT_REFUSED_S, f"the refused submit took {took:.1f}s"
        assert (err.value.sqlstate or "").startswith(INSUFFICIENT_RESOURCES_CLASS), (
            err.value.sqlstate,
            err.value,
        )
        assert {j.handle.pid for j in pool.adapter.jobs()} == {first_pid}
        assert {p.pid for p in pool.os_workers()} == {first_pid}
    pool.stop_every_job()
    _wait_worker_gone(pool, first_pid, "the first job's worker")
    with checks.promise("JOB-4", "a submit succeeds once the first job is stopped"):
        again = pool.submit_within(CAPACITY_BACK_S, "sleep", {"ms": 100})
        _wait_worker_gone(pool, _pid(pool, again), "the job after capacity came back")
    checks.done()


@pytest.mark.clause("JOB-5")
def test_concurrent_submitters_get_distinct_workers_or_53xxx(pool: Pool) -> None:
    # one barrage: twelve sessions queued behind one lock, released at once;
    # each session stays open until its job is stopped (some pools bind jobs to it)
    conns = [pool.target.connect() for _ in range(12)]
    submitted, refusals, other = pool.barrage(conns, "sleep", {"ms": 5_000})
    other += [
        AssertionError(f"refused with {c}, not class 53") for c in refusals if not (c or "").startswith("53")
    ]
    try:
        assert not other, other
        pids = [_pid(pool, h) for _, h in submitted]
        assert len(set(pids)) == len(pids), f"two jobs share a worker: {pids}"
        for conn, h in submitted:
            pool.adapter.terminate(h, conn=conn)
        for pid in pids:
            pool.target.wait_until(
                lambda pid=pid: not pool.target.pid_alive(pid), SLOT_FREE_S, what=f"worker {pid} after stop"
            )
    finally:
        for conn in conns:
            conn.close()
