"""PRIV: a privilege matrix, derived rather than remembered.

Every SQL function of the pool (and the database commands its hook acts on)
x every role a caller can be x every argument form (NULLs and defaults
included).  Each cell's expected outcome comes from the pool's promise
(reference_ext/README.md, bgw_pool--1.0.sql): allowed, with its effect
checked (the job runs as the right role, a stop really stops, status shows
what a grantee may see), ``false`` (allowed, nothing stopped), or refused
with an exact SQLSTATE and nothing affected.  Every cell is judged, then the
test fails listing each failing cell.

Roles: ``superuser`` (the harness's own), ``grantee`` (granted the pool),
``unrelated`` (not granted), ``db_owner`` (owns a database, CREATEDB, not
granted), ``superuser_as_tenant`` (a superuser's session after SET ROLE to
the grantee).  Rows written ``sql`` use bgw_pool's own SQL surface and are
not applicable to other pools; ``adapter`` rows go through the adapter, and
every role but the superuser needs its ``grant_submit``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from conformance.adapters import Handle, NotApplicable, PoolAdapter
from conformance.adapters.bgw_pool import BgwPoolAdapter
from conformance.deadlines import SLOT_FREE_S
from conformance.suite.checks import PerKind
from conformance.suite.pool_under_test import LONG_MS, Pool
from conformance.targets import Target

SU, GRANTEE, UNRELATED, OWNER, SU_AS_TENANT = (
    "superuser",
    "grantee",
    "unrelated",
    "db_owner",
    "superuser_as_tenant",
)
ROLES = (SU, GRANTEE, UNRELATED, OWNER, SU_AS_TENANT)
TENANT = "bgwc_priv_tenant"  # the grantee
NEIGHBOUR = "bgwc_priv_neighbour"  # another grantee: owns victim jobs only
STRANGER = "bgwc_priv_stranger"  # the unrelated role
DB_OWNER = "bgwc_priv_owner"
DB = "bgwc_priv_db"
RENAMED = "bgwc_priv_db_renamed"
SEEN = "public.bgwc_priv_seen"
DENIED = "42501"

#: expected outcomes: "ok" (allowed, effect checked), "false" (allowed, answers
#: false, nothing stopped), or the SQLSTATE of the refusal (nothing affected)
#: PRIV-1: the SQL functions.  (form, via, superuser, grantee, unrelated, db_owner, superuser_as_tenant)
FUNCTIONS: list[tuple[str, str, str, str, str, str, str]] = [
    # form, via, then the outcome for each role of ROLES: su, grantee, unrelated, db_owner, su->tenant
    ("submit(job) [args, dbname defaulted]", "sql", "ok", "ok", DENIED, DENIED, "ok"),
    ("submit(job, args) [dbname defaulted]", "adapter", "ok", "ok", DENIED, DENIED, "ok"),
    ("submit(job, args, current database)", "sql", "ok", "ok", DENIED, DENIED, "ok"),
    ("submit(job, args, another database)", "sql", "ok", DENIED, DENIED, DENIED, DENIED),
    ("submit(NULL, args, dbname)", "sql", "22004", "22004", DENIED, DENIED, "22004"),
    ("submit(job, NULL, dbname)", "sql", "22004", "22004", DENIED, DENIED, "22004"),
    ("submit(job, args, NULL)", "sql", "22004", "22004", DENIED, DENIED, "22004"),
    ("submit('sleep') [args {} without ms]", "sql", "22023", "22023", DENIED, DENIED, "22023"),
    ("submit(unknown job)", "sql", "22023", "22023", DENIED, DENIED, "22023"),
    ("submit(fault job ignore_sigterm)", "sql", "ok", DENIED, DENIED, DENIED, DENIED),
    ("submit(sql job: RESET ROLE)", "adapter", "ok", "ok", DENIED, DENIED, "ok"),
    ("submit(sql job: SET ROLE superuser)", "adapter", "ok", "ok", DENIED, DENIED, "ok"),
    ("submit(sql job: SET SESSION AUTHORIZATION superuser)", "adapter", "ok", "ok", DENIED, DENIED, "ok"),
    ("_submit(sql job)", "sql", "ok", "ok", DENIED, DENIED, "ok"),
    ("_submit(fault job ignore_sigterm)", "sql", "ok", DENIED, DENIED, DENIED, DENIED),
    ("_submit(NULL job)", "sql", "22004", "22004", DENIED, DENIED, "22004"),
    ("terminate(superuser's job)", "adapter", "ok", DENIED, DENIED, DENIED, DENIED),
    ("terminate(grantee's job)", "adapter", "ok", "ok", DENIED, DENIED, "ok"),
    ("terminate(another grantee's job)", "adapter", "ok", DENIED, DENIED, DENIED, DENIED),
    ("terminate(superuser's slot, NULL)", "sql", "22004", "22004", DENIED, DENIED, "22004"),
    ("terminate(NULL, superuser's generation)", "sql", "22004", "22004", DENIED, DENIED, "22004"),
    ("terminate(NULL, NULL)", "sql", "22004", "22004", DENIED, DENIED, "22004"),
    ("terminate(superuser's slot, stale generation)", "sql", "false", "false", DENIED, DENIED, "false"),
    (
        "terminate(superuser's slot, generation 0, never issued)",
        "sql",
        "false",
        "false",
        DENIED,
        DENIED,
        "false",
    ),
    ("terminate(superuser's slot, negative generation)", "sql", "22023", "22023", DENIED, DENIED, "22023"),
    ("terminate(slot out of range, generation)", "sql", "22023", "22023", DENIED, DENIED, "22023"),
    ("status view", "adapter", "ok", "ok", DENIED, DENIED, "ok"),
    ("_status()", "sql", "ok", "ok", DENIED, DENIED, "ok"),
    ("stats()", "sql", "ok", DENIED, DENIED, DENIED, DENIED),
    ("launcher_pid()", "sql", "ok", DENIED, DENIED, DENIED, DENIED),
    ("check()", "sql", "ok", DENIED, DENIED, DENIED, DENIED),
    ("direct_launch_us()", "sql", "ok", DENIED, DENIED, DENIED, DENIED),
    ("pause_points()", "sql", "ok", DENIED, DENIED, DENIED, DENIED),
    ("pause_arm(NULL)", "sql", "22004", DENIED, DENIED, DENIED, DENIED),
    ("pause_arm(unknown point)", "sql", "22023", DENIED, DENIED, DENIED, DENIED),
    ("pause_release(NULL)", "sql", "22004", DENIED, DENIED, DENIED, DENIED),
    ("pause_release(unknown point)", "sql", "22023", DENIED, DENIED, DENIED, DENIED),
]

#: PRIV-2: database commands on DB (owned by db_owner, who has CREATEDB) while a
#: job is attached to it.  A refusal by core's wait (55006) takes core's 5 s.
COMMANDS: list[tuple[str, str, str, str, str, str, str]] = [
    # form, via, then the outcome for each role of ROLES: su, grantee, unrelated, db_owner, su->tenant
    ("DROP DATABASE, superuser's job in it", "adapter", "ok", DENIED, DENIED, "55006", DENIED),
    ("DROP DATABASE, grantee's job in it", "adapter", "ok", DENIED, DENIED, "55006", DENIED),
    ("ALTER DATABASE RENAME, grantee's job in it", "adapter", "ok", DENIED, DENIED, "55006", DENIED),
    (
        "ALTER DATABASE RENAME TO a taken name, superuser's job in it",
        "adapter",
        "42P04",
        DENIED,
        DENIED,
        "42P04",
        DENIED,
    ),
]

#: the escapes an sql job tries, by form: never may it run as another role than its submitter
ESCAPES = {
    "submit(sql job: RESET ROLE)": "RESET ROLE",
    "submit(sql job: SET ROLE superuser)": "SET ROLE {su}",
    "submit(sql job: SET SESSION AUTHORIZATION superuser)": "SET SESSION AUTHORIZATION {su}",
}


def matrix(rows: list[tuple[str, str, str, str, str, str, str]]) -> list[tuple[str, str, str, str]]:
    """The cells of a table: (form, via, role, expected)."""
    return [
        (form, via, role, exp) for form, via, *exps in rows for role, exp in zip(ROLES, exps, strict=True)
    ]


@dataclass
class Ctx:
    pool: Pool
    su_name: str
    conns: dict[str, psycopg.Connection[Any] | None]
    neighbour: psycopg.Connection[Any] | None
    tenant_in_db: psycopg.Connection[Any] | None = None
    victims: dict[str, Handle] = field(default_factory=dict)
    n: int = 0

    @property
    def t(self) -> Target:
        return self.pool.target

    @property
    def a(self) -> PoolAdapter:
        return self.pool.adapter

    def conn(self, role: str) -> psycopg.Connection[Any] | None:
        if role not in self.conns:
            raise NotApplicable("the pool cannot be granted to a role (no grant_submit)")
        return self.conns[role]

    def q(self, role: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """``query`` in ``role``'s session (the superuser's: the target's own)."""
        conn = self.conn(role)
        if conn is None:
            return self.t.sql(query, *params)
        cur = conn.execute(query, params or None)
        return cur.fetchall() if cur.description else []

    def job_role(self, role: str) -> str:
        return self.su_name if role == SU else TENANT

    # -- jobs and their effects -----------------------------------------------------
    def victim(self, owner: str) -> Handle:
        """A live long job of ``owner`` (superuser, tenant, neighbour), started if none is."""
        h = self.victims.get(owner)
        if h is not None and self.alive(h):
            return h
        conn = {SU: None, TENANT: self.conns.get(GRANTEE), NEIGHBOUR: self.neighbour}[owner]
        if owner != SU and conn is None:
            raise NotApplicable("the pool cannot be granted to a role (no grant_submit)")
        h = self.a.submit("sleep", {"ms": LONG_MS}, conn=conn)
        self.victims[owner] = h
        return h

    def alive(self, h: Handle) -> bool:
        if h.pid not in {p.pid for p in self.pool.os_workers()}:
            return False
        if h.slot is None:
            return True
        s = self.pool.slot(h.slot)
        return s.state == "running" and s.generation == h.generation and s.pid == h.pid

    def stopped(self, h: Handle, what: str) -> None:
        self.pool.wait_gone({h.os_pid}, SLOT_FREE_S, f"the worker of {h} after {what}")
        if h.slot is not None:
            self.pool.wait_freed(h)

    def ended(self, h: Handle) -> None:
        """Wait for a short job to end (its worker gone, its slot moved on)."""
        if h.pid is not None:
            self.pool.wait_gone({h.pid}, SLOT_FREE_S, f"the short job {h} to end")
        if h.slot is not None:
            self.pool.wait_freed(h)

    def record_query(self, cell: str, prefix: str = "") -> str:
        lead = f"{prefix.format(su=self.su_name)}; " if prefix else ""
        return f"{lead}INSERT INTO {SEEN} VALUES ('{cell}', current_user, session_user)"

    def seen(self, cell: str) -> list[tuple[str, str]]:
        return [(cu, su) for cu, su in self.t.sql(f"SELECT cu, su FROM {SEEN} WHERE cell = %s", cell)]

    def no_new_worker(self) -> None:
        victims = {h.pid for h in self.victims.values()}
        extra = {p.pid for p in self.pool.os_workers()} - victims
        assert not extra, f"workers {sorted(extra)} run beside the victims {sorted(victims)}"


