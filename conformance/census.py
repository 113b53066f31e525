"""The census of an extension: its processes, found by the profile's title
patterns in the OS and by their backend types in ``pg_stat_activity``, with
deadline-bounded waits for what it promises.  The bgworker tier's fixture
(``extension``) and ``bgw-conformance init`` both see an extension through it.

It asks nothing of the extension but what the profile declares, so it
judges any extension: one from a Debian package as well as the reference pool.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from conformance.deadlines import DB_COMMAND_S, START_S, WORKLOAD_SETTLE_S
from conformance.processes import AUXILIARY, Process
from conformance.profile import ProcessSpec, Profile
from conformance.targets import StandbyTarget, Target

SCRATCH = "{scratch}"  # a [[setup]] database: run in the scratch databases the suite creates
DATABASE = "{database}"  # in workload SQL: the database the workload runs in

CRASH_RESTART = re.compile(r"terminating any other active server processes|all server processes terminated")
STALE_SHMEM = "pre-existing shared memory block"
KILLED_BY_SIGNAL = re.compile(r"\(PID (\d+)\) was terminated by signal (\d+)")
#: backend types that are not background workers (the logical replication launcher is one)
_NOT_BGWORKER = {"postmaster", "client backend", "parallel worker", *AUXILIARY} - {
    "logical replication launcher"
}


def title_of(proc: Process, cluster_name: str) -> str:
    """What a server process's title says after ``postgres: CLUSTER:``."""
    marker = f"postgres: {cluster_name}: "
    return proc.title.split(marker, 1)[1].strip() if marker in proc.title else ""


#: the postmaster's line about a background worker's exit (LogChildExit, at LOG when the
#: code is not 0): its bgw_type and pid
WORKER_EXITED = re.compile(
    r'background worker "(?P<type>[^"]*)" \(PID (?P<pid>\d+)\) '
    r"(?:exited with exit code|was terminated by signal)"
)


