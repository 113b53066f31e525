"""KILL: SIGKILL of a background worker crash-restarts the server; the
worker is back within its interval, exactly once, and committed data is intact."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from conformance.figures import Figures
from conformance.suite.workers import (
    CRASH_RECOVERY_S,
    CRASH_RESTART,
    DUPLICATE_WATCH_S,
    RESTART_SLACK_S,
    STAYS_DOWN_S,
    Workers,
)


@pytest.mark.clause("KILL-1")
def test_sigkilled_worker_crash_restarts_and_comes_back(
    extension: Workers, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    kinds = extension.at_rest_or_skip()
    outcome: dict[str, object] = {}
    for i, spec in enumerate(kinds):
        canary = f"{spec.name}-{i}"
        extension.commit_canary(canary)
        old = set(extension.census()[spec.name])
        offset = extension.target.log_offset()
        extension.target.kill(min(old), signal.SIGKILL)
        extension.target.wait_for_log(CRASH_RESTART.pattern, offset, CRASH_RECOVERY_S)
        deadline = CRASH_RECOVERY_S + spec.restart_s + RESTART_SLACK_S
        if spec.after_crash == "stays-down":
            extension.target.wait_until(
                lambda: extension.target.scalar("SELECT 1"), CRASH_RECOVERY_S, what="the server back"
            )
            most = extension.hold(spec, STAYS_DOWN_S)
            assert most == 0, f"{spec.name} is declared to stay down after a crash-restart, yet came back"
            outcome[spec.name] = "declared: stays down after a crash-restart (by design)"
        else:
            took, most = extension.wait_back(spec, old, deadline)
            figures.add("KILL-1", f"SIGKILL → {spec.name} back", took, deadline)
            most = max(most, extension.hold(spec, min(spec.restart_s + 1.0, DUPLICATE_WATCH_S)))
            assert most <= spec.count, f"{spec.name}: {most} at once after the crash-restart"
            outcome[spec.name] = f"back in {took:.2f}s (deadline {deadline:g}s)"
        assert extension.canary_intact(canary), "data committed before the kill is gone"
        extension.wait_at_rest(CRASH_RECOVERY_S)
    record_property("kinds", outcome)
