"""RACE: startup races and databases that cannot or no longer take workers."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack

import psycopg
import pytest

from conformance.adapters import NotApplicable
from conformance.deadlines import LAUNCHER_START_S, SLOT_FREE_S
from conformance.suite.checks import Checks
from conformance.suite.pool_under_test import LONG_MS, Pool, Submitter, writer

#: bgw_pool.startup_timeout_ms of the submitters of RACE-6 onwards, and the
#: slack a submit has beyond it to return
STARTUP_TIMEOUT_MS = 2_000
SUBMIT_SLACK_S = 2.0
SUBMIT_DEADLINE_S = STARTUP_TIMEOUT_MS / 1000 + SUBMIT_SLACK_S
#: what a submit that did not start may answer: 53000 (never started) or
#: 55000 (startup timeout, slot released)
NOT_STARTED = ("53000", "55000")
#: RACE-8's submitter waits far longer than the launcher takes to come back
RACE8_STARTUP_TIMEOUT_MS = 30_000
#: more lines than this about one database in a few seconds is a retry storm
STORM_LINES = 3

# The black-box form of RACE-6, for pools without pause points (and run on
# every pool): many attempts, timed to hit the window, each judged by the
# clause's promise; bounded in time (CONTRACT.md states the detection rate
# it gives, measured against the mutant adopted_unattached_kept).
#: RACE-6 by timing: attempts made for this long at most (each waits out a launcher restart)
RACE6_TIMED_S = 20.0
RACE6_TIMED_MAX = 12
#: the submitter's startup timeout there: longer than any submit, short to keep attempts quick
RACE6_TIMED_STARTUP_MS = 1_000
#: the delay between seeing the worker and terminating the launcher, then it (us), swept
RACE6_DELAYS_US = (0, 0, 200, 500, 1_000, 0)

# The black-box forms of RACE-7 and RACE-9: the new worker is held in its
# start, before it attaches, by a session that holds the catalog every new
# session reads as it starts (``Target.sessions_held``); the fault is put in
# place, and the catalog let go.
#: RACE-7's held submitters' startup timeout (the deadline form waits it out)
RACE7_HELD_STARTUP_MS = 1_000


@pytest.mark.clause("RACE-1")
def test_job_exiting_at_once_is_a_success(pool: Pool) -> None:
    for _ in range(5):
        h = pool.adapter.submit("exit_at_once")
        assert h.generation is not None
        slot = pool.wait_freed(h)
        assert slot.last_exit_code == 0 or slot.generation != h.generation
    assert all(s.state == "free" for s in pool.adapter.slots())
    # the window made certain, where the pool has pause points: the worker
    # has come and gone before the launcher's startup wait even begins, so
    # that wait can only answer "stopped"
    try:
        pool.adapter.paused_at("launcher-startup-wait")
    except NotApplicable:
        return  # the repeated attempts above are all a pool without pause points gets
    with pool.paused("launcher-startup-wait"):
        sub = pool.submit_in_background("exit_at_once")
        pool.wait_paused("launcher-startup-wait")
        pool.wait_all_free()
    sub.wait(pool, SLOT_FREE_S)
    assert sub.handle is not None, f"a job that ran and exited at once was reported as a failure: {sub.error}"


@pytest.mark.clause("RACE-2")
def test_database_not_accepting_connections(
    pool: Pool, record_property: Callable[[str, object], None]
) -> None:
    checks = Checks(record_property)
    offset = pool.target.log_offset()
    before = pool.adapter.slots()
    with checks.promise("RACE-2", "an error naming the database, no slot consumed"):
        with pytest.raises(psycopg.Error) as err:
            pool.adapter.submit("sleep", {"ms": 100}, dbname="template0")
        assert err.value.sqlstate is not None and not err.value.sqlstate.startswith(("XX", "58")), err.value
        assert "template0" in str(err.value)
        assert [(s.slot, s.state) for s in pool.adapter.slots()] == [(s.slot, s.state) for s in before]
    with checks.promise("RACE-2", "no retry storm in the log"):
        _no_storm(pool, offset, "template0")
    checks.done()


@pytest.mark.clause("RACE-3")
def test_dropped_database(pool: Pool, record_property: Callable[[str, object], None]) -> None:
    checks = Checks(record_property)
    pool.target.sql("DROP DATABASE IF EXISTS bgwc_gone")
    pool.target.sql("CREATE DATABASE bgwc_gone")
    pool.target.sql("DROP DATABASE bgwc_gone")
    offset = pool.target.log_offset()
    with checks.promise("RACE-3", "3D000, every slot free"):
        with pytest.raises(psycopg.Error) as err:
            pool.adapter.submit("sleep", {"ms": 100}, dbname="bgwc_gone")
        assert err.value.sqlstate == "3D000", err.value
        assert all(s.state == "free" for s in pool.adapter.slots())
    with checks.promise("RACE-3", "no retry storm in the log"):
        _no_storm(pool, offset, "bgwc_gone")
    checks.done()


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


# -- the handshake's windows, made deterministic with the pool's pause points --


def _submit(
    pool: Pool,
    dbname: str | None = None,
    timeout_ms: int = STARTUP_TIMEOUT_MS,
    setting: str = "bgw_pool.startup_timeout_ms",
) -> Submitter:
    """A long job submitted in the background, with its own startup timeout."""
    return pool.submit_in_background("sleep", {"ms": LONG_MS}, dbname, **{setting: timeout_ms})


def _failed(sub: Submitter) -> psycopg.Error:
    assert sub.handle is None, f"the submit succeeded: {sub.handle}"
    assert isinstance(sub.error, psycopg.Error), sub.error
    return sub.error


@pytest.mark.clause("RACE-6")
def test_launcher_restart_in_startup_wait_then_worker_dies_before_attach(pool: Pool) -> None:
    """No slot outlives both its worker and its submitter: the new launcher
    has no handle and the worker never published a pid."""
    with pool.paused("launcher-startup-wait", "worker-before-attach"):
        sub = _submit(pool)
        launcher = pool.wait_paused("launcher-startup-wait")
        worker = pool.wait_paused("worker-before-attach")
        pool.target.kill(launcher, signal.SIGTERM)
        pool.target.kill(worker, signal.SIGTERM)
        pool.wait_gone({launcher, worker}, SLOT_FREE_S, what="the launcher and the unattached worker gone")
    # with no worker ever attaching, the submit waits out its startup timeout
    err = _failed(sub.wait(pool, SUBMIT_DEADLINE_S, expected=STARTUP_TIMEOUT_MS / 1000))
    assert err.sqlstate in NOT_STARTED, err
    pool.wait_launcher(not_pid=launcher)
    pool.wait_all_free()
    assert pool.adapter.check() == []
    pool.capacity_witness()


@pytest.mark.clause("RACE-6")
def test_launcher_and_unattached_worker_terminated_by_timing(
    pool: Pool, record_property: Callable[[str, object], None]
) -> None:
    """RACE-6 without pause points: the moment a new worker shows in the OS,
    the launcher is terminated and then the worker, at delays swept over its
    startup (most before it attaches).  Every attempt: the submit's answer
    is the truth (failed with 53000/55000, or the handle of the worker
    terminated), every slot is free within 2 s of the next launcher; at the
    end the capacity witness holds."""
    spec = pool.profile.pool
    if spec is None or spec.launcher is None:
        raise NotApplicable("the pool has no launcher")
    if spec.startup_timeout is None:
        raise NotApplicable("the profile names no startup timeout setting: a submit is not bounded")
    attempts: list[str] = []
    end = time.monotonic() + RACE6_TIMED_S
    try:
        while time.monotonic() < end and len(attempts) < RACE6_TIMED_MAX:
            delay = RACE6_DELAYS_US[len(attempts) % len(RACE6_DELAYS_US)]
            launcher = pool.wait_launcher()
            killed = pool.target.kill_on_sight(launcher, pool.profile.worker_title, delay, 5.0)
            sub = _submit(pool, timeout_ms=RACE6_TIMED_STARTUP_MS, setting=spec.startup_timeout)
            worker = killed()
            sub.wait(pool, RACE6_TIMED_STARTUP_MS / 1000 + SUBMIT_SLACK_S)
            if worker is None:
                raise AssertionError(f"no worker appeared in the OS for a submit ({sub.handle or sub.error})")
            if sub.handle is not None:  # the worker had attached: the window missed
                assert sub.handle.pid == worker, f"the submit returned {sub.handle}; worker {worker} ran"
                attempts.append(f"+{delay}us: attached")
            else:
                assert _failed(sub).sqlstate in NOT_STARTED, sub.error
                attempts.append(f"+{delay}us: not started ({_failed(sub).sqlstate})")
            pool.wait_gone({launcher, worker}, SLOT_FREE_S, what="the launcher and the worker gone")
            pool.wait_launcher(not_pid=launcher)
            try:
                pool.wait_all_free()
            except AssertionError as err:
                stuck = [s for s in pool.adapter.slots() if s.state != "free"]
                raise AssertionError(
                    f"attempt {len(attempts)} ({attempts[-1]}): a slot outlived its worker {worker} and its "
                    f"submitter: {stuck}"
                ) from err
    finally:
        record_property("attempts", attempts)
    pool.capacity_witness()


@pytest.mark.clause("RACE-7")
@pytest.mark.parametrize("how", ["deadline", "cancel", "terminate"])
def test_submit_answer_is_the_truth(pool: Pool, how: str) -> None:
    """While its worker stands before attaching, the submitter reaches its
    deadline (and the worker attaches then), is cancelled, or is terminated.
    A submit that returns a handle has a running worker; one that fails
    leaves no worker of its request running, and no slot taken."""
    points = ["worker-before-attach"] + (["submit-deadline"] if how == "deadline" else [])
    with pool.paused(*points):
        sub = _submit(pool)
        worker = pool.wait_paused("worker-before-attach")
        if how == "deadline":
            pool.wait_paused("submit-deadline", SUBMIT_DEADLINE_S, expected=STARTUP_TIMEOUT_MS / 1000)
            pool.adapter.pause_release("worker-before-attach")
            # the worker attaches while its submitter stands past its deadline
            pool.target.wait_until(
                lambda: any(s.pid == worker and s.state == "running" for s in pool.adapter.slots()),
                SLOT_FREE_S,
                what=f"worker {worker} attached",
            )
        else:
            fn = "pg_cancel_backend" if how == "cancel" else "pg_terminate_backend"
            assert pool.target.scalar(f"SELECT {fn}(%s)", sub.pid) is True
            sub.wait(pool, SUBMIT_SLACK_S)
    sub.wait(pool, SUBMIT_DEADLINE_S)
    if sub.handle is not None:
        assert sub.handle.pid == worker, (sub.handle, worker)
        assert pool.target.pid_alive(worker)
        assert pool.slot(sub.handle.slot).state == "running"
        pool.stop_all([sub.handle])
    else:
        assert sub.error is not None
        pool.wait_gone({worker}, SLOT_FREE_S, what=f"worker {worker} of a submit that failed ({sub.error})")
        pool.wait_all_free()


def _held_worker(
    pool: Pool, stack: ExitStack, tag: str, timeout_ms: int, setting: str
) -> tuple[Submitter, int]:
    """A submit of a job writing ``tag`` whose worker is held in its start
    (the hold is entered on ``stack``, once the submitter's session is open)."""
    before = {p.pid for p in pool.os_workers()}
    sub = pool.submit_in_background(
        "sql",
        writer(tag),
        None,
        lambda _pid: stack.enter_context(pool.target.sessions_held()),
        **{setting: timeout_ms},
    )
    worker = pool.target.wait_until(
        lambda: next(
            (
                p.pid
                for p in pool.os_workers()
                if p.pid not in before and p.pid in pool.target.waiting_at_start()
            ),
            None,
        ),
        LAUNCHER_START_S,
        what="the submit's worker waiting in its start",
    )
    return sub, worker


@pytest.mark.clause("RACE-7")
@pytest.mark.parametrize("how", ["deadline", "cancel", "terminate"])
def test_submit_answer_is_the_truth_held_in_start(pool: Pool, how: str) -> None:
    """RACE-7 without pause points: the new worker is held in its start,
    before it attaches, and the launcher is stopped asleep (a slow
    launcher); the submitter reaches its deadline, is cancelled or is
    terminated.  Once it has answered, the worker goes on, then the
    launcher: a submit that failed never has its job run, and its worker
    is gone within 2 s of the launcher's return."""
    spec = pool.profile.pool
    if spec is None or spec.startup_timeout is None:
        raise NotApplicable("the profile names no startup timeout setting: a submit is not bounded")
    timeout_ms = RACE7_HELD_STARTUP_MS if how == "deadline" else STARTUP_TIMEOUT_MS
    launcher = pool.wait_launcher() if spec.launcher is not None else None
    pool.create_witness()
    with ExitStack() as stack:
        sub, worker = _held_worker(pool, stack, how, timeout_ms, spec.startup_timeout)
        if launcher is not None:  # asleep in its wait: it holds none of the pool's locks
            pool.target.stop_when_idle(launcher)
        try:
            if how == "deadline" or sub.done.is_set():
                sub.wait(pool, SUBMIT_DEADLINE_S, expected=timeout_ms / 1000)
            else:
                fn = "pg_cancel_backend" if how == "cancel" else "pg_terminate_backend"
                pool.target.scalar(f"SELECT {fn}(%s)", sub.pid)  # false if it has just returned
                sub.wait(pool, SUBMIT_SLACK_S)
            if sub.handle is not None:  # a pool whose worker attaches before it connects
                assert sub.handle.pid == worker, f"the submit returned {sub.handle}; worker {worker} was held"
            stack.close()  # the worker goes on, the launcher still stopped
            pool.target.wait_until(
                lambda: pool.job_ran(how) or not pool.target.pid_alive(worker),
                SLOT_FREE_S,
                what=f"worker {worker} of the submit ({sub.handle or sub.error}) gone, or its job run",
            )
        finally:
            if launcher is not None:
                pool.target.kill(launcher, signal.SIGCONT)
    if sub.handle is not None:
        pool.wait_freed(sub.handle)
        assert pool.job_ran(how) == 1, f"the submit returned {sub.handle}, and its job did not run"
        return
    assert pool.job_ran(how) == 0, f"the submit failed ({sub.error}), yet its job ran"
    pool.wait_gone({worker}, SLOT_FREE_S, what=f"worker {worker} of a submit that failed ({sub.error})")
    pool.wait_all_free()


@pytest.mark.clause("RACE-8")
def test_launcher_restart_before_register(pool: Pool) -> None:
    """The launcher ends after choosing a request and before registering its
    worker: the next launcher answers the request (run or refused) as soon
    as it starts, not at the submitter's startup timeout, and nothing leaks."""
    with pool.paused("launcher-before-register"):
        sub = _submit(pool, timeout_ms=RACE8_STARTUP_TIMEOUT_MS)
        launcher = pool.wait_paused("launcher-before-register")
        pool.target.kill(launcher, signal.SIGTERM)
        pool.wait_gone({launcher}, SLOT_FREE_S, what="the launcher gone")
    pool.wait_launcher(not_pid=launcher)
    sub.wait(pool, SLOT_FREE_S)
    if sub.handle is not None:
        assert sub.handle.pid is not None and pool.target.pid_alive(sub.handle.pid)
        pool.stop_all([sub.handle])
    else:
        assert _failed(sub).sqlstate in NOT_STARTED, sub.error
    pool.wait_all_free()
    pool.capacity_witness()


@pytest.mark.clause("RACE-9")
@pytest.mark.parametrize(
    "point", ["worker-before-exit-hook", "worker-before-connect", "worker-before-attach"]
)
def test_worker_terminated_before_attaching(pool: Pool, point: str) -> None:
    """SIGTERM to a worker at any step before it attaches: the submit fails
    with 53000 soon after the worker is gone (not at its startup timeout),
    and the slot is free."""
    with pool.paused(point):
        sub = _submit(pool)
        worker = pool.wait_paused(point)
        pool.target.kill(worker, signal.SIGTERM)
    # signals are still blocked before the exit hook: it ends once released
    pool.wait_gone({worker}, SLOT_FREE_S, what=f"worker {worker} terminated at {point}")
    err = _failed(sub.wait(pool, SLOT_FREE_S))
    assert err.sqlstate == "53000", err
    pool.wait_all_free()


@pytest.mark.clause("RACE-10")
@pytest.mark.parametrize("force", [False, True], ids=["drop", "drop-force"])
def test_database_dropped_while_worker_connects(
    pool: Pool, force: bool, record_property: Callable[[str, object], None]
) -> None:
    """DROP DATABASE while a worker stands before connecting to it: the
    DROP completes, the submit fails with 53000, the slot is freed."""
    checks = Checks(record_property)
    pool.target.sql("DROP DATABASE IF EXISTS bgwc_dropping")
    pool.target.sql("CREATE DATABASE bgwc_dropping")
    offset = pool.target.log_offset()
    with pool.paused("worker-before-connect"):
        sub = _submit(pool, "bgwc_dropping")
        worker = pool.wait_paused("worker-before-connect")
        pool.target.sql("DROP DATABASE bgwc_dropping" + (" WITH (FORCE)" if force else ""))
    with checks.promise("RACE-10", "the submit fails with 53000, the slot freed"):
        pool.wait_gone({worker}, SLOT_FREE_S, what=f"worker {worker} of a dropped database")
        err = _failed(sub.wait(pool, SLOT_FREE_S))
        assert err.sqlstate == "53000", err
        pool.wait_all_free()
    with checks.promise("RACE-10", "no retry storm in the log"):
        _no_storm(pool, offset, "bgwc_dropping")
    checks.done()


@pytest.mark.clause("RACE-9")
def test_worker_terminated_before_attaching_held_in_start(pool: Pool) -> None:
    """RACE-9 without pause points: the worker, held in its start (before it
    attaches), is sent SIGTERM: the submit fails with 53000 within 2 s of
    the worker's end, its job never ran, every slot is free."""
    spec = pool.profile.pool
    if spec is None or spec.startup_timeout is None:
        raise NotApplicable("the profile names no startup timeout setting: a submit is not bounded")
    pool.create_witness()
    with ExitStack() as stack:
        sub, worker = _held_worker(pool, stack, "race9", RACE8_STARTUP_TIMEOUT_MS, spec.startup_timeout)
        pool.target.kill(worker, signal.SIGTERM)
        pool.wait_gone({worker}, SLOT_FREE_S, what=f"worker {worker} terminated in its start")
    sub.wait(pool, SLOT_FREE_S)
    if sub.handle is not None:  # a pool whose worker attaches before it connects: its slot must come back
        pool.wait_freed(sub.handle)
    else:
        assert _failed(sub).sqlstate == "53000", sub.error
    assert pool.job_ran("race9") == 0
    pool.wait_all_free()


@pytest.mark.clause("RACE-11")
def test_stop_asked_while_launcher_restarts(pool: Pool) -> None:
    """terminate() is asked while the launcher stands before reading its
    handles, and the launcher is then terminated: the next launcher, which
    has no handle, carries the stop out."""
    h = pool.adapter.submit("sleep", {"ms": LONG_MS})
    assert h.pid is not None
    with pool.paused("launcher-before-reap"):
        launcher = pool.wait_paused("launcher-before-reap", LAUNCHER_START_S)
        assert pool.adapter.terminate(h) is True
        pool.target.kill(launcher, signal.SIGTERM)
        pool.wait_gone({launcher}, SLOT_FREE_S, what="the launcher gone")
    pool.wait_launcher(not_pid=launcher)
    pool.wait_gone({h.pid}, SLOT_FREE_S, what=f"worker {h.pid}, whose stop was asked")
    pool.wait_freed(h)
