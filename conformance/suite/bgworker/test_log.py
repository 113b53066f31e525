"""LOG: in normal operation the log shows no crash-restart, no stale shared
memory, no process killed by a signal nobody sent, and (SHOULD) no error
from a background worker."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from conformance.census import CRASH_RESTART, STALE_SHMEM, Census
from conformance.deadlines import OBSERVE_S
from conformance.suite.checks import Checks

#: log_line_prefix '%m [%p] %b ': the backend type, then the level
_LEVEL = re.compile(r"^\S+ \S+ \S+ \[\d+\] (?P<type>.*?) (?P<level>ERROR|FATAL|PANIC):")


@pytest.mark.clause("LOG-1", "LOG-2")
def test_log_is_clean_in_normal_operation(
    extension: Census, record_property: Callable[[str, object], None]
) -> None:
    checks = Checks(record_property)
    offset = extension.target.log_offset()
    extension.target.restart("fast")
    extension.wait_at_rest()
    started = extension.target.log_offset()  # the shutdown's own messages are behind this
    extension.start_workload()
    log = extension.observe_log(OBSERVE_S, offset)
    running = extension.target.log_since(started)
    extension.stop_workload()
    record_property("log_lines", len(log.splitlines()))
    problems = [ln for ln in log.splitlines() if CRASH_RESTART.search(ln) or STALE_SHMEM in ln]
    problems += extension.unsent_signals(log)
    problems += [f"not as promised: {p}" for p in extension.problems_at_rest()]
    checks.check("LOG-1", not problems, "\n".join(problems[-20:]))
    errors = [
        ln
        for ln in running.splitlines()
        if (m := _LEVEL.match(ln)) and m["type"] not in ("client backend", "postmaster")
    ]
    record_property("worker_errors_per_10s", round(len(errors) * 10 / OBSERVE_S, 1))
    checks.check("LOG-2", not errors, "errors from background workers:\n" + "\n".join(errors[-20:]))
    checks.done()
