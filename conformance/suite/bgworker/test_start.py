"""START: after a start, every process the profile promises runs, seen by
the OS and by pg_stat_activity alike."""

from __future__ import annotations

import time

import pytest

from conformance.census import Census
from conformance.deadlines import START_S
from conformance.figures import Figures


@pytest.mark.clause("START-1")
def test_promised_processes_run_after_start(extension: Census, figures: Figures) -> None:
    extension.at_rest_or_skip()
    extension.target.bring_down("START-1 stops the server to start it")
    started = time.monotonic()
    extension.target.start()
    figures.add(
        "START-1", "start → every promised process up", extension.wait_at_rest(START_S, started), START_S
    )


@pytest.mark.clause("START-2")
def test_workload_starts_its_workers(extension: Census, figures: Figures) -> None:
    if not extension.workload_kinds():
        pytest.skip("not applicable: the profile's workload starts no declared process")
    asked = time.monotonic()
    extension.start_workload()
    figures.add("START-2", "workload → its workers up", extension.wait_started(START_S, asked), START_S)
    assert not extension.problems_at_rest(), extension.problems_at_rest()
