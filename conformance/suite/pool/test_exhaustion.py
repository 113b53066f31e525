"""EXH: a full pool, too few worker processes, parallel query, many submitters, no fork."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import psycopg
import pytest

from conformance.adapters import Handle, NotApplicable
from conformance.adapters.base import Slot
from conformance.census import Census
from conformance.deadlines import CAPACITY_BACK_S, EXH6_WITHIN_S, FORK_REFUSED_S, SLOT_FREE_S
from conformance.figures import Figures
from conformance.suite.checks import Checks
from conformance.suite.pool_under_test import LONG_MS, Outcomes, Pool
from conformance.waiting import wait_until

INSUFFICIENT_RESOURCES = "53000"


def _fill(pool: Pool) -> list[Handle]:
    return [pool.adapter.submit("sleep", {"ms": LONG_MS}) for _ in range(pool.configured_capacity())]


@pytest.mark.clause("EXH-1")
def test_full_pool_rejects_with_53000_and_changes_nothing(pool: Pool) -> None:
    handles = _fill(pool)
    before = pool.adapter.slots()
    with pytest.raises(psycopg.Error) as err:
        pool.adapter.submit("sleep", {"ms": LONG_MS})
    assert err.value.sqlstate == INSUFFICIENT_RESOURCES, err.value
    assert pool.adapter.slots() == before
    # while it is full: its lists, the OS and pg_stat_activity agree
    assert pool.adapter.check() == [] and pool.agreement() == []
    active = {r[0] for r in pool.target.sql("SELECT pid FROM pg_stat_activity")}
    assert {h.os_pid for h in handles} <= active, f"{handles} not all in pg_stat_activity"
    pool.stop_all(handles)


@pytest.mark.clause("EXH-2", "EXH-4")
def test_too_few_worker_processes_refuses_and_returns_the_slot(
    pool: Pool, record_property: Callable[[str, object], None]
) -> None:
    checks = Checks(record_property)
    # the launcher and the logical replication launcher take two; leave one
    pool.target.set_conf(max_worker_processes=3)
    pool.wait_launcher()
    pool.adapter.submit("sleep", {"ms": LONG_MS})
    free_before = [s.slot for s in pool.adapter.slots() if s.state == "free"]
    with checks.promise("EXH-2", "refused with 53000, the slot returned"):
        with pytest.raises(psycopg.Error) as err:
            pool.adapter.submit("sleep", {"ms": LONG_MS})
        assert err.value.sqlstate == INSUFFICIENT_RESOURCES, err.value
        assert "max_worker_processes" in (err.value.diag.message_hint or "") + str(err.value)
        pool.target.wait_until(
            lambda: [s.slot for s in pool.adapter.slots() if s.state == "free"] == free_before,
            CAPACITY_BACK_S,
            what="the refused slot back on the free list",
        )
        # while the refusal's state lasts (one worker running, one slot refused): all agree
        assert pool.adapter.check() == [] and pool.agreement() == []
    pool.stop_every_job()
    with checks.promise("EXH-4", "capacity back once the worker ended"):
        pool.wait_freed(pool.submit_within(CAPACITY_BACK_S, "exit", {"code": 0}))
    checks.done()


@pytest.mark.clause("EXH-3", "EXH-4")
def test_parallel_query_workers_starve_the_pool_until_they_end(
    pool: Pool, record_property: Callable[[str, object], None]
) -> None:
    checks = Checks(record_property)
    pool.target.set_conf(max_worker_processes=4, max_parallel_workers=2)
    pool.wait_launcher()
    with pool.target.slots_held(2, "EXH-3"):
        with checks.promise("EXH-3", "refused with 53000 while parallel workers take every slot"):
            with pytest.raises(psycopg.Error) as err:
                pool.adapter.submit("sleep", {"ms": LONG_MS})
            assert err.value.sqlstate == INSUFFICIENT_RESOURCES, err.value
            assert all(s.state == "free" for s in pool.adapter.slots())
    pool.stop_every_job()
    with checks.promise("EXH-4", "capacity back once the parallel workers ended"):
        # slots_held waited for the parallel workers to be gone
        pool.wait_freed(pool.submit_within(CAPACITY_BACK_S, "exit", {"code": 0}))
    checks.done()


#: EXH-5's timed pairs (CONTRACT.md states the detection rate this gives for a 10 µs window)
EXH5_PAIRS = 55


def _judge(pool: Pool, capacity: int, outcome: Outcomes, sessions: int, where: str) -> None:
    """At most capacity granted, no slot or pid twice, only 53000 refused, and
    the pool's busy slots exactly the granted handles; then stop them."""
    granted, rejections, other = outcome
    results = [h for _, h in granted]
    assert not other, (where, other)
    assert len(results) + len(rejections) == sessions, where
    assert len(results) <= capacity, f"{where}: {len(results)} of {capacity} slots granted"
    assert set(rejections) <= {INSUFFICIENT_RESOURCES}, (where, Counter(rejections))
    assert len({h.slot for h in results}) == len(results), f"{where}: two submitters share a slot"
    assert len({h.pid for h in results}) == len(results), where
    busy = [s for s in pool.adapter.slots() if s.state != "free"]
    assert sorted((s.slot, s.generation) for s in busy) == sorted((h.slot, h.generation) for h in results), (
        where
    )
    pool.stop_all(results)