def _slot_handle(rows: list[tuple[Any, ...]]) -> Handle:
    assert len(rows) == 1, f"a submit answered {rows!r}"
    return Handle(rows[0][0], rows[0][1], rows[0][2])


def run_function(
    ctx: Ctx, form: str, role: str, cell: str
) -> tuple[Any, Callable[[], None], Callable[[], None]]:
    """Do ``form`` as ``role``: (its answer, a check of its effect when
    allowed, a check that nothing was affected when refused).  Raises the
    psycopg error of a refusal."""
    q = ctx.q
    me = ctx.job_role(role)

    def ran_as(h: Handle, required: bool = True) -> Callable[[], None]:
        def check() -> None:
            ctx.ended(h)
            seen = ctx.seen(cell)
            assert len(seen) <= 1 and all(r == (me, me) for r in seen), (
                f"the job recorded (current_user, session_user) {seen}; expected ({me}, {me})"
            )
            if required:
                assert seen, "the job recorded nothing: it did not run"

        return check

    def short(h: Handle) -> Callable[[], None]:
        return lambda: ctx.ended(h)

    def untouched(*owners: str) -> Callable[[], None]:
        handles = [ctx.victims[o] for o in owners if o in ctx.victims]

        def check() -> None:
            for h in handles:
                assert ctx.alive(h), f"the victim job {h} was affected"
            ctx.no_new_worker()
            assert not ctx.seen(cell), f"a refused call's job ran: {ctx.seen(cell)}"

        return check

    nothing = untouched(SU, TENANT, NEIGHBOUR)
    record = ctx.record_query(cell)
    sub = "SELECT slot, generation, pid FROM bgw_pool.submit"
    if form == "submit(job) [args, dbname defaulted]":
        return (h := _slot_handle(q(role, f"{sub}('exit_at_once')"))), short(h), nothing
    if form == "submit(job, args) [dbname defaulted]":
        h = ctx.a.submit("sql", {"query": record}, conn=ctx.conn(role))
        return h, ran_as(h), nothing
    if form == "submit(job, args, current database)":
        h = _slot_handle(
            q(role, f"{sub}('sql', jsonb_build_object('query', %s::text), current_database())", record)
        )
        return h, ran_as(h), nothing
    if form == "submit(job, args, another database)":
        h = _slot_handle(q(role, f"{sub}('sleep', '{{\"ms\": 1}}', %s)", DB))
        return h, short(h), nothing
    if form == "submit(NULL, args, dbname)":
        return q(role, f"{sub}(NULL, '{{}}', current_database())"), nothing, nothing
    if form == "submit(job, NULL, dbname)":
        return q(role, f"{sub}('sleep', NULL, current_database())"), nothing, nothing
    if form == "submit(job, args, NULL)":
        return q(role, f"{sub}('sleep', '{{\"ms\": 1}}', NULL)"), nothing, nothing
    if form == "submit('sleep') [args {} without ms]":
        return q(role, f"{sub}('sleep')"), nothing, nothing
    if form == "submit(unknown job)":
        return q(role, f"{sub}('bgwc_no_such_job')"), nothing, nothing
    if form == "submit(fault job ignore_sigterm)":
        h = _slot_handle(q(role, f"{sub}('ignore_sigterm', '{{\"ms\": 1}}')"))
        return h, short(h), nothing
    if form in ESCAPES:
        h = ctx.a.submit("sql", {"query": ctx.record_query(cell, ESCAPES[form])}, conn=ctx.conn(role))
        # refused inside the job (no row) or run as its submitter: never as another role
        return h, ran_as(h, required=False), nothing
    sub_ = "SELECT slot, generation, pid FROM bgw_pool._submit"
    if form == "_submit(sql job)":
        h = _slot_handle(
            q(role, f"{sub_}('sql', 'object', NULL, NULL, NULL, %s, current_database())", record)
        )
        return h, ran_as(h), nothing
    if form == "_submit(fault job ignore_sigterm)":
        h = _slot_handle(
            q(role, f"{sub_}('ignore_sigterm', 'object', '1', NULL, NULL, NULL, current_database())")
        )
        return h, short(h), nothing
    if form == "_submit(NULL job)":
        return (
            q(role, f"{sub_}(NULL, 'object', NULL, NULL, NULL, NULL, current_database())"),
            nothing,
            nothing,
        )
    if form.startswith("terminate("):
        owner = SU if "superuser's" in form else NEIGHBOUR if "another" in form else TENANT
        v = ctx.victim(owner)
        if form.endswith("job)"):
            got = ctx.a.terminate(v, conn=ctx.conn(role))

            def stopped() -> None:
                assert got is True, f"terminate answered {got!r}"
                ctx.stopped(v, f"terminate as {role}")
                del ctx.victims[owner]

            return got, stopped, untouched(owner)
        args = {
            "terminate(superuser's slot, NULL)": (v.slot, None),
            "terminate(NULL, superuser's generation)": (None, v.generation),
            "terminate(NULL, NULL)": (None, None),
            "terminate(superuser's slot, stale generation)": (v.slot, (v.generation or 1) - 1),
            "terminate(superuser's slot, generation 0, never issued)": (v.slot, 0),
            "terminate(superuser's slot, negative generation)": (v.slot, -1),
            "terminate(slot out of range, generation)": (ctx.a.capacity(), v.generation),
        }[form]
        rows = q(role, "SELECT bgw_pool.terminate(%s::int, %s::bigint)", *args)
        return rows[0][0], untouched(owner), untouched(owner)
    if form == "status view":
        v = ctx.victim(SU)
        try:
            slots = ctx.a.slots(conn=ctx.conn(role))
        except NotApplicable:
            if role != SU:  # a pool without slots lists jobs in the adapter's own (superuser) session
                raise
            jobs = ctx.a.jobs()

            def listed() -> None:
                assert v.pid in {j.handle.pid for j in jobs}, f"victim {v} not among the jobs listed: {jobs}"

            return jobs, listed, untouched(SU)

        def shows() -> None:
            assert len(slots) == ctx.a.capacity(), f"{len(slots)} slots listed"
            mine = [s for s in slots if s.slot == v.slot]
            assert mine and mine[0].state == "running" and mine[0].pid == v.pid, (
                f"victim {v} listed as {mine}"
            )

        return slots, shows, untouched(SU)
    if form == "_status()":
        v = ctx.victim(SU)
        rows = q(role, "SELECT slot, role, state, pid FROM bgw_pool._status()")

        def shows_role() -> None:
            assert (v.slot, ctx.su_name, "running", v.pid) in rows, f"victim {v} not listed in {rows}"

        return rows, shows_role, nothing
    simple = {
        "stats()": "SELECT capacity FROM bgw_pool.stats()",
        "launcher_pid()": "SELECT bgw_pool.launcher_pid()",
        "check()": "SELECT count(*) FROM bgw_pool.check()",
        "direct_launch_us()": "SELECT bgw_pool.direct_launch_us()",
        "pause_points()": "SELECT count(*) FROM bgw_pool.pause_points()",
        "pause_arm(NULL)": "SELECT bgw_pool.pause_arm(NULL)",
        "pause_arm(unknown point)": "SELECT bgw_pool.pause_arm('bgwc-no-such-point')",
        "pause_release(NULL)": "SELECT bgw_pool.pause_release(NULL)",
        "pause_release(unknown point)": "SELECT bgw_pool.pause_release('bgwc-no-such-point')",
    }
    rows = q(role, simple[form])

    def answered() -> None:
        assert rows and rows[0][0] is not None, f"{form} answered {rows}"

    return rows, answered, nothing


