"""Property-based fuzzing (hypothesis) of every SQL function of the reference
pool bgw_pool, on a real server.

Each example is a short sequence of calls, as the superuser ``postgres`` or as
an unprivileged LOGIN role granted the pool, with NULLs, out-of-range and
oddly spelled numbers, malformed jsonb, unknown job kinds and pause points,
queries and messages past the 1023-byte limit, and odd database names.

Oracle, per call: it succeeds or fails with a SQLSTATE of the documented set
(the extension's 22004, 22023, 54000, 3D000, 55000, 53000, 42501, and the
class-22/42 codes and 0A000 PostgreSQL raises itself for arguments it cannot
take), never XX000/XX001, 58xxx or a broken connection; and it is the very
outcome a model of bgw_pool's argument checks (reference_ext/src/sql.c,
pause.c) predicts.  After every example nothing is left running, no pause
point is armed and ``bgw_pool.check()`` is empty.  After the run: the same
postmaster and launcher, no crash in the server log, no worker crashed.

Safety: the superuser never submits ``crash``, ``ignore_sigterm`` or an
``exit`` code other than 0 or 1 (its strategies cannot spell them, and the
model refuses to send one), accepted ``sleep`` jobs sleep at most 200 ms, and
``sql`` jobs run only SELECTs and statements that cannot parse.  The
unprivileged role does try the fault kinds: they must be refused (42501).

Replay: the seed is ``--bgwc-seed`` if given, else drawn and printed.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
import psycopg.sql
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from conformance.config import KitConfig
from conformance.targets import Target

ROLE = "bgwc_fuzz"
#: NAMEDATALEN - 1 = 63 bytes, so a longer name starting with it is cut to it;
#: the role may not connect to it (42501 for its jobs)
PRIVATE_DB = "bgwc_fuzz_\u00f1_" + "x" * 50
MAX_EXAMPLES = 500
MAX_CALLS = 4
SETTLE_S = 20  # a terminated worker is gone in milliseconds

TEXT_LIMIT = 1024  # BGW_POOL_TEXT_LEN: a job's text must be shorter
INT_MAX = 2**31 - 1
INT64 = (-(2**63), 2**63 - 1)
MAX_IGNORE_MS = 30000
DEFAULT_IGNORE_MS = 10000
MAX_SLEEP_MS = 200  # what an accepted sleep may wait, here
JOB_KINDS = (
    "sleep",
    "sql",
    "exit",
    "error",
    "fatal",
    "crash",
    "ignore_sigterm",
    "exit_at_once",
    "fail_to_start",
)
SAFE_KINDS = ("sleep", "sql", "exit", "error", "fatal", "exit_at_once", "fail_to_start")
FAULT_KINDS = ("crash", "ignore_sigterm")

#: the extension's own SQLSTATEs (README, sql.c)
DOCUMENTED = frozenset({"22004", "22023", "54000", "3D000", "55000", "53000", "42501"})
#: what PostgreSQL itself may raise before a C function runs, for arguments
#: it cannot resolve or convert (any class 22/42 code is accepted, see _allowed)
PG_OWN = frozenset({"42883", "42804", "22P02", "22003", "22P05", "0A000"})
OK = "ok"
ACCEPTED = frozenset({OK, "53000"})  # a valid submit: started, or the pool/max_worker_processes is full

BAD_LOG = re.compile(
    r"terminated by signal|server process .* was terminated|\bPANIC:|TRAP:"
    r"|terminating any other active server processes|all server processes terminated",
)

DECOMPOSE = (
    "SELECT pg_catalog.jsonb_typeof(j), j->>'ms', j->>'code', j->>'message', j->>'query'"
    " FROM (SELECT %s::jsonb AS j) AS a"
)


# -- the tally -----------------------------------------------------------------
@dataclass
class Tally:
    """Calls made (cases), their outcomes, and calls the model refused to send."""

    cases: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    by_function: Counter[str] = field(default_factory=Counter)
    detail: Counter[tuple[str, str]] = field(default_factory=Counter)  # (function, outcome)
    guarded: int = 0
    examples: int = 0
    faults_refused: int = 0  # crash, ignore_sigterm, exit 2..255 by the role: 42501

    def reset(self) -> None:
        self.cases = self.guarded = self.examples = self.faults_refused = 0
        self.outcomes.clear()
        self.by_function.clear()
        self.detail.clear()


TALLY = Tally()


# -- JSON spelled by hand: numbers as written, duplicate keys --------------------
@dataclass(frozen=True)
class Raw:
    """A JSON token sent as written (``1e10``, ``-0``, ``true``) or not JSON at all."""

    token: str


@dataclass(frozen=True)
class Arr:
    items: tuple[Json, ...]


@dataclass(frozen=True)
class Obj:
    pairs: tuple[tuple[str, Json], ...]


Json = Raw | str | Arr | Obj


def dump(value: Json) -> str:
    if isinstance(value, Raw):
        return value.token
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Arr):
        return "[" + ", ".join(dump(v) for v in value.items) + "]"
    return "{" + ", ".join(f"{json.dumps(k)}: {dump(v)}" for k, v in value.pairs) + "}"


# -- strategies ------------------------------------------------------------------
def _quiet(s: str) -> bool:
    """Texts end up in the server log: none may look like the crash lines we grep for."""
    low = s.lower()
    return not any(w in low for w in ("panic", "terminat", "trap", "reinitializ"))


def nullable(strategy: st.SearchStrategy[Any], one_in: int = 10) -> st.SearchStrategy[Any]:
    """``strategy``, or NULL once in ``one_in`` draws."""
    # NULL last: hypothesis favours (and shrinks towards) the first branch
    return st.integers(1, one_in).flatmap(lambda i: st.none() if i == one_in else strategy)


SAFE_CHAR = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
short_text = st.text(SAFE_CHAR, max_size=24).filter(_quiet)


@st.composite
def sized_text(draw: st.DrawFn, fill: Sequence[str] = ("x", "\u00e9", "\u20ac", "\U0001f600")) -> str:
    """A text of about the 1023-byte limit (or far beyond) in UTF-8 bytes."""
    ch = draw(st.sampled_from(fill))
    size = draw(st.sampled_from([1023, 1024, 1023, 1024, 1022, 1025, 1100, 4000]))
    width = len(ch.encode())
    return "a" * (size % width) + ch * (size // width)


def lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


#: harmless statements for sql jobs: SELECTs, settings, and what cannot parse
#: or run (SPI parses the whole string first: a syntax error runs nothing)
QUERIES = (
    "SELECT 1",
    "select 1;",
    "SELECT 1; SELECT 2",
    "SELECT 1;; SELECT 2;",
    "SELECT 1; SELEC 2",
    "SELEC 1",
    ";",
    "",
    "   ",
    "-- a comment only",
    "/* unterminated",
    "SELECT 1/0",
    "SELECT pg_sleep(0.05)",  # ok-sleep: the fuzzed job's own query, not a wait
    "SELECT * FROM bgwc_no_such_table",
    "SELECT current_user, session_user",
    "SHOW work_mem",
    "SET LOCAL work_mem = '1MB'",
    "BEGIN",
    "COMMIT",
    "SELECT $1",
    "SELECT count(*) FROM generate_series(1, 1000)",
    "SELECT repeat('x', 100000)",
    "DO $$BEGIN RAISE NOTICE 'bgwc'; END$$",
)


@st.composite
def padded_query(draw: st.DrawFn) -> str:
    """SELECT 1 padded to about the byte limit, in a comment or a literal."""
    body = draw(sized_text(("x", "\u00e9", "\U0001f600")))
    return draw(st.sampled_from([f"SELECT 1 -- {body}", f"SELECT {lit(body)}"]))


queries = st.one_of(
    st.sampled_from(QUERIES),
    short_text.map(lambda t: "SELECT " + lit(t)),
    short_text.map(lambda t: "bgwc_junk " + t),  # a syntax error, whatever follows
    st.integers(2, 150).map(lambda n: "; ".join(["SELECT 1"] * n)),
    padded_query(),
)
messages = st.one_of(
    short_text, sized_text(), sized_text(), st.sampled_from(["", "%s %d %n", "line\nbreak", "'quoted'"])
)

#: int values whose accepted ones are small (sleep ms at most 200)
small_ints = st.integers(-3, MAX_SLEEP_MS)
far_ints = st.sampled_from(
    [2**31, 2**31 + 1, 2**32, 2**63 - 1, 2**63, 10**20, -1, -(2**31), -(2**31) - 1, -(2**63), -(2**63) - 1]
)
#: values that must be refused for exit (codes 0..255) or ignore_sigterm (ms 0..30000)
edge_ints = st.sampled_from([2, 3, 42, 127, 128, 254, 255, 256, 300, 30000, 30001, INT_MAX, 10**6])
ODD_NUMBERS = (
    "",
    " ",
    "1e10",
    "-0",
    "+0",
    "0x10",
    "\u0663",  # an Arabic-Indic digit
    "\uff15",  # a fullwidth 5
    "1_000",
    "NaN",
    "inf",
    "--1",
    "+-1",
    "1 2",
    "0.5",
    "1,000",
    "null",
    "true",
    "99999999999999999999999999",
)
INVALID_JSON = (
    "",
    "{",
    "}",
    "{'ms': 1}",
    "[1,]",
    "NaN",
    '{"ms": }',
    '{"ms": 1',
    "nul",
    '{"ms": 01}',
    '{"ms": .5}',
    '{"ms": +1}',
    '"unterminated',
    '{"ms": 1} {"ms": 2}',
)
#: JSON numbers spelled as the test wants (jsonb renders them back for ->>)
NUMBER_TOKENS = ("1e10", "-0", "1.5", "2.0e2", "1e2", "5e-1", "1E400", "0.0", "-0.0", "1.0", "1e0", "0e5")


@st.composite
def spelled(draw: st.DrawFn, ints: st.SearchStrategy[int]) -> str:
    """An int as text, decorated so that strtoll reads the same value or fails."""
    v = draw(ints)
    pre = draw(st.sampled_from(["", "", "", " ", "\t", "\n", "+", "0", "00"]))
    suf = draw(st.sampled_from(["", "", "", " ", ".0", "e1", "x", "\n"]))
    return pre + str(v) + suf


def int_texts(ints: st.SearchStrategy[int]) -> st.SearchStrategy[str]:
    return st.one_of(ints.map(str), spelled(ints), st.sampled_from(ODD_NUMBERS))


#: the superuser's exit codes: only ever 0 or 1, however spelled, or no number
SU_CODE_TEXTS = ("0", "1", " 1", "+1", "01", "-0", "1 ", "\t0", "one", "", "0x1", "1.0", "0e0")
SU_CODE_JSON: tuple[Json, ...] = (
    Raw("0"),
    Raw("1"),
    Raw("-0"),
    Raw("1e0"),
    Raw("0e5"),
    Raw("1.0"),
    Raw("0.0"),
    Raw("true"),
    Raw("null"),
    Arr(()),
    Obj(()),
    *SU_CODE_TEXTS,
)

KEYS = ("ms", "code", "message", "query")


def json_leaf(ints: st.SearchStrategy[int]) -> st.SearchStrategy[Json]:
    return st.one_of(
        ints.map(lambda v: Raw(str(v))),
        st.sampled_from(NUMBER_TOKENS).map(Raw),
        st.sampled_from([Raw("null"), Raw("true"), Raw("false")]),
        int_texts(ints),
        short_text,
    )


def json_tree(leaf: st.SearchStrategy[Json]) -> st.SearchStrategy[Json]:
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3).map(lambda xs: Arr(tuple(xs))),
            st.lists(st.tuples(st.sampled_from([*KEYS, "a", ""]) | short_text, inner), max_size=3).map(
                lambda ps: Obj(tuple(ps))
            ),
        ),
        max_leaves=5,
    )


def ms_ints(su: bool, job: str | None) -> st.SearchStrategy[int]:
    if not su and job == "ignore_sigterm":  # refused anyway: 22023 or 42501
        return small_ints | far_ints | edge_ints
    return small_ints | far_ints


def code_ints(su: bool) -> st.SearchStrategy[int]:
    return st.sampled_from([0, 1]) if su else st.integers(-3, 3) | edge_ints | far_ints


@st.composite
def job_names(draw: st.DrawFn, su: bool) -> str | None:
    kinds = SAFE_KINDS if su else JOB_KINDS
    near = [
        "Sleep",
        "SLEEP",
        " sleep",
        "sleep ",
        "sleep\n",
        "sl eep",
        "crash ",
        "Crash",
        "ignore-sigterm",
        "ignore_sigterm\t",
        "exit_at_onc",
        "",
        "sql;",
        "sleep\u200b",
        "\uff53leep",  # a fullwidth s
        "x" * 5000,
    ]
    job = draw(
        nullable(
            st.one_of(
                st.sampled_from(kinds),
                st.sampled_from(kinds),
                st.sampled_from(kinds),
                st.sampled_from(near),
                short_text,
            ),
            15,
        )
    )
    if su and job in FAULT_KINDS:  # cannot be drawn; kept as a second lock
        job = "sleep"
    return job


@st.composite
def json_args(draw: st.DrawFn, su: bool, job: str | None) -> str | None:
    """The args of submit: JSON text (valid or not), or NULL."""
    ms_leaf = json_leaf(ms_ints(su, job))
    values: dict[str, st.SearchStrategy[Json]] = {
        "ms": ms_leaf | json_tree(ms_leaf),
        "code": st.sampled_from(SU_CODE_JSON)
        if su
        else json_leaf(code_ints(su)) | json_tree(json_leaf(code_ints(su))),
        "message": messages | json_tree(json_leaf(small_ints)),
        "query": queries | json_tree(json_leaf(small_ints)) | st.sampled_from(NUMBER_TOKENS).map(Raw),
    }
    shape = draw(
        st.sampled_from(["typical"] * 5 + ["object"] * 5 + ["leaf", "tree", "invalid", "null", "nul-escape"])
    )
    if shape == "typical":  # what the job needs, well formed: these mostly run
        typical: dict[str | None, st.SearchStrategy[Json]] = {
            "sleep": small_ints.map(lambda v: Obj((("ms", Raw(str(v))),))),
            "sql": queries.map(lambda q: Obj((("query", q),))),
            "exit": st.sampled_from(SU_CODE_JSON if su else (Raw("0"), Raw("1"), Raw("2"), Raw("256"))).map(
                lambda c: Obj((("code", c),))
            ),
            "error": messages.map(lambda m: Obj((("message", m),))),
            "fatal": messages.map(lambda m: Obj((("message", m),))),
        }
        return dump(draw(typical.get(job, st.just(Obj(())))))
    if shape == "null":
        return None
    if shape == "invalid":
        return draw(st.sampled_from(INVALID_JSON))
    if shape == "nul-escape":
        return '{"message": "a\\u0000b", "query": "SELECT 1"}'
    if shape == "leaf":
        return dump(draw(json_leaf(small_ints)))
    if shape == "tree":
        tree = draw(json_tree(json_leaf(small_ints)))
        if su and isinstance(tree, Obj):  # a top-level "code" would be an exit code
            tree = Obj(tuple((k, v) for k, v in tree.pairs if k != "code"))
        return dump(tree)
    keys = draw(st.lists(st.sampled_from(KEYS), max_size=5))  # repeats: jsonb keeps the last
    extra = draw(st.lists(st.tuples(short_text, json_leaf(small_ints)), max_size=2))
    pairs: list[tuple[str, Json]] = [(k, draw(values[k])) for k in keys]
    pairs += [(k, v) for k, v in extra if k not in KEYS]
    return dump(Obj(tuple(pairs)))


ODD_DBS = st.sampled_from(
    [
        "postgres",
        "postgres",
        "template1",
        "template0",
        PRIVATE_DB,
        PRIVATE_DB + "_tail",  # cut to PRIVATE_DB
        PRIVATE_DB + "\u00e9",  # cut to PRIVATE_DB, at a character boundary
        PRIVATE_DB[:-1],
        "",
        " ",
        "postgres ",
        "Postgres",
        "bgwc_no_such_db",
        "x" * 200,
        "\u00e9" * 100,
        "\U0001f600" * 50,
        "postgres\n",
    ]
)
db_names = nullable(st.one_of(st.just("postgres"), st.just("postgres"), ODD_DBS, ODD_DBS, short_text), 12)


# -- the model of bgw_pool's checks ------------------------------------------------
WS = " \t\n\v\f\r"
C_INT = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+")


def c_strtoll(s: str) -> int | None:
    """The value strtoll(s, &end, 10) gives with nothing after it and no
    overflow (parse_int_arg in sql.c); None when it refuses."""
    if not C_INT.fullmatch(s):
        return None
    v = int(s.lstrip(WS))
    return v if INT64[0] <= v <= INT64[1] else None


def clip_name(s: str, utf8: bool) -> str:
    """What a cast to ``name`` keeps: 63 bytes, cut at a character boundary."""
    b = s.encode()
    if len(b) <= 63:
        return s
    cut = b[:63]
    return cut.decode(errors="ignore") if utf8 else cut.decode(errors="replace")


@dataclass(frozen=True)
class SubmitArgs:
    """The arguments of bgw_pool._submit, as the C function receives them."""

    job: str | None
    args_type: str | None
    ms: str | None
    code: str | None
    message: str | None
    query: str | None
    dbname: str | None


@dataclass(frozen=True)
class Verdict:
    expected: frozenset[str]
    unsafe: str | None = None  # why the call must not be sent
    fault: bool = False  # refused as a fault kind


def submit_model(a: SubmitArgs, su: bool, world: World) -> Verdict:
    """The outcome of bgw_pool._submit by sql.c's order of checks."""

    def only(code: str) -> Verdict:
        return Verdict(frozenset({code}))

    if a.job is None or a.args_type is None or a.dbname is None:
        return only("22004")
    if a.job not in JOB_KINDS:
        return only("22023")
    if a.args_type != "object":
        return only("22023")
    kind, ms, code, text = a.job, 0, 0, None
    if kind == "sleep":
        v = None if a.ms is None else c_strtoll(a.ms)
        if v is None or not 0 <= v <= INT_MAX:
            return only("22023")
        ms = v
    elif kind == "ignore_sigterm":
        v = DEFAULT_IGNORE_MS if a.ms is None else c_strtoll(a.ms)
        if v is None or not 0 <= v <= MAX_IGNORE_MS:
            return only("22023")
        ms = v
    elif kind == "exit":
        v = None if a.code is None else c_strtoll(a.code)
        if v is None or not 0 <= v <= 255:
            return only("22023")
        code = v
    elif kind in ("error", "fatal"):
        text = a.message if a.message is not None else f"bgw_pool: {kind} job"
    elif kind == "sql":
        if a.query is None:
            return only("22023")
        text = a.query
    if text is not None and len(text.encode()) >= TEXT_LIMIT:
        return only("54000")
    fault = kind in FAULT_KINDS or (kind == "exit" and code not in (0, 1))
    if fault and not su:
        return Verdict(frozenset({"42501"}), fault=True)
    db = world.databases.get(clip_name(a.dbname, world.utf8))
    if db is None:
        return only("3D000")
    allowconn, fuzz_may_connect = db
    if not su and clip_name(a.dbname, world.utf8) != world.current_db:
        return only("42501")  # pg_hba.conf never sees a worker's connection
    if not su and not fuzz_may_connect:
        return only("42501")
    if not allowconn:
        return only("55000")
    if fault:
        return Verdict(ACCEPTED, unsafe=f"a superuser's {kind} job would run")
    if kind == "sleep" and ms > MAX_SLEEP_MS:
        return Verdict(ACCEPTED, unsafe=f"a {ms} ms sleep would be accepted")
    if kind == "fail_to_start":
        return only("53000")
    return Verdict(ACCEPTED)


