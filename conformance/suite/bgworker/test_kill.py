"""KILL: SIGKILL of a background worker crash-restarts the server; the
worker is back within the crash recovery's deadline, exactly once, and
committed data is intact.  Every kind is judged, each on its own: at rest
(KILL-1), and again with the workload running (KILL-2), where the
workload's workers are judged too."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from contextlib import nullcontext

import pytest

from conformance.census import CRASH_RESTART, Census
from conformance.deadlines import CRASH_RECOVERY_S, DUPLICATE_WATCH_S, RESTART_SLACK_S, STAYS_DOWN_S
from conformance.errors import ProfileMismatch
from conformance.figures import Figures
from conformance.suite.bgworker.test_stop import WorkloadThrough
from conformance.suite.checks import PerKind

#: KILL-1's deadline, from the kill: a crash-restart resets every restart interval
#: (the postmaster starts its workers again at once: ResetBackgroundWorkerCrashTimes)
BACK_AFTER_CRASH_S = CRASH_RECOVERY_S + RESTART_SLACK_S


@pytest.mark.clause("KILL-1")
def test_sigkilled_worker_crash_restarts_and_comes_back(
    extension: Census, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    kill_each_kind(extension, "KILL-1", record_property, figures)


@pytest.mark.clause("KILL-2")
def test_sigkilled_worker_crash_restarts_and_comes_back_with_the_workload(
    extension: Census, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    kill_each_kind(extension, "KILL-2", record_property, figures, workload=True)


def kill_each_kind(
    extension: Census,
    clause: str,
    record_property: Callable[[str, object], None],
    figures: Figures,
    workload: bool = False,
) -> None:
    """Each kind at rest of the census's server SIGKILLed and judged on its
    own under ``clause`` (KILL-1 on a primary, REPLICA-4 on a standby); with
    ``workload``, while the workload runs, its workers judged too (KILL-2)."""
    kinds = extension.at_rest_or_skip()
    verdicts = PerKind(clause, record_property)
    work = WorkloadThrough(extension, clause, figures) if workload else None
    mismatch: list[str] = []
    for i, spec in enumerate(kinds):
        with (
            verdicts.judging(spec.name) as verdict,
            work.through(f"SIGKILL of {spec.name}", crashed=True) if work else nullcontext(),
        ):
            canary = f"{spec.name}-{i}"
            extension.commit_canary(canary)
            # back from the previous kind's crash-restart (that is KILL-1's promise too)
            extension.target.wait_until(
                lambda spec=spec: len(extension.census()[spec.name]) == spec.count,
                CRASH_RECOVERY_S,
                what=f"{spec.name} at rest ({spec.count}) before its kill",
            )
            old = set(extension.census()[spec.name])
            offset = extension.target.log_offset()
            extension.target.kill(min(old), signal.SIGKILL)
            killed_at = extension.target.last_signal_at
            extension.target.wait_for_log(CRASH_RESTART.pattern, offset, CRASH_RECOVERY_S)
            if spec.after_crash == "stays-down":
                extension.target.wait_until(
                    lambda: extension.target.scalar("SELECT 1", idempotent=True),
                    CRASH_RECOVERY_S,
                    what="the server back",
                )
                most = extension.hold(spec, STAYS_DOWN_S)
                if most:
                    verdict.update(outcome="profile mismatch", detail="came back after the crash-restart")
                    mismatch.append(spec.name)
                else:
                    verdict["detail"] = "declared: stays down after a crash-restart (by design)"
            else:
                try:
                    took, most = extension.wait_back(spec, old, BACK_AFTER_CRASH_S, since=killed_at)
                finally:
                    figures.add(
                        clause,
                        f"SIGKILL → {spec.name} back",
                        time.monotonic() - killed_at,
                        BACK_AFTER_CRASH_S,
                    )
                most = max(most, extension.hold(spec, min(spec.restart_s + 1.0, DUPLICATE_WATCH_S)))
                assert most <= spec.count, f"{spec.name}: {most} at once after the crash-restart"
                verdict["detail"] = f"back in {took:.2f}s after the kill (deadline {BACK_AFTER_CRASH_S:g}s)"
            assert extension.canary_intact(canary), "data committed before the kill is gone"
    if mismatch:
        raise ProfileMismatch(
            "profile mismatch: declared to stay down after a crash-restart, yet came back: "
            + ", ".join(mismatch)
        )
    if work is not None:
        work.judge(verdicts)
    verdicts.done()
