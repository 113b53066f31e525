"""SLOTS: with too few background-worker slots the extension does not flood
the log nor spin, and it recovers once capacity is back.  One scenario,
three clauses, each judged on its own."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pytest

from conformance.census import Census
from conformance.deadlines import BUSY_CPU_S, OBSERVE_S, START_S, STORM_LINES
from conformance.figures import Figures
from conformance.suite.checks import Checks


@pytest.mark.clause("SLOTS-1", "SLOTS-3", "SLOTS-2")
def test_no_storm_no_spin_without_slots_then_recovery(
    extension: Census, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    checks = Checks(record_property)
    # every slot taken by what runs at rest: nothing is left for dynamic workers
    at_rest = len(extension.background_workers())
    record_property("max_worker_processes", at_rest)
    extension.target.set_conf(max_worker_processes=at_rest)
    offset = extension.target.log_offset()
    try:
        extension.start_workload()
    except psycopg.Error as exc:  # refusing the work is allowed; flooding is not
        record_property("workload_refused", f"{exc.sqlstate}: {exc}".strip())
    cpu_before = extension.cpu_seconds(extension.pids())
    log = extension.observe_log(OBSERVE_S, offset)
    cpu_after = extension.cpu_seconds(extension.pids())

    lines = [ln for ln in log.splitlines() if ln.strip()]
    figures.add("SLOTS-1", "log lines without slots", len(lines) * 10 / OBSERVE_S, STORM_LINES, "lines/10s")
    serving = extension.target.scalar("SELECT 1", idempotent=True) == 1
    checks.check(
        "SLOTS-1",
        serving and len(lines) <= STORM_LINES * OBSERVE_S / 10,
        f"serving={serving}; {len(lines)} log lines in {OBSERVE_S:g}s:\n" + "\n".join(lines[-30:]),
    )
    busy = {pid: round(cpu_after[pid] - cpu_before[pid], 2) for pid in cpu_before.keys() & cpu_after.keys()}
    figures.add("SLOTS-3", "CPU without slots", sum(busy.values()) * 10 / OBSERVE_S, BUSY_CPU_S, "cpu s/10s")
    checks.check(
        "SLOTS-3",
        sum(busy.values()) <= BUSY_CPU_S * OBSERVE_S / 10,
        f"busy loop: CPU seconds per process over {OBSERVE_S:g}s without slots: {busy} "
        f"(census {extension.census()})",
    )

    # capacity back: the baseline setting
    extension.stop_workload()
    extension.target.set_conf(max_worker_processes=None)
    extension.target.reset_conf()
    extension.target.bring_down("SLOTS-2 restarts with the baseline capacity")
    started = time.monotonic()
    extension.target.start()
    figures.add(
        "SLOTS-2",
        "start with capacity back → processes at rest up",
        extension.wait_at_rest(START_S, started),
        START_S,
    )
    if extension.workload_kinds():
        asked = time.monotonic()
        extension.start_workload()
        figures.add(
            "SLOTS-2",
            "workload (capacity back) → its workers up",
            extension.wait_started(START_S, asked),
            START_S,
        )
    checks.check("SLOTS-2", True, "")
    checks.done()
