"""FORK: the postmaster cannot fork, then can again.  While the server's
cgroup allows no new process, a worker the extension asks for fails to
start (its handle reports it stopped); the extension must neither crash nor
storm nor spin meanwhile, and every promised worker runs once forks succeed
again.  A static worker that exits meanwhile is restarted by the postmaster
at its interval once a fork succeeds: core's doing (STOP-1 holds the
promise of its interval), so the kinds at rest are not terminated here."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from conformance.census import Census
from conformance.deadlines import (
    OBSERVE_S,
    SHORTAGE_ANSWER_S,
)
from conformance.figures import Figures
from conformance.suite.bgworker.shortage import Seen, workload_through

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
    if not extension.workload_kinds():
        pytest.skip("not applicable: the workload starts no worker (a static worker's restart is core's)")
    seen = Seen()
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
    seen.done("FORK-1", record_property)
