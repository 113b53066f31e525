"""What the suite's tests share: a pool under test, seen through its adapter
(SQL) and through the OS, with deadline-bounded waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg

from conformance.adapters import Handle, NotApplicable, PoolAdapter, Slot
from conformance.deadlines import (
    ALL_GONE_S,
    CAPACITY_BACK_S,
    CRASH_RECOVERY_S,
    LAUNCHER_START_S,
    PAUSE_REACH_S,
    SLOT_FREE_S,
)
from conformance.processes import Process
from conformance.profile import Profile
from conformance.targets import Target

#: a job long enough to outlast any test
LONG_MS = 60_000
#: how a test that failed only the after-test invariant check says so
INV_VIOLATED = "INV-1/INV-2 violated after the test"
#: how a test that failed only the after-test capacity witness says so
CAPACITY_LOST = "INV-3 violated after the test"
#: the advisory lock key that holds a barrage's submitters until all are queued
BARRAGE_LOCK = 0x62677763
BARRAGE_QUEUE_S = 10.0
#: how far ahead a timed burst's start lies, for its sessions to be spinning by then
TIMED_LEAD_MS = 200

#: what each session of a burst got: (session, handle) granted, refusals' SQLSTATEs, anything else raised
Outcomes = tuple[list[tuple[psycopg.Connection[Any], Handle]], list[str | None], list[BaseException]]


#: the table whose rows witness which jobs ran (``writer``)
WITNESS = "bgwc_witness"


def writer(tag: str) -> dict[str, object]:
    """The args of a ``sql`` job that writes ``tag`` to the witness table."""
    return {"query": f"INSERT INTO {WITNESS} VALUES ('{tag}')"}


@dataclass
class Submitter:
    """A submit running in a session and a thread of its own, so that the
    test can act while it waits: cancel it, terminate it, let its deadline
    pass.  ``pid`` is its backend."""

    pid: int
    done: threading.Event = field(default_factory=threading.Event)
    handle: Handle | None = None
    error: BaseException | None = None
    took_s: float | None = None  # from the submit's call to its return, in its own thread

    def wait(self, pool: Pool, timeout: float, expected: float = 0.0) -> Submitter:
        """Wait for the submit to return (``expected``: how long it takes by design)."""
        pool.target.wait_until(
            self.done.is_set, timeout, what=f"the submit in backend {self.pid} to return", expected=expected
        )
        return self


@dataclass
class Pool:
    target: Target
    adapter: PoolAdapter
    profile: Profile

    # -- OS view ---------------------------------------------------------------
    def os_workers(self) -> list[Process]:
        return [p for p in self.target.processes() if p.backend_type.startswith(self.profile.worker_title)]

    def os_launchers(self) -> list[Process]:
        return [
            p
            for p in self.target.processes()
            if p.backend_type.startswith(self.profile.launcher_backend_type)
        ]

    # -- waits -----------------------------------------------------------------
    def slot(self, n: int) -> Slot:
        return next(s for s in self.adapter.slots() if s.slot == n)

    def wait_freed(self, handle: Handle, timeout: float = SLOT_FREE_S) -> Slot:
        """Wait until the slot of ``handle`` no longer holds that generation's worker."""

        def freed() -> Slot | None:
            s = self.slot(handle.slot)
            return s if s.state == "free" or s.generation != handle.generation else None

        return self.target.wait_until(
            freed, timeout, what=f"slot {handle.slot} gen {handle.generation} freed"
        )

    def wait_launcher(self, timeout: float = LAUNCHER_START_S, not_pid: int | None = None) -> int:
        def up() -> int | None:
            pid = self.adapter.launcher_pid()
            return pid if pid and pid != not_pid and [p.pid for p in self.os_launchers()] == [pid] else None

        return self.target.wait_until(up, timeout, what="exactly one launcher, in SQL and in the OS")

    def wait_fresh(self, timeout: float = CRASH_RECOVERY_S, not_launcher: int | None = None) -> None:
        """Wait for a fresh pool: launcher up (if it has one), every slot
        free and check empty (if it has them), no job listed, no worker."""
        if self.profile.pool is not None and self.profile.pool.launcher is not None:
            self.wait_launcher(timeout, not_launcher)
        self.target.wait_until(lambda: self.is_fresh() or None, timeout, what="a fresh pool")

    def is_fresh(self) -> bool:
        if self.adapter.jobs() or self.os_workers():
            return False
        try:
            slots = self.adapter.slots()
        except NotApplicable:
            return True
        return (
            all(s.state == "free" and s.pid is None and s.handle_status is None for s in slots)
            and not self.adapter.check()
        )

    def submit_within(self, timeout: float, kind: str, args: dict[str, object] | None = None) -> Handle:
        """Submit, retrying until ``timeout``: for capacity that is coming back
        (the postmaster frees a worker's registration only once it has reaped it)."""
        return self.target.wait_until(
            lambda: self.adapter.submit(kind, args), timeout, what=f"a {kind} submit to succeed"
        )

    def submit_in_background(
        self,
        kind: str,
        args: dict[str, object] | None = None,
        dbname: str | None = None,
        before: Callable[[int], object] | None = None,
        **settings: object,
    ) -> Submitter:
        """Start a submit in its own session (``settings`` SET there first;
        ``before`` called with its backend's pid just before the submit)."""
        conn: psycopg.Connection[Any] = self.target.connect()
        for name, value in settings.items():
            conn.execute(f"SET {name} = {value}")
        sub = Submitter(conn.info.backend_pid)
        if before is not None:
            try:
                before(sub.pid)
            except BaseException:
                conn.close()
                raise

        def run() -> None:
            t0 = time.monotonic()
            try:
                sub.handle = self.adapter.submit(kind, args, dbname, conn=conn)
            except BaseException as exc:  # noqa: BLE001 - the test judges it
                sub.error = exc
            finally:
                sub.took_s = time.monotonic() - t0
                conn.close()
                sub.done.set()

        threading.Thread(target=run, daemon=True, name=f"submit-{sub.pid}").start()
        return sub

    # -- bursts of concurrent submitters ------------------------------------------
    def _burst(
        self,
        conns: list[psycopg.Connection[Any]],
        first: str,
        kind: str,
        args: dict[str, object],
        ready: Callable[[], None] = lambda: None,
    ) -> Outcomes:
        """In each session (kept open: some pools bind a job to it), ``first``
        then a submit, pipelined so that no round trip lies between them, each
        in a thread of its own; ``ready`` runs once all have started."""
        results: list[tuple[psycopg.Connection[Any], Handle]] = []
        rejections: list[str | None] = []
        other: list[BaseException] = []
        lock = threading.Lock()

        def submit(conn: psycopg.Connection[Any]) -> None:
            try:
                with conn.pipeline():
                    conn.execute(first)
                    h = self.adapter.submit(kind, args, conn=conn)
                with lock:
                    results.append((conn, h))
            except psycopg.Error as exc:
                with lock:
                    rejections.append(exc.sqlstate)
            except BaseException as exc:  # noqa: BLE001 - the test judges it
                with lock:
                    other.append(exc)

        threads = [threading.Thread(target=submit, args=(c,), daemon=True) for c in conns]
        for t in threads:
            t.start()
        ready()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "a submitter hung"
        return results, rejections, other

    def barrage(self, conns: list[psycopg.Connection[Any]], kind: str, args: dict[str, object]) -> Outcomes:
        """Every session's submit queued behind one advisory lock, then released at once."""
        with self.target.connect() as gate:
            gate.execute("SELECT pg_advisory_lock(%s)", (BARRAGE_LOCK,))

            def release() -> None:
                def queued() -> bool:
                    row = gate.execute(
                        "SELECT count(*) FROM pg_locks"
                        " WHERE locktype = 'advisory' AND NOT granted AND objid = %s",
                        (BARRAGE_LOCK,),
                    ).fetchone()
                    return row is not None and row[0] == len(conns)

                self.target.wait_until(queued, BARRAGE_QUEUE_S, what=f"{len(conns)} submitters queued")
                gate.execute("SELECT pg_advisory_unlock(%s)", (BARRAGE_LOCK,))

            return self._burst(conns, f"SELECT pg_advisory_lock_shared({BARRAGE_LOCK})", kind, args, release)

    def timed(self, conns: list[psycopg.Connection[Any]], kind: str, args: dict[str, object]) -> Outcomes:
        """Every session spins on the server's clock to one instant, then submits:
        arrivals microseconds apart, when there is a core for each."""
        start = self.target.scalar(f"SELECT (clock_timestamp() + interval '{TIMED_LEAD_MS} ms')::text")
        spin = f"DO $$BEGIN WHILE clock_timestamp() < '{start}'::timestamptz LOOP END LOOP; END$$"
        return self._burst(conns, spin, kind, args)

    # -- pause points ------------------------------------------------------------
    @contextmanager
    def paused(self, *points: str) -> Iterator[None]:
        """Arm ``points`` for the block; they are released when it ends, however.
        A pool whose pause points are off on this server (it refuses to arm
        with 55000, as SEC-7's production configuration makes it) has not the
        capability: the test is not applicable, never an error."""
        for point in points:
            try:
                self.adapter.pause_arm(point)
            except psycopg.Error as exc:
                if exc.sqlstate != "55000":
                    raise
                raise NotApplicable(f"the pool refuses to arm its pause point {point}: {exc}") from None
        try:
            yield
        finally:
            if self.target.is_running():
                for point in points:
                    self.adapter.pause_release(point)

    def wait_paused(self, point: str, timeout: float = PAUSE_REACH_S, expected: float = 0.0) -> int:
        """The pid of a process waiting at ``point``, once one is (``expected``:
        how long it takes to get there by design, e.g. a timeout)."""
        return self.target.wait_until(
            lambda: next(iter(self.adapter.paused_at(point)), None),
            timeout,
            what=f"a process paused at {point}",
            expected=expected,
        )

    # -- witnesses ---------------------------------------------------------------
    def create_witness(self) -> None:
        """An empty witness table, for jobs that write their tag (``writer``)."""
        self.target.sql(f"DROP TABLE IF EXISTS {WITNESS}", idempotent=True)
        self.target.sql(f"CREATE TABLE {WITNESS} (tag text)")

    def job_ran(self, tag: str) -> int:
        """How many jobs wrote ``tag`` to the witness table."""
        return int(self.target.scalar(f"SELECT count(*) FROM {WITNESS} WHERE tag = %s", tag))

    def configured_capacity(self) -> int:
        """The capacity the server was given (the profile's ``capacity``
        setting), which the pool's own reports must agree with; without such
        a setting, the pool's word."""
        spec = self.profile.pool
        reported = self.adapter.capacity()
        if spec is None or spec.capacity is None:
            return reported
        configured = int(self.target.scalar(f"SHOW {spec.capacity}"))
        assert reported == configured, f"the pool reports {reported} slots; {spec.capacity} = {configured}"
        return configured

    def capacity_witness(self, occupied: frozenset[int] = frozenset()) -> int:
        """The pool's capacity, checked without trusting its word: with the
        workers ``occupied`` (pids) running, exactly ``capacity - len(occupied)``
        more submits run at once, each a new worker in the OS, and the next is
        refused with 53000.  Returns the capacity."""
        capacity = self.configured_capacity()
        free = capacity - len(occupied)
        handles: list[Handle] = []
        try:
            for _ in range(free):
                handles.append(self.submit_within(CAPACITY_BACK_S, "sleep", {"ms": LONG_MS}))
            try:
                extra = self.adapter.submit("sleep", {"ms": LONG_MS})
            except psycopg.Error as exc:
                assert exc.sqlstate == "53000", f"{free} + 1 submits: {exc.sqlstate} {exc}"
            else:
                handles.append(extra)
                raise AssertionError(
                    f"{free + 1} submits succeeded with {len(occupied)} of {capacity} slots occupied"
                )
            pids = {h.os_pid for h in handles}
            os_pids = {p.pid for p in self.os_workers()}
            assert len(pids) == free and not pids & occupied and os_pids == pids | occupied, (
                f"{free} new handles with pids {sorted(pids)} beside {sorted(occupied)}; "
                f"OS workers {sorted(os_pids)}"
            )
        finally:
            self.stop_all(handles)
        return capacity

    def wait_all_free(self, timeout: float = SLOT_FREE_S) -> None:
        self.target.wait_until(
            lambda: all(s.state == "free" for s in self.adapter.slots()), timeout, what="every slot free"
        )

    def stop_all(self, handles: list[Handle]) -> None:
        """Terminate every handle and wait until each slot is free."""
        for h in handles:
            self.adapter.terminate(h)
        for h in handles:
            self.wait_freed(h)

    def stop_every_job(self, timeout: float = SLOT_FREE_S) -> None:
        """Terminate every job the pool lists and wait until it lists none (by
        its jobs, not its slots: a pool without slots is stopped too)."""
        for job in self.adapter.jobs():
            self.adapter.terminate(job.handle)
        self.target.wait_until(lambda: not self.adapter.jobs(), timeout, what="every job stopped")

    @contextmanager
    def granted_roles(self, *roles: str) -> Iterator[tuple[str, ...]]:
        """Unprivileged login roles granted the pool for the block (made anew,
        dropped after it however it ends); NotApplicable for a pool that
        cannot be granted."""
        self.drop_roles(*roles)
        for role in roles:
            self.target.sql(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
        try:
            for role in roles:
                self.adapter.grant_submit(role)
            yield roles
        finally:
            self.drop_roles(*roles)

    def drop_roles(self, *roles: str) -> None:
        """Drop the roles a test made, and what they own, once every job is
        stopped (a role whose job runs may hold objects); nothing if none exists."""
        t = self.target
        present = [
            r
            for r in roles
            if t.scalar("SELECT count(*) FROM pg_roles WHERE rolname = %s", r, idempotent=True)
        ]
        if not present:
            return
        self.stop_every_job()
        for role in present:
            t.sql(f"DROP OWNED BY {role}", idempotent=True)
            t.sql(f"DROP ROLE {role}", idempotent=True)

    def wait_all_gone(self, timeout: float = ALL_GONE_S) -> None:
        """Every process of the server gone from the OS (after it was killed)."""
        self.target.wait_until(lambda: not self.target.processes(), timeout, what="every server process gone")

    def wait_gone(self, pids: set[int], timeout: float, what: str) -> None:
        self.target.wait_until(
            lambda: not ({p.pid for p in self.target.processes()} & pids), timeout, what=what
        )

    # -- settling --------------------------------------------------------------
    def agreement(self) -> list[str]:
        """Pool vs OS vs pg_stat_activity: every pid the pool reports for a
        running job is alive and shows in pg_stat_activity as the pool's worker
        kind; every OS worker is in the pool."""
        jobs = self.adapter.jobs()
        reported = {j.handle.pid for j in jobs if j.handle.pid is not None}
        os_pids = {p.pid for p in self.os_workers()}
        problems = [f"pool reports pid {pid} that is not alive" for pid in sorted(reported - os_pids)]
        problems += [f"worker process {pid} is not in the pool" for pid in sorted(os_pids - reported)]
        running = {j.handle.pid for j in jobs if j.state == "running" and j.handle.pid in os_pids}
        spec = self.profile.process(self.profile.pool.worker) if self.profile.pool else None
        if running and spec and spec.connects:  # a worker kind that connects shows in pg_stat_activity
            kind = spec.backend_type or spec.backend_type_pattern
            rows = self.target.sql(
                "SELECT pid, backend_type FROM pg_stat_activity WHERE pid = ANY(%s)", list(running)
            )
            seen = dict(rows)
            problems += [
                f"running job's pid {pid} is {seen.get(pid, 'absent')!r} in pg_stat_activity, not {kind!r}"
                for pid in sorted(running)
                if not spec.backend_type_matches(seen.get(pid))
            ]
        return problems

    def wait_agreement(self, timeout: float = SLOT_FREE_S) -> None:
        """Wait until the pool and the OS agree (``agreement`` is empty): a worker
        whose slot was freed may still be in its exit for a moment."""
        last: list[str] = []

        def agreed() -> bool:
            last[:] = self.agreement()
            return not last

        try:
            self.target.wait_until(agreed, timeout, what="the pool and the OS to agree")
        except AssertionError as err:
            raise AssertionError(f"{err}\nlast disagreement: {last}") from None

    def quiesce(self) -> None:
        """Stop whatever a previous test left running; restart if it will not stop."""
        for j in self.adapter.jobs():
            if j.state in ("running", "starting"):
                self.adapter.terminate(j.handle)
        left: list[object] = []

        def none_left() -> bool:
            left[:] = [*self.adapter.jobs(), *self.os_workers()]
            return not left

        # workers an earlier test left in a session of its own (some pools bind
        # jobs to sessions): the kit's own leftovers, stopped as any backend is
        for proc in self.os_workers():
            self.target.sql("SELECT pg_terminate_backend(%s)", proc.pid)
        try:
            self.target.wait_until(none_left, 5, what="leftover workers to stop")
        except AssertionError:
            self.target.restart("immediate")
            self.wait_fresh()
