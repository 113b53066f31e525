"""RAND-2: catalog churn against the pool, in several sessions at once.

A hypothesis state machine whose steps start an operation in a session of
its own, in a thread (two sessions for the superuser and for each of two
unprivileged roles granted the pool, one for role DDL, one for database DDL,
one that holds a catalog lock), so that operations overlap: submits (a
superuser's, into ``postgres`` or by name into a scratch database; a role's,
a long job or one that records who it ran as and with what search_path),
terminates (by the job's owner, by another role, by a superuser; of jobs
that ended too), status reads, and catalog churn: GRANT/REVOKE of the pool
and of ``pg_signal_backend``, ``ALTER ROLE`` (search_path, connection
limit), ``LOCK TABLE`` of a catalog held until a step releases it, and
CREATE/DROP (WITH (FORCE) too)/RENAME of scratch databases with jobs
attached.  A call of the pool or a database command returns at once; a role
DDL step waits until its op returned or waits for a lock, so that what
follows meets its change in force unless a lock holds it back.

Each operation's start and return are stamped (``time.monotonic``, on the
client: whatever the server decided, it decided in between).  The model
judges an answer against every state the grants, settings, databases and
capacity may have had in that window: a racy expectation admits each
legitimate answer, never a wrong one.  Role DDL runs in one session and
database DDL in another, one statement at a time, so the model knows their
order.  The ops are judged when the machine settles (a step, and the end of
each sequence): every op returned within its deadline, its answer agreed
with the model, the pool lists exactly the jobs the model says may run, its
check is empty, the OS agrees, every recording job ran as its submitter with
its role's search_path; at the end of a sequence the capacity witness holds.
While a catalog is locked, the calls of the pool in flight are judged when
the lock is released, and a probe reads the status then.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from conformance.adapters import Handle, Slot
from conformance.deadlines import CRASH_RECOVERY_S, LOCK_ANSWER_S, LOCK_UNWIND_S, SLOT_FREE_S
from conformance.suite.pool_under_test import LONG_MS, Pool
from conformance.waiting import wait_until

SU = "su"
#: the unprivileged roles, granted the pool at each sequence's start
TENANTS = {"a": "bgwc_churn_a", "b": "bgwc_churn_b"}
#: the scratch databases' names; the first exists at each sequence's start
NAMES = ("bgwc_churn_0", "bgwc_churn_1")
#: the catalogs a session locks: what privilege checks, logins and database commands read
CATALOGS = ("pg_auth_members", "pg_authid", "pg_database", "pg_db_role_setting")
#: ACCESS EXCLUSIVE (reads wait too) twice as often as SHARE (only writes wait)
MODES = ("ACCESS EXCLUSIVE", "ACCESS EXCLUSIVE", "SHARE")
#: the table a recording job writes (tag, current_user, session_user, search_path) to
SEEN = "public.bgwc_churn_seen"
DENIED, FULL, NO_DB, IN_USE = "42501", "53000", "3D000", "55006"
#: what an ALTER ROLE of a tenant changes (a search_path stays valid with schemas that do not exist)
ALTERATIONS = (
    "SET search_path = bgwc_churn_0, public",
    "SET search_path = bgwc_churn_1, public",
    "RESET search_path",
    "CONNECTION LIMIT 50",
    "CONNECTION LIMIT -1",
)
#: who terminates a job: its owner, a tenant that is not its owner, a superuser
BY = ("owner", "a tenant", "superuser")
#: the kinds of op the pool answers (judged while a lock is held), beside the DDL
POOL_CALLS = ("submit", "terminate", "status")
WHO, TENANT = st.sampled_from([SU, *TENANTS]), st.sampled_from(list(TENANTS))


# The steps a sequence is made of, each drawn from all of them (in one rule: hypothesis'
# swarm testing of rules would leave most sequences with two or three kinds of step).
@dataclass(frozen=True)
class Submit:
    who: str
    record: bool
    db: int | None


@dataclass(frozen=True)
class Terminate:
    n: int
    by: str


@dataclass(frozen=True)
class Status:
    who: str


@dataclass(frozen=True)
class Grant:
    who: str
    what: str
    on: bool


@dataclass(frozen=True)
class AlterRole:
    who: str
    change: str


@dataclass(frozen=True)
class LockCatalog:
    catalog: str
    mode: str


@dataclass(frozen=True)
class Release:
    pass


@dataclass(frozen=True)
class Database:
    i: int
    command: str


@dataclass(frozen=True)
class Settle:
    pass


STEPS = st.one_of(
    st.builds(Submit, who=WHO, record=st.booleans(), db=st.sampled_from([None, 0, 1])),
    st.builds(Terminate, n=st.integers(min_value=0, max_value=10_000), by=st.sampled_from(BY)),
    st.builds(Status, who=WHO),
    st.builds(Grant, who=TENANT, what=st.sampled_from(["pool", "pg_signal_backend"]), on=st.booleans()),
    st.builds(AlterRole, who=TENANT, change=st.sampled_from(ALTERATIONS)),
    st.builds(LockCatalog, catalog=st.sampled_from(CATALOGS), mode=st.sampled_from(MODES)),
    st.builds(Release),
    st.builds(
        Database,
        i=st.sampled_from(range(len(NAMES))),
        command=st.sampled_from(["create", "drop", "drop force", "rename"]),
    ),
    st.builds(Settle),
)
#: each step's method of the machine
METHODS = {
    Submit: "submit",
    Terminate: "terminate",
    Status: "status",
    Grant: "grant",
    AlterRole: "alter_role",
    LockCatalog: "lock_catalog",
    Release: "release",
    Database: "database",
    Settle: "settle",
}


@dataclass(eq=False)
class Op:
    """One operation, in a session and a thread of its own."""

    step: str
    kind: str
    session: Session
    meta: dict[str, Any] = field(default_factory=dict)
    t0: float = field(default_factory=time.monotonic)  # stamped before the thread starts
    t1: float | None = None  # after it returned
    result: Any = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    unblocked: float = 0.0  # the last release of a lock it may have waited for

    @property
    def end(self) -> float:
        return self.t1 if self.t1 is not None else math.inf

    @property
    def ok(self) -> bool:
        return self.done.is_set() and self.error is None

    @property
    def answer(self) -> object:
        """What it answered: ``ok`` for a completed submit or DDL, a
        terminate's boolean, or the SQLSTATE it was refused with."""
        if self.error is not None:
            return getattr(self.error, "sqlstate", None) or repr(self.error)
        return self.result if self.kind == "terminate" else "ok"

    def overlaps(self, other: Op) -> bool:
        return self.t0 < other.end and other.t0 < self.end

    def deadline(self) -> float:
        """When it must have returned: LOCK_UNWIND_S after its start, or after
        the release of the last catalog lock held while it ran."""
        return max(self.t0, self.unblocked) + LOCK_UNWIND_S