def judge(
    ctx: Ctx,
    cells: list[tuple[str, str, str, str]],
    per: PerKind,
    run: Callable[[Ctx, str, str, str], tuple[Any, Callable[[], None], Callable[[], None]]],
) -> dict[str, int]:
    """Judge every cell; the counts of each outcome."""
    bgw_pool = isinstance(ctx.a, BgwPoolAdapter)
    counts = {"pass": 0, "fail": 0, "not-applicable": 0}
    for form, via, role, expected in cells:
        ctx.n += 1
        cell = f"{form} as {role}"
        with per.judging(cell) as verdict:
            try:
                if via == "sql" and not bgw_pool:
                    raise NotApplicable("bgw_pool's own SQL surface: the adapter cannot express it")
                got: Any
                try:
                    got, effect, unaffected = run(ctx, form, role, f"c{ctx.n}")
                except psycopg.Error as exc:
                    assert exc.sqlstate == expected, (
                        f"refused with {exc.sqlstate} ({exc}); expected {expected}"
                    )
                    run_unaffected(ctx, form, f"c{ctx.n}")
                    verdict["detail"] = f"refused {exc.sqlstate}"
                else:
                    assert expected in ("ok", "false"), f"allowed (answered {got!r}); expected {expected}"
                    if expected == "false":
                        assert got is False, f"answered {got!r}; expected false"
                        unaffected()
                    else:
                        effect()
                    verdict["detail"] = "allowed"
            except NotApplicable as exc:
                verdict.update(outcome="not-applicable", detail=str(exc))
        counts[verdict["outcome"]] = counts.get(verdict["outcome"], 0) + 1
    return counts


