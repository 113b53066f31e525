"""DB: database commands are not blocked by the extension's workers, and it
does not flood the log about a database that is gone.

Each test works in a scratch database of its own name: one that an earlier
test could not drop (a worker that never absorbs the barrier of DROP
DATABASE holds every drop) is left behind, recorded, and never in the way.
Before a command acts, the workers the profile declares there have
attached (a command on a database nothing attached to yet proves nothing).

DB-4 and DB-5 move the extension's own database (the setting the profile
names, ``[extension] database_setting``) to a database of the kit's, then
drop it, rename it and create it again."""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Callable

import pytest

from conformance.census import Census
from conformance.deadlines import (
    CONFIGURED_GRACE_S,
    DB_ATTACH_S,
    DB_COMMAND_S,
    DB_RETRY_GRACE_S,
    DB_RETRY_LINES,
    OBSERVE_S,
    RESTART_SLACK_S,
    START_S,
    STORM_LINES,
)
from conformance.figures import Figures
from conformance.profile import ProcessSpec
from conformance.suite.checks import Checks

#: DB-4, DB-5: the database the extension is configured to work in, moved there by the test
CONFIGURED = "bgwc_configured"
RENAMED = f"{CONFIGURED}_renamed"
#: core refuses to rename (or drop without FORCE) a database other sessions use: after 5 s
OBJECT_IN_USE = "55006"
#: what core's DROP DATABASE ... WITH (FORCE) refuses to end, by its documentation ("It
#: doesn't terminate if prepared transactions, active logical replication slots or subscriptions
#: are present in the target database"): never the extension's failure (CONTRACT.md)
CORE_KEEPS = re.compile(
    r"is used by an active logical replication slot|is being used by logical replication subscription"
    r"|is being used by prepared transactions"
)


def _core_refused(failed: str | None, took: float, record_property: Callable[[str, object], None]) -> None:
    """A drop core's documentation says FORCE does not force: not applicable, never a failure."""
    if failed is not None and CORE_KEEPS.search(failed):
        record_property("core_refused", failed.splitlines()[0])
        pytest.skip(
            f"not applicable: core refuses DROP DATABASE ... WITH (FORCE) here after {took:.2f}s, as "
            f"documented (prepared transactions, active logical replication slots or subscriptions): "
            f"{failed.splitlines()[0]}"
        )


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
            figures.add(
                "DB-1",
                "workload → its workers attached to the scratch database",
                extension.wait_started(DB_ATTACH_S, database=scratch),
                DB_ATTACH_S,
            )
        offset = extension.target.log_offset()
        took, failed = extension.target.try_statement(f"DROP DATABASE {scratch} WITH (FORCE)", DB_COMMAND_S)
        figures.add("DB-1", "DROP DATABASE WITH (FORCE)", took, DB_COMMAND_S)
        _core_refused(failed, took, record_property)
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
        # the kinds at rest as promised once it is set up: a rename before they settle proves nothing
        figures.add(
            "DB-2",
            "scratch set up → processes at rest as promised",
            extension.wait_at_rest(DB_ATTACH_S),
            DB_ATTACH_S,
        )
        took, failed = extension.target.try_statement(
            f"ALTER DATABASE {scratch} RENAME TO {renamed}", DB_COMMAND_S
        )
        figures.add("DB-2", "ALTER DATABASE RENAME", took, DB_COMMAND_S)
        assert failed is None, failed
    finally:
        _clean_up(extension, record_property, scratch, renamed)
    extension.wait_at_rest()