@pytest.mark.clause("EXH-5")
def test_concurrent_submitters_never_oversubscribe(
    pool: Pool, record_property: Callable[[str, object], None]
) -> None:
    capacity = pool.configured_capacity()
    # a barrage: three times capacity, queued behind one lock and released at once
    barrage = [pool.target.connect() for _ in range(capacity * 3)]
    try:
        _judge(pool, capacity, pool.barrage(barrage, "sleep", {"ms": LONG_MS}), len(barrage), "the barrage")
    finally:
        for c in barrage:
            c.close()
    # timed pairs: two sessions spinning on the server's clock to one instant,
    # then submitting: the way to land in a claim window microseconds wide
    pair = [pool.target.connect() for _ in range(2)]
    try:
        for n in range(EXH5_PAIRS):
            _judge(pool, capacity, pool.timed(pair, "sleep", {"ms": LONG_MS}), 2, f"pair {n + 1}")
    finally:
        for c in pair:
            c.close()
    record_property("attempts", {"barrage": 1, "pairs": EXH5_PAIRS})


#: EXH-6: how many times a slot shown free is used at once (as many as EXH6_WITHIN_S allows)
EXH6_SUBMITS = 100
#: EXH-6 polls the pool's status this often: a slot is used as soon as it is shown free
EXH6_POLL_S = 0.001


def _shown_free(pool: Pool, h: Handle) -> bool:
    """The status shows the slot of ``h`` no longer holding its job."""
    slot = pool.slot(h.slot)
    return slot.state == "free" or slot.generation != h.generation


@pytest.mark.clause("EXH-6")
def test_a_slot_shown_free_can_be_used_at_once(
    pool: Pool, record_property: Callable[[str, object], None]
) -> None:
    """With exactly one background-worker slot for each pool slot, and every
    pool slot but one taken by a long job, a short job is submitted on the
    last one, the status polled until it shows that slot free, and the next
    submitted at once, EXH6_SUBMITS times (or as many as EXH6_WITHIN_S
    allows): every submit succeeds."""
    capacity = pool.configured_capacity()
    pool.adapter.slots()  # NotApplicable for a pool without slots, before any restart
    census = Census(pool.target, pool.profile)
    at_rest = len(census.background_workers())
    pool.target.set_conf(max_worker_processes=capacity + at_rest)
    pool.wait_launcher()
    again = len(census.background_workers())
    assert again == at_rest, f"{again} background workers at rest after the restart, {at_rest} before"
    record_property("max_worker_processes", capacity + at_rest)
    fillers = [pool.adapter.submit("sleep", {"ms": LONG_MS}) for _ in range(capacity - 1)]
    failed: Counter[str] = Counter()
    made = 0
    end = time.monotonic() + EXH6_WITHIN_S
    try:
        while made < EXH6_SUBMITS and time.monotonic() < end:
            made += 1
            try:
                h = pool.adapter.submit("exit_at_once")
            except psycopg.Error as exc:
                failed[f"{exc.sqlstate} {str(exc).splitlines()[0]} (hint: {exc.diag.message_hint})"] += 1
                pool.target.wait_until(
                    lambda: len(pool.adapter.busy()) == capacity - 1,
                    CAPACITY_BACK_S,
                    what="the refused slot shown free",
                )
                continue
            wait_until(
                lambda h=h: _shown_free(pool, h),
                SLOT_FREE_S,
                what=f"slot {h.slot} gen {h.generation} shown free",
                context=pool.target.log_tail,
                interval=EXH6_POLL_S,
            )
        record_property("submits", made)
        record_property("refused", dict(failed))
        assert not failed, (
            f"a slot shown free could not be used at once: {sum(failed.values())} of {made} "
            f"submits made as soon as the status showed the slot free failed: "
            + "; ".join(f"{n} x {why}" for why, n in failed.most_common())
        )
    finally:
        pool.stop_all(fillers)


@pytest.mark.clause("EXH-7")
def test_a_submit_while_no_fork_succeeds_is_refused_at_once(
    pool: Pool, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    """FORK-1's fault, for a pool: while no fork succeeds, a submit is
    refused at once with a 53xxx SQLSTATE and leaves no entry "starting";
    once forks succeed again, a submit succeeds."""
    why_not = pool.target.forks_unfailable()
    if why_not:
        pytest.skip(f"not applicable: {why_not}")
    try:
        busy_before: list[Slot] | None = pool.adapter.busy()
    except NotApplicable:  # an adapter that lists jobs, not slots: the refusal is still judged
        busy_before = None
    pool.target.sql("SELECT 1")  # the kit's session, live before the limit: no new one can be
    with pool.target.forks_failing("a submit"):
        t0 = time.monotonic()
        try:
            accepted = pool.adapter.submit("sleep", {"ms": LONG_MS})
        except psycopg.Error as exc:
            refused: psycopg.Error | None = exc
        else:
            refused = None
        took = time.monotonic() - t0
        figures.add("EXH-7", "submit without forks → refused", took, FORK_REFUSED_S)
        assert refused is not None, (
            f"while no fork succeeds a submit was accepted after {took:.2f}s ({accepted}): "
            "a job that cannot start, reported as started"
        )
        record_property("refused", f"{refused.sqlstate} {refused}".strip())
        assert (refused.sqlstate or "").startswith("53") and took <= FORK_REFUSED_S, (
            f"while no fork succeeds a submit must be refused within {FORK_REFUSED_S:g}s with 53xxx: "
            f"{refused.sqlstate} after {took:.2f}s: {refused}"
        )
        # while forks still fail: nothing of the refused submit is left behind
        if busy_before is not None:
            pool.target.wait_until(
                lambda: pool.adapter.busy() == busy_before,
                CAPACITY_BACK_S,
                what=f"no slot left busy by the refused submit (before: {busy_before})",
            )
    lifted = time.monotonic()
    handle = pool.submit_within(CAPACITY_BACK_S, "exit", {"code": 0})
    if busy_before is not None:
        pool.wait_freed(handle)
    figures.add(
        "EXH-7", "forks back → a submit ran and its slot free", time.monotonic() - lifted, CAPACITY_BACK_S
    )