# -- the world the calls run in ----------------------------------------------------
@dataclass
class Handle:
    slot: int
    generation: int
    by_superuser: bool


@dataclass
class World:
    target: Target
    su: psycopg.Connection[Any]
    fz: psycopg.Connection[Any]
    capacity: int
    utf8: bool
    databases: dict[str, tuple[bool, bool]]  # name: (datallowconn, the role may connect)
    current_db: str  # the fuzzing sessions' database: the only one a non-superuser may submit in
    points: tuple[str, ...]
    pause_points_on: bool  # bgw_pool.pause_points: arming is refused (55000) when off
    launcher_pid: int
    launcher_restarts: int
    generations: dict[int, int] = field(default_factory=dict)  # highest seen per slot
    # per example: the slots claimed by known submits; None once a statement
    # may have submitted without telling which slots
    claimed: dict[int, Handle] | None = field(default_factory=dict)
    handles: list[Handle] = field(default_factory=list)

    def conn(self, su: bool) -> psycopg.Connection[Any]:
        return self.su if su else self.fz

    def fail(self, what: str) -> None:
        raise AssertionError(f"{what}\n{self.target.log_tail(25)}")

    def call(
        self, label: str, su: bool, query: str, params: Sequence[Any], expected: frozenset[str]
    ) -> tuple[str, list[tuple[Any, ...]]]:
        """Run one case; check its outcome against ``expected`` and the documented set."""
        conn = self.conn(su)
        rows: list[tuple[Any, ...]] = []
        message = ""
        try:
            cur = conn.execute(query, tuple(params))
            rows = cur.fetchall() if cur.description else []
            outcome = OK
        except psycopg.Error as exc:
            outcome = exc.sqlstate or f"client:{type(exc).__name__}"
            message = str(exc).strip()
        TALLY.cases += 1
        TALLY.outcomes[outcome] += 1
        TALLY.by_function[label] += 1
        TALLY.detail[label, outcome] += 1
        who = "postgres" if su else ROLE
        shown = [
            p if not isinstance(p, str) or len(p) < 120 else f"{p[:60]!r}...({len(p)} chars)" for p in params
        ]
        where = f"{label} as {who}: {query} {shown!r} -> {outcome} {message[:300]}"
        if conn.broken or conn.closed:
            self.fail(f"BUG: the connection broke: {where}")
        if not _allowed(outcome):
            self.fail(f"BUG: SQLSTATE outside the documented set: {where}")
        if outcome not in expected:
            self.fail(f"unexpected outcome (expected one of {sorted(expected)}): {where}")
        return outcome, rows

    def took(self, rows: list[tuple[Any, ...]], su: bool) -> None:
        """A submit succeeded: check its handle and remember it."""
        assert len(rows) == 1, rows
        slot, generation, pid = rows[0]
        assert 0 <= slot < self.capacity and pid > 0 and generation > 0, rows
        assert generation > self.generations.get(slot, -1), (
            f"slot {slot}: generation {generation} after {self.generations[slot]}"
        )
        self.generations[slot] = generation
        h = Handle(slot, generation, su)
        self.handles.append(h)
        if self.claimed is not None:
            self.claimed[slot] = h

    def slots_busy(self) -> list[tuple[int, int]]:
        return self.su.execute(
            "SELECT slot, generation FROM bgw_pool.status WHERE state <> 'free' ORDER BY slot"
        ).fetchall()

    def settle(self) -> None:
        """Leave nothing running: stop what is left, wait until every slot is free."""
        busy = self.slots_busy()
        for slot, generation in busy:
            self.su.execute("SELECT bgw_pool.terminate(%s, %s)", (slot, generation))
        if busy:
            self.target.wait_until(
                lambda: not self.slots_busy(), SETTLE_S, what="every bgw_pool slot to be free"
            )
        armed = self.su.execute("SELECT point FROM bgw_pool.pause_points() WHERE armed").fetchall()
        for (point,) in armed:
            self.su.execute("SELECT bgw_pool.pause_release(%s)", (point,))
        assert not armed, f"pause points left armed: {armed}"
        violations = self.su.execute("SELECT * FROM bgw_pool.check()").fetchall()
        assert not violations, f"bgw_pool.check(): {violations}"
        self.claimed = {}
        self.handles = []


