"""ORPHAN: after SIGKILL of the postmaster nothing of the extension outlives
it, and the next start is clean."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from conformance.suite.workers import PM_DEATH_S, STALE_SHMEM, START_S, Workers


def _kill_postmaster_while_running(extension: Workers) -> tuple[set[int], float]:
    extension.start_workload()
    if extension.workload_kinds():
        extension.wait_started()
    pids = extension.pids()
    if not pids:
        pytest.skip("not applicable: no process of the extension runs to outlive the postmaster")
    extension.target.kill_postmaster()
    return pids, time.monotonic()


@pytest.mark.clause("ORPHAN-1")
def test_every_process_exits_with_the_postmaster(
    extension: Workers, record_property: Callable[[str, object], None]
) -> None:
    pids, killed_at = _kill_postmaster_while_running(extension)
    left: list[int] = []

    def gone() -> bool:
        left[:] = sorted(pids & {p.pid for p in extension.target.processes()})
        return not left

    extension.target.wait_until(gone, PM_DEATH_S, what=f"every process of the extension gone {sorted(pids)}")
    record_property("measured_s", round(time.monotonic() - killed_at, 3))
    record_property("deadline_s", PM_DEATH_S)


@pytest.mark.clause("ORPHAN-2")
def test_next_start_is_clean(extension: Workers) -> None:
    _kill_postmaster_while_running(extension)
    extension.target.wait_until(
        lambda: not extension.target.processes(), 10, what="every server process gone"
    )
    offset = extension.target.log_offset()
    extension.target.start()
    log = extension.target.log_since(offset)
    assert STALE_SHMEM not in log, log
    extension.wait_at_rest(START_S)