def run_unaffected(ctx: Ctx, form: str, cell: str) -> None:
    """After a refusal: every victim alive, no worker beside them, no job run."""
    for h in ctx.victims.values():
        assert ctx.alive(h), f"the victim job {h} was affected by a refused {form}"
    ctx.no_new_worker()
    assert not ctx.seen(cell), f"a refused call's job ran: {ctx.seen(cell)}"


# -- fixtures ---------------------------------------------------------------------------


def _drop(pool: Pool) -> None:
    t = pool.target
    for db in (DB, RENAMED):
        t.sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", idempotent=True)
    t.sql(f"DROP TABLE IF EXISTS {SEEN}", idempotent=True)
    pool.drop_roles(TENANT, NEIGHBOUR, STRANGER, DB_OWNER)


def _make_db(ctx: Ctx) -> None:
    """DB, owned by db_owner, with the pool's extension granted to the tenant there."""
    t = ctx.t
    t.sql(f"CREATE DATABASE {DB} OWNER {DB_OWNER}")
    if isinstance(ctx.a, BgwPoolAdapter):
        with t.connect(DB) as conn:
            conn.execute("CREATE EXTENSION bgw_pool")
            conn.execute(f"GRANT USAGE ON SCHEMA bgw_pool TO {TENANT}")
            conn.execute(
                "GRANT EXECUTE ON FUNCTION bgw_pool.submit(text, jsonb, name),"
                " bgw_pool._submit(text, text, text, text, text, text, name),"
                f" bgw_pool.terminate(int, bigint), bgw_pool._status() TO {TENANT}"
            )


