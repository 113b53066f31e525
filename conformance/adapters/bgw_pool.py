"""The adapter for the reference extension ``bgw_pool`` (reference_ext/)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg.sql

from conformance.adapters.base import Handle, NotApplicable, PoolAdapter, Slot


class BgwPoolAdapter(PoolAdapter):
    def submit(
        self,
        kind: str,
        args: dict[str, Any] | None = None,
        dbname: str | None = None,
        conn: psycopg.Connection[Any] | None = None,
    ) -> Handle:
        query = (
            "SELECT slot, generation, pid"
            " FROM bgw_pool.submit(%s, %s::jsonb, coalesce(%s, current_database()))"
        )
        params = (kind, json.dumps(args or {}), dbname)
        if conn is not None:
            row = conn.execute(query, params).fetchone()
        else:
            row = self.target.sql(query, *params)[0]
        assert row is not None
        return Handle(row[0], row[1], row[2])

    def terminate(self, handle: Handle, conn: psycopg.Connection[Any] | None = None) -> bool:
        query = "SELECT bgw_pool.terminate(%s, %s)"
        if conn is not None:
            row = conn.execute(query, (handle.slot, handle.generation)).fetchone()
            return bool(row and row[0])
        return bool(self.target.scalar(query, handle.slot, handle.generation))

    def slots(self, conn: psycopg.Connection[Any] | None = None) -> list[Slot]:
        query = (
            "SELECT slot, state, generation, database, pid, handle_status, job, last_exit_code"
            " FROM bgw_pool.status ORDER BY slot"
        )
        rows = conn.execute(query).fetchall() if conn is not None else self.target.sql(query)
        return [Slot(*r) for r in rows]

    def launcher_pid(self) -> int | None:
        return self.target.scalar("SELECT bgw_pool.launcher_pid()")

    def check(self) -> list[str]:
        return [f"{inv}: {detail}" for inv, detail in self.target.sql("SELECT * FROM bgw_pool.check()")]

    def stats(self) -> dict[str, int]:
        with self.target.connect() as conn:
            cur = conn.execute("SELECT * FROM bgw_pool.stats()")
            row = cur.fetchone()
            assert row is not None and cur.description is not None
            return {d.name: v for d, v in zip(cur.description, row, strict=True)}

    def grant_submit(self, role: str, conn: psycopg.Connection[Any] | None = None) -> None:
        self._grants("GRANT", "TO", role, conn)

    def revoke_submit(self, role: str, conn: psycopg.Connection[Any] | None = None) -> None:
        self._grants("REVOKE", "FROM", role, conn)

    def _grants(self, verb: str, to: str, role: str, conn: psycopg.Connection[Any] | None) -> None:
        ident = psycopg.sql.Identifier(role).as_string(None)
        statements = [
            f"{verb} USAGE ON SCHEMA bgw_pool {to} {ident}",
            f"{verb} EXECUTE ON FUNCTION bgw_pool.submit(text, jsonb, name),"
            " bgw_pool._submit(text, text, text, text, text, text, name),"
            f" bgw_pool.terminate(int, bigint), bgw_pool._status() {to} {ident}",
            f"{verb} SELECT ON bgw_pool.status {to} {ident}",
        ]
        if conn is None:
            for statement in statements:
                self.target.sql(statement, idempotent=True)
            return
        with conn.transaction():
            for statement in statements:
                conn.execute(statement)

    def submit_sql(self, query: str) -> str:
        args = psycopg.sql.Literal(json.dumps({"query": query})).as_string(None)
        return f"SELECT slot, generation, pid FROM bgw_pool.submit('sql', {args}::jsonb)"

    def argument_limits(self) -> dict[str, tuple[int, int]]:
        # reference_ext/README.md (job kinds, SQL table) and sql.c's parse_int_arg
        return {
            "sleep.ms": (0, 2**31 - 1),
            "ignore_sigterm.ms": (0, 30_000),
            "exit.code": (0, 255),
            "text.bytes": (0, 1023),
        }

    def test_only_settings(self) -> tuple[str, ...]:
        return ("bgw_pool.pause_points",)

    # A build without pause points (the first reference pool, 03fa2ee) has no
    # such functions: the capability is absent, its clauses not applicable.
    # A refusal to arm (55000: pause points off on this server) is left to
    # the caller: SEC-7 judges it, ``Pool.paused`` makes it not applicable.
    def pause_arm(self, point: str) -> None:
        with _pause_points():
            self.target.sql("SELECT bgw_pool.pause_arm(%s)", point, idempotent=True)

    def pause_release(self, point: str) -> None:
        with _pause_points():
            self.target.sql("SELECT bgw_pool.pause_release(%s)", point, idempotent=True)

    def paused_at(self, point: str) -> list[int]:
        with _pause_points():
            waiting = self.target.scalar(
                "SELECT waiting FROM bgw_pool.pause_points() WHERE point = %s", point, idempotent=True
            )
        return list(waiting or [])


@contextmanager
def _pause_points() -> Iterator[None]:
    """A pause-point function the build lacks (42883) is the capability absent."""
    try:
        yield
    except psycopg.errors.UndefinedFunction as exc:
        raise NotApplicable(f"this build of bgw_pool has no pause points ({exc})") from None
