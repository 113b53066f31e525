"""RELOAD: a setting the extension documents as reloadable takes effect on
a reload.  The profile's ``[reload]`` names the setting, a value, and the
SQL that shows what the workers use: ``ALTER SYSTEM SET`` and
``pg_reload_conf()`` must show there within ``within_s``, and ``ALTER
SYSTEM RESET`` and a reload must show again that the value is gone; at
rest, and again right after a worker of each kind that restarts was
terminated and came back (it started with the server's own value).  The
setting is reset at the end whatever happened.  Not applicable to a
profile that declares no ``[reload]``."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pytest
from psycopg import sql

from conformance.census import Census
from conformance.deadlines import POSTMASTER_RELOAD_S, RESTART_SLACK_S
from conformance.errors import ProfileMismatch
from conformance.figures import Figures
from conformance.profile import ReloadSpec
from conformance.suite.checks import Checks


def reload_or_skip(extension: Census) -> ReloadSpec:
    spec = extension.profile.reload
    if spec is None:
        pytest.skip("not applicable: the profile declares no [reload] setting")
    return spec


def _shown(extension: Census, spec: ReloadSpec) -> str:
    """What the profile's SQL shows, as text (in a session of its own)."""
    try:
        with extension.target.connect(spec.database) as conn:
            rows = conn.execute(spec.sql).fetchall()
    except psycopg.Error as exc:
        return f"(error {exc.sqlstate}: {str(exc).strip()[:200]})"
    if len(rows) != 1 or len(rows[0]) != 1:
        raise ProfileMismatch(f"profile mismatch: [reload] sql must return one value, it returned {rows!r}")
    value = rows[0][0]
    if isinstance(value, bool):  # as SHOW and the profile's own booleans say it
        return "true" if value else "false"
    return "" if value is None else str(value)


def _alter(extension: Census, spec: ReloadSpec, value: str | None) -> float:
    """ALTER SYSTEM SET (or RESET, for None) and pg_reload_conf(); wait until
    the postmaster has read its configuration (new sessions see it: what a
    restarted worker starts with); return when pg_reload_conf() was called."""
    name = sql.SQL(spec.setting)  # validated as a setting's name when the profile was read
    if value is None:
        statement = sql.SQL("ALTER SYSTEM RESET {}").format(name)
    else:
        statement = sql.SQL("ALTER SYSTEM SET {} = {}").format(name, sql.Literal(value))
    with extension.target.connect() as conn:
        conn.execute(statement)
        before = conn.execute("SELECT pg_conf_load_time()").fetchone()[0]  # type: ignore[index]
        reloaded_at = time.monotonic()
        conn.execute("SELECT pg_reload_conf()")

    def read() -> bool:
        with extension.target.connect() as conn:
            return bool(conn.execute("SELECT pg_conf_load_time() > %s", (before,)).fetchone()[0])  # type: ignore[index]

    extension.target.wait_until(read, POSTMASTER_RELOAD_S, what="the postmaster to reload its configuration")
    return reloaded_at


def _shows(extension: Census, spec: ReloadSpec, want: bool, since: float, what: str) -> float:
    """Wait until the SQL shows the value (``want``) or no longer shows it,
    within ``within_s`` of ``since``; return the seconds it took."""
    last = [""]

    def ok() -> bool:
        last[0] = _shown(extension, spec)
        return (last[0] == spec.shows) == want

    try:
        extension.target.wait_until(
            ok, max(0.0, spec.within_s - (time.monotonic() - since)), what=f"{spec.sql!r} after {what}"
        )
    except AssertionError:
        verb = "to show" if want else "no longer to show"
        raise AssertionError(
            f"{what}: {spec.sql!r} still shows {last[0]!r} after {spec.within_s:g}s, expected {verb} "
            f"{spec.shows!r}"
        ) from None
    return time.monotonic() - since


def takes_effect(extension: Census, spec: ReloadSpec, event: str, figures: Figures) -> str:
    """The value set and reset, each by a reload, each shown within
    ``within_s``; first, the server's own value shown (a worker just
    restarted may take a moment to show anything)."""
    _shows(extension, spec, False, time.monotonic(), f"{event}, before the reload (the server's own value)")
    since = _alter(extension, spec, spec.value)
    try:
        took = _shows(extension, spec, True, since, f"SET {spec.setting} = {spec.value!r} and a reload")
    except AssertionError:
        _alter(extension, spec, None)  # the next phase starts from the server's own value
        raise
    finally:
        figures.add("RELOAD-1", f"{event}: reload → shown", time.monotonic() - since, spec.within_s)
    since = _alter(extension, spec, None)
    try:
        back = _shows(extension, spec, False, since, f"RESET {spec.setting} and a reload")
    finally:
        figures.add("RELOAD-1", f"{event}: reset → gone", time.monotonic() - since, spec.within_s)
    return f"shown in {took:.2f}s, gone after the reset in {back:.2f}s"


@pytest.mark.clause("RELOAD-1")
def test_a_reload_takes_effect_at_rest_and_after_a_restart(
    extension: Census, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    spec = reload_or_skip(extension)
    context = extension.target.scalar("SELECT context FROM pg_settings WHERE name = %s", spec.setting)
    if context is None or context in ("postmaster", "internal"):
        raise ProfileMismatch(
            f"profile mismatch: [reload] setting {spec.setting!r} "
            + ("does not exist on this server" if context is None else f"has context {context}: no reload")
            + " changes it; fix the profile"
        )
    _run(extension, spec, spec.start)
    try:
        _scenario(extension, spec, record_property, figures)
    finally:
        try:
            with extension.target.connect() as conn:
                conn.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.SQL(spec.setting)))
                conn.execute("SELECT pg_reload_conf()")
        finally:
            _run(extension, spec, spec.stop)


def _run(extension: Census, spec: ReloadSpec, queries: tuple[str, ...]) -> None:
    """The profile's [reload] start or stop SQL."""
    if queries:
        with extension.target.connect(spec.database) as conn:
            for query in queries:
                conn.execute(query)


def _scenario(
    extension: Census,
    spec: ReloadSpec,
    record_property: Callable[[str, object], None],
    figures: Figures,
) -> None:
    try:
        _shows(extension, spec, False, time.monotonic(), "the start, before any reload")
    except AssertionError as exc:
        raise ProfileMismatch(
            f"profile mismatch: {exc}: give [reload] a value other than the server's own"
        ) from None
    checks = Checks(record_property)
    details: dict[str, str] = {}
    try:
        with checks.promise("RELOAD-1", "at rest"):
            details["at rest"] = takes_effect(extension, spec, "at rest", figures)
        for kind in (s for s in extension.at_rest() if s.after_exit == "restart"):
            event = f"{kind.name} restarted"
            old = set(extension.census()[kind.name])
            ended = time.monotonic()
            for pid in sorted(old):
                extension.terminate(kind, pid)
            try:
                # back first: a reload before that would not be "after"
                extension.wait_back(kind, old, kind.restart_s + RESTART_SLACK_S, since=ended)
            except AssertionError as exc:
                # STOP-1's failure, not this clause's: not judged here, and says why
                details[f"{event}: not judged"] = str(exc).splitlines()[0][:300]
                continue
            with checks.promise("RELOAD-1", f"right after {event}"):
                details[event] = takes_effect(extension, spec, event, figures)
    finally:
        record_property("reload", details)
    checks.done()