def _allowed(outcome: str) -> bool:
    if outcome == OK or outcome in DOCUMENTED or outcome in PG_OWN:
        return True
    if outcome.startswith(("XX", "58", "57")) or outcome.startswith("client:"):
        return False
    return outcome[:2] in ("22", "42")


# -- the calls -------------------------------------------------------------------------
@dataclass(frozen=True)
class SubmitCall:
    """bgw_pool.submit(job, args jsonb, dbname) in one of its call forms."""

    su: bool
    form: str  # full, named, tlist, no_db, no_args
    job: str | None
    args: str | None  # JSON text, or NULL
    dbname: str | None

    def run(self, w: World) -> None:
        args = "{}" if self.form == "no_args" else self.args
        dbname = "postgres" if self.form in ("no_db", "no_args") else self.dbname
        try:
            row = w.su.execute(DECOMPOSE, (args,)).fetchone()
        except psycopg.Error as exc:  # the cast of the argument fails: so will the call
            verdict = Verdict(frozenset({exc.sqlstate or "?"}))
        else:
            assert row is not None
            verdict = submit_model(SubmitArgs(self.job, *row, dbname), self.su, w)
        if verdict.unsafe:
            TALLY.guarded += 1
            return
        cols = "slot, generation, pid FROM"
        query, params = {
            "full": (
                f"SELECT {cols} bgw_pool.submit(%s::text, %s::jsonb, %s::name)",
                (self.job, args, dbname),
            ),
            "named": (
                f"SELECT {cols} bgw_pool.submit(dbname => %s::name, args => %s::jsonb, job => %s::text)",
                (dbname, args, self.job),
            ),
            "tlist": ("SELECT bgw_pool.submit(%s::text, %s::jsonb, %s::name)", (self.job, args, dbname)),
            "no_db": (f"SELECT {cols} bgw_pool.submit(%s::text, %s::jsonb)", (self.job, args)),
            "no_args": (f"SELECT {cols} bgw_pool.submit(%s::text)", (self.job,)),
        }[self.form]
        outcome, rows = w.call("submit", self.su, query, params, verdict.expected)
        TALLY.faults_refused += verdict.fault
        if outcome == OK:
            if self.form == "tlist":
                rows = [tuple(int(x) for x in r[0]) for r in rows]
            w.took(rows, self.su)