@dataclass(eq=False)
class Session:
    name: str
    role: str | None  # None: the harness's superuser
    conn: psycopg.Connection[Any]
    op: Op | None = None
    pid: int = 0

    def __post_init__(self) -> None:
        self.pid = self.conn.info.backend_pid

    def busy(self) -> bool:
        return self.op is not None and not self.op.done.is_set()

    def start(self, op: Op, body: Callable[[psycopg.Connection[Any]], Any]) -> Op:
        self.op = op

        def run() -> None:
            try:
                op.result = body(self.conn)
            except BaseException as exc:  # noqa: BLE001 - the model judges it
                op.error = exc
            finally:
                op.t1 = time.monotonic()
                op.done.set()

        threading.Thread(target=run, daemon=True, name=f"{self.name}: {op.step}").start()
        return op


@dataclass
class Fact:
    """One fact over time (a role's grant, its search_path): its first value
    and each change, in the order its one session made them."""

    first: object
    changes: list[tuple[Op, object]] = field(default_factory=list)

    def during(self, op: Op) -> set[object]:
        """Every value it may have had at some moment of ``op``'s window."""
        current, values = self.first, set()
        for change, value in self.changes:
            if change.done.is_set() and change.error is not None:
                continue
            if change.end <= op.t0:
                current = value
            elif change.t0 < op.end:
                values.add(value)
        return values | {current}


@dataclass(eq=False)
class Db:
    """A scratch database (one instance: a name dropped and made again is another)."""

    n: int
    name: str
    commands: list[Op] = field(default_factory=list, repr=False)  # DROP and RENAME: the pool stops its jobs
    dropped: Op | None = None


@dataclass(eq=False)
class Job:
    owner: str  # SU or a tenant's key
    handle: Handle
    submit: Op
    tag: str | None  # a recording job's tag; None: a long job
    dbs: list[Db]  # the instances it may run in (none: postgres)
    stops: list[Op] = field(default_factory=list)  # terminates of its handle
    freed_at: float | None = None  # when the pool was seen without it

    def ending(self, before: float, but: Op | None = None) -> list[Op]:
        """The ops started before ``before`` that may have ended it."""
        stops = [s for s in self.stops if s is not but and not (s.done.is_set() and s.result is not True)]
        commands = [c for d in self.dbs for c in d.commands if c.end > self.submit.t0]
        return [o for o in stops + commands if o.t0 < before]

    def live_throughout(self, a: float, b: float, but: Op | None = None) -> bool:
        """Certainly running from ``a`` to ``b``: a long job whose submit had
        returned, that nothing may have ended, not seen gone."""
        return (
            self.tag is None
            and self.submit.end < a
            and not self.ending(b, but)
            and (self.freed_at is None or self.freed_at > b)
        )

    def must_end(self) -> str | None:
        """Why it must be gone (its slot freed), if it must."""
        if self.tag is not None:
            return "a recording job, which ends on its own"
        if any(s.result is True for s in self.stops if s.ok):
            return "a terminate of it answered true"
        if self.dbs and all(d.dropped is not None for d in self.dbs):
            return f"its database was dropped ({self.dbs[0].dropped and self.dbs[0].dropped.step})"
        if len(self.dbs) == 1:
            late = [c for c in self.dbs[0].commands if c.ok and c.t0 > self.submit.end]
            if late:
                return f"{late[0].step} ran while it was attached"
        return None


