"""CYCLE: crash-restarts and terminations, again and again, leave nothing
behind: the same processes and the same shared memory every time.  Every
kind is judged, each on its own, and shared memory as one more."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from conformance.census import CRASH_RESTART, Census
from conformance.deadlines import CRASH_RECOVERY_S, CYCLES, RESTART_SLACK_S
from conformance.suite.checks import PerKind


@pytest.mark.clause("CYCLE-1")
def test_nothing_accumulates_over_cycles(
    extension: Census, record_property: Callable[[str, object], None]
) -> None:
    kinds = extension.at_rest_or_skip()
    problems: dict[str, list[str]] = {s.name: [] for s in kinds}
    seen: list[dict[str, int]] = []
    for cycle in range(1, CYCLES + 1):
        # a crash-restart, by SIGKILL of a client backend of the kit's own
        before = extension.census()
        with extension.target.connect() as victim:
            pid = victim.info.backend_pid
            offset = extension.target.log_offset()
            extension.target.kill(pid, signal.SIGKILL)
        extension.target.wait_for_log(CRASH_RESTART.pattern, offset, CRASH_RECOVERY_S)
        for spec in kinds:
            if problems[spec.name]:  # already failed: its verdict stands, its count is still recorded
                continue
            try:
                # none of the processes from before the crash: the log line
                # comes while they are still being told to quit
                extension.wait_back(
                    spec, set(before[spec.name]), CRASH_RECOVERY_S + RESTART_SLACK_S
                )  # a crash-restart resets restart intervals
            except AssertionError:
                found = len(extension.census()[spec.name])
                problems[spec.name].append(f"cycle {cycle}: {found} of {spec.count} after the crash-restart")
        # then every restartable process that runs terminated once
        for spec in kinds:
            old = set(extension.census()[spec.name])
            if spec.after_exit != "restart" or not old or problems[spec.name]:
                continue
            for p in sorted(old):
                extension.terminate(spec, p)
            try:
                extension.wait_back(spec, old, spec.restart_s + RESTART_SLACK_S)
            except AssertionError:
                problems[spec.name].append(f"cycle {cycle}: not back after termination")
        counts = {s.name: len(extension.census()[s.name]) for s in kinds}
        seen.append({**counts, **extension.shared_memory()})
    record_property("cycles", seen)
    verdicts = PerKind("CYCLE-1", record_property)
    for spec in kinds:
        with verdicts.judging(spec.name) as verdict:
            assert not problems[spec.name], "; ".join(problems[spec.name])
            verdict["detail"] = f"{spec.count} at rest after each of {CYCLES} cycles"
    with verdicts.judging("shared memory") as verdict:
        first, last = seen[0], seen[-1]
        memory = ("allocations", "allocated_bytes", "dsm_segments")
        grew = {k: (first[k], last[k]) for k in memory if last[k] > first[k]}
        assert not grew, f"grew over {CYCLES} cycles (first, last): {grew}"
        verdict["detail"] = ", ".join(f"{k} {last[k]}" for k in memory)
    verdicts.done()
