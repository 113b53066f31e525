"""START: after a start, every process the profile promises runs, seen by
the OS and by pg_stat_activity alike."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conformance.suite.workers import START_S, Workers


@pytest.mark.clause("START-1")
def test_promised_processes_run_after_start(
    extension: Workers, record_property: Callable[[str, object], None]
) -> None:
    extension.at_rest_or_skip()
    extension.target.restart("fast")
    took = extension.wait_at_rest(START_S)
    record_property("measured_s", round(took, 3))
    record_property("deadline_s", START_S)


@pytest.mark.clause("START-2")
def test_workload_starts_its_workers(
    extension: Workers, record_property: Callable[[str, object], None]
) -> None:
    if not extension.workload_kinds():
        pytest.skip("not applicable: the profile's workload starts no declared process")
    extension.start_workload()
    took = extension.wait_started(START_S)
    record_property("measured_s", round(took, 3))
    record_property("deadline_s", START_S)
    assert not extension.problems_at_rest(), extension.problems_at_rest()
