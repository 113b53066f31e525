"""The fault and observation API, the same on every target.

Modelled on PostgreSQL::Test::Cluster: ``kill9``-style faults, ``stop(mode)``,
``start``, ``restart``, ``reload``, ``set_conf`` (its ``append_conf``),
``wait_until`` (its ``poll_query_until``) and ``wait_for_log``.  A target
implements only how to run a command next to the server (``_exec``) and where
the server listens; everything else is written once, here.
"""

from __future__ import annotations

import re
import shlex
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg

from conformance.deadlines import SLOW
from conformance.errors import TargetError
from conformance.processes import PS_ARGV, Process, parse_ps
from conformance.targets.watchers import KILL_ON_SIGHT, STOP_WHEN_IDLE
from conformance.waiting import WaitTimeout
from conformance.waiting import wait_until as _wait_until

T = TypeVar("T")

STOP_MODES = ("smart", "fast", "immediate")
START_TIMEOUT_S = 60 * SLOW  # the harness's own waits scale with a slow pass's CPU
RECONNECT_S = 30 * SLOW  # crash recovery of the kit's small clusters takes well under a second
CANNOT_CONNECT_NOW = "57P03"
_OVERRIDES = "bgwc_overrides.conf"
#: every session the harness opens runs under these (the one place they are set): a
#: statement the extension blocks ends in an error that names the blocker, never in a hang
STATEMENT_TIMEOUT_S = 30.0
LOCK_TIMEOUT_S = 10.0
#: the catalog every new session reads as it starts (process_settings): ``Target.sessions_held`` locks it
HELD_AT_START = "pg_catalog.pg_db_role_setting"
#: each step of the escalation ladder (fast, immediate, SIGKILL of every process) gets this long
LADDER_STEP_S = 10.0
#: log lines that name the process a command waits for
_WAITING_FOR = re.compile(
    r"still waiting for backend with PID (\d+) to accept ProcSignalBarrier"
    r"|process (\d+) still waiting for \S+ on"
    r"|Process (\d+) waits for"
)


class BlockedStatement(TargetError):
    """A harness statement ran out of its deadline: the message says what blocked it."""


class ServerLost(TargetError):
    """The server could not be brought back to a running state, even in a fresh data directory."""


@dataclass(frozen=True)
class Escalation:
    """One step of the escalation ladder: taken because the server did not
    stop or start in time, a fault the extension caused; ``test`` is the
    test that left the server in that state."""

    test: str
    step: str  # fast, immediate, SIGKILL, restart, fresh
    why: str
    took_s: float
    ok: bool
    error: str = ""  # why the step did not work

    def as_record(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "step": self.step,
            "why": self.why,
            "took_s": self.took_s,
            "ok": self.ok,
            "error": self.error,
        }


@dataclass(frozen=True)
class ExecResult:
    code: int
    output: str


