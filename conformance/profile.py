"""Extension profiles: the one declarative input (TOML) that says what the
extension under test is, how to install and set it up, how to find its
processes, what it promises and which conformance tiers it claims.

A profile flows one way: config -> image -> target -> adapter -> suite ->
results -> report.  It is validated completely when loaded: an unknown key,
a missing field or a value of the wrong type is a one-line ``KitError``
naming the file and the key, before any server starts.

Schema (every table and key; ``?`` marks optional ones)::

    name = "pg_cron"                  # the profile's name
    description? = "..."
    tiers = ["bgworker"]              # claimed: bgworker, pool, faults
    majors? = [17, 18, 19]            # where it runs; a major Debian has no package for is "not packaged"
    notes? = "..."                    # what was verified by hand

    [install]                         # how the extension gets into the server
    packages? = ["postgresql-{major}-cron"]   # Debian packages ({major} is substituted)
    source? = "dir"                   # sources copied into the image (relative to this file;
                                      # "@reference" is the reference extension)
    recipe? = "sh command"            # build+install command run in the sources; default: PGXS
    make_args? = ""                   # extra make arguments for the PGXS build
    preload? = ["pg_cron"]            # shared_preload_libraries entries

    [[install.apt_source]]?           # an extra apt source for server and extension packages
    uri = "https://apt.postgresql.org/pub/repos/apt"   # or "file:DIR" (relative to this file;
                                      # copied into the image): a local repository
    suite = "{codename}-pgdg"         # {codename}: the image's Debian suite; {major}: the server's;
                                      # a flat repository: its path ending in "/" (e.g. "./")
    components? = ["main"]            # none for a flat repository
    key? = "pgdg.asc"                 # the key that signs it (relative to this file), ASCII-armored
                                      # or a binary keyring; the image uses it as signed-by
    trusted? = false                  # true instead of a key: nothing is checked (avoid)

    [extension]?                      # what the extension is configured with
    database_setting? = "cron.database_name"  # the setting (a GUC) naming the database its kinds
                                      # at rest work in (DB-4, DB-5): the kinds whose `database`
                                      # is that setting's value follow it to another database

    [server]                          # settings (name = value) the suite keeps as its baseline

    [[setup]]                         # run once on a new server, in order
    database? = "postgres"
    sql = ["CREATE EXTENSION pg_cron"]

    [[process]]                       # one kind of background worker
    name = "launcher"
    title = "pg_cron launcher"        # regex matched at the start of the OS title (bgw_name)
    backend_type? = "pg_cron launcher"  # pg_stat_activity.backend_type; omit if it never connects
    backend_type_pattern? = 'ext manager \\d+'  # instead of backend_type: a regex the whole
                                      # backend_type matches (re.fullmatch), for types with an OID or a pid
    database? = "postgres"            # the database it is connected to
    count? = 1                        # how many run at rest; 0 for workers the workload starts
    after_exit? = "restart"           # after termination: "restart" or "stays-down" (by design)
    restart_s? = 1.0                  # its promised restart interval (bgw_restart_time)
    after_crash? = "restart"          # after a crash-restart: "restart" or "stays-down"
    roles? = ["primary"]              # where it runs: "primary", "standby" (a hot standby), or both
    after_promotion? = "starts"       # when its standby is promoted: "starts" (within promotion_s),
                                      # "stops" or "keeps" (running, the same processes); the default
                                      # follows roles: starts, stops, keeps for primary, standby, both
    promotion_s? = 10.0               # the deadline of "starts" and "stops", from pg_promote()'s return
    after_shortage? = "back"          # a workload's kind, once slots are free again without a restart
                                      # (SLOTS-5): "back" (running within 10 s), or "stays-down" (by design:
                                      # the workload must be asked again)

    [workload]?                       # SQL that makes it start workers
    database? = "postgres"
    start = ["SELECT ..."]
    stop? = ["SELECT ..."]
    starts? = ["job worker"]          # names of [[process]] kinds it starts

    [pool]?                           # the pool tier: submit, stop and list
    adapter = "sql" | "module:Class"  # the built-in SQL adapter, or a Python one
    launcher? = "launcher"            # [[process]] names of the pool's launcher and workers
    worker? = "worker"
    launcher_restart_policy? = "adopt"   # running workers survive a launcher restart, or "terminate"
    submit? = "SELECT ... {query} ..."   # SQL templates of the SQL adapter
    stop? = "SELECT ... {pid} ..."
    list? = "SELECT pid, state FROM ..."
    capacity? = "ext.max_workers"     # the setting that sizes the pool: the capacity witness's count
    startup_timeout? = "ext.startup_timeout_ms"   # the session setting (ms) bounding a submit's wait
    startup_timeout_sqlstate? = "55000"           # what a submit that timed out fails with
    direct_launch_ms? = "SELECT ..."  # the floor of a submit (ms): a backend starting a worker itself
    submit_mode? = "transactional"    # a job runs only if its submitting transaction commits (TXN-1),
                                      # or "autonomous": it runs whatever that transaction does, by design
    standby_submit_sqlstate? = "25006"   # what a submit on a hot standby fails with (REPLICA-9)

    [progress]?                       # PROGRESS-1: the work it promises to keep doing
    sql = "SELECT count(*) FROM cron.job_run_details"   # one number, which its work increases
    database? = "postgres"            # where the probe and start/stop run
    within_s? = 10.0                  # it increases within this, at rest and after every fault
    start? = ["SELECT cron.schedule('bgwc_progress', '1 second', 'SELECT 1')"]   # makes the work
                                      # happen, run before PROGRESS-1 only (other clauses never see it)
    stop? = ["SELECT cron.unschedule('bgwc_progress')"]   # undoes it, after PROGRESS-1

    [reload]?                         # RELOAD-1: a setting whose reload takes effect
    setting = "zoo.naptime"           # a GUC of context sighup (or superuser, user): not postmaster
    value = "250"                     # a value to set, other than the server's own
    sql = "SELECT zoo_naptime_seen()" # one value: the setting's effect, as the workers use it
    expect? = "250"                   # what sql shows once it took effect (as text; a boolean
                                      # is "true" or "false"); default: value
    database? = "postgres"            # where sql and start/stop run
    within_s? = 5.0                   # ALTER SYSTEM + pg_reload_conf() shows within this
    start? = ["SELECT ..."]           # makes the effect visible (a job every second), run before
                                      # RELOAD-1 only
    stop? = ["SELECT ..."]            # undoes it, after RELOAD-1
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance import aptsources
from conformance.aptsources import AptSource
from conformance.deadlines import PROGRESS_S, RELOAD_S
from conformance.errors import KitError
from conformance.paths import fixtures_dir, reference_ext_dir

TIERS = ("bgworker", "pool", "faults")
RESTART_POLICIES = ("restart", "stays-down")
ROLES = ("primary", "standby")
AFTER_PROMOTION = ("starts", "stops", "keeps")
AFTER_SHORTAGE = ("back", "stays-down")
#: promotion_s when a profile gives none: a kind's start after pg_promote() is a start
PROMOTION_S = 10.0
SUBMIT_MODES = ("transactional", "autonomous")
#: [progress] within_s and [reload] within_s when a profile gives none
PROGRESS_WITHIN_S = PROGRESS_S
RELOAD_WITHIN_S = RELOAD_S
REFERENCE = "@reference"
#: a setting's name as core's GUC names go: an identifier, or an extension's prefix and a dot
SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)*")


class ProfileError(KitError):
    """A profile that does not follow the schema."""


@dataclass(frozen=True)
class Install:
    packages: tuple[str, ...] = ()
    source: Path | None = None
    recipe: str | None = None
    make_args: str = ""
    preload: tuple[str, ...] = ()
    apt_sources: tuple[AptSource, ...] = ()


@dataclass(frozen=True)
class SetupStep:
    database: str
    sql: tuple[str, ...]


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    title: str
    backend_type: str | None = None
    database: str | None = None
    count: int = 1
    after_exit: str = "restart"
    restart_s: float = 0.0
    after_crash: str = "restart"
    backend_type_pattern: str | None = None  # a regex the whole backend_type matches
    roles: tuple[str, ...] = ("primary",)
    after_promotion: str = "starts"
    promotion_s: float = PROMOTION_S
    after_shortage: str = "back"

    def runs_on(self, role: str) -> bool:
        """Whether it runs on a server of this role ("primary" or "standby")."""
        return role in self.roles

    @property
    def connects(self) -> bool:
        """Whether its processes show in pg_stat_activity (it declares a backend type)."""
        return self.backend_type is not None or self.backend_type_pattern is not None

    def backend_type_matches(self, value: str | None) -> bool:
        """Whether a pg_stat_activity backend_type is this kind's: equal to
        ``backend_type``, or matched whole by ``backend_type_pattern``."""
        if self.backend_type_pattern is not None:
            return value is not None and re.fullmatch(self.backend_type_pattern, value) is not None
        return value is not None and value == self.backend_type


@dataclass(frozen=True)
class Workload:
    database: str
    start: tuple[str, ...]
    stop: tuple[str, ...] = ()
    starts: tuple[str, ...] = ()


@dataclass(frozen=True)
class PoolSpec:
    adapter: str
    launcher: str | None = None
    worker: str | None = None
    launcher_restart_policy: str = "adopt"
    submit: str | None = None
    stop: str | None = None
    list: str | None = None
    capacity: str | None = None  # the server setting that sizes the pool
    startup_timeout: str | None = None  # a session setting, in ms
    startup_timeout_sqlstate: str | None = None
    direct_launch_ms: str | None = None  # SQL: one direct worker launch, in ms (the latency floor)
    standby_submit_sqlstate: str | None = None  # what a submit on a hot standby fails with
    submit_mode: str = (
        "transactional"  # or "autonomous": a job runs whatever its submitter's transaction does
    )


@dataclass(frozen=True)
class ProgressSpec:
    """PROGRESS-1: SQL returning one number that the extension's work increases."""

    sql: str
    database: str = "postgres"
    within_s: float = PROGRESS_WITHIN_S
    start: tuple[str, ...] = ()  # SQL that makes the work happen, before PROGRESS-1's scenario
    stop: tuple[str, ...] = ()  # SQL that undoes it, after the scenario


