"""SLOTS: with too few background-worker slots the extension does not flood
the log nor spin, and it recovers once capacity is back: no slot left at
rest (SLOTS-1..3, one scenario, each clause judged on its own), fewer slots
than run at rest (SLOTS-4), and slots taken and given back by a busy
server's parallel queries, without a restart (SLOTS-5)."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pytest

from conformance.census import Census
from conformance.deadlines import (
    BELOW_REST_VALUES,
    BUSY_CPU_S,
    OBSERVE_S,
    SHORTAGE_ANSWER_S,
    SLOTS_HELD,
    SLOTS_HELD_S,
    START_S,
    STORM_LINES,
)
from conformance.figures import Figures
from conformance.suite.bgworker.shortage import Seen, cpu_now, window_problems, workload_through
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


def below_rest(at_rest: int) -> list[int]:
    """SLOTS-4's values of max_worker_processes: every one from 0 to one
    below what runs at rest, or, past BELOW_REST_VALUES of them, 0, 1, the
    middle and the last."""
    if at_rest <= BELOW_REST_VALUES:
        return list(range(at_rest))
    return sorted({0, 1, at_rest // 2, at_rest - 1})


@pytest.mark.clause("SLOTS-4")
def test_below_rest_no_crash_loop_no_storm_no_spin(
    extension: Census, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    """With fewer slots than run at rest, some static workers get none at
    the start (core logs that, before the server is ready); the others must
    not crash-loop, storm the log or spin for want of them."""
    kinds = extension.at_rest_or_skip()
    values = below_rest(len(extension.background_workers()))
    record_property("max_worker_processes tried", values)
    checks = Checks(record_property)
    for value in values:
        with checks.promise("SLOTS-4", f"max_worker_processes = {value}"):
            extension.target.set_conf(max_worker_processes=value)  # a restart
            offset = extension.target.log_offset()  # core's start-up lines are behind this
            cpu = cpu_now(extension)
            seen = extension.seen_in_window(kinds, OBSERVE_S, offset)
            log = extension.target.log_since(offset)
            problems = window_problems(
                extension, figures, "SLOTS-4", f"with max_worker_processes = {value}", log, cpu, OBSERVE_S
            )
            looping = {s.name: sorted(seen[s.name]) for s in kinds if len(seen[s.name]) > s.count}
            figures.add(
                "SLOTS-4",
                f"most processes of a kind over {OBSERVE_S:g}s, max_worker_processes = {value}",
                max((len(v) for v in seen.values()), default=0),
                max(s.count for s in kinds),
                "processes",
            )
            assert not looping, f"crash loop: more processes than promised over {OBSERVE_S:g}s: {looping}"
            assert not problems, problems[0]
    extension.target.set_conf(max_worker_processes=None)
    extension.wait_at_rest()
    checks.done()


@pytest.mark.clause("SLOTS-5")
def test_workload_back_once_slots_free_without_restart(
    extension: Census, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    """Slots made scarce and plentiful again without a restart: parallel
    workers of a query hold every free slot while the workload starts, then
    end.  Every kind at rest keeps running and the workload's kinds run
    (unless declared to stay down after a shortage)."""
    if not extension.workload_kinds():
        pytest.skip("not applicable: the workload starts no worker")
    target = extension.target
    at_rest = len(extension.background_workers())
    record_property("max_worker_processes", at_rest + SLOTS_HELD)
    target.set_conf(max_worker_processes=at_rest + SLOTS_HELD, max_parallel_workers=SLOTS_HELD)
    extension.wait_at_rest()
    seen = Seen()
    workload_through(
        extension,
        "SLOTS-5",
        lambda: target.slots_held(SLOTS_HELD, "SLOTS-5: the workload started"),
        "without slots",
        SLOTS_HELD_S,
        SHORTAGE_ANSWER_S,
        seen,
        record_property,
        figures,
        during=False,  # SLOTS-1 and SLOTS-3 judge a shortage of slots
    )
    seen.done("SLOTS-5", record_property)