@dataclass(frozen=True)
class RawSubmitCall:
    """bgw_pool._submit(job, args_type, ms, code, message, query, dbname): every text as given."""

    su: bool
    args: SubmitArgs

    def run(self, w: World) -> None:
        verdict = submit_model(self.args, self.su, w)
        if verdict.unsafe:
            TALLY.guarded += 1
            return
        a = self.args
        outcome, rows = w.call(
            "_submit",
            self.su,
            "SELECT slot, generation, pid FROM bgw_pool._submit(%s::text, %s::text, %s::text, %s::text,"
            " %s::text, %s::text, %s::name)",
            (a.job, a.args_type, a.ms, a.code, a.message, a.query, a.dbname),
            verdict.expected,
        )
        TALLY.faults_refused += verdict.fault
        if outcome == OK:
            w.took(rows, self.su)


def terminate_expected(
    w: World, su: bool, slot: int | None, generation: int | None
) -> tuple[frozenset[str], bool]:
    """The outcomes terminate may have, and whether a success must return false."""
    if slot is not None and not -(2**31) <= slot <= INT_MAX:
        return frozenset({"22003"}), False  # the cast to int
    if generation is not None and not INT64[0] <= generation <= INT64[1]:
        return frozenset({"22003"}), False  # the cast to bigint
    if slot is None or generation is None:
        return frozenset({"22004"}), False
    if not 0 <= slot < w.capacity:
        return frozenset({"22023"}), False
    if generation < 0:
        return frozenset({"22023"}), False
    if w.claimed is None:  # unknown who holds what: a superuser's job is not ours to stop
        return frozenset({OK} if su else {OK, "42501"}), False
    h = w.claimed.get(slot)
    stale = h is None or generation != h.generation
    if stale or su or not h.by_superuser:
        return frozenset({OK}), stale
    return frozenset({OK, "42501"}), False


