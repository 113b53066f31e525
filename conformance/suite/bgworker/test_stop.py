"""STOP: a terminated background worker comes back within its promised
interval, exactly once; one declared to stay down stays down."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conformance.figures import Figures
from conformance.suite.workers import DUPLICATE_WATCH_S, RESTART_SLACK_S, STAYS_DOWN_S, Workers


@pytest.mark.clause("STOP-1")
def test_terminated_workers_come_back_once(
    extension: Workers, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    kinds = extension.at_rest_or_skip()
    outcome: dict[str, object] = {}
    for spec in kinds:
        old = set(extension.census()[spec.name])
        how = {pid: extension.terminate(spec, pid) for pid in sorted(old)}
        deadline = spec.restart_s + RESTART_SLACK_S
        if spec.after_exit == "stays-down":
            extension.target.wait_until(
                lambda spec=spec, old=old: not (set(extension.census()[spec.name]) & old),
                RESTART_SLACK_S,
                what=f"{spec.name} gone after {set(how.values())}",
            )
            most = extension.hold(spec, STAYS_DOWN_S)
            assert most == 0, f"{spec.name} is declared to stay down after an exit, yet came back"
            outcome[spec.name] = "declared: stays down after termination (by design)"
            continue
        took, most = extension.wait_back(spec, old, deadline)
        figures.add("STOP-1", f"terminate → {spec.name} back", took, deadline)
        most = max(most, extension.hold(spec, min(spec.restart_s + 1.0, DUPLICATE_WATCH_S)))
        assert most <= spec.count, f"{spec.name}: {most} at once after termination, promised {spec.count}"
        outcome[spec.name] = (
            f"back in {took:.2f}s (deadline {deadline:g}s) after {', '.join(set(how.values()))}"
        )
    record_property("kinds", outcome)