@dataclass(frozen=True)
class ReloadSpec:
    """RELOAD-1: a setting, a value for it, and SQL that shows its effect."""

    setting: str
    value: str
    sql: str
    expect: str | None = None  # what sql shows once it took effect; None: the value
    database: str = "postgres"
    within_s: float = RELOAD_WITHIN_S
    start: tuple[str, ...] = ()  # SQL that makes the effect visible, before RELOAD-1's scenario
    stop: tuple[str, ...] = ()  # SQL that undoes it, after the scenario

    @property
    def shows(self) -> str:
        """What ``sql`` returns (as text) once the value took effect."""
        return self.value if self.expect is None else self.expect


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    tiers: tuple[str, ...]
    install: Install
    description: str = ""
    majors: tuple[int, ...] = ()
    notes: str = ""
    server: dict[str, str] = field(default_factory=dict)
    setup: tuple[SetupStep, ...] = ()
    processes: tuple[ProcessSpec, ...] = ()
    workload: Workload | None = None
    pool: PoolSpec | None = None
    progress: ProgressSpec | None = None
    reload: ReloadSpec | None = None
    #: the setting naming the database the extension works in ([extension] database_setting)
    database_setting: str | None = None

    def process(self, name: str) -> ProcessSpec:
        return next(p for p in self.processes if p.name == name)

    def runs_on(self, major: int) -> bool:
        return not self.majors or major in self.majors

    # -- the pool and faults tiers' view ------------------------------------------
    def _pool_process(self, role: str) -> ProcessSpec:
        name = getattr(self.pool, role, None) if self.pool else None
        if name is None:
            raise KitError(f"profile {self.name}: the pool has no {role} process")
        return self.process(name)

    @property
    def launcher_backend_type(self) -> str:
        spec = self._pool_process("launcher")
        return spec.backend_type or spec.title

    @property
    def launcher_restart_s(self) -> float:
        return self._pool_process("launcher").restart_s

    @property
    def launcher_restart_policy(self) -> str:
        return self.pool.launcher_restart_policy if self.pool else "adopt"

    @property
    def worker_backend_type(self) -> str:
        spec = self._pool_process("worker")
        return spec.backend_type or spec.title

    @property
    def worker_title(self) -> str:
        return self._pool_process("worker").title

    def is_pool_backend_type(self, role: str, value: str | None) -> bool:
        """Whether a pg_stat_activity backend_type is that of the pool's ``role``
        ("launcher" or "worker"): by its backend_type or backend_type_pattern,
        else (it declares neither) equal to its title."""
        spec = self._pool_process(role)
        return spec.backend_type_matches(value) if spec.connects else value == spec.title