@dataclass(frozen=True)
class TerminateCall:
    """bgw_pool.terminate(slot, generation) with ints, or texts cast to them."""

    su: bool
    form: str  # both, slot_only, named, text
    slot: int | str | None
    generation: int | str | None

    def run(self, w: World) -> None:
        slot, gen = self.slot, self.generation
        if self.form == "text":
            try:
                row = w.su.execute("SELECT %s::text::int, %s::text::bigint", (slot, gen)).fetchone()
            except psycopg.Error as exc:
                expected, must_be_false = frozenset({exc.sqlstate or "?"}), False
            else:
                assert row is not None
                expected, must_be_false = terminate_expected(w, self.su, row[0], row[1])
        else:
            assert not isinstance(slot, str) and not isinstance(gen, str)
            if self.form == "slot_only":
                gen = None
            expected, must_be_false = terminate_expected(w, self.su, slot, gen)
            if self.form == "slot_only":  # the handle is required: no such function
                expected, must_be_false = frozenset({"42883"}), False
        query, params = {
            "both": ("SELECT bgw_pool.terminate(%s::int, %s::bigint)", (slot, gen)),
            "slot_only": ("SELECT bgw_pool.terminate(%s::int)", (slot,)),
            "named": ("SELECT bgw_pool.terminate(generation => %s::bigint, slot => %s::int)", (gen, slot)),
            "text": ("SELECT bgw_pool.terminate(%s::text::int, %s::text::bigint)", (slot, gen)),
        }[self.form]
        outcome, rows = w.call("terminate", self.su, query, params, expected)
        if outcome == OK:
            assert isinstance(rows[0][0], bool), rows
            assert not (must_be_false and rows[0][0]), (
                f"terminate({slot}, {gen}) of a free slot or stale handle"
            )


@dataclass(frozen=True)
class TerminateHandleCall:
    """terminate on the last handle this example got, its generation shifted by ``delta``."""

    su: bool
    delta: int | None  # None: generation NULL

    def run(self, w: World) -> None:
        if not w.handles:
            slot, gen = 0, (None if self.delta is None else 1 + abs(self.delta))
        else:
            h = w.handles[-1]
            slot, gen = h.slot, (None if self.delta is None else h.generation + self.delta)
        expected, must_be_false = terminate_expected(w, self.su, slot, gen)
        outcome, rows = w.call(
            "terminate", self.su, "SELECT bgw_pool.terminate(%s::int, %s::bigint)", (slot, gen), expected
        )
        if outcome == OK:
            assert not (must_be_false and rows[0][0]), (
                f"terminate({slot}, {gen}) of a free slot or stale handle"
            )


@dataclass(frozen=True)
class PauseCall:
    """pause_arm / pause_release of a point name; an armed real point is released at once."""

    su: bool
    arm: bool
    point: str | None

    def run(self, w: World) -> None:
        if not self.su:
            expected = frozenset({"42501"})
        elif self.point is None:
            expected = frozenset({"22004"})
        elif self.point not in w.points:
            expected = frozenset({"22023"})
        elif self.arm and not w.pause_points_on:
            expected = frozenset({"55000"})
        else:
            expected = frozenset({OK})
        fn = "pause_arm" if self.arm else "pause_release"
        outcome, rows = w.call(fn, self.su, f"SELECT bgw_pool.{fn}(%s::text)", (self.point,), expected)
        if outcome != OK:
            return
        # nothing is armed between examples: arm says it armed, a lone release that it did not
        assert rows == [(self.arm,)], f"{fn}({self.point!r}) returned {rows}"
        if self.arm:
            _, rows = w.call(
                "pause_release",
                True,
                "SELECT bgw_pool.pause_release(%s::text)",
                (self.point,),
                frozenset({OK}),
            )
            assert rows == [(True,)], f"pause_release({self.point!r}) after arming returned {rows}"


@dataclass(frozen=True)
class SqlCase:
    label: str
    sql: str
    su: frozenset[str]  # outcomes as the superuser
    fuzz: frozenset[str]  # as the unprivileged role
    submits: bool = False  # may leave workers the model does not know of
    verify: Callable[[World, list[tuple[Any, ...]]], None] | None = None


def _verify_status(w: World, rows: list[tuple[Any, ...]]) -> None:
    assert [r[0] for r in rows] == list(range(w.capacity)), rows
    assert all(r[1] in ("free", "starting", "running", "stopping") for r in rows), rows


def _verify_stats(w: World, rows: list[tuple[Any, ...]]) -> None:
    assert len(rows) == 1 and rows[0][6] == w.capacity and rows[0][5] == w.launcher_restarts, rows


def _verify_check(w: World, rows: list[tuple[Any, ...]]) -> None:
    assert rows == [], f"bgw_pool.check(): {rows}"


def _verify_launcher(w: World, rows: list[tuple[Any, ...]]) -> None:
    assert rows == [(w.launcher_pid,)], f"launcher_pid() {rows}, {w.launcher_pid} at start"


def _verify_points(w: World, rows: list[tuple[Any, ...]]) -> None:
    assert tuple(r[0] for r in rows) == w.points and not any(r[1] for r in rows), rows


def _sets(*codes: str) -> frozenset[str]:
    return frozenset(codes)