@pytest.fixture
def ctx(pool: Pool) -> Iterator[Ctx]:
    t = pool.target
    _drop(pool)
    t.sql(f"CREATE TABLE {SEEN} (cell text, cu text, su text)")
    t.sql(f"GRANT INSERT ON {SEEN} TO PUBLIC")
    for role in (TENANT, NEIGHBOUR, STRANGER):
        t.sql(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
    t.sql(f"CREATE ROLE {DB_OWNER} LOGIN NOSUPERUSER CREATEDB NOCREATEROLE")
    opened: list[psycopg.Connection[Any]] = []

    def session(user: str, role: str | None = None) -> psycopg.Connection[Any]:
        conn = t.connect(user=user) if role is None else t.connect()
        if role is not None:
            conn.execute(f"SET ROLE {role}")
        opened.append(conn)
        return conn

    try:
        conns: dict[str, psycopg.Connection[Any] | None] = {SU: None}
        neighbour = None
        try:
            pool.adapter.grant_submit(TENANT)
            pool.adapter.grant_submit(NEIGHBOUR)
        except NotApplicable:
            pass
        else:
            conns |= {
                GRANTEE: session(TENANT),
                UNRELATED: session(STRANGER),
                OWNER: session(DB_OWNER),
                SU_AS_TENANT: session(t.scalar("SELECT current_user"), TENANT),
            }
            neighbour = session(NEIGHBOUR)
        c = Ctx(pool, t.scalar("SELECT current_user"), conns, neighbour)
        _make_db(c)
        yield c
    finally:
        for conn in opened:
            conn.close()
        _drop(pool)


def _finish(per: PerKind, counts: dict[str, int], took: float, record: Callable[[str, object], None]) -> None:
    record("cells", counts)
    record("took_s", round(took, 1))
    per.done()
    if not counts["pass"]:
        raise NotApplicable(f"no cell of the matrix is expressible for this pool: {counts}")


@pytest.mark.clause("PRIV-1")
def test_function_privilege_matrix(ctx: Ctx, record_property: Callable[[str, object], None]) -> None:
    t0 = time.monotonic()
    per = PerKind("PRIV-1", record_property, noun="cells")
    counts = judge(ctx, matrix(FUNCTIONS), per, run_function)
    _finish(per, counts, time.monotonic() - t0, record_property)


def run_command(
    ctx: Ctx, form: str, role: str, cell: str
) -> tuple[Any, Callable[[], None], Callable[[], None]]:
    """A database command on DB as ``role`` with one job attached to DB."""
    t = ctx.t
    if t.scalar("SELECT count(*) FROM pg_database WHERE datname = %s", DB) == 0:
        t.sql(f"DROP DATABASE IF EXISTS {RENAMED}")
        _make_db(ctx)
    if "superuser's job" in form:
        h = ctx.a.submit("sleep", {"ms": LONG_MS}, dbname=DB)
    else:
        if GRANTEE not in ctx.conns:
            raise NotApplicable("the pool cannot be granted to a role (no grant_submit)")
        with t.connect(DB, user=TENANT) as conn:  # a job is submitted in its submitter's database
            h = ctx.a.submit("sleep", {"ms": LONG_MS}, conn=conn)
    ctx.victims = {"db": h}
    taken = "taken name" in form  # core refuses it (42P04) after its ownership and CREATEDB checks
    rename = f"ALTER DATABASE {DB} RENAME TO {'postgres' if taken else RENAMED}"
    command = f"DROP DATABASE {DB}" if form.startswith("DROP") else rename

    def done() -> None:
        ctx.stopped(h, command)
        if "RENAME" in command:
            t.sql(f"ALTER DATABASE {RENAMED} RENAME TO {DB}")

    def kept() -> None:
        assert ctx.alive(h), f"the job {h} in {DB} was affected by a refused {command}"

    try:
        ctx.q(role, command)
    except psycopg.Error:
        kept()
        ctx.a.terminate(h)
        ctx.stopped(h, "the cell")
        ctx.victims = {}
        raise
    return True, done, kept


@pytest.mark.clause("PRIV-2")
def test_database_command_privilege_matrix(ctx: Ctx, record_property: Callable[[str, object], None]) -> None:
    t0 = time.monotonic()
    per = PerKind("PRIV-2", record_property, noun="cells")
    counts = judge(ctx, matrix(COMMANDS), per, run_command)
    _finish(per, counts, time.monotonic() - t0, record_property)