# -- validation ------------------------------------------------------------------
class _Table:
    """One TOML table being read: every key taken is checked off, so that
    whatever is left over is an unknown key."""

    def __init__(self, path: Path, where: str, data: Any) -> None:
        self.path = path
        self.where = where
        if not isinstance(data, dict):
            self.fail(where or "(top level)", "expected a table")
        self.data: dict[str, Any] = data
        self.taken: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def fail(self, key: str, problem: str) -> None:
        raise ProfileError(f"profile {self.path}: key '{key}': {problem}")

    def get(
        self, name: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False
    ) -> Any:
        self.taken.add(name)
        if name not in self.data:
            if required:
                raise ProfileError(f"profile {self.path}: missing key '{self.key(name)}'")
            return default
        value = self.data[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            self.fail(self.key(name), f"expected {names}, got {type(value).__name__} {value!r}")
        return value

    def strings(self, name: str, required: bool = False) -> tuple[str, ...]:
        value = self.get(name, list, [], required)
        if not all(isinstance(v, str) for v in value):
            self.fail(self.key(name), "expected a list of strings")
        return tuple(value)

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(name, str, default)
        if value not in choices:
            self.fail(self.key(name), f"{value!r} is not one of {', '.join(choices)}")
        return value

    def sub(self, name: str, required: bool = False) -> _Table | None:
        self.taken.add(name)
        if name not in self.data:
            if required:
                raise ProfileError(f"profile {self.path}: missing table '[{self.key(name)}]'")
            return None
        return _Table(self.path, self.key(name), self.data[name])

    def subs(self, name: str) -> list[_Table]:
        self.taken.add(name)
        items = self.data.get(name, [])
        if not isinstance(items, list):
            self.fail(self.key(name), "expected an array of tables ([[...]])")
        return [_Table(self.path, f"{self.key(name)}[{i}]", item) for i, item in enumerate(items)]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.taken)
        if unknown:
            self.fail(self.key(unknown[0]), "unknown key")


