"""DB: database commands are not blocked by the extension's workers, and it
does not flood the log about a database that is gone.

Each test works in a scratch database of its own name: one that an earlier
test could not drop (a worker that never absorbs the barrier of DROP
DATABASE holds every drop) is left behind, recorded, and never in the way."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable

import pytest

from conformance.census import Census
from conformance.deadlines import DB_COMMAND_S, DB_RETRY_GRACE_S, DB_RETRY_LINES, OBSERVE_S
from conformance.figures import Figures
from conformance.suite.checks import Checks

_SERIAL = itertools.count(1)


def _fresh_scratch(extension: Census) -> str:
    name = f"bgwc_scratch_{os.getpid()}_{next(_SERIAL)}"
    extension.target.sql(f"CREATE DATABASE {name}")
    extension.run_setup(scratch=name)
    return name


def _clean_up(extension: Census, record_property: Callable[[str, object], None], *names: str) -> None:
    left = [why for name in names if (why := extension.drop_database(name))]
    if left:
        record_property("left_behind", left)


@pytest.mark.clause("DB-1", "DB-3")
def test_drop_database_force_is_not_blocked_and_given_up(
    extension: Census, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    checks = Checks(record_property)
    scratch = _fresh_scratch(extension)
    try:
        extension.start_workload(database=scratch)
        if extension.workload_kinds():
            # the workers at work in the database first: a drop before they attach proves nothing
            extension.wait_started(database=scratch)
        offset = extension.target.log_offset()
        took, failed = extension.target.try_statement(f"DROP DATABASE {scratch} WITH (FORCE)", DB_COMMAND_S)
        figures.add("DB-1", "DROP DATABASE WITH (FORCE)", took, DB_COMMAND_S)
        if not checks.check("DB-1", failed is None and took <= DB_COMMAND_S, failed or f"took {took:.1f}s"):
            checks.done()  # the database is still there: DB-3 is not reached
        # a grace period to give up on the database, then a window in which nothing may try it
        extension.observe_log(DB_RETRY_GRACE_S, offset)
        after = extension.target.log_offset()
        extension.observe_log(OBSERVE_S, after)
        named = re.compile(rf"\b{scratch}\b")
        about = [ln for ln in extension.target.log_since(after).splitlines() if named.search(ln)]
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
    finally:
        _clean_up(extension, record_property, scratch)
    checks.done()


@pytest.mark.clause("DB-2")
def test_alter_database_rename_is_not_blocked(
    extension: Census, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    scratch = _fresh_scratch(extension)
    renamed = f"{scratch}_renamed"
    try:
        took, failed = extension.target.try_statement(
            f"ALTER DATABASE {scratch} RENAME TO {renamed}", DB_COMMAND_S
        )
        figures.add("DB-2", "ALTER DATABASE RENAME", took, DB_COMMAND_S)
        assert failed is None, failed
    finally:
        _clean_up(extension, record_property, scratch, renamed)
    extension.wait_at_rest()