class Target(ABC):
    """A PostgreSQL server with the extension under test preloaded."""

    #: short name used in test ids and reports: ``pg17``, ``local``
    name: str
    major: int

    def __init__(self, cluster_name: str, datadir: str, logfile: str, bindir: str) -> None:
        self.cluster_name = cluster_name  # unique: it marks this server's processes
        self.datadir = datadir
        self.logfile = logfile
        self.bindir = bindir
        self._conf: dict[str, str] = {}
        self._baseline: dict[str, str] = {}
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        # faults injected since begin_test(): (seconds since then, what, detail)
        self.faults: list[tuple[float, str, str]] = []
        self.test_started = time.monotonic()
        self.test_started_wall = time.time()
        self.test_log_offset = 0
        self.current_test = ""  # the node id of the test that runs (or last ran) on this server
        self.escalations: list[Escalation] = []
        self.last_signal_at = 0.0  # time.monotonic() when kill() last delivered a signal
        self.generation = 0  # how many times the server was rebuilt from a fresh data directory
        #: names a server process for a diagnosis (the suite maps pids to the profile's kinds)
        self.pid_namer: Callable[[int], str | None] | None = None
        #: the streaming hot standby of this primary, in a primary+standby topology
        self.standby: Target | None = None

    @property
    def topology(self) -> str:
        """``primary``, or ``primary+standby`` when a standby streams from this server."""
        return "primary" if self.standby is None else "primary+standby"

    # -- what a target provides ------------------------------------------------
    @abstractmethod
    def _exec(self, argv: Sequence[str], user: str = "postgres", timeout: float = 120) -> ExecResult:
        """Run ``argv`` beside the server as ``user``; return code and output."""

    @abstractmethod
    def conninfo(self, dbname: str = "postgres") -> str:
        """A libpq connection string for the server."""

    @abstractmethod
    def libpq_env(self) -> dict[str, str]:
        """PGHOST/PGPORT/PGUSER for client programs run beside the server."""

    #: where the extension's sources were built for this server
    ext_build_dir: str
    #: the pg_config of this server
    pg_config: str

    @abstractmethod
    def close(self) -> None:
        """Stop the server and remove everything the target created."""

    # -- running commands ------------------------------------------------------
    def exec(self, argv: Sequence[str], user: str = "postgres", timeout: float = 120) -> ExecResult:
        """Run a command beside the server; its exit code and output."""
        return self._exec(argv, user, timeout)

    def run(self, argv: Sequence[str], user: str = "postgres", timeout: float = 120) -> str:
        """Run a command beside the server; raise TargetError unless it exits 0."""
        res = self._exec(argv, user, timeout)
        if res.code != 0:
            raise TargetError(f"{shlex.join(argv)} exited {res.code}: {res.output.strip()[-600:]}")
        return res.output

    def _pg_ctl(self, *args: str, check: bool = True) -> ExecResult:
        res = self._exec([f"{self.bindir}/pg_ctl", "-D", self.datadir, *args])
        if check and res.code != 0:
            raise TargetError(
                f"pg_ctl {' '.join(args)} exited {res.code}: {res.output.strip()[-600:]}\n{self.log_tail()}"
            )
        return res

    # -- server lifecycle ------------------------------------------------------
    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._pg_ctl(
            "start",
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "-l",
            self.logfile,
            "-o",
            f"-c cluster_name={self.cluster_name} {self._listen_options()}",
        )
        self._record("start", "")

    def _listen_options(self) -> str:
        return ""

    def stop(self, mode: str = "fast", timeout: float = LADDER_STEP_S) -> None:
        """Stop the server and wait, up to ``timeout`` s, until it is down;
        TargetError when it is not (no escalation: see ``bring_down``)."""
        if mode not in STOP_MODES:
            raise ValueError(f"stop mode must be one of {STOP_MODES}, not {mode!r}")
        self._drop_connection()
        self._record("stop", mode)
        self._pg_ctl("stop", "-w", "-t", str(max(1, round(timeout))), "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        """Stop (escalating if the stop hangs) and start again."""
        if self.is_running():
            self.bring_down(f"restart ({mode})", mode)
        self.start()

    # -- the escalation ladder: its one owner -------------------------------------
    def _escalate(self, step: str, why: str, action: Callable[[], object]) -> bool:
        t0 = time.monotonic()
        error = ""
        try:
            action()
        except (TargetError, WaitTimeout) as exc:
            error = str(exc).strip().splitlines()[0][:300]
        took = round(time.monotonic() - t0, 3)
        ok = not error
        self.escalations.append(Escalation(self.current_test, step, why, took, ok, error))
        self._record("escalation", f"{step} ({why}): {'done' if ok else 'failed'} in {took:g}s")
        return ok

    def bring_down(self, why: str, mode: str = "fast", *, tried: bool = False) -> None:
        """Stop the server whatever holds it: ``mode``, then immediate, then
        SIGKILL of every server process, each with a deadline of
        LADDER_STEP_S.  A first step that works is not an escalation; every
        later step is recorded (``escalations``) against the current test
        (``tried``: the caller's own ``mode`` stop already failed).
        TargetError only when a server process survives SIGKILL."""
        if not tried:
            try:
                self.stop(mode, LADDER_STEP_S)
                return
            except TargetError:
                pass
        if mode != "immediate" and self._escalate(
            "immediate",
            f"{why}: a {mode} stop did not finish in {LADDER_STEP_S:g}s",
            lambda: self.stop("immediate", LADDER_STEP_S),
        ):
            return
        if not self._escalate("SIGKILL", f"{why}: the server did not stop", self.kill_all):
            raise TargetError(f"{why}: SIGKILL of every server process failed: {self.escalations[-1].error}")

    def kill_all(self) -> None:
        """SIGKILL every process of the server (orphans of a dead postmaster
        included) and wait until none is left."""
        self._drop_connection()
        for proc in self.processes():
            try:
                self.kill(proc.pid, signal.SIGKILL)
            except TargetError:
                # an exiting process reads with no title for a moment, so kill()
                # no longer knows it as the server's and refuses: the wait judges
                pass
        self.wait_until(lambda: not self.processes(), LADDER_STEP_S, what="every server process gone")

    def recover(self, why: str, *, escalation: bool = True, mode: str = "fast") -> None:
        """Bring the server back up whatever state it is in: down by the
        ladder, then a start; if it still will not start, whatever is left
        of it killed and a start again; then a fresh data directory (the
        setup must then run again: ``generation`` counts these).  The
        restart is an escalation (``escalation``: the server is not as the
        last test should have left it), and so is every step past it;
        ServerLost when none works.  ``mode``: the ladder's first stop."""
        if self.is_running():
            self.bring_down(why, mode)
        if escalation:
            if self._escalate("restart", why, self._start_once):
                return
        else:
            try:
                self._start_once()
                return
            except TargetError:
                pass
        if self._escalate("SIGKILL", f"{why}: the start failed", self.kill_all) and self._escalate(
            "restart", f"{why}: after SIGKILL", self._start_once
        ):
            return
        if self._escalate("fresh", f"{why}: the server would not start", self._fresh):
            self.generation += 1
            return
        raise ServerLost(f"{why}: the server could not be restored\n{self.log_tail()}")

    def _start_once(self) -> None:
        try:
            self.start()
        except TargetError:
            self._pg_ctl("stop", "-m", "immediate", check=False)
            raise

    @abstractmethod
    def _fresh(self) -> None:
        """Replace the server by a new one from the same inputs (a fresh data
        directory or container), started, with the current settings."""

    def reload(self) -> None:
        """Reload the configuration and wait until new sessions see it."""
        before = self.scalar("SELECT pg_conf_load_time()")
        self._pg_ctl("reload")
        self._record("reload", "")
        self._drop_connection()  # the kept session may not have handled SIGHUP yet

        def reloaded() -> bool:
            with self.connect() as conn:
                return conn.execute("SELECT pg_conf_load_time() > %s", (before,)).fetchone()[0]

        self.wait_until(reloaded, 30, what="the postmaster to reload its configuration")

    def is_running(self) -> bool:
        """Whether a postmaster runs on the data directory: what ``pg_ctl
        status`` tells (postmaster.pid names a live process), through
        the target's own ways of reading a file and looking at a pid."""
        pid = self.postmaster_pid()
        return pid is not None and self._exists(pid)

    def postmaster_pid(self) -> int | None:
        text = self._read(f"{self.datadir}/postmaster.pid")
        line = (text or "").split("\n", 1)[0].strip()
        return int(line) if line.isdigit() else None

    # -- faults ----------------------------------------------------------------
    def kill(self, pid: int, sig: int | signal.Signals = signal.SIGKILL) -> None:
        """Send a real signal to a real process: the one place the kit kills.
        Only the server under test is signalled: its postmaster or a child of
        it, as ``processes()`` sees them.  A pid of 1 or less (a process group,
        init) or any other live process is refused; a server process that has
        already gone is not signalled (its pid may be reused)."""
        if pid <= 1:
            raise TargetError(f"refusing to signal pid {pid}: not a server process")
        name = signal.Signals(sig).name
        if pid not in {p.pid for p in self.processes()}:
            if self._exists(pid):
                raise TargetError(
                    f"refusing to signal pid {pid}: not a process of the server under test ({self.name})"
                )
            self._record("kill", f"{name} -> {pid}: already gone, not signalled")
            return
        self._record("kill", f"{name} -> {pid}")
        self.last_signal_at = time.monotonic()
        self._signal(pid, signal.Signals(sig))

    def kill_on_sight(
        self, first: int, title: str, delay_us: int, timeout: float, ignore: Sequence[int] = ()
    ) -> Callable[[], int | None]:
        """A race hit by timing, where no pause point holds it: a watcher
        beside the server scans the OS (``/proc``, every few hundred
        microseconds) for a new process of this server whose title starts
        with ``title`` (pids in ``ignore`` excepted); on sight it waits
        ``delay_us`` (busy), sends SIGTERM to ``first`` (a process of the
        server: checked here) and then to it.  Returns once the watcher
        scans: a function that waits for the watcher's end (``timeout``) and
        gives the pid it terminated, None when none appeared in time."""
        if first not in {p.pid for p in self.processes()}:
            raise TargetError(f"refusing to watch for pid {first}: not a process of the server under test")
        ready = f"/tmp/bgwc-watch-{first}-{time.monotonic_ns()}"
        marker = f"postgres: {self.cluster_name}: {title}"
        argv = ["perl", "-e", KILL_ON_SIGHT, str(first), marker, str(delay_us), str(timeout), ready]
        result: list[ExecResult] = []
        done = threading.Event()

        def watch() -> None:
            try:
                result.append(self._exec([*argv, *map(str, ignore)], timeout=timeout + 5))
            finally:
                done.set()

        self._record("kill", f"SIGTERM -> {first}, then a new {title!r} on sight (+{delay_us} us)")
        threading.Thread(target=watch, daemon=True, name=f"kill-on-sight-{first}").start()
        scanning = f"the watcher for {title!r} scanning"
        self.wait_until(lambda: done.is_set() or self._size(ready) is not None, 10, what=scanning)

        def outcome() -> int | None:
            self.wait_until(done.is_set, timeout + 10, what=f"the watcher for {title!r} to end")
            self._exec(["rm", "-f", ready])
            res = result[0] if result else None
            if res is None or res.code not in (0, 3):
                raise TargetError(f"the watcher for {title!r} failed: {res}")
            if res.code == 0:
                self.last_signal_at = time.monotonic()
                return int(res.output.split()[0])
            return None

        return outcome

    @contextmanager
    def sessions_held(self) -> Iterator[None]:
        """While the block runs, every new session of the server waits in its
        start, a background worker's connection included: a session holds
        ``pg_db_role_setting`` (which each reads as it starts) in ACCESS
        EXCLUSIVE mode.  The waiters hold no lightweight lock (theirs is a
        lock wait, which SIGTERM ends); sessions already open go on.  The
        block must open none itself."""
        with self.connect() as conn:
            conn.execute("BEGIN")
            conn.execute(f"LOCK TABLE {HELD_AT_START} IN ACCESS EXCLUSIVE MODE")
            self._record("hold", f"new sessions wait for {HELD_AT_START}")
            try:
                yield
            finally:
                conn.execute("ROLLBACK")

    def waiting_at_start(self) -> list[int]:
        """The processes waiting in their start while ``sessions_held``."""
        rows = self.sql(
            "SELECT pid FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
            HELD_AT_START,
            idempotent=True,
        )
        return [r[0] for r in rows]

    def stop_when_idle(self, pid: int, timeout: float = 5.0) -> None:
        """A slow process, made so without wedging what it shares: stop it
        (SIGSTOP) while it sleeps in a wait of the kernel's, never in a lock
        wait or between its own statements; resume it with ``kill(pid,
        SIGCONT)``.  Only a process of the server is stopped."""
        if pid not in {p.pid for p in self.processes()}:
            raise TargetError(f"refusing to stop pid {pid}: not a process of the server under test")
        res = self._exec(["perl", "-e", STOP_WHEN_IDLE, str(pid), str(timeout)], timeout=timeout + 10)
        if res.code != 0:
            raise TargetError(
                f"pid {pid} was never seen asleep in a wait within {timeout} s: {res.output.strip()}"
            )
        self._record("kill", f"SIGSTOP -> {pid}, asleep in syscall {res.output.strip()}")

    def kill_postmaster(self) -> int:
        """SIGKILL the pid in postmaster.pid; return it."""
        pid = self.postmaster_pid()
        if pid is None:
            raise TargetError("no postmaster.pid: the server is not running")
        self._drop_connection()
        self.kill(pid, signal.SIGKILL)
        return pid

    def forks_unfailable(self) -> str | None:
        """Why ``forks_failing`` cannot run on this target, or None when it can."""
        return "a local server's processes share the kit's user and cgroup: its forks cannot fail alone"

    def _limit_forks(self, limited: bool) -> None:
        raise NotImplementedError(self.forks_unfailable())

    @contextmanager
    def forks_failing(self, why: str) -> Iterator[None]:
        """While the block runs, every fork of the server fails with EAGAIN, as
        on a machine out of processes; the processes running go on.  The
        kit's sessions must be opened before (a connection is a fork too),
        and what it reads must come from the host.  The limit is lifted on
        leaving the block, whatever happened in it."""
        self._record("fork failure", f"every fork fails: {why}")
        self._limit_forks(True)
        try:
            yield
        finally:
            self._limit_forks(False)
            self._record("fork failure", "lifted")

    @contextmanager
    def slots_held(self, workers: int, why: str) -> Iterator[None]:
        """``workers`` background-worker slots taken for the block by the
        parallel workers of one slow query (``max_parallel_workers`` must
        allow them), as a busy server's queries take them; on leaving, the
        query is cancelled and waited for, and its workers are gone."""
        table = "bgwc_par"
        self.sql(f"DROP TABLE IF EXISTS {table}")
        self.sql(
            f"CREATE TABLE {table} WITH (parallel_workers = {workers}) "
            "AS SELECT g FROM generate_series(1, 20000) g"
        )
        self.sql(f"ANALYZE {table}")
        done = threading.Event()
        errors: list[BaseException] = []

        def parallel_query() -> None:
            try:
                with self.connect() as conn:
                    for setting in (
                        "parallel_setup_cost = 0",
                        "parallel_tuple_cost = 0",
                        "min_parallel_table_scan_size = 0",
                        f"max_parallel_workers_per_gather = {workers}",
                        "statement_timeout = '60s'",
                        "application_name = 'bgwc_parallel'",
                    ):
                        conn.execute(f"SET {setting}")
                    # ok-sleep: the load itself (a slow parallel scan), cancelled on leaving
                    conn.execute(f"SELECT count(*) FROM {table} WHERE pg_sleep(0.01)::text = ''")  # ok-sleep
            except psycopg.errors.QueryCanceled:
                pass
            except BaseException as exc:  # noqa: BLE001 - raised by the caller's thread
                errors.append(exc)
            finally:
                done.set()

        def parallel_workers() -> int:
            return int(
                self.scalar("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'parallel worker'")
            )

        threading.Thread(target=parallel_query, daemon=True).start()
        try:
            self.wait_until(
                lambda: parallel_workers() == workers, 10, what=f"{workers} parallel workers running"
            )
            self._record("slots held", f"{workers} by parallel workers: {why}")
            yield
        finally:
            self.sql(
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'bgwc_parallel'"
            )
            self.wait_until(done.is_set, STATEMENT_TIMEOUT_S, what="the parallel query to end")
            self.wait_until(lambda: parallel_workers() == 0, 10, what="its parallel workers gone")
            self.sql(f"DROP TABLE IF EXISTS {table}")
            self._record("slots held", "released")
        if errors:
            raise errors[0]

    # -- configuration ---------------------------------------------------------
    def set_conf(self, **gucs: object) -> None:
        """Persist settings (in an included file); restart if one needs it,
        otherwise reload.  ``None`` removes a setting."""
        for name, value in gucs.items():
            if value is None:
                self._conf.pop(name, None)
            else:
                self._conf[name] = str(value).lower() if isinstance(value, bool) else str(value)
        self._write_overrides()
        if not self.is_running():
            return
        contexts = dict(self.sql("SELECT name, context FROM pg_settings WHERE name = ANY(%s)", list(gucs)))
        if any(contexts.get(n) == "postmaster" for n in gucs):
            self.restart()
        else:
            self.reload()

    def set_baseline(self, **gucs: object) -> None:
        """Settings that ``ensure_baseline`` restores before every test."""
        self._baseline = {k: str(v) for k, v in gucs.items()}
        self.ensure_baseline()

    def reset_conf(self) -> bool:
        """Go back to the baseline settings; return True when anything changed."""
        if self._conf == self._baseline:
            return False
        self._conf = dict(self._baseline)
        self._write_overrides()
        return True

    def _write_overrides(self) -> None:
        body = "".join(f"{k} = '{v.replace(chr(39), chr(39) * 2)}'\n" for k, v in self._conf.items())
        self._record("set_conf", body.strip().replace("\n", "; ") or "(baseline)")
        self._write(f"{self.datadir}/{_OVERRIDES}", body)

    def _include_overrides(self) -> None:
        """Called once at setup: make postgresql.conf include the override file."""
        self.run(
            [
                "sh",
                "-c",
                f"cd {shlex.quote(self.datadir)} && touch {_OVERRIDES} && "
                f"grep -q {_OVERRIDES} postgresql.conf || "
                f"echo \"include_if_exists = '{_OVERRIDES}'\" >> postgresql.conf",
            ]
        )

    # -- the OS beside the server: by commands run there; a target may read it directly
    def _ps(self) -> str:
        """What ``ps -o pid=,ppid=,stat=,args=`` prints beside the server."""
        return self.run(PS_ARGV, user="root")

    def _exists(self, pid: int) -> bool:
        """A live process (of the server or not) has this pid beside the server.
        A zombie has exited: it is not live, as ``processes()`` sees it."""
        res = self._exec(["ps", "-o", "stat=", "-p", str(pid)], user="root")
        return res.code == 0 and not res.output.strip().startswith("Z")

    def _signal(self, pid: int, sig: signal.Signals) -> None:
        """Deliver ``sig`` (only ``kill`` calls this, after its checks); a process gone meanwhile is fine."""
        res = self._exec(["kill", "-s", sig.name.removeprefix("SIG"), str(pid)], user="root")
        if res.code != 0 and "No such process" not in res.output:
            raise TargetError(f"kill -{sig.name} {pid} failed: {res.output.strip()}")

    def _read(self, path: str, offset: int = 0) -> str | None:
        """A file beside the server from byte ``offset`` on; None when it cannot be read."""
        res = self._exec(["tail", "-c", f"+{offset + 1}", path])
        return res.output if res.code == 0 else None

    def _write(self, path: str, text: str) -> None:
        """Replace a file of the server's (written as the server's user)."""
        self.run(["sh", "-c", f"printf %s {shlex.quote(text)} > {shlex.quote(path)}"])

    def _size(self, path: str) -> int | None:
        res = self._exec(["stat", "-c", "%s", path])
        return int(res.output.strip()) if res.code == 0 and res.output.strip().isdigit() else None

    # -- observation -----------------------------------------------------------
    def processes(self) -> list[Process]:
        """The OS truth: this server's live processes (zombies excluded)."""
        return parse_ps(self._ps(), self.cluster_name)

    def pid_alive(self, pid: int) -> bool:
        return any(p.pid == pid for p in self.processes())

    def log_offset(self) -> int:
        return self._size(self.logfile) or 0

    def log_since(self, offset: int) -> str:
        return self._read(self.logfile, offset) or ""

    def log_tail(self, lines: int = 40) -> str:
        res = self._exec(["tail", "-n", str(lines), self.logfile])
        return f"--- server log ({self.name}, last {lines} lines) ---\n{res.output.rstrip()}"

    def wait_for_log(self, regex: str, offset: int = 0, timeout: float = 30) -> re.Match[str]:
        pattern = re.compile(regex, re.MULTILINE)
        return self.wait_until(
            lambda: pattern.search(self.log_since(offset)),
            timeout,
            what=f"log line /{regex}/ after byte {offset}",
        )

    def wait_until(
        self, predicate: Callable[[], T], timeout: float = 30, what: str = "condition", expected: float = 0.0
    ) -> T:
        """Poll until ``predicate`` is truthy; on timeout show the last value and the log
        (``expected``: what the wait takes by design, see ``conformance.waiting``)."""
        return _wait_until(
            predicate, timeout, what=f"{what} on {self.name}", context=self.log_tail, expected=expected
        )

    # -- SQL -------------------------------------------------------------------
    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection[Any]:
        """A session of the harness: every statement in it has a deadline
        (STATEMENT_TIMEOUT_S, LOCK_TIMEOUT_S), which a test may lower or
        raise with SET for a statement it times itself."""
        statement, lock = int(STATEMENT_TIMEOUT_S * 1000), int(LOCK_TIMEOUT_S * 1000)
        deadlines = f"-c statement_timeout={statement} -c lock_timeout={lock}"
        return psycopg.connect(
            self.conninfo(dbname), autocommit=True, connect_timeout=10, options=deadlines, **kwargs
        )

    def sql(self, query: str, *params: Any, idempotent: bool = False) -> list[tuple[Any, ...]]:
        """Run one statement on a kept connection, made live first
        (``live``).  A statement whose connection breaks under it is retried
        only when the caller says it is ``idempotent``: the harness never
        runs a submit, an insert or a kill twice."""
        with self._lock:
            for attempt in (1, 2):
                self._conn = self.live(self._conn)
                offset = self.log_offset()
                try:
                    cur = self._conn.execute(query, params or None)
                    return cur.fetchall() if cur.description else []
                except (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable) as exc:
                    raise BlockedStatement(f"{query[:200]}: {exc}\n{self.blockers(offset)}") from exc
                except psycopg.OperationalError:
                    if not self._conn.broken or attempt == 2 or not idempotent:
                        raise
        raise AssertionError("unreachable")

    def try_statement(
        self, statement: str, timeout: float, dbname: str = "postgres"
    ) -> tuple[float, str | None]:
        """Run one statement in a session of its own, under ``timeout`` (its
        own statement_timeout): the seconds it took, and why it failed
        (SQLSTATE, message and what blocked it) or None.  For a statement a
        clause times, or a clean-up that must not hang."""
        offset = self.log_offset()
        t0 = time.monotonic()
        with self.connect(dbname) as conn:
            conn.execute(f"SET statement_timeout = '{int(timeout * 1000)}ms'")
            try:
                conn.execute(statement)
            except psycopg.Error as exc:
                took = time.monotonic() - t0
                return took, f"{statement}: {exc.sqlstate} {exc} after {took:.1f}s\n{self.blockers(offset)}"
        return time.monotonic() - t0, None

    def blockers(self, offset: int) -> str:
        """What a statement that ran out of time waited for: the sessions
        that were not idle (pg_stat_activity, with wait events) and the
        processes the log named since byte ``offset`` (a barrier not
        absorbed, a lock), each named by ``pid_namer`` where it can."""
        lines = []
        named = sorted(
            {int(p) for m in _WAITING_FOR.finditer(self.log_since(offset)) for p in m.groups() if p}
        )
        titles = {p.pid: p.backend_type for p in self.processes()}
        for pid in named:
            kind = self.pid_namer(pid) if self.pid_namer else None
            lines.append(f"the log names pid {pid}: {kind or titles.get(pid, 'not a live server process')}")
        try:
            with psycopg.connect(self.conninfo(), autocommit=True, connect_timeout=5) as conn:
                conn.execute("SET statement_timeout = '5s'")
                rows = conn.execute(
                    "SELECT pid, backend_type, datname, state, wait_event_type, wait_event, left(query, 80)"
                    " FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND state IS DISTINCT FROM 'idle'"
                    " AND backend_type NOT IN ('checkpointer', 'background writer', 'walwriter',"
                    " 'autovacuum launcher', 'logical replication launcher', 'io worker', 'archiver')"
                ).fetchall()
            for pid, btype, db, state, wtype, wevent, query in rows:
                kind = self.pid_namer(pid) if self.pid_namer else None
                lines.append(
                    f"pid {pid} ({kind or btype}) in {db}: {state}, waiting on {wtype}/{wevent}: {query!r}"
                )
        except psycopg.Error as exc:
            lines.append(f"(pg_stat_activity unavailable: {exc})")
        return "blocked by:\n  " + ("\n  ".join(lines) or "nothing seen")

    def live(self, conn: psycopg.Connection[Any] | None, dbname: str = "postgres") -> psycopg.Connection[Any]:
        """The one place the kit reconnects: ``conn`` if it still answers a
        ping, else a new connection.  A server starting up or in crash
        recovery (SQLSTATE 57P03) is waited for, with a deadline; one that
        refuses connections otherwise fails at once."""
        if conn is not None and not conn.closed and not conn.broken:
            try:
                conn.execute("SELECT 1")
                return conn
            except psycopg.OperationalError:
                pass
        if conn is not None:
            conn.close()

        def connected() -> psycopg.Connection[Any] | None:
            try:
                return self.connect(dbname)
            except psycopg.OperationalError as exc:
                if exc.sqlstate == CANNOT_CONNECT_NOW or "the database system is" in str(exc):
                    return None  # startup or crash recovery: wait for it
                raise

        return _wait_until(
            connected,
            RECONNECT_S,
            what=f"{self.name} to accept connections again",
            context=self.log_tail,
            retry_on=(),
        )

    def scalar(self, query: str, *params: Any, idempotent: bool = False) -> Any:
        rows = self.sql(query, *params, idempotent=idempotent)
        return rows[0][0] if rows else None

    def _drop_connection(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- bookkeeping -------------------------------------------------------------
    def _record(self, what: str, detail: str) -> None:
        self.faults.append((round(time.monotonic() - self.test_started, 3), what, detail))

    def begin_test(self, nodeid: str = "") -> None:
        """Mark the start of a test: faults and the log excerpt count from here;
        escalations from now on are the test's (``nodeid``)."""
        self.current_test = nodeid
        self.faults.clear()
        self.test_started = time.monotonic()
        self.test_started_wall = time.time()
        self.test_log_offset = self.log_offset()

    def ensure_baseline(self) -> None:
        """Bring the server back to the state a test may assume: running, with
        the baseline settings (escalating as ``recover`` does).  Called before every test."""
        if self.reset_conf() and self.is_running():
            self.restart()
        elif not self.is_running():
            self.recover("the server was down before the test", escalation=False)

    def describe(self) -> dict[str, Any]:
        """This server as plain data, for the results: name, major, version,
        extensions, image, start-to-ready time."""
        info: dict[str, Any] = {"target": self.name, "major": self.major, "topology": self.topology}
        try:
            info["version"] = self.scalar("SELECT version()", idempotent=True)
            info["extensions"] = dict(
                self.sql("SELECT extname, extversion FROM pg_extension", idempotent=True)
            )
        except (psycopg.Error, TargetError, WaitTimeout) as exc:
            info["version"] = f"unknown ({exc})"
        info["image"] = getattr(self, "image", None)
        info["start_to_ready_s"] = round(getattr(self, "started_in_s", 0.0), 2)
        return info

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
