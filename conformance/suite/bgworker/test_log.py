"""LOG: in normal operation the log shows no crash-restart, no stale shared
memory and no process killed by a signal nobody sent."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conformance.suite.workers import CRASH_RESTART, OBSERVE_S, STALE_SHMEM, Workers


@pytest.mark.clause("LOG-1")
def test_log_is_clean_in_normal_operation(
    extension: Workers, record_property: Callable[[str, object], None]
) -> None:
    offset = extension.target.log_offset()
    extension.target.restart("fast")
    extension.wait_at_rest()
    extension.start_workload()
    log = extension.observe_log(OBSERVE_S, offset)
    extension.stop_workload()
    problems = [ln for ln in log.splitlines() if CRASH_RESTART.search(ln) or STALE_SHMEM in ln]
    problems += extension.unsent_signals(log)
    record_property("log_lines", len(log.splitlines()))
    assert not problems, "\n".join(problems[-20:])
    assert not extension.problems_at_rest(), extension.problems_at_rest()
