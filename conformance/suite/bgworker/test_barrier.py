"""BARRIER: the extension's processes absorb ProcSignalBarriers, so that the
commands that emit one (DROP DATABASE, ALTER DATABASE SET TABLESPACE, DROP
TABLESPACE) complete even when they concern none of its databases.

Since PostgreSQL 15 these commands wait for every process to absorb the
barrier, and a process absorbs it only in CHECK_FOR_INTERRUPTS(): a worker
that waits on its latch without it holds them for ever (pg_cron #318,
pg_net #78 and #217, powa-archivist #53, pg_auto_failover #1063).  Before
15 DROP DATABASE emits no barrier: the clause is not applicable there."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable

import pytest

from conformance.census import Census
from conformance.deadlines import BARRIER_S
from conformance.figures import Figures
from conformance.suite.checks import Checks

#: the first major whose DROP DATABASE waits for a ProcSignalBarrier (src/backend/commands/dbcommands.c)
BARRIER_SINCE = 15
_SERIAL = itertools.count(1)


def _invalid_databases(census: Census) -> list[str]:
    """Databases a cancelled DROP DATABASE left invalid (datconnlimit -2, since 15.4 and 16)."""
    return [r[0] for r in census.target.sql("SELECT datname FROM pg_database WHERE datconnlimit = -2")]


@pytest.mark.clause("BARRIER-1")
def test_barrier_emitting_commands_complete(
    extension: Census, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    if extension.target.major < BARRIER_SINCE:
        pytest.skip(
            f"not applicable: before PostgreSQL {BARRIER_SINCE} these commands emit no ProcSignalBarrier"
        )
    checks = Checks(record_property)
    problems: list[str] = []
    left: list[str] = []
    for phase in ("at rest", "with the workload"):
        if phase == "with the workload":
            extension.start_workload()
            if extension.workload_kinds():
                extension.wait_started()
        n = next(_SERIAL)
        db, space = f"bgwc_barrier_{os.getpid()}_{n}", f"bgwc_barrier_space_{os.getpid()}_{n}"
        extension.target.sql(f"CREATE DATABASE {db}")
        with extension.target.connect() as conn:
            conn.execute("SET allow_in_place_tablespaces = on")
            conn.execute(f"CREATE TABLESPACE {space} LOCATION ''")
        for command in (
            f"ALTER DATABASE {db} SET TABLESPACE {space}",
            f"DROP DATABASE {db}",
            f"DROP TABLESPACE {space}",
        ):
            took, failed = extension.target.try_statement(command, BARRIER_S)
            figures.add("BARRIER-1", f"{command.split(' bgwc')[0]} ({phase})", took, BARRIER_S)
            if failed is not None:
                problems.append(f"{phase}: {failed}")
                break  # what follows needs this one done
        # clean-up, bounded: a command held by an unabsorbed barrier is recorded, never waited for
        for what in (f"DROP DATABASE IF EXISTS {db}", f"DROP TABLESPACE IF EXISTS {space}"):
            if (why := extension.target.try_statement(what, BARRIER_S)[1]) is not None:
                left.append(why.splitlines()[0])
    invalid = _invalid_databases(extension)
    if left or invalid:
        record_property("left_behind", left + [f"invalid database {d}" for d in invalid])
    checks.check("BARRIER-1", not problems, "\n".join(problems))
    extension.stop_workload()
    checks.done()