class ChurnMachine(RuleBasedStateMachine):
    """One sequence.  Its steps start ops and return; ``settle`` (a step, and
    the teardown) waits for every op and judges them all."""

    def __init__(self, pool: Pool, log: list[list[str]], tally: dict[str, int]) -> None:
        super().__init__()
        self.pool, self.t = pool, pool.target
        self.lines: list[str] = []  # the sequence's steps and their outcomes, for the result
        self.step = ""  # the step running, as the script says it
        log.append(self.lines)
        self.tally = tally
        self.open = False  # a step or a check started and has not completed: the sequence failed
        self.released = 0.0
        self.lock: str | None = None
        self.ops: list[Op] = []
        self.judged = 0
        self.jobs: list[Job] = []
        self.submits: list[Op] = []
        self.db_ops: list[tuple[Op, dict[str, Db], dict[str, Db]]] = []  # (op, names before, if it succeeds)
        self.db_count = 0
        self.seq = tally["sequences"] = tally.get("sequences", 0) + 1
        self._fresh_start()
        self.capacity = pool.configured_capacity()
        self.su_name = str(self.t.scalar("SELECT current_user"))
        t = self.t
        self.sessions = {
            name: Session(name, role, t.connect(user=role) if role else t.connect())
            for name, role in [
                ("su0", None),
                ("su1", None),
                ("probe", None),
                ("roles", None),
                ("dbs", None),
                ("holder", None),
                *[(f"{k}{i}", r) for k, r in TENANTS.items() for i in range(2)],
            ]
        }
        try:
            first_path = self.sessions["a0"].conn.execute("SHOW search_path").fetchone()
            self.granted = {k: Fact(True) for k in TENANTS}
            self.signal = {k: Fact(False) for k in TENANTS}
            self.path = {k: Fact(first_path[0] if first_path else None) for k in TENANTS}
            self.dbs = {NAMES[0]: self._new_db(NAMES[0])}
            self.first_dbs = dict(self.dbs)
            for who in (SU, *TENANTS):  # a long job of each role: something to terminate from the start
                self._step(f"(set-up) submit(who={who!r}, record=False, db=None)")
                self._await(self._submit(who, False, None))
        except BaseException:
            self.teardown()  # hypothesis tears down only a machine it got
            raise
        self.lines.append("(set-up done)")
        self.open = False

    # -- set-up: every sequence starts from the same state ---------------------------
    def _fresh_start(self) -> None:
        pool, t = self.pool, self.t
        pool.quiesce()
        if not pool.is_fresh():
            t.restart("immediate")
            pool.wait_fresh(CRASH_RECOVERY_S)
        for name in NAMES[1:]:
            t.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", idempotent=True)
        if not t.scalar("SELECT count(*) FROM pg_database WHERE datname = %s", NAMES[0]):
            t.sql(f"CREATE DATABASE {NAMES[0]}")
        for role in TENANTS.values():
            pool.adapter.grant_submit(role)
            t.sql(f"REVOKE pg_signal_backend FROM {role}", idempotent=True)
            t.sql(f"ALTER ROLE {role} RESET ALL", idempotent=True)
            t.sql(f"ALTER ROLE {role} CONNECTION LIMIT -1", idempotent=True)
        t.sql(f"TRUNCATE {SEEN}")

    def _new_db(self, name: str) -> Db:
        self.db_count += 1
        return Db(self.db_count, name)

    # -- dispatch ----------------------------------------------------------------------
    def _step(self, text: str) -> None:
        self.open = True
        self.step = text
        self.lines.append(text)
        self.tally["steps"] = self.tally.get("steps", 0) + 1

    def _note(self, text: str) -> None:
        self.lines.append(f"  ({text})")

    @staticmethod
    def of(who: str) -> tuple[str, str]:
        """The names of the two sessions of a caller (the superuser, a tenant)."""
        return (f"{who}0", f"{who}1")

    def _idle(self, *names: str) -> Session:
        """An idle session among ``names``; when none is, the lock (if held) is
        released and the earliest of their ops awaited."""
        sessions = [self.sessions[n] for n in names]
        idle = next((s for s in sessions if not s.busy()), None)
        if idle is not None:
            return idle
        self._release("a busy session is needed")
        first = min(sessions, key=lambda s: s.op.t0 if s.op else 0.0)
        self._await(first.op)
        return first

    def _start(
        self, session: Session, kind: str, body: Callable[[psycopg.Connection[Any]], Any], **meta: Any
    ) -> Op:
        op = Op(self.step, kind, session, meta)
        op.unblocked = self.released
        self.ops.append(op)
        self.tally[kind] = self.tally.get(kind, 0) + 1
        return session.start(op, body)

    def _await(self, op: Op | None) -> None:
        """Wait for ``op`` to return, within its deadline."""
        if op is None or op.done.is_set():
            return
        if self.lock is None:
            op.unblocked = max(op.unblocked, self.released)
        left = op.deadline() - time.monotonic()
        if not op.done.wait(max(0.0, left)):
            raise AssertionError(
                f"{op.step} (session {op.session.name}) still running {time.monotonic() - op.t0:.1f} s after"
                f" its start, {LOCK_UNWIND_S:g} s past its start or the last lock's release; "
                f"waits then: {self._waits()}"
            )

    def _waits(self) -> list[tuple[Any, ...]]:
        """What each busy session waits for (read without pg_stat_activity's joins,
        which a lock on pg_authid or pg_database would hold)."""
        pids = [s.pid for s in self.sessions.values() if s.busy()]
        conn = self.sessions["holder"].conn if self.lock else None
        query = (
            "SELECT a.pid, a.wait_event_type, a.wait_event, left(a.query, 60),"
            " (SELECT array_agg(concat(l.locktype, ' ', l.relation::regclass, l.objid)) FROM pg_locks l"
            "  WHERE l.pid = a.pid AND NOT l.granted)"
            " FROM unnest(%s::int[]) p, pg_stat_get_activity(p) a"
        )
        try:
            if conn is not None:
                return conn.execute(query, (pids,)).fetchall()
            return self.t.sql(query, pids)
        except psycopg.Error as exc:
            return [("unreadable", str(exc))]

    @rule(step=STEPS)
    def run(self, step: Any) -> None:
        getattr(self, METHODS[type(step)])(**asdict(step))

    # -- the steps: the pool's calls ----------------------------------------------
    def submit(self, who: str, record: bool, db: int | None) -> None:
        """A long job, or a short one that records who it ran as and with what
        search_path; in the session's database, or (by name) in a scratch one,
        which only a superuser may (42501)."""
        self._step(f"submit(who={who!r}, record={record}, db={db!r})")
        self._submit(who, record, db)

    def _submit(self, who: str, record: bool, db: int | None) -> Op:
        name = None if db is None else NAMES[db]
        tag = f"s{self.seq}o{len(self.ops)}" if record else None
        query = (
            f"INSERT INTO {SEEN} SELECT '{tag}', current_user, session_user, current_setting('search_path')"
        )
        kind, args = ("sql", {"query": query}) if record else ("sleep", {"ms": LONG_MS})
        s = self._idle(*self.of(who))
        op = self._start(
            s,
            "submit",
            lambda c: self.pool.adapter.submit(kind, args, dbname=name, conn=c),
            who=who,
            name=name,
            tag=tag,
        )
        self.submits.append(op)
        return op

    def terminate(self, n: int, by: str) -> None:
        """A terminate of the n-th submit's job (one that may have ended too),
        by its owner, by a tenant that is not its owner, or by a superuser."""
        self._step(f"terminate(n={n}, by={by!r})")
        submit = self.submits[n % len(self.submits)]
        if not submit.done.is_set():  # its handle is needed
            self._release(f"{submit.step} must return first")
            self._await(submit)
        job = self._job_of(submit)
        if job is None:
            self._note(f"{submit.step} answered {submit.answer}: no handle")
            return
        others = [k for k in TENANTS if k != job.owner]
        who = {"owner": job.owner, "a tenant": others[n % len(others)], "superuser": SU}[by]
        s = self._idle(*self.of(who))
        op = self._start(s, "terminate", lambda c: self.pool.adapter.terminate(job.handle, conn=c), who=who)
        op.meta["job"] = job
        job.stops.append(op)

    def status(self, who: str) -> None:
        self._step(f"status(who={who!r})")
        s = self._idle(*self.of(who))
        self._start(s, "status", lambda c: self.pool.adapter.slots(conn=c), who=who)

    # -- the steps: role DDL, one session --------------------------------------------
    def grant(self, who: str, what: str, on: bool) -> None:
        """GRANT or REVOKE the pool (in one transaction), or pg_signal_backend
        (whose members may stop another role's job), to a tenant."""
        self._step(f"grant(who={who!r}, what={what!r}, on={on})")
        role, adapter = TENANTS[who], self.pool.adapter
        body: Callable[[psycopg.Connection[Any]], Any]
        if what == "pool":
            give = adapter.grant_submit if on else adapter.revoke_submit
            body, fact = (lambda c: give(role, conn=c)), self.granted[who]
        else:
            sql = f"GRANT {what} TO {role}" if on else f"REVOKE {what} FROM {role}"
            body, fact = (lambda c: c.execute(sql)), self.signal[who]
        op = self._start(self._idle("roles"), "grant", body)
        fact.changes.append((op, on))
        self._answered_or_waiting(op, LOCK_ANSWER_S)  # the next step meets it done, unless a lock holds it

    def alter_role(self, who: str, change: str) -> None:
        """ALTER ROLE: its search_path, which its jobs run with (SET, RESET), or
        its connection limit (a row of pg_authid rewritten: every session's
        cache of roles and memberships is invalidated)."""
        self._step(f"alter_role(who={who!r}, change={change!r})")
        role = TENANTS[who]
        op = self._start(self._idle("roles"), "setting", lambda c: c.execute(f"ALTER ROLE {role} {change}"))
        if "search_path" in change:
            value = change.partition("= ")[2] or self.path[who].first
            self.path[who].changes.append((op, value))
        self._answered_or_waiting(op, LOCK_ANSWER_S)

    # -- the steps: a catalog lock, held until released --------------------------------
    # (no step is skipped by a precondition: whether a lock is held depends on timing,
    # which the steps hypothesis draws must not)
    def lock_catalog(self, catalog: str, mode: str) -> None:
        """LOCK TABLE a catalog in another session, held until released (one at a time)."""
        self._step(f"lock_catalog(catalog={catalog!r}, mode={mode!r})")
        self._release("another catalog is locked")
        conn = self.sessions["holder"].conn
        conn.execute("BEGIN")
        conn.execute(f"SET LOCAL lock_timeout = '{int(LOCK_ANSWER_S * 1000)}ms'")
        try:
            conn.execute(f"LOCK TABLE pg_catalog.{catalog} IN {mode} MODE")
        except psycopg.errors.LockNotAvailable as exc:  # an op holds it (a database command's wait)
            conn.execute("ROLLBACK")
            self._note(f"not taken within {LOCK_ANSWER_S:g} s ({exc})")
            return
        self.lock = f"{catalog} ({mode})"
        self.tally["lock"] = self.tally.get("lock", 0) + 1

    def release(self) -> None:
        self._step("release()")
        self._release("released")

    def _release(self, why: str, judge: bool = True) -> None:
        """Judge the pool's calls in flight, then release the lock.  While a
        catalog is locked, every call of the pool answers within LOCK_ANSWER_S
        or waits for a heavyweight lock itself (a submit: or its worker does);
        a probe from another session reads the status."""
        lock = self.lock
        if lock is None:
            return
        problems: list[str] = []
        if judge:
            probe = self.sessions["probe"]
            if not probe.busy():
                self.step = f"probe: status while {lock} is locked"
                self.lines.append(f"  {self.step}")
                self._start(probe, "status", lambda c: self.pool.adapter.slots(conn=c), who=SU)
            stalled = [self._stalled(op) for op in self.ops if op.kind in POOL_CALLS and not op.done.is_set()]
            problems = [p for p in stalled if p]
        self.lock, self.released = None, time.monotonic()
        self.sessions["holder"].conn.execute("ROLLBACK")
        self._note(f"lock on {lock} released: {why}")
        assert not problems, f"while {lock} was locked, the pool stalled calls that wait for no lock: " + (
            "; ".join(problems)
        )

    def _stalled(self, op: Op) -> str | None:
        """Why ``op`` stalls while the lock is held (None: it answered, or waits for a lock)."""
        if self._answered_or_waiting(op, op.t0 + LOCK_ANSWER_S - time.monotonic()):
            return None
        return (
            f"{op.step} (session {op.session.name}) neither answered within {LOCK_ANSWER_S:g} s"
            f" nor waits for a lock; waits: {self._waits()}"
        )

    def _answered_or_waiting(self, op: Op, timeout: float) -> bool:
        """Wait up to ``timeout`` for ``op`` to return or to wait for a
        heavyweight lock (a submit: or a worker of the pool to, connecting)."""
        conn = self.sessions["holder"].conn if self.lock else None

        def answered_or_waiting() -> bool:
            if op.done.is_set():
                return True
            pids = [op.session.pid]
            if op.kind == "submit":
                pids += [p.pid for p in self.pool.os_workers()]
            query = "SELECT count(*) FROM pg_locks WHERE NOT granted AND pid = ANY(%s)"
            row = conn.execute(query, (pids,)).fetchone() if conn else self.t.sql(query, pids)[0]
            return bool(row and row[0])

        try:
            wait_until(
                answered_or_waiting,
                max(timeout, 0.0),
                what=f"{op.step}: an answer, or a lock wait",
                interval=0.01,  # most ops answer within a few ms
            )
        except AssertionError:
            return False
        return True

    # -- the steps: database DDL, one session --------------------------------------
    def _db_session(self) -> Session:
        """The database session, its previous command returned and applied to the model."""
        s = self._idle("dbs")
        self._sync_dbs()
        return s

    def _names(self, at: float) -> dict[str, Db]:
        """The scratch databases by name once every command returned by ``at``
        had taken effect (they run one at a time)."""
        names = self.first_dbs
        for op, before, after in self.db_ops:
            if op.end <= at:
                names = after if op.ok else before
        return names

    def _db_command(self, sql: str, after: dict[str, Db], acts_on: Db | None, **meta: Any) -> None:
        s = self._db_session()
        op = self._start(s, "db", lambda c: c.execute(sql), on=acts_on, **meta)
        self.db_ops.append((op, dict(self.dbs), after))
        if acts_on is not None:
            acts_on.commands.append(op)
        self.dbs = after  # the model's view while it runs; _settle corrects a failure

    def database(self, i: int, command: str) -> None:
        """CREATE, DROP (WITH (FORCE)) or RENAME (to the other name) a scratch
        database; a command the model's databases make pointless is skipped."""
        self._step(f"database(i={i}, command={command!r})")
        self._db_session()
        name, other = NAMES[i], NAMES[1 - i]
        db = self.dbs.get(name)
        rest = {k: v for k, v in self.dbs.items() if k != name}
        if command == "create" and db is None:
            self._db_command(f"CREATE DATABASE {name}", {**rest, name: self._new_db(name)}, None, name=name)
        elif command.startswith("drop") and db is not None:
            force = " WITH (FORCE)" if command.endswith("force") else ""
            self._db_command(f"DROP DATABASE {name}{force}", rest, db, name=name, drop=db)
        elif command == "rename" and db is not None and other not in self.dbs:
            self._db_command(f"ALTER DATABASE {name} RENAME TO {other}", {**rest, other: db}, db, name=name)
        else:
            self._note(f"skipped: the scratch databases are {sorted(self.dbs)}")

    def _sync_dbs(self) -> None:
        """The model's databases as the returned commands left them."""
        self.dbs = self._names(math.inf)
        for op, _, _ in self.db_ops:
            drop = op.meta.get("drop")
            if drop is not None and op.ok:
                drop.dropped = op

    # -- settling: every op judged --------------------------------------------------
    def settle(self) -> None:
        self._step("settle()")
        self._settle()

    @invariant()
    def within_deadlines(self) -> None:
        """Cheap, after every step: no op past its deadline (the lock may hold them)."""
        self.open = True
        if self.lock is None:
            now = time.monotonic()
            late = [
                op
                for op in self.ops
                if not op.done.is_set() and max(op.unblocked, self.released) + LOCK_UNWIND_S < now
            ]
            for op in late:
                self._await(op)
        self.open = False

    def _settle(self) -> None:
        self._release("settling")
        for s in self.sessions.values():
            self._await(s.op)
        self._sync_dbs()
        for op in self.submits:
            self._job_of(op)
        problems: list[str] = []
        for op in self.ops[self.judged :]:
            problems += self._judge(op)
            self.lines.append(f"  {op.step} [{op.session.name}] -> {op.answer} ({op.end - op.t0:.3f} s)")
        self.judged = len(self.ops)
        problems += self._jobs_agree()
        assert not problems, f"the pool disagrees with the model ({len(problems)}): " + "\n  ".join(problems)

    def _job_of(self, submit: Op) -> Job | None:
        if not submit.ok:
            return None
        job = submit.meta.get("job")
        if job is None:
            name = submit.meta["name"]
            dbs = [] if name is None else self._candidates(submit, name)[0]
            job = Job(submit.meta["who"], submit.result, submit, submit.meta["tag"], dbs)
            submit.meta["job"] = job
            self.jobs.append(job)
        assert isinstance(job, Job)
        return job

    def _candidates(self, op: Op, name: str) -> tuple[list[Db], bool, bool]:
        """For an op on database ``name``: the instances it may have met, whether
        it may have found none, and whether a command on the name overlapped it."""
        base = self._names(op.t0).get(name)
        found: list[Db] = [base] if base is not None else []
        missing = base is None
        touched = False
        for cmd, before, after in self.db_ops:
            if cmd.overlaps(op) and before.get(name) is not after.get(name):
                touched = True
                for d in (before.get(name), after.get(name)):
                    if d is None:
                        missing = True
                    elif d not in found:
                        found.append(d)
        return found, missing, touched

    # -- judging ----------------------------------------------------------------------
    def _granted(self, who: str, op: Op) -> set[object]:
        return {True} if who == SU else self.granted[who].during(op)

    def _holders(self, op: Op) -> int:
        """How many slots may have been taken by others at some moment of ``op``."""
        n = 0
        for s in self.submits:
            if s is op or s.t0 >= op.end:
                continue
            job = s.meta.get("job")
            if not s.ok:
                n += s.end > op.t0
            elif job is None or job.freed_at is None or job.freed_at > op.t0:
                n += 1
        return n

    def _judge(self, op: Op) -> list[str]:
        got = op.answer
        if op.kind == "submit":
            allowed, why = self._submit_answers(op)
        elif op.kind == "terminate":
            allowed, why = self._terminate_answers(op)
        elif op.kind == "status":
            return self._judge_status(op)
        elif op.kind == "db":
            allowed, why = {"ok"}, "a superuser's database command"
            name = op.meta["name"]
            racing = [s for s in self.submits if s.meta["name"] == name and s.overlaps(op)]
            if racing and op.meta["on"] is not None:
                allowed.add(IN_USE)
                why += f"; {racing[0].step} raced it (core's 5 s wait for a worker that connected)"
        else:  # role DDL
            allowed, why = {"ok"}, "a superuser's role command"
        if got in allowed:
            return []
        return [f"{op.step} [{op.session.name}] answered {got!r}; allowed {sorted(map(str, allowed))}: {why}"]

    def _submit_answers(self, op: Op) -> tuple[set[object], str]:
        who, name = op.meta["who"], op.meta["name"]
        granted = self._granted(who, op)
        allowed: set[object] = set()
        why = [f"granted {sorted(granted)}"]
        if False in granted:
            allowed.add(DENIED)
        if True in granted:
            exists, missing, touched = True, False, False
            if name is not None:
                found, missing, touched = self._candidates(op, name)
                exists = bool(found)
                why.append(
                    f"{name} " + " or ".join(w for w, m in (("exists", exists), ("missing", missing)) if m)
                )
            if name is not None and who != SU:  # only a superuser may submit into another database
                allowed |= ({DENIED} if exists else set()) | ({NO_DB} if missing else set())
                return allowed, "a tenant's submit into another database; " + "; ".join(why)
            full = sum(j.live_throughout(op.t0, op.end) for j in self.jobs) >= self.capacity
            holders = self._holders(op)
            why.append(
                f"{holders} slots may be taken, of {self.capacity}" + (", all certainly" if full else "")
            )
            if exists and not full:
                allowed.add("ok")
            if holders >= self.capacity or touched:
                allowed.add(FULL)
            if missing:
                allowed.add(NO_DB)
        return allowed, "; ".join(why)

    def _terminate_answers(self, op: Op) -> tuple[set[object], str]:
        who, job = op.meta["who"], op.meta["job"]
        whose = "own" if who == job.owner else "a superuser's" if job.owner == SU else "another's"
        key = f"terminate of {whose} job by " + ("a superuser" if who == SU else "a tenant")
        self.tally[key] = self.tally.get(key, 0) + 1
        granted = self._granted(who, op)
        allowed: set[object] = set()
        if False in granted:
            allowed.add(DENIED)
        current = job.freed_at is None or job.freed_at > op.t0
        gone = not job.live_throughout(op.t0, op.end, but=op)
        signal = self.signal[who].during(op) if who in TENANTS else set()
        if True in granted:
            if who in (SU, job.owner) or (job.owner != SU and True in signal):
                allowed |= {True} if current else set()
            if who not in (SU, job.owner) and (job.owner == SU or False in signal):
                allowed |= {DENIED} if current else set()
            if gone:
                allowed.add(False)
        return allowed, (
            f"{who} (granted {sorted(granted)}, pg_signal_backend {sorted(signal)}) stops {job.owner}'s job"
            f" {job.handle}, " + ("possibly gone" if gone else "running throughout")
        )

    def _judge_status(self, op: Op) -> list[str]:
        who = op.meta["who"]
        granted = self._granted(who, op)
        if not op.ok:
            if op.answer == DENIED and False in granted:
                return []
            return [f"{op.step} [{op.session.name}] answered {op.answer!r}; granted {sorted(granted)}"]
        if True not in granted:
            return [
                f"{op.step} [{op.session.name}] was served though its role's grant was revoked throughout"
            ]
        slots: dict[int, Slot] = {s.slot: s for s in op.result}
        problems = []
        if len(slots) != self.capacity:
            problems.append(f"{op.step}: {len(slots)} slots listed, of {self.capacity}")
        for job in self.jobs:
            if job.live_throughout(op.t0, op.end):
                h, s = job.handle, slots.get(job.handle.slot)
                if s is None or (s.state, s.generation, s.pid) != ("running", h.generation, h.pid):
                    problems.append(f"{op.step}: {job.owner}'s running job {h} listed as {s}")
        return problems

    def _jobs_agree(self) -> list[str]:
        """Every job the model says must end is gone (its slot freed within
        SLOT_FREE_S), every one it says runs is listed running; the pool lists
        no other; its check is empty; the OS agrees; every recording job ran as
        its submitter with its role's settings, and no refused one ran."""
        pool, problems = self.pool, []
        for job in self.jobs:
            if job.freed_at is not None:
                continue
            why = job.must_end()
            if why is not None:
                try:
                    pool.wait_freed(job.handle, SLOT_FREE_S)
                except AssertionError as exc:
                    problems.append(f"{job.owner}'s job {job.handle} must be gone ({why}): {exc}")
                    continue
                job.freed_at = time.monotonic()
        slots = {s.slot: s for s in pool.adapter.slots()}
        now = time.monotonic()
        for job in self.jobs:
            if job.freed_at is not None:
                continue
            s = slots[job.handle.slot]
            current = s.state != "free" and s.generation == job.handle.generation
            if job.live_throughout(now, now) and not (
                current and s.state == "running" and s.pid == job.handle.pid
            ):
                problems.append(f"{job.owner}'s job {job.handle}, which nothing ended, is listed as {s}")
            elif not current:
                job.freed_at = now
        expected = {j.handle.slot: j.handle.generation for j in self.jobs if j.freed_at is None}
        last: list[dict[int, int]] = [{}]

        def agrees() -> bool:
            last[0] = {s.slot: s.generation for s in pool.adapter.slots() if s.state != "free"}
            return last[0] == expected

        try:
            self.t.wait_until(agrees, SLOT_FREE_S, what="the pool's busy slots to be the model's jobs")
        except AssertionError:
            problems.append(f"busy slots {last[0]} (slot: generation) != the model's live jobs {expected}")
        check = pool.adapter.check()
        if check:
            problems.append(f"the pool's check: {check}")
        try:
            pool.wait_agreement(SLOT_FREE_S)
        except AssertionError as exc:
            problems.append(str(exc))
        return problems + self._records_agree()

    def _records_agree(self) -> list[str]:
        # a recording job in a scratch database finds no table there: it fails, unread
        tagged = [s for s in self.submits if s.meta["tag"] is not None and s.meta["name"] is None]
        stopped = {j.tag for j in self.jobs if any(s.ok and s.result is True for s in j.stops)}
        wanted = {s.meta["tag"] for s in tagged if s.ok} - stopped
        rows: dict[str, tuple[str, str, str]] = {}

        def written() -> bool:
            rows.clear()
            for tag, cu, su, path in self.t.sql(f"SELECT tag, cu, su, path FROM {SEEN}"):
                rows[tag] = (cu, su, path)
            return wanted <= set(rows)

        try:
            self.t.wait_until(written, SLOT_FREE_S, what="every recording job's row")
        except AssertionError:
            return [f"recording jobs that did not write their row: {sorted(wanted - set(rows))}"]
        problems = []
        for s in tagged:
            got = rows.get(s.meta["tag"])
            role = TENANTS.get(s.meta["who"], self.su_name)
            if not s.ok:
                if got is not None:
                    problems.append(f"{s.step} was refused ({s.answer}) but its job ran: {got}")
                continue
            if got is None:
                continue  # stopped before it wrote
            paths = self.path[s.meta["who"]].during(s) if s.meta["who"] in TENANTS else {got[2]}
            if got[:2] != (role, role) or got[2] not in paths:
                problems.append(
                    f"{s.step}'s job ran as (current_user, session_user, search_path) {got};"
                    f" expected ({role}, {role}) and one of {sorted(map(str, paths))}"
                )
        return problems

    # -- the end of a sequence ----------------------------------------------------------
    def teardown(self) -> None:
        """Release the lock and wait for every op (a server that still holds one
        is restarted, immediate); then, unless the sequence already failed,
        judge it all, stop every job and witness the capacity."""
        failed = self.open
        hung: list[str] = []
        try:
            self._release("the end", judge=not failed)
        except AssertionError as exc:
            hung.append(str(exc))
        except psycopg.Error:
            pass  # a holder that broke holds no lock either
        for s in self.sessions.values():
            try:
                self._await(s.op)
            except AssertionError as exc:
                hung.append(str(exc))
        if hung and self.t.is_running():
            self.t.restart("immediate")
            self.pool.wait_fresh(CRASH_RECOVERY_S)
        for s in self.sessions.values():
            s.conn.close()
        if failed:
            return
        assert not hung, "; ".join(hung)
        self.open = True
        self._settle()
        self.pool.stop_all([j.handle for j in self.jobs if j.freed_at is None])
        self.pool.capacity_witness()
        self.open = False
