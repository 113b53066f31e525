"""REPLICA: background workers beside a streaming hot standby (targets
``pgNN+standby``; not applicable on a lone primary).  Each kind runs on the
roles its profile declares (``roles``, by default the primary only); on the
standby the kinds declared there start, stop, crash-restart, die with their
postmaster and shut down as on a primary, the others neither run nor
crash-loop nor flood the log; and at promotion each kind does what it
declares (``after_promotion``).  A primary whose synchronous standby is gone
is SHUT-3's, on every target."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from conformance.deadlines import OBSERVE_S, PM_DEATH_S, SHUTDOWN_S, START_S, STORM_LINES
from conformance.errors import ProfileMismatch, TargetError
from conformance.figures import Figures
from conformance.suite.bgworker.test_kill import kill_each_kind
from conformance.suite.bgworker.test_stop import terminate_each_kind
from conformance.suite.checks import Checks, PerKind
from conformance.suite.conftest import Pair
from conformance.targets import StandbyTarget


def _standby(pair: Pair) -> StandbyTarget:
    assert isinstance(pair.standby.target, StandbyTarget)
    return pair.standby.target


@pytest.mark.clause("REPLICA-1")
def test_standby_kinds_run_after_its_start(pair: Pair, figures: Figures) -> None:
    pair.standby.at_rest_or_skip()
    standby = _standby(pair)
    standby.bring_down("REPLICA-1 stops the standby to start it")
    started = time.monotonic()
    standby.start()
    took = pair.standby.wait_at_rest(START_S, started)
    figures.add("REPLICA-1", "standby start → its promised processes up", took, START_S)


@pytest.mark.clause("REPLICA-2")
def test_no_crash_loop_nor_storm_on_the_standby(
    pair: Pair, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    """For OBSERVE_S from the standby's start: every kind not declared for a
    standby is seen as one process at most, by the OS or by the postmaster's
    log of its exit (one that starts, finds itself on a standby and exits is
    fine; a second is a loop), none of them runs at the end, and the log
    stays under SLOTS-1's storm bound."""
    others = [s for s in pair.primary.profile.processes if not s.runs_on("standby")]
    if not others:
        pytest.skip("not applicable: every kind of the profile is declared to run on a standby")
    standby = _standby(pair)
    standby.bring_down("REPLICA-2 watches the standby from its start")
    started_at = standby.log_offset()
    standby.start()
    offset = standby.log_offset()  # core's own start-up lines are behind this
    seen = pair.standby.seen_in_window(others, OBSERVE_S, started_at)
    census = pair.standby.census()
    lines = [ln for ln in standby.log_since(offset).splitlines() if ln.strip()]
    record_property("standby_log_lines", len(lines))
    figures.add("REPLICA-2", "standby log lines", len(lines) * 10 / OBSERVE_S, STORM_LINES, "lines/10s")
    checks = Checks(record_property)
    looping = {k: sorted(v) for k, v in seen.items() if len(v) > 1}
    stays = {k: pids for k, pids in census.items() if k in seen and pids}
    if stays and not looping:
        raise ProfileMismatch(
            f"profile mismatch: {', '.join(stays)} run(s) on the standby {stays}, declared for the "
            'primary only; fix the profile (roles = ["primary", "standby"])'
        )
    checks.check(
        "REPLICA-2",
        not looping and len(lines) <= STORM_LINES * OBSERVE_S / 10,
        f"on the standby over {OBSERVE_S:g}s from its start: processes of kinds declared for the "
        f"primary only {looping or '(none twice)'}; {len(lines)} log lines:\n" + "\n".join(lines[-30:]),
    )
    checks.done()


