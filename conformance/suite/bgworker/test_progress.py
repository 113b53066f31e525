"""PROGRESS: the work an extension promises goes on, at rest and after
every fault the tier provokes.  A process that is up is not a process that
works: the profile's ``[progress]`` probe (SQL returning one number that
the extension's work increases) must increase within its ``within_s`` at
rest, and again once the server is back from each fault: the termination
of each kind that restarts, a crash-restart, the postmaster's death and a
restart, a slot shortage and capacity back.  Each event is a promise of its
own, so that one failure never hides the others; an event after which a
kind is not back as promised is another clause's failure, not judged here.
The profile's ``start`` SQL makes the work happen (for this clause only),
its ``stop`` undoes it.  Not applicable to a profile that declares no
probe."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from decimal import Decimal

import psycopg
import pytest

from conformance.census import CRASH_RESTART, Census
from conformance.deadlines import CRASH_RECOVERY_S, RESTART_SLACK_S, START_S
from conformance.errors import ProfileMismatch
from conformance.figures import Figures
from conformance.profile import ProcessSpec, ProgressSpec
from conformance.suite.checks import Checks


def progress_or_skip(extension: Census) -> ProgressSpec:
    spec = extension.profile.progress
    if spec is None:
        pytest.skip("not applicable: the profile declares no [progress] probe")
    return spec


def _read(extension: Census, spec: ProgressSpec) -> float:
    """The probe's value, in a session of its own (after a restart the kept one is gone)."""
    with extension.target.connect(spec.database) as conn:
        rows = conn.execute(spec.sql).fetchall()
    if len(rows) != 1 or len(rows[0]) != 1 or not isinstance(rows[0][0], int | float | Decimal):
        raise ProfileMismatch(
            f"profile mismatch: [progress] sql must return one number, it returned {rows!r}: fix the profile"
        )
    return float(rows[0][0])


def advances(extension: Census, spec: ProgressSpec, event: str, figures: Figures) -> str:
    """Wait until the probe increases within ``within_s`` of its first
    reading after ``event`` (a server still starting gets its START_S to
    answer that one); return a detail, or fail saying what it saw."""
    seen: list[str] = []

    def first() -> float | None:
        try:
            return _read(extension, spec)
        except psycopg.Error as exc:  # the server still starting, or the probe failing
            seen[:] = [f"{type(exc).__name__}: {str(exc).strip()[:200]}"]
            return None

    start = extension.target.wait_until(
        lambda: (v := first()) is not None and (v,), START_S, what=f"a first reading of {spec.sql!r}"
    )[0]
    t0 = time.monotonic()
    last = [start]

    def increased() -> bool:
        value = first()
        if value is not None:
            last.append(value)
        return value is not None and value > start

    try:
        extension.target.wait_until(
            increased, spec.within_s, what=f"{spec.sql!r} above {start:.15g} ({event})"
        )
    except AssertionError:
        raise AssertionError(
            f"{event}: {spec.sql!r} stayed at {start:.15g} for {spec.within_s:g}s "
            f"(last read {last[-1]:.15g}{'; ' + seen[0] if seen else ''})"
        ) from None
    finally:
        figures.add("PROGRESS-1", f"{event} → probe increased", time.monotonic() - t0, spec.within_s)
    return f"{start:.15g} → {last[-1]:.15g} in {time.monotonic() - t0:.2f}s"