S_OK = _sets(OK)
DENIED = _sets("42501")
SQL_CASES: tuple[SqlCase, ...] = (
    # the readers
    SqlCase("status", "SELECT * FROM bgw_pool.status ORDER BY slot", S_OK, S_OK, verify=_verify_status),
    SqlCase("status", "SELECT count(*) FROM bgw_pool.status WHERE pid IS NOT NULL", S_OK, S_OK),
    SqlCase("_status", "SELECT * FROM bgw_pool._status() ORDER BY slot", S_OK, S_OK, verify=_verify_status),
    SqlCase("launcher_pid", "SELECT bgw_pool.launcher_pid()", S_OK, DENIED, verify=_verify_launcher),
    SqlCase("stats", "SELECT * FROM bgw_pool.stats()", S_OK, DENIED, verify=_verify_stats),
    SqlCase("stats", "SELECT bgw_pool.stats()", S_OK, DENIED),
    SqlCase("stats", "SELECT (bgw_pool.stats()).capacity FROM generate_series(1, 3)", S_OK, DENIED),
    SqlCase("check", "SELECT * FROM bgw_pool.check()", S_OK, DENIED, verify=_verify_check),
    SqlCase("check", "SELECT bgw_pool.check()", S_OK, DENIED, verify=_verify_check),
    SqlCase("direct_launch_us", "SELECT bgw_pool.direct_launch_us()", _sets(OK, "53000"), DENIED),
    SqlCase("pause_points", "SELECT * FROM bgw_pool.pause_points()", S_OK, DENIED, verify=_verify_points),
    SqlCase("pause_points", "SELECT count(*) FROM bgw_pool.pause_points() WHERE armed", S_OK, DENIED),
    # set-returning functions where no set may go: PostgreSQL refuses at parse time
    SqlCase("check", "SELECT 1 WHERE bgw_pool.check() IS NULL", _sets("0A000"), _sets("0A000")),
    SqlCase("stats", "SELECT CASE WHEN true THEN bgw_pool.stats() END", _sets("0A000"), _sets("0A000")),
    # wrong arity and types: resolved (or not) before anything runs
    SqlCase("launcher_pid", "SELECT bgw_pool.launcher_pid(1)", _sets("42883"), _sets("42883")),
    SqlCase("stats", "SELECT * FROM bgw_pool.stats(0)", _sets("42883"), _sets("42883")),
    SqlCase("direct_launch_us", "SELECT bgw_pool.direct_launch_us(NULL)", _sets("42883"), _sets("42883")),
    SqlCase("terminate", "SELECT bgw_pool.terminate()", _sets("42883"), _sets("42883")),
    SqlCase("terminate", "SELECT bgw_pool.terminate(1.5)", _sets("42883"), _sets("42883")),
    SqlCase("terminate", "SELECT bgw_pool.terminate(true)", _sets("42883"), _sets("42883")),
    SqlCase("terminate", "SELECT bgw_pool.terminate(2147483648)", _sets("42883"), _sets("42883")),
    SqlCase("terminate", "SELECT bgw_pool.terminate(1, 2, 3)", _sets("42883"), _sets("42883")),
    SqlCase("terminate", "SELECT bgw_pool.terminate(generation => 1)", _sets("42883"), _sets("42883")),
    SqlCase("terminate", "SELECT bgw_pool.terminate('{1}'::int[])", _sets("42883"), _sets("42883")),
    # a stop names one job: terminate(slot) alone is no function
    SqlCase("terminate", "SELECT bgw_pool.terminate('abc')", _sets("42883"), _sets("42883")),
    SqlCase("terminate", "SELECT bgw_pool.terminate(0)", _sets("42883"), _sets("42883")),
    SqlCase("terminate", "SELECT bgw_pool.terminate('abc', 0)", _sets("22P02"), _sets("22P02")),
    SqlCase("terminate", "SELECT bgw_pool.terminate('2147483648', 0)", _sets("22003"), _sets("22003")),
    SqlCase("terminate", "SELECT bgw_pool.terminate(0, 'x')", _sets("22P02"), _sets("22P02")),
    SqlCase("terminate", "SELECT bgw_pool.terminate(NULL)", _sets("42883"), _sets("42883")),
    SqlCase("terminate", "SELECT bgw_pool.terminate(0, NULL)", _sets("22004"), _sets("22004")),
    SqlCase("terminate", "SELECT bgw_pool.terminate(NULL, NULL)", _sets("22004"), _sets("22004")),
    SqlCase("terminate", "SELECT bgw_pool.terminate(0::smallint, 0::smallint)", S_OK, S_OK),
    SqlCase(
        "terminate",
        "SELECT bgw_pool.terminate(s, 0) FROM generate_series(-1, 0) s",
        _sets("22023"),
        _sets("22023"),
    ),
    SqlCase("terminate", "SELECT bgw_pool.terminate(slot, generation + 1) FROM bgw_pool.status", S_OK, S_OK),
    SqlCase(
        "terminate",
        "SELECT bgw_pool.terminate(slot, generation) FROM bgw_pool.status",
        S_OK,
        _sets(OK, "42501"),
    ),
    SqlCase(
        "terminate",
        "SELECT bgw_pool.terminate(slot, -generation) FROM bgw_pool.status",
        _sets("22023"),
        _sets("22023"),
    ),
    SqlCase("submit", "SELECT bgw_pool.submit()", _sets("42883"), _sets("42883")),
    SqlCase("submit", "SELECT bgw_pool.submit(1)", _sets("42883"), _sets("42883")),
    SqlCase("submit", "SELECT bgw_pool.submit('sleep', 5)", _sets("42883"), _sets("42883")),
    SqlCase("submit", "SELECT bgw_pool.submit('sleep', '{\"ms\": 1}', 5)", _sets("42883"), _sets("42883")),
    SqlCase("submit", "SELECT bgw_pool.submit('sleep', 'nope')", _sets("22P02"), _sets("22P02")),
    SqlCase("submit", "SELECT bgw_pool.submit('sleep', '{\"ms\": 1}'::json)", _sets("42883"), _sets("42883")),
    SqlCase("submit", "SELECT bgw_pool.submit(NULL)", _sets("22004"), _sets("22004")),
    SqlCase("submit", "SELECT bgw_pool.submit(NULL, NULL, NULL)", _sets("22004"), _sets("22004")),
    SqlCase("submit", "SELECT bgw_pool.submit('sleep', NULL)", _sets("22004"), _sets("22004")),
    SqlCase(
        "submit",
        "SELECT * FROM bgw_pool.submit('sleep', '{\"ms\": 1}', NULL)",
        _sets("22004"),
        _sets("22004"),
    ),
    SqlCase(
        "submit", "SELECT * FROM bgw_pool.submit('sleep', '[{\"ms\": 1}]')", _sets("22023"), _sets("22023")
    ),
    SqlCase(
        "submit",
        "SELECT bgw_pool.submit('sleep', jsonb_build_object('ms', g)) FROM generate_series(1, 3) g",
        ACCEPTED,
        ACCEPTED,
        submits=True,
    ),
    SqlCase(
        "submit",  # more than the pool holds: full (53000) partway
        "SELECT bgw_pool.submit('sleep', '{\"ms\": 100}') FROM generate_series(1, 12)",
        ACCEPTED,
        ACCEPTED,
        submits=True,
    ),
    SqlCase(
        "submit",
        "SELECT * FROM bgw_pool.submit('exit_at_once') a,"
        " bgw_pool.submit('sql', '{\"query\": \"SELECT 1\"}') b",
        ACCEPTED,
        ACCEPTED,
        submits=True,
    ),
    SqlCase(
        "submit",
        "SELECT bgw_pool.submit(j) FROM unnest(ARRAY['bgwc_nope', NULL]) j",
        _sets("22023"),
        _sets("22023"),
    ),
    SqlCase(
        "_submit",
        "SELECT bgw_pool._submit('sleep', 'object', '1', NULL, NULL, NULL)",
        _sets("42883"),
        _sets("42883"),
    ),
    SqlCase(
        "_submit",
        "SELECT * FROM bgw_pool._submit(NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        _sets("22004"),
        _sets("22004"),
    ),
    SqlCase("pause_arm", "SELECT bgw_pool.pause_arm()", _sets("42883"), _sets("42883")),
    SqlCase("pause_arm", "SELECT bgw_pool.pause_arm(1)", _sets("42883"), _sets("42883")),
    SqlCase("pause_arm", "SELECT bgw_pool.pause_arm(NULL)", _sets("22004"), DENIED),
    SqlCase("pause_release", "SELECT bgw_pool.pause_release('')", _sets("22023"), DENIED),
    SqlCase(
        "pause_release",
        "SELECT bool_or(bgw_pool.pause_release(point)) FROM bgw_pool.pause_points()",
        S_OK,
        DENIED,
    ),
)