def _install(t: _Table | None, base: Path) -> Install:
    if t is None:
        return Install()
    source_text = t.get("source", str)
    source = None
    if source_text == REFERENCE:
        source = reference_ext_dir()
    elif source_text is not None:
        source = (base / source_text).resolve()
        if not source.is_dir():
            t.fail(t.key("source"), f"no directory {source}")
    install = Install(
        packages=t.strings("packages"),
        source=source,
        recipe=t.get("recipe", str),
        make_args=t.get("make_args", str, ""),
        preload=t.strings("preload"),
        apt_sources=tuple(_apt_source(a, base) for a in t.subs("apt_source")),
    )
    if install.recipe is not None and source is None:
        t.fail(t.key("recipe"), "a recipe needs 'source', the sources it builds")
    t.done()
    return install


def _apt_source(t: _Table, base: Path) -> AptSource:
    try:
        src = aptsources.make(
            t.get("uri", str, required=True),
            t.get("suite", str, required=True),
            t.strings("components"),
            t.get("key", str),
            t.get("trusted", bool, False),
            base,
            f"profile {t.path}: key '{t.where}'",
        )
    except ProfileError:
        raise
    except KitError as exc:
        raise ProfileError(str(exc)) from None
    t.done()
    return src


def _roles(t: _Table) -> tuple[str, ...]:
    roles = t.strings("roles") or ("primary",)
    for role in roles:
        if role not in ROLES:
            t.fail(t.key("roles"), f"{role!r} is not one of {', '.join(ROLES)}")
    return tuple(dict.fromkeys(roles))