@pytest.mark.clause("PROGRESS-1")
def test_the_work_goes_on_after_every_fault(
    extension: Census, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    spec = progress_or_skip(extension)
    checks = Checks(record_property)
    _run(extension, spec, spec.start)
    try:
        _scenario(extension, spec, checks, figures, record_property)
    finally:
        try:
            _run(extension, spec, spec.stop)
        except psycopg.Error as exc:  # the next test's set-up judges what is left
            record_property("progress_stop", f"{exc.sqlstate}: {exc}".strip()[:300])
    checks.done()


def _watch(extension: Census, spec: ProgressSpec, seconds: float) -> str:
    """The probe read through an observation window of ``seconds`` (not a
    wait for a state: nothing is judged); what it read, first and last."""
    end = time.monotonic() + seconds
    seen: list[str] = []
    while True:
        try:
            seen.append(f"{_read(extension, spec):.15g}")
        except psycopg.Error as exc:
            seen.append(f"({type(exc).__name__})")
        if time.monotonic() >= end:
            return f"read {seen[0]} then {seen[-1]} over {seconds:g}s"
        time.sleep(0.5)  # ok-sleep: the probe is read through an observation window


def _run(extension: Census, spec: ProgressSpec, queries: tuple[str, ...]) -> None:
    """The profile's [progress] start or stop SQL, committed durably (a
    crash-restart follows)."""
    if not queries:
        return
    with extension.target.connect(spec.database) as conn:
        conn.execute("SET synchronous_commit = on")
        for query in queries:
            conn.execute(query)


def _scenario(
    extension: Census,
    spec: ProgressSpec,
    checks: Checks,
    figures: Figures,
    record_property: Callable[[str, object], None],
) -> None:
    target = extension.target
    not_judged: dict[str, str] = {}

    def after(event: str, fault: Callable[[], object]) -> None:
        """The fault, then the server back as promised, then the probe judged.
        A kind not back is STOP-1's, KILL-1's or SLOTS-2's failure, not this
        clause's: the event is then not judged here, and says why."""
        try:
            fault()
        except AssertionError as exc:
            not_judged[event] = str(exc).splitlines()[0][:300]
            record_property("not_judged", dict(not_judged))
            return
        with checks.promise("PROGRESS-1", event):
            seen[event] = advances(extension, spec, event, figures)
            record_property("progress", dict(seen))

    seen: dict[str, str] = {}
    with checks.promise("PROGRESS-1", "at rest"):
        seen["at rest"] = advances(extension, spec, "at rest", figures)

    def crash_restart() -> None:
        # by SIGKILL of a client backend of the kit's own, as CYCLE-1
        with target.connect() as victim:
            offset = target.log_offset()
            target.kill(victim.info.backend_pid, signal.SIGKILL)
        target.wait_for_log(CRASH_RESTART.pattern, offset, CRASH_RECOVERY_S)
        extension.wait_at_rest(CRASH_RECOVERY_S)

    after("a crash-restart", crash_restart)

    def postmaster_death() -> None:
        # as ORPHAN-2: SIGKILL of the postmaster, whatever outlives it killed, a start
        target.kill_postmaster()
        target.kill_all()
        target.start()
        extension.wait_at_rest(START_S)

    after("the postmaster's death and a start", postmaster_death)

    def slot_shortage() -> None:
        # every slot taken by what runs at rest (as SLOTS), the workload asked for, and the
        # probe watched for its within_s (not judged): the shortage has time to bite
        target.set_conf(max_worker_processes=len(extension.background_workers()))
        try:
            try:
                extension.start_workload()
            except psycopg.Error as exc:  # refusing the work is allowed
                record_property("workload_refused", f"{exc.sqlstate}: {exc}".strip()[:300])
            record_property("without_slots", _watch(extension, spec, spec.within_s))
            extension.stop_workload()
        finally:
            target.set_conf(max_worker_processes=None)
            target.reset_conf()
        extension.wait_at_rest(START_S)

    after("a slot shortage, capacity back", slot_shortage)

    # last: a kind that does not come back (STOP-1's failure) leaves the events above judged
    for kind in (s for s in extension.at_rest() if s.after_exit == "restart"):

        def terminate(kind: ProcessSpec = kind) -> None:
            old = set(extension.census()[kind.name])
            ended = time.monotonic()
            for pid in sorted(old):
                extension.terminate(kind, pid)
            extension.wait_back(kind, old, kind.restart_s + RESTART_SLACK_S, since=ended)

        after(f"{kind.name} terminated", terminate)