@dataclass(frozen=True)
class LiteralCall:
    su: bool
    case: SqlCase

    def run(self, w: World) -> None:
        c = self.case
        outcome, rows = w.call(c.label, self.su, c.sql, (), c.su if self.su else c.fuzz)
        if c.submits and outcome in ACCEPTED:
            w.claimed = None
        if outcome == OK and self.su and c.verify is not None:
            c.verify(w, rows)


Call = SubmitCall | RawSubmitCall | TerminateCall | TerminateHandleCall | PauseCall | LiteralCall


# -- call strategies ------------------------------------------------------------------
roles = st.booleans()  # True: the superuser


@st.composite
def submit_calls(draw: st.DrawFn) -> SubmitCall:
    su = draw(roles)
    job = draw(job_names(su))
    form = draw(st.sampled_from(["full", "full", "full", "named", "tlist", "no_db", "no_args"]))
    return SubmitCall(su, form, job, draw(json_args(su, job)), draw(db_names))


@st.composite
def raw_submit_calls(draw: st.DrawFn) -> RawSubmitCall:
    su = draw(roles)
    job = draw(job_names(su))
    args_type = draw(
        nullable(
            st.one_of(
                st.just("object"),
                st.just("object"),
                st.just("object"),
                st.sampled_from(["array", "string", "number", "null", "OBJECT", "object ", ""]),
                short_text,
            ),
            15,
        )
    )
    ms = draw(nullable(int_texts(ms_ints(su, job)), 5))
    code = draw(nullable(st.sampled_from(SU_CODE_TEXTS) if su else int_texts(code_ints(su)), 4))
    message = draw(nullable(messages, 4))
    query = draw(nullable(queries, 5))
    return RawSubmitCall(su, SubmitArgs(job, args_type, ms, code, message, query, draw(db_names)))


def terminate_calls(capacity: int) -> st.SearchStrategy[TerminateCall]:
    slots = st.integers(-3, capacity + 2) | st.sampled_from(
        [-(2**31), INT_MAX, 2**31, -(2**31) - 1, 2**63, 10**30]
    )
    gens = (
        st.integers(-3, 3)
        | st.integers(0, 2**63 - 1)
        | st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1])
    )
    ints = st.builds(
        TerminateCall,
        roles,
        st.sampled_from(["both", "slot_only", "named"]),
        nullable(slots, 12),
        nullable(gens, 3),
    )
    texts = st.builds(
        TerminateCall,
        roles,
        st.just("text"),
        nullable(int_texts(st.integers(-2, capacity + 1)), 12),
        nullable(int_texts(gens), 3),
    )
    return ints | texts


def pause_calls(points: Sequence[str]) -> st.SearchStrategy[PauseCall]:
    near = [p.upper() for p in points] + [p + " " for p in points] + [p[:-1] for p in points]
    names = nullable(
        st.one_of(
            st.sampled_from(list(points)),
            st.sampled_from([*near, "", "x" * 5000, "submit_deadline", "*", "%s"]),
            short_text,
        ),
        8,
    )
    return st.builds(PauseCall, roles, st.booleans(), names)


def calls(capacity: int, points: Sequence[str]) -> st.SearchStrategy[list[Call]]:
    one: st.SearchStrategy[Call] = st.one_of(
        submit_calls(),
        submit_calls(),
        raw_submit_calls(),
        terminate_calls(capacity),
        st.builds(TerminateHandleCall, roles, nullable(st.sampled_from([0, 0, 1, -1, 2**20]), 4)),
        pause_calls(points),
        st.builds(LiteralCall, roles, st.sampled_from(SQL_CASES)),
    )
    return st.lists(one, min_size=1, max_size=MAX_CALLS)


def _message(size: int) -> str:
    return dump(Obj((("message", "m" * size),)))


#: the boundaries, tried on every seed before the drawn examples
BOUNDARIES: tuple[list[Call], ...] = (
    [SubmitCall(True, "full", "error", _message(1023), "postgres")],  # the longest message: 54000
    [SubmitCall(True, "full", "fatal", _message(1022), "postgres"), TerminateHandleCall(False, 0)],
    # a query of 1022 bytes runs, one of 1023 is too long
    [
        RawSubmitCall(
            False, SubmitArgs("sql", "object", None, None, None, "SELECT 1 --" + "x" * 1011, "postgres")
        )
    ],
    [
        RawSubmitCall(
            True, SubmitArgs("sql", "object", None, None, None, "SELECT 1 --" + "x" * 1012, "postgres")
        )
    ],
    [SubmitCall(True, "full", "sleep", '{"ms": 200}', "template1"), TerminateHandleCall(False, None)],
    [SubmitCall(False, "full", "sleep", '{"ms": 2147483648}', "postgres")],
    [SubmitCall(False, "full", "sleep", '{"ms": " 5"}', PRIVATE_DB + "_tail")],  # cut to PRIVATE_DB: 42501
    [SubmitCall(False, "full", "exit", '{"code": 255}', "postgres")],  # a fault: 42501
    [SubmitCall(False, "full", "exit", '{"code": 256}', "postgres")],  # out of range: 22023
    [SubmitCall(False, "no_args", "crash", None, None)],
    [SubmitCall(False, "full", "ignore_sigterm", '{"ms": 30000}', "postgres")],
    [SubmitCall(False, "full", "ignore_sigterm", '{"ms": 30001}', "postgres")],
    [SubmitCall(True, "full", "exit", '{"code": "-0"}', "template0")],  # 55000
    [SubmitCall(True, "full", "exit_at_once", "{}", "")],  # 3D000
    [TerminateCall(True, "both", 8, None), TerminateCall(True, "both", -1, 0)],
    [TerminateCall(False, "both", 0, -1), TerminateCall(False, "text", " 0", "9223372036854775808")],
    [PauseCall(True, True, "submit-deadline"), PauseCall(True, False, "submit-deadline ")],
    # every function, every call form, as each role, on every seed
    [LiteralCall(True, c) for c in SQL_CASES],
    [LiteralCall(False, c) for c in SQL_CASES],
)


