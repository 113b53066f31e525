"""The built-in SQL adapter: a pool driven by the SQL templates of its
profile's ``[pool]`` table, for pools whose API is SQL (pg_background, ...).

Templates take psycopg's named parameters (write ``%%`` for a literal ``%``):

- ``submit``: runs a job; parameters ``%(query)s`` (the job's SQL) and
  ``%(database)s``; returns one row with a ``pid`` column and, where the
  pool has them, ``slot`` and ``generation`` (or ``cookie``).
- ``stop``: stops one job; parameters ``%(pid)s``, ``%(slot)s``,
  ``%(generation)s``; its first column, if boolean, says whether it stopped one.
- ``list``: the live jobs, one row each, with ``pid`` and ``state`` columns
  (and ``slot``, ``generation`` or ``cookie`` where the pool has them).

Job kinds are SQL: ``sleep`` is ``pg_sleep``, ``sql`` runs the given query,
``exit_at_once`` is ``SELECT 1``.  The faults tier's kinds are not SQL: they
are not applicable here.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from conformance.adapters.base import Handle, Job, NotApplicable, PoolAdapter, Slot
from conformance.profile import Profile
from conformance.targets import Target


def job_sql(kind: str, args: dict[str, Any]) -> str:
    if kind == "sleep":
        return f"SELECT pg_sleep({float(args.get('ms', 1000)) / 1000:g})"  # ok-sleep: the job itself
    if kind == "sql":
        return str(args["query"])
    if kind == "exit_at_once":
        return "SELECT 1"
    raise NotApplicable(f"the SQL adapter has no job kind {kind!r} (SQL cannot express it)")


class SqlAdapter(PoolAdapter):
    def __init__(self, profile: Profile, target: Target) -> None:
        super().__init__(profile, target)
        self._conn: psycopg.Connection[Any] | None = None

    def _rows(
        self, template: str | None, params: dict[str, Any], conn: psycopg.Connection[Any] | None = None
    ) -> list[dict[str, Any]]:
        assert template is not None  # the profile's validation requires the three templates
        if conn is None:
            with self.target.connect() as own:
                return self._rows(template, params, own)
        with conn.cursor(row_factory=dict_row) as cur:
            if conn.info.pipeline_status == psycopg.pq.PipelineStatus.OFF:
                cur.execute(template, params)
            else:  # in a caller's pipeline: an inner block's end syncs, so the result is here
                with conn.pipeline():
                    cur.execute(template, params)
            return cur.fetchall() if cur.description else []

    def submit(
        self,
        kind: str,
        args: dict[str, Any] | None = None,
        dbname: str | None = None,
        conn: psycopg.Connection[Any] | None = None,
    ) -> Handle:
        assert self.profile.pool is not None and self.profile.pool.submit is not None
        query = job_sql(kind, args or {})
        if dbname not in (None, "postgres") and "%(database)s" not in self.profile.pool.submit:
            raise NotApplicable("the pool runs a job in its submitter's database: no database to choose")
        rows = self._rows(
            self.profile.pool.submit,
            {"query": query, "database": dbname or "postgres"},
            conn or self._session(),
        )
        if not rows or "pid" not in rows[0]:
            raise AssertionError(f"the submit template returned {rows!r}: one row with a pid column expected")
        return Handle.from_row(rows[0])

    def terminate(self, handle: Handle, conn: psycopg.Connection[Any] | None = None) -> bool:
        assert self.profile.pool is not None
        params = {
            "pid": handle.pid,
            "slot": handle.slot,
            "generation": handle.generation,
            "cookie": handle.generation,
        }
        rows = self._rows(self.profile.pool.stop, params, conn or self._session())
        if not rows:
            return True
        first = next(iter(rows[0].values()))
        return first if isinstance(first, bool) else True  # a void or other result: it was asked

    def jobs(self) -> list[Job]:
        assert self.profile.pool is not None
        return [
            Job(Handle.from_row(r), str(r.get("state", "running")))
            for r in self._rows(self.profile.pool.list, {}, self._session())
        ]

    def _session(self) -> psycopg.Connection[Any]:
        """One kept session for submit, stop and list: some SQL pools (pg_background)
        bind a job to the session that launched it."""
        self._conn = self.target.live(self._conn)
        return self._conn

    def slots(self, conn: psycopg.Connection[Any] | None = None) -> list[Slot]:
        raise NotApplicable("the SQL adapter lists jobs, not slots")

    def capacity(self) -> int:
        raise NotApplicable("the SQL adapter knows no pool capacity")

    def launcher_pid(self) -> int | None:
        assert self.profile.pool is not None
        if self.profile.pool.launcher is None:
            raise NotApplicable("the pool has no launcher")
        rows = self.target.sql("SELECT pid, backend_type FROM pg_stat_activity")
        return next(
            (pid for pid, btype in rows if self.profile.is_pool_backend_type("launcher", btype)), None
        )

    def check(self) -> list[str]:
        raise NotApplicable("the SQL adapter has no invariant check of the pool's own")