@dataclass
class Census:
    """``role``: the server's part in its topology; the kinds at rest are
    those the profile declares for it (``roles``).  A standby's census
    knows its ``primary``'s: its canaries are written there and read here."""

    target: Target
    profile: Profile
    role: str = "primary"
    primary: Census | None = None
    #: kinds watched through a fault (``watching``): the most processes seen at once by any census
    _watched: dict[str, int] = field(default_factory=dict, repr=False)

    # -- setup and workload ----------------------------------------------------------
    def run_setup(self, scratch: str | None = None, moved: tuple[str, str] | None = None) -> None:
        """The profile's setup steps: the fixed ones, or (with ``scratch``)
        those declared for every scratch database, run in it, or (with
        ``moved``, a pair of names) the fixed ones of the first database run
        in the second (the extension's configured database, moved: DB-4).
        Committed durably: the kit's servers run with synchronous_commit
        off, and a crash-restart soon after would otherwise undo the setup."""
        for step in self.profile.setup:
            if (step.database == SCRATCH) != (scratch is not None):
                continue
            if moved is not None and step.database != moved[0]:
                continue
            where = moved[1] if moved is not None else scratch or step.database
            with self.target.connect(where) as conn:
                conn.execute("SET synchronous_commit = on")
                for query in step.sql:
                    conn.execute(query)

    def _workload_home(self, database: str | None) -> tuple[str, str]:
        """The database the workload's SQL runs in, and the one its workers work in."""
        w = self.profile.workload
        assert w is not None
        home = "postgres" if w.database == DATABASE else w.database
        workers_db = database or home
        return (workers_db if w.database == DATABASE else home), workers_db

    def _workload_sql(
        self,
        queries: Iterable[str],
        database: str | None,
        session: dict[str, str] | None = None,
        conn: psycopg.Connection[Any] | None = None,
    ) -> None:
        """Run workload SQL: ``{database}`` in it names the database its
        workers should work in (``database``, by default the workload's own);
        a workload whose own database is ``{database}`` connects there too.
        ``session``: settings of the harness's own session that runs it;
        ``conn``: that session, opened already (``workload_session``)."""
        if self.profile.workload is None:
            return
        home, workers_db = self._workload_home(database)
        with self.target.connect(home) if conn is None else nullcontext(conn) as c:
            for name, value in (session or {}).items():
                c.execute("SELECT set_config(%s, %s, false)", (name, value))
            for query in queries:
                c.execute(query.replace(DATABASE, workers_db))

    def workload_session(self, database: str | None = None) -> psycopg.Connection[Any]:
        """A session for the workload's SQL, opened now: for a fault during
        which no new session can be (FORK-1).  The caller closes it."""
        return self.target.connect(self._workload_home(database)[0])

    def start_workload(
        self,
        database: str | None = None,
        session: dict[str, str] | None = None,
        conn: psycopg.Connection[Any] | None = None,
    ) -> None:
        if self.profile.workload is not None:
            self._workload_sql(self.profile.workload.start, database, session, conn)

    def stop_workload(self, database: str | None = None) -> None:
        if self.profile.workload is not None:
            self._workload_sql(self.profile.workload.stop, database)

    def workload_kinds(self) -> list[ProcessSpec]:
        w = self.profile.workload
        return [self.profile.process(n) for n in w.starts] if w else []

    # -- what runs -------------------------------------------------------------------
    def at_rest(self) -> list[ProcessSpec]:
        return [s for s in self.profile.processes if s.count > 0 and s.runs_on(self.role)]

    def at_rest_or_skip(self) -> list[ProcessSpec]:
        """The kinds at rest; a clause about them is not applicable without any."""
        kinds = self.at_rest()
        if not kinds:
            where = "" if self.role == "primary" else f" on the {self.role}"
            pytest.skip(f"not applicable: the profile promises no process at rest{where}")
        return kinds

    def of(self, spec: ProcessSpec, procs: list[Process] | None = None) -> list[Process]:
        """The live OS processes of one kind."""
        pattern = re.compile(spec.title)
        procs = self.target.processes() if procs is None else procs
        return [
            p
            for p in procs
            if p.backend_type != "postmaster" and pattern.match(title_of(p, self.target.cluster_name))
        ]

    def census(self, procs: list[Process] | None = None) -> dict[str, list[int]]:
        procs = self.target.processes() if procs is None else procs
        found = {s.name: sorted(p.pid for p in self.of(s, procs)) for s in self.profile.processes}
        for name, most in self._watched.items():
            self._watched[name] = max(most, len(found[name]))
        return found

    @contextmanager
    def watching(self, names: Iterable[str]) -> Iterator[dict[str, int]]:
        """Watch kinds through a fault: every census taken in the block (by
        any wait) counts their processes, and the dict yielded holds the
        most of each seen at once once the block ends."""
        self._watched = {name: 0 for name in names}
        seen: dict[str, int] = {}
        try:
            self.census()
            yield seen
        finally:
            seen.update(self._watched)
            self._watched = {}

    def pids(self) -> set[int]:
        """Every live process of the extension, of every kind."""
        return {pid for pids in self.census().values() for pid in pids}

    def activity(self, spec: ProcessSpec) -> list[tuple[int, str | None]]:
        """The (pid, datname) rows of pg_stat_activity whose backend_type is the kind's
        (its ``backend_type``, or matched whole by its ``backend_type_pattern``)."""
        rows = self.target.sql("SELECT pid, datname, backend_type FROM pg_stat_activity")
        return [(pid, db) for pid, db, btype in rows if spec.backend_type_matches(btype)]

    def background_workers(self) -> list[Process]:
        """Every background worker of the server (core's included), by the OS."""
        return [p for p in self.target.processes() if p.backend_type not in _NOT_BGWORKER]

    def problems_at_rest(self, databases: dict[str, str] | None = None) -> list[str]:
        """What differs from the profile's promise at rest: counts, parents, SQL.
        ``databases``: kinds connected elsewhere than declared (name: database)."""
        procs = self.target.processes()
        postmaster = self.target.postmaster_pid()
        census = self.census(procs)
        problems = []
        for spec in self.at_rest():
            found = [p for p in procs if p.pid in census[spec.name]]
            if len(found) != spec.count:
                problems.append(
                    f"{spec.name}: {len(found)} in the OS {census[spec.name]}, promised {spec.count}"
                )
            problems += [
                f"{spec.name} {p.pid}: parent {p.ppid}, not the postmaster"
                for p in found
                if p.ppid != postmaster
            ]
            if not spec.connects:
                continue
            rows = self.activity(spec)
            if {r[0] for r in rows} != {p.pid for p in found}:
                problems.append(
                    f"{spec.name}: pg_stat_activity shows {sorted(rows)}, the OS {census[spec.name]}"
                )
            database = (databases or {}).get(spec.name, spec.database)
            if database is not None and any(r[1] != database for r in rows):
                problems.append(f"{spec.name}: connected to {sorted({r[1] for r in rows})}, not {database}")
        return problems

    # -- waits -------------------------------------------------------------------------
    def wait_at_rest(
        self, timeout: float = START_S, since: float | None = None, databases: dict[str, str] | None = None
    ) -> float:
        """Wait until every promised process runs as promised, by ``timeout``
        seconds after ``since`` (a ``time.monotonic()``; default now); return
        the seconds since then.  ``databases``: as ``problems_at_rest``."""
        t0 = time.monotonic() if since is None else since
        last: list[str] = []

        def ok() -> bool:
            last[:] = self.problems_at_rest(databases)
            return not last

        try:
            self.target.wait_until(
                ok,
                max(0.0, timeout - (time.monotonic() - t0)),
                what="the extension's processes at rest, as the profile promises",
            )
        except AssertionError as exc:
            raise AssertionError(f"{last}\n{exc}") from None
        return time.monotonic() - t0

    def wait_started(
        self, timeout: float = START_S, since: float | None = None, database: str | None = None
    ) -> float:
        """Wait until the workload's kinds each have a live process that has
        attached: a kind with a backend type shows in ``pg_stat_activity``
        (connected to ``database``, when given), so that a fault aimed at
        the running workers finds them past their start-up and in their
        work, never still connecting.  By ``timeout`` seconds after
        ``since`` (default now); return the seconds since then."""
        t0 = time.monotonic() if since is None else since
        kinds = self.workload_kinds()

        def attached() -> bool:
            census = self.census()
            if not all(census[k.name] for k in kinds):
                return False
            for k in (k for k in kinds if k.connects):
                if not [r for r in self.activity(k) if database is None or r[1] == database]:
                    return False
            return True

        where = f" attached to {database}" if database else " attached"
        self.target.wait_until(
            attached,
            max(0.0, timeout - (time.monotonic() - t0)),
            what=f"the workload's workers ({', '.join(k.name for k in kinds)}){where}",
        )
        return time.monotonic() - t0

    def workload_running(self) -> dict[str, int]:
        """Start the workload and wait until its workers have attached and
        their numbers have held still for WORKLOAD_SETTLE_S: return each of
        its kinds' count then, what it runs (STOP-2 and KILL-2 hold it to
        that count: more at once is a duplicate).  Empty without a workload."""
        kinds = self.workload_kinds()
        if not kinds:
            return {}
        self.start_workload()
        self.wait_started()
        counts: dict[str, int] = {}
        since = time.monotonic()

        def still() -> bool:
            nonlocal since
            census = self.census()
            now = {k.name: len(census[k.name]) for k in kinds}
            if now != counts:
                counts.clear()
                counts.update(now)
                since = time.monotonic()
            return all(counts.values()) and time.monotonic() - since >= WORKLOAD_SETTLE_S

        self.target.wait_until(
            still, START_S, what=f"the workload's workers at a steady count ({WORKLOAD_SETTLE_S:g}s)"
        )
        return dict(counts)

    def wait_back(
        self, spec: ProcessSpec, old: set[int], timeout: float, since: float | None = None
    ) -> tuple[float, int]:
        """Wait until ``spec`` runs its promised count again with none of the
        ``old`` pids, by ``timeout`` seconds after ``since`` (the fault's
        ``time.monotonic()``; default now); return the seconds since then and
        the most processes of that kind seen at once (a duplicate shows as
        more than its count)."""
        t0 = time.monotonic() if since is None else since
        most = 0

        def back() -> bool:
            nonlocal most
            pids = set(self.census()[spec.name])
            most = max(most, len(pids))
            return len(pids) == spec.count and not (pids & old)

        left = max(0.0, timeout - (time.monotonic() - t0))
        self.target.wait_until(back, left, what=f"{spec.name} back ({spec.count}), none of {sorted(old)}")
        return time.monotonic() - t0, most

    def hold(self, spec: ProcessSpec, seconds: float) -> int:
        """Watch ``spec`` for ``seconds`` (an observation window, not a wait for
        a state); return the most processes of that kind seen at once."""
        end = time.monotonic() + seconds
        most = 0
        while True:
            most = max(most, len(self.census()[spec.name]))
            if time.monotonic() >= end:
                return most
            time.sleep(0.1)  # ok-sleep: the census is polled through an observation window

    def seen_in_window(self, kinds: list[ProcessSpec], seconds: float, log_from: int) -> dict[str, set[int]]:
        """Every process of ``kinds`` seen over an observation window of
        ``seconds``: polled in the OS, and named by the postmaster's line
        about a worker's exit in the log from ``log_from`` (a worker that
        fails at once lives a few milliseconds, too short for any poll)."""
        seen: dict[str, set[int]] = {s.name: set() for s in kinds}
        end = time.monotonic() + seconds
        while True:
            census = self.census()
            for s in kinds:
                seen[s.name].update(census[s.name])
            if time.monotonic() >= end:
                break
            time.sleep(0.1)  # ok-sleep: the census is polled through an observation window
        for m in WORKER_EXITED.finditer(self.target.log_since(log_from)):
            for s in kinds:
                if _is_kind(s, m["type"]):
                    seen[s.name].add(int(m["pid"]))
        return seen

    def name_pid(self, pid: int) -> str | None:
        """The profile's kind a server process belongs to (for diagnoses)."""
        census = self.census()
        return next((f"{name} of {self.profile.name}" for name, pids in census.items() if pid in pids), None)

    def workload_left(self) -> dict[str, list[int]]:
        """Processes of the kinds only the workload starts (count 0) that still run."""
        census = self.census()
        return {s.name: census[s.name] for s in self.profile.processes if s.count == 0 and census[s.name]}

    def drop_database(self, name: str) -> str | None:
        """Drop a database the suite created, WITH (FORCE), within DB_COMMAND_S:
        None when dropped, else why not (what blocked it).  The suite's own
        clean-up: a failure is recorded, never a verdict."""
        return self.target.try_statement(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", DB_COMMAND_S)[1]

    def observe_log(self, seconds: float, offset: int) -> str:
        """The server log written during an observation window of ``seconds``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(min(0.5, max(0.0, end - time.monotonic())))  # ok-sleep: an observation window
        return self.target.log_since(offset)

    # -- faults ------------------------------------------------------------------------
    def terminate(self, spec: ProcessSpec, pid: int) -> str:
        """Terminate one process: pg_terminate_backend where SQL can see it,
        otherwise SIGTERM (pg_terminate_backend refuses a non-backend)."""
        if spec.connects:
            if self.target.scalar("SELECT pg_terminate_backend(%s)", pid):
                return "pg_terminate_backend"
        self.target.kill(pid, signal.SIGTERM)
        return "SIGTERM"

    def commit_canary(self, value: str) -> None:
        """Commit a row durably: the kit's servers run with synchronous_commit
        off, whose last commits a crash-restart may lose by design.  On a
        standby: committed on its primary, and replayed here."""
        if self.primary is not None:
            self.primary.commit_canary(value)
            assert isinstance(self.target, StandbyTarget)
            self.target.wait_caught_up()
            return
        with self.target.connect() as conn:
            conn.execute("SET synchronous_commit = on")
            conn.execute("CREATE TABLE IF NOT EXISTS bgwc_canary (v text)")
            conn.execute("INSERT INTO bgwc_canary VALUES (%s)", (value,))

    def canary_intact(self, value: str) -> bool:
        return bool(self.target.scalar("SELECT count(*) FROM bgwc_canary WHERE v = %s", value))

    def unsent_signals(self, log: str) -> list[str]:
        """Lines of ``log`` that report a process killed by a signal the
        scenario did not send (the target records every kill)."""
        sent = {int(d.split(" -> ")[1]) for _, w, d in self.target.faults if w == "kill"}
        return [m.group(0) for m in KILLED_BY_SIGNAL.finditer(log) if int(m.group(1)) not in sent]

    def cpu_seconds(self, pids: Iterable[int]) -> dict[int, float]:
        """CPU time (user + system) each live process has used, from /proc."""
        pids = sorted(pids)
        if not pids:
            return {}
        script = "t=$(getconf CLK_TCK); for p in " + " ".join(map(str, pids)) + "; do "
        script += 'read -r line < /proc/$p/stat 2>/dev/null && echo "$t $p ${line##*) }"; done'
        out: dict[int, float] = {}
        for row in self.target.exec(["sh", "-c", script], user="root").output.splitlines():
            f = row.split()
            if len(f) > 14 and f[0].isdigit() and f[1].isdigit():
                # after "pid (comm) ", utime and stime are the 12th and 13th fields
                out[int(f[1])] = (int(f[13]) + int(f[14])) / int(f[0])
        return out

    def shared_memory(self) -> dict[str, int]:
        """What shared memory holds: named allocations and DSM segments (OS)."""
        count, size = self.target.sql(
            "SELECT count(*), coalesce(sum(allocated_size), 0) FROM pg_shmem_allocations"
        )[0]
        dsm = self.target.exec(["sh", "-c", "ls /dev/shm | grep -c '^PostgreSQL\\.' || true"], user="root")
        segments = dsm.output.strip()
        assert segments.isdigit(), f"counting DSM segments in /dev/shm: {dsm.output!r}"
        return {
            "allocations": int(count),
            "allocated_bytes": int(size),
            "dsm_segments": int(segments),
        }


def _is_kind(spec: ProcessSpec, bgw_type: str) -> bool:
    """Whether a bgw_type is this kind's: its backend type (or pattern), else its title."""
    return (
        spec.backend_type_matches(bgw_type) if spec.connects else re.match(spec.title, bgw_type) is not None
    )
