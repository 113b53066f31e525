"""STOP: a terminated background worker comes back within its promised
interval, exactly once; one declared to stay down stays down.  Every kind
is judged, each on its own."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from conformance.census import Census
from conformance.deadlines import DUPLICATE_WATCH_S, RESTART_SLACK_S, STAYS_DOWN_S
from conformance.errors import ProfileMismatch
from conformance.figures import Figures
from conformance.suite.checks import PerKind


@pytest.mark.clause("STOP-1")
def test_terminated_workers_come_back_once(
    extension: Census, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    terminate_each_kind(extension, "STOP-1", record_property, figures)


def terminate_each_kind(
    extension: Census, clause: str, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    """Each kind at rest of the census's server terminated and judged on its
    own under ``clause`` (STOP-1 on a primary, REPLICA-3 on a standby)."""
    kinds = extension.at_rest_or_skip()
    verdicts = PerKind(clause, record_property)
    for spec in (s for s in kinds if s.after_exit == "restart"):
        with verdicts.judging(spec.name) as verdict:
            old = set(extension.census()[spec.name])
            terminated_at = time.monotonic()
            how = {extension.terminate(spec, pid) for pid in sorted(old)}
            deadline = spec.restart_s + RESTART_SLACK_S
            try:
                took, most = extension.wait_back(spec, old, deadline, since=terminated_at)
            finally:
                figures.add(
                    clause, f"terminate → {spec.name} back", time.monotonic() - terminated_at, deadline
                )
            most = max(most, extension.hold(spec, min(spec.restart_s + 1.0, DUPLICATE_WATCH_S)))
            assert most <= spec.count, f"{spec.name}: {most} at once after termination, promised {spec.count}"
            verdict["detail"] = f"back in {took:.2f}s (deadline {deadline:g}s) after {', '.join(sorted(how))}"
    _stay_down(extension, [s for s in kinds if s.after_exit == "stays-down"], verdicts)
    verdicts.done()


def _stay_down(extension: Census, kinds: list, verdicts: PerKind) -> None:  # type: ignore[type-arg]
    """Kinds declared to stay down after an exit: terminated together, then
    watched together for STAYS_DOWN_S (past the restart intervals extensions
    use): one that comes back contradicts its profile."""
    if not kinds:
        return
    old = {s.name: set(extension.census()[s.name]) for s in kinds}
    for spec in kinds:
        for pid in sorted(old[spec.name]):
            extension.terminate(spec, pid)
    extension.target.wait_until(
        lambda: not any(set(extension.census()[s.name]) & old[s.name] for s in kinds),
        RESTART_SLACK_S,
        what=f"{', '.join(old)} gone after termination",
    )
    came_back: dict[str, float] = {}
    t0 = time.monotonic()
    while time.monotonic() - t0 < STAYS_DOWN_S:
        census = extension.census()
        for s in kinds:
            if census[s.name] and s.name not in came_back:
                came_back[s.name] = round(time.monotonic() - t0, 2)
        if len(came_back) == len(kinds):
            break
        time.sleep(0.2)  # ok-sleep: an observation window, polled
    for s in kinds:
        with verdicts.judging(s.name) as verdict:
            if s.name in came_back:
                verdict.update(
                    outcome="profile mismatch", detail=f"came back {came_back[s.name]}s after termination"
                )
            else:
                verdict["detail"] = (
                    f"declared: stays down after termination (by design), watched {STAYS_DOWN_S:g}s"
                )
    if came_back:
        raise ProfileMismatch(
            "profile mismatch: declared to stay down after termination, yet came back: "
            + ", ".join(f"{k} after {v}s" for k, v in came_back.items())
            + '; fix the profile (after_exit = "restart", restart_s)'
        )
