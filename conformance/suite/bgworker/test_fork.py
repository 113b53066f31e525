"""FORK: the postmaster cannot fork, then can again.  While the server's
cgroup allows no new process, a worker the extension asks for fails to
start (its handle reports it stopped) and a static worker that exited is
not restarted; the extension must neither crash nor storm nor spin
meanwhile, and every promised worker is back once forks succeed again."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

from conformance.census import Census
from conformance.deadlines import (
    OBSERVE_S,
    RESTART_SLACK_S,
    SHORTAGE_ANSWER_S,
)
from conformance.figures import Figures
from conformance.profile import ProcessSpec
from conformance.suite.bgworker.shortage import Seen, cpu_now, window_problems, workload_through

#: core's line for each start that failed to fork (a background worker's or a session's):
#: the postmaster writes one per attempt, at the pace the extension (or the kind's
#: restart interval) asks for; the storm bound counts the others
FORK_FAILED = re.compile(r"could not fork (?:new process for connection|(?:background )?worker process)")


@pytest.mark.clause("FORK-1")
def test_workers_survive_fork_failure_and_come_back(
    extension: Census, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    target = extension.target
    why_not = target.forks_unfailable()
    if why_not:
        pytest.skip(f"not applicable: {why_not}")
    kinds = extension.at_rest()
    restartable = [s for s in kinds if s.after_exit == "restart"]
    workers = extension.workload_kinds()
    if not restartable and not workers:
        pytest.skip("not applicable: no worker of the profile is started again (no workload, no restart)")
    seen = Seen()
    if workers:
        workload_through(
            extension,
            "FORK-1",
            lambda: target.forks_failing("the workload started"),
            "without forks",
            OBSERVE_S,
            SHORTAGE_ANSWER_S,
            seen,
            record_property,
            figures,
            FORK_FAILED,
            during=True,
        )
    if restartable:
        _restarts_without_forks(extension, restartable, seen, figures)
    seen.done("FORK-1", record_property)


def _restarts_without_forks(
    extension: Census, kinds: list[ProcessSpec], seen: Seen, figures: Figures
) -> None:
    """Each restartable kind terminated while no fork succeeds, and kept
    without forks past its restart interval (so the postmaster's restart
    fails at least once): back at its count, with no duplicate, within its
    interval and RESTART_SLACK_S of forks succeeding again."""
    target = extension.target
    old = {s.name: set(extension.census()[s.name]) for s in kinds}
    window = max(OBSERVE_S, max(s.restart_s for s in kinds) + 1.0)
    cpu = cpu_now(extension)
    target.sql("SELECT 1")
    offset = target.log_offset()
    with target.forks_failing("the kinds at rest terminated"):
        for spec in kinds:
            for pid in sorted(old[spec.name]):
                extension.terminate(spec, pid)
        log = extension.observe_log(window, offset)
    lifted = time.monotonic()
    problems = window_problems(
        extension, figures, "FORK-1", "without forks (restarts)", log, cpu, window, FORK_FAILED
    )

    def back(spec: ProcessSpec) -> str:
        assert not problems, problems[0]
        deadline = spec.restart_s + RESTART_SLACK_S
        try:
            took, most = extension.wait_back(spec, old[spec.name], deadline, since=lifted)
        finally:
            figures.add("FORK-1", f"forks back → {spec.name} back", time.monotonic() - lifted, deadline)
        assert most <= spec.count, f"{most} at once after forks came back, promised {spec.count}"
        return f"back {took:.2f}s after forks succeeded again (deadline {deadline:g}s)"

    for spec in kinds:
        seen.judge(spec.name, "terminated without forks", lambda spec=spec: back(spec))