def _process(t: _Table) -> ProcessSpec:
    roles = _roles(t)
    default = "keeps" if len(roles) == 2 else "stops" if roles == ("standby",) else "starts"
    spec = ProcessSpec(
        name=t.get("name", str, required=True),
        title=t.get("title", str, required=True),
        backend_type=t.get("backend_type", str),
        database=t.get("database", str),
        count=t.get("count", int, 1),
        after_exit=t.choice("after_exit", RESTART_POLICIES, "restart"),
        restart_s=t.get("restart_s", float, 0.0),
        after_crash=t.choice("after_crash", RESTART_POLICIES, "restart"),
        backend_type_pattern=t.get("backend_type_pattern", str),
        roles=roles,
        after_promotion=t.choice("after_promotion", AFTER_PROMOTION, default),
        promotion_s=t.get("promotion_s", float, PROMOTION_S),
        after_shortage=t.choice("after_shortage", AFTER_SHORTAGE, "back"),
    )
    if spec.after_promotion == "keeps" and "standby" not in roles:
        t.fail(t.key("after_promotion"), "a kind that does not run on the standby cannot keep running")
    if spec.promotion_s <= 0:
        t.fail(t.key("promotion_s"), "must be more than 0")
    if spec.backend_type is not None and spec.backend_type_pattern is not None:
        t.fail(t.key("backend_type_pattern"), "give backend_type or backend_type_pattern, not both")
    for key in ("title", "backend_type_pattern"):
        try:
            re.compile(getattr(spec, key) or "")
        except re.error as exc:
            t.fail(t.key(key), f"not a regex: {exc}")
    if spec.count < 0:
        t.fail(t.key("count"), "must be 0 or more")
    if spec.restart_s < 0:
        t.fail(t.key("restart_s"), "must be 0 or more")
    t.done()
    return spec


def _extension(t: _Table | None) -> str | None:
    """[extension]: the setting that names the extension's database, if any."""
    if t is None:
        return None
    setting = t.get("database_setting", str)
    if setting is not None and not SETTING_NAME.fullmatch(setting):
        t.fail(t.key("database_setting"), f"{setting!r} is not a setting's name (e.g. cron.database_name)")
    t.done()
    return setting


def _server(t: _Table | None) -> dict[str, str]:
    if t is None:
        return {}
    out = {}
    for name in list(t.data):
        value = t.get(name, (str, int, float, bool))
        out[name] = str(value).lower() if isinstance(value, bool) else str(value)
    t.done()
    return out


def _within(t: _Table, default: float) -> float:
    within = t.get("within_s", float, default)
    if within <= 0:
        t.fail(t.key("within_s"), "must be more than 0")
    return within


def _sql_text(t: _Table, name: str) -> str:
    text = t.get(name, str, required=True)
    if not text.strip():
        t.fail(t.key(name), "must not be empty")
    return text


def _progress(t: _Table | None) -> ProgressSpec | None:
    if t is None:
        return None
    spec = ProgressSpec(
        sql=_sql_text(t, "sql"),
        database=t.get("database", str, "postgres"),
        within_s=_within(t, PROGRESS_WITHIN_S),
        start=t.strings("start"),
        stop=t.strings("stop"),
    )
    t.done()
    return spec


def _reload(t: _Table | None) -> ReloadSpec | None:
    if t is None:
        return None
    setting = t.get("setting", str, required=True)
    if not SETTING_NAME.fullmatch(setting):
        t.fail(t.key("setting"), f"{setting!r} is not a setting's name")
    value = t.get("value", (str, int, float, bool), required=True)
    spec = ReloadSpec(
        setting=setting,
        value=str(value).lower() if isinstance(value, bool) else str(value),
        sql=_sql_text(t, "sql"),
        expect=t.get("expect", str),
        database=t.get("database", str, "postgres"),
        within_s=_within(t, RELOAD_WITHIN_S),
        start=t.strings("start"),
        stop=t.strings("stop"),
    )
    t.done()
    return spec