@pytest.mark.clause("DB-4", "DB-5")
def test_configured_database_dropped_renamed_and_created_again(
    extension: Census, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    setting = extension.profile.database_setting
    if setting is None:
        pytest.skip("not applicable: the profile names no configured database ([extension] database_setting)")
    kinds = extension.at_rest_or_skip()
    target = extension.target
    checks = Checks(record_property)
    original = target.scalar("SELECT current_setting(%s)", setting)
    # the kinds that work in the configured database, and the setup steps run there
    moved = {s.name: CONFIGURED for s in kinds if s.database is not None and s.database == original}
    record_property("configured_database", {"setting": setting, "was": original, "moved": sorted(moved)})
    _clean_up(extension, record_property, CONFIGURED, RENAMED)
    target.sql(f"CREATE DATABASE {CONFIGURED}")
    try:
        target.set_conf(**{setting: CONFIGURED})  # a restart or a reload, as its context needs
        # set up once it is the configured database (pg_cron refuses CREATE EXTENSION elsewhere)
        extension.run_setup(moved=(original, CONFIGURED))
        asked = time.monotonic()
        figures.add(
            "DB-4",
            f"{setting} = {CONFIGURED} → processes at rest there",
            extension.wait_at_rest(START_S, asked, moved),
            START_S,
        )
        _rename(extension, kinds, moved, checks, figures)
        _drop_and_create(extension, kinds, moved, original, checks, figures, record_property)
    finally:
        target.ensure_baseline()  # the setting as it was: a restart or a reload
        _clean_up(extension, record_property, CONFIGURED, RENAMED)
    extension.wait_at_rest()
    checks.done()


def _back_s(kinds: list[ProcessSpec]) -> float:
    """The longest restart interval of the kinds at rest, and RESTART_SLACK_S."""
    return max((s.restart_s for s in kinds if s.after_exit == "restart"), default=0.0) + RESTART_SLACK_S


def _rename(
    extension: Census, kinds: list[ProcessSpec], moved: dict[str, str], checks: Checks, figures: Figures
) -> None:
    """DB-5: the rename completes, or core refuses it (55006) because the
    extension's workers are connected there; nothing storms afterwards."""
    target = extension.target
    offset = target.log_offset()
    took, failed = target.try_statement(f"ALTER DATABASE {CONFIGURED} RENAME TO {RENAMED}", DB_COMMAND_S)
    figures.add("DB-5", "ALTER DATABASE RENAME of the configured database", took, DB_COMMAND_S)
    with checks.promise("DB-5", "the rename completes, or fails with 55006, in time"):
        assert failed is None or f": {OBJECT_IN_USE} " in failed, failed
        assert took <= DB_COMMAND_S, f"took {took:.1f}s"
    with checks.promise("DB-5", "no crash loop, no log storm after the rename"):
        _no_loop_no_storm(extension, kinds, offset, "DB-5", figures, "after the rename")
    if failed is None:  # renamed: back to its name, and the kinds given their interval to be there
        _, back = target.try_statement(f"ALTER DATABASE {RENAMED} RENAME TO {CONFIGURED}", DB_COMMAND_S)
        assert back is None, f"renaming it back: {back}"
        with checks.promise("DB-5", "at rest again once renamed back"):
            extension.wait_at_rest(_back_s(kinds), databases=moved)


def _drop_and_create(
    extension: Census,
    kinds: list[ProcessSpec],
    moved: dict[str, str],
    original: str,
    checks: Checks,
    figures: Figures,
    record_property: Callable[[str, object], None],
) -> None:
    """DB-4: the drop completes; no crash loop and no log storm while the
    database is gone; once it exists again (and is set up), every kind is
    back, connected there, within its restart interval and RESTART_SLACK_S."""
    target = extension.target
    offset = target.log_offset()
    took, failed = target.try_statement(f"DROP DATABASE {CONFIGURED} WITH (FORCE)", DB_COMMAND_S)
    figures.add("DB-4", "DROP DATABASE WITH (FORCE) of the configured database", took, DB_COMMAND_S)
    _core_refused(failed, took, record_property)
    if not checks.check("DB-4", failed is None and took <= DB_COMMAND_S, failed or f"took {took:.1f}s"):
        return  # still there: the rest is not reached
    with checks.promise("DB-4", "no crash loop, no log storm while it is gone"):
        _no_loop_no_storm(extension, kinds, offset, "DB-4", figures, "while it is gone")
    target.sql(f"CREATE DATABASE {CONFIGURED}")
    extension.run_setup(moved=(original, CONFIGURED))
    created = time.monotonic()
    deadline = _back_s(kinds)
    with checks.promise("DB-4", "back once it exists again"):
        try:
            extension.wait_at_rest(deadline, created, moved)
        finally:
            figures.add(
                "DB-4", "created again → processes at rest there", time.monotonic() - created, deadline
            )


def _no_loop_no_storm(
    extension: Census, kinds: list[ProcessSpec], offset: int, clause: str, figures: Figures, when: str
) -> None:
    """After CONFIGURED_GRACE_S, over OBSERVE_S: no kind at rest with more
    processes than its count (seen by the census, or exited by the log: one
    that exits and is started again, and again, is a crash loop), and at
    most STORM_LINES log lines per 10 s."""
    extension.observe_log(CONFIGURED_GRACE_S, offset)
    after = extension.target.log_offset()
    seen = extension.seen_in_window(kinds, OBSERVE_S, after)
    lines = [ln for ln in extension.target.log_since(after).splitlines() if ln.strip()]
    figures.add(clause, f"log lines {when}", len(lines) * 10 / OBSERVE_S, STORM_LINES, "lines/10s")
    looping = {s.name: sorted(seen[s.name]) for s in kinds if len(seen[s.name]) > s.count}
    assert not looping, f"a crash loop {when}: processes seen over {OBSERVE_S:g}s: {looping}\n" + "\n".join(
        lines[-20:]
    )
    assert len(lines) <= STORM_LINES * OBSERVE_S / 10, (
        f"{len(lines)} log lines in {OBSERVE_S:g}s {when}:\n" + ("\n".join(lines[-30:]))
    )
