"""DB: database commands are not blocked by the extension's workers, and it
does not flood the log about a database that is gone."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pytest

from conformance.figures import Figures
from conformance.suite.checks import Checks
from conformance.suite.workers import DB_COMMAND_S, DB_RETRY_GRACE_S, DB_RETRY_LINES, OBSERVE_S, Workers

SCRATCH_DB = "bgwc_scratch"
RENAMED_DB = "bgwc_scratch_renamed"


def _fresh_scratch(extension: Workers) -> None:
    for db in (SCRATCH_DB, RENAMED_DB):
        extension.target.sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    extension.target.sql(f"CREATE DATABASE {SCRATCH_DB}")
    extension.run_setup(scratch=SCRATCH_DB)


def _timed(extension: Workers, statement: str) -> float:
    t0 = time.monotonic()
    with extension.target.connect() as conn:
        conn.execute(f"SET statement_timeout = '{int(DB_COMMAND_S * 1000)}ms'")
        try:
            conn.execute(statement)
        except psycopg.Error as exc:
            pytest.fail(f"{statement}: {exc.sqlstate} {exc} after {time.monotonic() - t0:.1f}s")
    return time.monotonic() - t0


@pytest.mark.clause("DB-1", "DB-3")
def test_drop_database_force_is_not_blocked_and_given_up(
    extension: Workers, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    checks = Checks(record_property)
    _fresh_scratch(extension)
    extension.start_workload(database=SCRATCH_DB)
    offset = extension.target.log_offset()
    took = _timed(extension, f"DROP DATABASE {SCRATCH_DB} WITH (FORCE)")
    figures.add("DB-1", "DROP DATABASE WITH (FORCE)", took, DB_COMMAND_S)
    checks.check("DB-1", took <= DB_COMMAND_S, f"took {took:.1f}s")
    # a grace period to give up on the database, then a window in which nothing may try it
    extension.observe_log(DB_RETRY_GRACE_S, offset)
    after = extension.target.log_offset()
    extension.observe_log(OBSERVE_S, after)
    about = [ln for ln in extension.target.log_since(after).splitlines() if SCRATCH_DB in ln]
    figures.add(
        "DB-3",
        "log lines about the dropped database",
        len(about) * 10 / OBSERVE_S,
        DB_RETRY_LINES * 10 / OBSERVE_S,
        "lines/10s",
    )
    checks.check(
        "DB-3",
        len(about) <= DB_RETRY_LINES,
        f"still working against the dropped database {DB_RETRY_GRACE_S:g}s after the drop:\n"
        + "\n".join(about[-20:]),
    )
    extension.stop_workload()
    extension.wait_at_rest()
    checks.done()


@pytest.mark.clause("DB-2")
def test_alter_database_rename_is_not_blocked(extension: Workers, figures: Figures) -> None:
    _fresh_scratch(extension)
    try:
        took = _timed(extension, f"ALTER DATABASE {SCRATCH_DB} RENAME TO {RENAMED_DB}")
        figures.add("DB-2", "ALTER DATABASE RENAME", took, DB_COMMAND_S)
    finally:
        for db in (SCRATCH_DB, RENAMED_DB):
            extension.target.sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    extension.wait_at_rest()