# -- setup, run, verdict -------------------------------------------------------------
def _drop_fuzz_objects(target: Target) -> None:
    ident = psycopg.sql.Identifier(PRIVATE_DB).as_string(None)
    target.sql(f"DROP DATABASE IF EXISTS {ident} WITH (FORCE)")
    if target.scalar("SELECT count(*) FROM pg_roles WHERE rolname = %s", ROLE, idempotent=True):
        target.sql(f"DROP OWNED BY {ROLE}")
        target.sql(f"DROP ROLE {ROLE}")


def _create_fuzz_objects(target: Target) -> None:
    _drop_fuzz_objects(target)
    target.sql(f"CREATE ROLE {ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
    target.sql(f"GRANT USAGE ON SCHEMA bgw_pool TO {ROLE}")
    target.sql(
        "GRANT EXECUTE ON FUNCTION bgw_pool.submit(text, jsonb, name),"
        " bgw_pool._submit(text, text, text, text, text, text, name),"
        # the view's function runs with the privileges of the view's user, not its owner
        f" bgw_pool.terminate(int, bigint), bgw_pool._status() TO {ROLE}"
    )
    target.sql(f"GRANT SELECT ON bgw_pool.status TO {ROLE}")
    ident = psycopg.sql.Identifier(PRIVATE_DB).as_string(None)
    target.sql(f"CREATE DATABASE {ident}")
    target.sql(f"REVOKE CONNECT ON DATABASE {ident} FROM PUBLIC")


def _stats(conn: psycopg.Connection[Any]) -> dict[str, int]:
    cur = conn.execute("SELECT * FROM bgw_pool.stats()")
    row = cur.fetchone()
    assert row is not None and cur.description is not None
    return {d.name: v for d, v in zip(cur.description, row, strict=True)}


def _open(target: Target, user: str | None = None) -> psycopg.Connection[Any]:
    conn = target.connect(user=user) if user else target.connect()
    conn.execute("SET statement_timeout = '30s'")  # a hang fails (57014) instead of blocking the run
    return conn


def _summary() -> str:
    hist = ", ".join(f"{k}: {v}" for k, v in sorted(TALLY.outcomes.items()))
    funcs = "\n    ".join(
        f"{fn}: " + ", ".join(f"{o} {n}" for (f, o), n in sorted(TALLY.detail.items()) if f == fn)
        for fn in sorted(TALLY.by_function)
    )
    pg_own = sorted(o for o in TALLY.outcomes if o != OK and o not in DOCUMENTED)
    return (
        f"{TALLY.cases} cases in {TALLY.examples} examples ({TALLY.guarded} unsafe calls not sent,"
        f" {TALLY.faults_refused} fault jobs of {ROLE} refused)\n"
        f"  outcomes: {hist}\n  PostgreSQL's own codes seen: {', '.join(pg_own) or 'none'}\n"
        f"  per function:\n    {funcs}"
    )


def test_reference_fuzz(
    target: Target, bgwc_config: KitConfig, record_property: Callable[[str, object], None]
) -> None:
    if bgwc_config.extension.name != "bgw_pool":
        pytest.skip("not applicable: fuzzes the reference extension's SQL functions")
    seed = bgwc_config.seed if bgwc_config.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"\nbgw_pool fuzz on {target.name}: seed {seed} (replay with --bgwc-seed {seed})")
    record_property("fuzz_seed", seed)
    TALLY.reset()
    started = time.monotonic()

    target.sql("CREATE EXTENSION IF NOT EXISTS bgw_pool")
    postmaster = target.postmaster_pid()
    log_offset = target.log_offset()
    _create_fuzz_objects(target)
    su, fz = _open(target), _open(target, ROLE)
    try:
        before = _stats(su)
        launcher = su.execute("SELECT bgw_pool.launcher_pid()").fetchone()
        assert launcher is not None and launcher[0] is not None, "no bgw_pool launcher"
        databases = {
            name: (allowconn, may)
            for name, allowconn, may in su.execute(
                "SELECT datname, datallowconn, has_database_privilege(%s, oid, 'CONNECT') FROM pg_database",
                (ROLE,),
            ).fetchall()
        }
        world = World(
            target=target,
            su=su,
            fz=fz,
            capacity=before["capacity"],
            utf8=su.execute("SHOW server_encoding").fetchone() == ("UTF8",),
            databases=databases,
            current_db=fz.execute("SELECT current_database()").fetchone()[0],
            points=tuple(r[0] for r in su.execute("SELECT point FROM bgw_pool.pause_points()").fetchall()),
            pause_points_on=su.execute("SHOW bgw_pool.pause_points").fetchone() == ("on",),
            launcher_pid=launcher[0],
            launcher_restarts=before["launcher_restarts"],
        )
        world.settle()

        @hypothesis_seed(seed)
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=False,
            database=None,
            report_multiple_bugs=False,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.filter_too_much,
                HealthCheck.data_too_large,
                HealthCheck.large_base_example,
            ],
        )
        @given(calls(world.capacity, world.points))
        def fuzz(example: list[Call]) -> None:
            TALLY.examples += 1
            try:
                for call in example:
                    call.run(world)
            finally:
                world.settle()

        for boundary in BOUNDARIES:
            example(boundary)(fuzz)
        fuzz()
        after = _stats(su)
        end_launcher = su.execute("SELECT bgw_pool.launcher_pid()").fetchone()
        busy = world.slots_busy()
        violations = su.execute("SELECT * FROM bgw_pool.check()").fetchall()
    finally:
        elapsed = time.monotonic() - started
        print(f"{_summary()}\n  {elapsed:.1f} s")  # also when a case failed
        record_property("fuzz_cases", TALLY.cases)
        record_property("fuzz_sqlstates", dict(TALLY.outcomes))
        record_property("fuzz_seconds", round(elapsed, 1))
        su.close()
        fz.close()
        _drop_fuzz_objects(target)
    crashes = [ln for ln in target.log_since(log_offset).splitlines() if BAD_LOG.search(ln)]
    print(f"  {len(crashes)} crash lines in the server log")
    assert target.postmaster_pid() == postmaster, "the postmaster changed: the cluster restarted"
    assert not crashes, "the server log shows a crash:\n" + "\n".join(crashes[:20])
    assert end_launcher == launcher, f"the launcher changed: {launcher} -> {end_launcher}"
    assert after["crashed"] == before["crashed"], f"workers crashed: {before} -> {after}"
    assert after["launcher_restarts"] == before["launcher_restarts"], f"the launcher restarted: {after}"
    assert not violations, f"bgw_pool.check(): {violations}"
    assert not busy, f"slots left busy: {busy}"
    assert TALLY.cases > 0
