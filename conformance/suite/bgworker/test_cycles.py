"""CYCLE: crash-restarts and terminations, again and again, leave nothing
behind: the same processes and the same shared memory every time."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from conformance.suite.workers import CRASH_RECOVERY_S, CRASH_RESTART, CYCLES, Workers


@pytest.mark.clause("CYCLE-1")
def test_nothing_accumulates_over_cycles(
    extension: Workers, record_property: Callable[[str, object], None]
) -> None:
    kinds = extension.at_rest_or_skip()
    seen: list[dict[str, int]] = []
    for _ in range(CYCLES):
        # a crash-restart, by SIGKILL of a client backend of the kit's own
        with extension.target.connect() as victim:
            pid = victim.info.backend_pid
            offset = extension.target.log_offset()
            extension.target.kill(pid, signal.SIGKILL)
        extension.target.wait_for_log(CRASH_RESTART.pattern, offset, CRASH_RECOVERY_S)
        extension.wait_at_rest(CRASH_RECOVERY_S + max(s.restart_s for s in kinds))
        # then every restartable process terminated once
        for spec in kinds:
            if spec.after_exit == "restart":
                old = set(extension.census()[spec.name])
                for p in sorted(old):
                    extension.terminate(spec, p)
                extension.wait_back(spec, old, spec.restart_s + 5)
        extension.wait_at_rest()
        counts = {s.name: len(extension.census()[s.name]) for s in kinds}
        seen.append({**counts, **extension.shared_memory()})
    record_property("cycles", seen)
    first, last = seen[0], seen[-1]
    grew = {k: (first[k], last[k]) for k in first if last[k] > first[k]}
    assert not grew, f"grew over {CYCLES} cycles (first, last): {grew}; all: {seen}"