@pytest.mark.clause("REPLICA-3")
def test_standby_terminated_workers_come_back_once(
    pair: Pair, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    terminate_each_kind(pair.standby, "REPLICA-3", record_property, figures)


@pytest.mark.clause("REPLICA-4")
def test_standby_sigkilled_worker_comes_back(
    pair: Pair, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    kill_each_kind(pair.standby, "REPLICA-4", record_property, figures)


@pytest.mark.clause("REPLICA-5")
def test_standby_processes_exit_with_its_postmaster(pair: Pair, figures: Figures) -> None:
    pids = pair.standby.pids()
    if not pids:
        pytest.skip("not applicable: no process of the extension runs on the standby to outlive it")
    standby = _standby(pair)
    standby.kill_postmaster()
    killed_at = standby.last_signal_at
    left: list[int] = []

    def gone() -> bool:
        left[:] = sorted(pids & {p.pid for p in standby.processes()})
        return not left

    try:
        standby.wait_until(gone, PM_DEATH_S, what=f"every process of the extension gone {sorted(pids)}")
    finally:
        figures.add(
            "REPLICA-5", "standby postmaster SIGKILL → all gone", time.monotonic() - killed_at, PM_DEATH_S
        )
        standby.kill_all()
        standby.start()


@pytest.mark.clause("REPLICA-6")
def test_standby_fast_shutdown_completes(pair: Pair, figures: Figures) -> None:
    standby = _standby(pair)
    running = pair.standby.census()
    t0 = time.monotonic()
    try:
        standby.stop("fast", timeout=SHUTDOWN_S)
    except TargetError as exc:
        figures.add("REPLICA-6", "standby fast shutdown", time.monotonic() - t0, SHUTDOWN_S)
        standby.bring_down("a fast shutdown of the standby did not complete", "fast", tried=True)
        pytest.fail(
            f"fast shutdown of the standby did not complete in {SHUTDOWN_S:g}s; its kinds: {running}\n"
            f"{str(exc).splitlines()[0]}"
        )
    figures.add("REPLICA-6", "standby fast shutdown", time.monotonic() - t0, SHUTDOWN_S)
    assert not standby.processes(), "standby processes left after its shutdown"
    standby.start()
    pair.standby.wait_at_rest(START_S)


@pytest.mark.clause("REPLICA-7")
def test_kinds_do_as_declared_at_promotion(
    pair: Pair, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    """pg_promote() on the standby: a kind declared "starts" runs its count
    within its promotion_s, one declared "stops" is gone within it, one
    declared "keeps" runs on in the same processes."""
    kinds = [s for s in pair.primary.profile.processes if s.count > 0]
    if not kinds:
        pytest.skip("not applicable: the profile promises no process at rest")
    standby = _standby(pair)
    before = pair.standby.census()
    verdicts = PerKind("REPLICA-7", record_property)
    standby.promote()
    promoted = time.monotonic()
    for spec in kinds:
        with verdicts.judging(spec.name) as verdict:
            what = {
                "starts": (lambda spec=spec: len(pair.standby.census()[spec.name]) == spec.count, "up"),
                "stops": (lambda spec=spec: not pair.standby.census()[spec.name], "gone"),
                "keeps": (
                    lambda spec=spec: set(before[spec.name]) <= set(pair.standby.census()[spec.name]),
                    "on",
                ),
            }[spec.after_promotion]
            try:
                standby.wait_until(
                    what[0],
                    max(0.0, spec.promotion_s - (time.monotonic() - promoted)),
                    what=f"{spec.name} {what[1]} after promotion (declared: {spec.after_promotion})",
                )
            finally:
                figures.add(
                    "REPLICA-7",
                    f"promotion → {spec.name} {what[1]}",
                    time.monotonic() - promoted,
                    spec.promotion_s,
                )
            if spec.after_promotion == "keeps":
                now = pair.standby.census()[spec.name]
                assert set(before[spec.name]) <= set(now), f"{spec.name}: was {before[spec.name]}, now {now}"
            verdict["detail"] = (
                f"{spec.after_promotion}: {what[1]} {time.monotonic() - promoted:.2f}s after promotion"
            )
    verdicts.done()