def parse_profile(path: Path, data: dict[str, Any]) -> Profile:
    top = _Table(path, "", data)
    name = top.get("name", str, required=True)
    tiers = top.strings("tiers", required=True)
    for tier in tiers:
        if tier not in TIERS:
            top.fail("tiers", f"unknown tier {tier!r}; tiers are {', '.join(TIERS)}")
    majors = top.get("majors", list, [])
    if not all(isinstance(m, int) and not isinstance(m, bool) for m in majors):
        top.fail("majors", "expected a list of integers")
    install = _install(top.sub("install"), path.parent)
    database_setting = _extension(top.sub("extension"))
    server = _server(top.sub("server"))
    setup = []
    for t in top.subs("setup"):
        setup.append(SetupStep(t.get("database", str, "postgres"), t.strings("sql", required=True)))
        t.done()
    processes = tuple(_process(t) for t in top.subs("process"))
    names = [p.name for p in processes]
    if len(set(names)) != len(names):
        top.fail("process", f"process names must be unique, got {names}")
    workload = None
    if (w := top.sub("workload")) is not None:
        workload = Workload(
            w.get("database", str, "postgres"),
            w.strings("start", required=True),
            w.strings("stop"),
            w.strings("starts"),
        )
        for started in workload.starts:
            if started not in names:
                w.fail(w.key("starts"), f"no [[process]] named {started!r}")
        w.done()
    pool = None
    if (p := top.sub("pool")) is not None:
        pool = PoolSpec(
            adapter=p.get("adapter", str, required=True),
            launcher=p.get("launcher", str),
            worker=p.get("worker", str),
            launcher_restart_policy=p.choice("launcher_restart_policy", ("adopt", "terminate"), "adopt"),
            submit=p.get("submit", str),
            stop=p.get("stop", str),
            list=p.get("list", str),
            capacity=p.get("capacity", str),
            startup_timeout=p.get("startup_timeout", str),
            startup_timeout_sqlstate=p.get("startup_timeout_sqlstate", str),
            direct_launch_ms=p.get("direct_launch_ms", str),
            standby_submit_sqlstate=p.get("standby_submit_sqlstate", str),
            submit_mode=p.choice("submit_mode", SUBMIT_MODES, "transactional"),
        )
        if (pool.startup_timeout is None) != (pool.startup_timeout_sqlstate is None):
            p.fail(p.key("startup_timeout"), "startup_timeout and startup_timeout_sqlstate go together")
        for role in ("launcher", "worker"):
            if (ref := getattr(pool, role)) is not None and ref not in names:
                p.fail(p.key(role), f"no [[process]] named {ref!r}")
        if pool.worker is None:
            p.fail(p.key("worker"), "missing: the [[process]] name of the pool's workers")
        if pool.adapter == "sql" and not (pool.submit and pool.stop and pool.list):
            p.fail(p.key("adapter"), "the sql adapter needs the submit, stop and list templates")
        if pool.adapter != "sql" and ":" not in pool.adapter:
            p.fail(p.key("adapter"), f"{pool.adapter!r}: give 'sql' or 'module:Class'")
        p.done()
    profile = Profile(
        name=name,
        path=path,
        tiers=tiers,
        install=install,
        description=top.get("description", str, ""),
        majors=tuple(majors),
        notes=top.get("notes", str, ""),
        server=server,
        setup=tuple(setup),
        processes=processes,
        workload=workload,
        pool=pool,
        progress=_progress(top.sub("progress")),
        reload=_reload(top.sub("reload")),
        database_setting=database_setting,
    )
    top.done()
    if "bgworker" in tiers and not processes:
        top.fail("process", "the bgworker tier needs at least one [[process]]")
    if ("pool" in tiers or "faults" in tiers) and pool is None:
        top.fail("pool", "the pool and faults tiers need a [pool] table")
    if "faults" in tiers and pool is not None and pool.adapter == "sql":
        top.fail("pool.adapter", "the faults tier needs a Python adapter (job kinds SQL cannot express)")
    return profile


def profile_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix or "/" in name_or_path:
        return path
    return fixtures_dir() / "profiles" / f"{name_or_path}.toml"


def load_profile(name_or_path: str) -> Profile:
    path = profile_path(name_or_path)
    if not path.is_file():
        raise ProfileError(f"no extension profile {name_or_path!r} (looked for {path})")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile {path}: not valid TOML: {exc}") from None
    return parse_profile(path, data)


def available_profiles() -> list[str]:
    found = (fixtures_dir() / "profiles").glob("*.toml")
    return sorted(p.stem for p in found if not p.name.endswith(".expectations.toml"))
