"""TXN: a submit is part of the transaction that makes it.

A job whose submitting transaction, or the subtransaction the submit ran
in, does not commit never runs its work: its worker may have started, and
then exits without doing it and frees its slot.  A job whose transaction
commits runs once.  So a client that retries a failed transaction never
runs a job twice.  Each way a transaction can end is judged on its own.  A
pool whose jobs are autonomous transactions by design (``[pool]
submit_mode = "autonomous"``, pg_background's whole purpose) is not judged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from conformance.adapters import Handle, NotApplicable
from conformance.deadlines import PAUSE_REACH_S, SLOT_FREE_S, TXN_END_S
from conformance.figures import Figures
from conformance.suite.checks import PerKind
from conformance.suite.pool_under_test import Pool

Conn = psycopg.Connection[Any]

#: the table each job writes its case's mark into
MARKS = "bgwc_txn_marks"
#: the advisory lock the cancelled statement waits for
TXN_LOCK = 0x62677478


class _Refused(Exception):
    """The submit itself failed: no job to judge."""


def _submit(pool: Pool, conn: Conn, mark: str) -> Handle:
    try:
        return pool.adapter.submit(
            "sql", {"query": f"INSERT INTO public.{MARKS} VALUES ('{mark}')"}, conn=conn
        )
    except psycopg.Error as exc:
        raise _Refused(f"{exc.sqlstate} {exc}".strip()) from exc


def _error_later(pool: Pool, conn: Conn, mark: str) -> Handle:
    conn.execute("BEGIN")
    h = _submit(pool, conn, mark)
    try:
        conn.execute("SELECT 1/0")
    except psycopg.errors.DivisionByZero:
        pass
    else:
        raise AssertionError("SELECT 1/0 did not fail")
    conn.execute("ROLLBACK")
    return h


def _ended_by(end: str) -> Callable[[Pool, Conn, str], Handle]:
    """A transaction that submits, then ends with ``end`` (COMMIT, ROLLBACK)."""

    def transaction(pool: Pool, conn: Conn, mark: str) -> Handle:
        conn.execute("BEGIN")
        h = _submit(pool, conn, mark)
        conn.execute(end)
        return h

    return transaction


def _savepoint(pool: Pool, conn: Conn, mark: str) -> Handle:
    conn.execute("BEGIN")
    conn.execute("SAVEPOINT bgwc_before_submit")
    h = _submit(pool, conn, mark)
    conn.execute("ROLLBACK TO SAVEPOINT bgwc_before_submit")
    conn.execute(f"INSERT INTO public.{MARKS} VALUES ('{mark}: outer')")
    conn.execute("COMMIT")
    return h


def _cancel(pool: Pool, conn: Conn, mark: str) -> Handle:
    """The statement after the submit waits for a lock the test holds, and is
    cancelled from another session (pg_cancel_backend); then ROLLBACK."""
    pid = conn.info.backend_pid
    with pool.target.connect() as gate:
        gate.execute("SELECT pg_advisory_lock(%s)", (TXN_LOCK,))
        conn.execute("BEGIN")
        h = _submit(pool, conn, mark)
        done = threading.Event()
        raised: list[BaseException] = []

        def blocked() -> None:
            try:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (TXN_LOCK,))
            except BaseException as exc:  # noqa: BLE001 - judged below
                raised.append(exc)
            finally:
                done.set()

        threading.Thread(target=blocked, daemon=True, name=f"txn-cancel-{pid}").start()

        def waiting() -> bool:
            row = gate.execute(
                "SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'advisory' AND NOT granted",
                (pid,),
            ).fetchone()
            return bool(row and row[0])

        pool.target.wait_until(
            waiting, PAUSE_REACH_S, what=f"the submitting transaction's next statement ({pid}) waiting"
        )
        gate.execute("SELECT pg_cancel_backend(%s)", (pid,))
        pool.target.wait_until(
            done.is_set, SLOT_FREE_S, what=f"the cancelled statement in backend {pid} to return"
        )
    assert raised and isinstance(raised[0], psycopg.errors.QueryCanceled), (
        f"the statement after the submit was to be cancelled; it ended with {raised or 'success'}"
    )
    conn.execute("ROLLBACK")
    return h


#: case -> (how the submitting transaction ends, the transaction, whether the job must run)
CASES: dict[str, tuple[str, Callable[[Pool, Conn, str], Handle], bool]] = {
    "error": ("an error later in the transaction (SELECT 1/0), then ROLLBACK", _error_later, False),
    "rollback": ("ROLLBACK", _ended_by("ROLLBACK"), False),
    "savepoint": (
        "ROLLBACK TO SAVEPOINT around the submit, the outer transaction committed",
        _savepoint,
        False,
    ),
    "cancel": ("the next statement cancelled (pg_cancel_backend), then ROLLBACK", _cancel, False),
    "commit": ("COMMIT", _ended_by("COMMIT"), True),
}


def _marks(pool: Pool, mark: str) -> int:
    return int(pool.target.scalar(f"SELECT count(*) FROM public.{MARKS} WHERE mark = %s", mark))


@pytest.mark.clause("TXN-1")
def test_submit_is_transactional(
    pool: Pool, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    if pool.profile.pool is not None and pool.profile.pool.submit_mode == "autonomous":
        raise NotApplicable(
            f"profile {pool.profile.name} declares its jobs autonomous transactions ([pool] submit_mode)"
        )
    t = pool.target
    t.sql(f"DROP TABLE IF EXISTS public.{MARKS}")
    t.sql(f"CREATE TABLE public.{MARKS} (mark text NOT NULL)")
    verdicts = PerKind("TXN-1", record_property, noun="cases")
    try:
        for case, (how, run, commits) in CASES.items():
            with verdicts.judging(case) as verdict, t.connect() as conn:
                try:
                    h = run(pool, conn, case)
                except _Refused as exc:
                    assert not commits, (
                        f"a submit in a transaction that then commits ({how}) was refused: {exc}"
                    )
                    verdict["detail"] = f"the submit was refused ({exc}): nothing to run"
                    continue
                ended = time.monotonic()
                pool.wait_freed(h, TXN_END_S)
                figures.add(
                    "TXN-1", f"{case}: transaction ended → slot free", time.monotonic() - ended, TXN_END_S
                )
                ran = _marks(pool, case)
                if commits:
                    assert ran == 1, (
                        f"the job of a committed transaction ({how}) ran {ran} times, not once "
                        f"(rows of its INSERT in {MARKS} once its slot was free)"
                    )
                else:
                    assert ran == 0, (
                        f"the job of a transaction that did not commit ({how}) ran: its INSERT is in "
                        f"{MARKS} ({ran} row) once its slot was free"
                    )
                if case == "savepoint":
                    assert _marks(pool, f"{case}: outer") == 1, "the outer transaction's own row is missing"
                verdict["detail"] = f"slot {h.slot} gen {h.generation}: {ran} run"
        verdicts.done()
    finally:
        t.sql(f"DROP TABLE IF EXISTS public.{MARKS}")
