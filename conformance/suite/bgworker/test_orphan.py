"""ORPHAN: after SIGKILL of the postmaster nothing of the extension outlives
it, and the next start is clean."""

from __future__ import annotations

import time

import pytest

from conformance.census import STALE_SHMEM, Census
from conformance.deadlines import PM_DEATH_S, START_S
from conformance.errors import TargetError
from conformance.figures import Figures

ORPHANS_GONE_S = 5.0


def _kill_postmaster_while_running(extension: Census) -> tuple[set[int], float]:
    """SIGKILL the postmaster once the workload's workers are at work: at a
    steady count (none still starting, in core's start-up of a backend, which
    the clause does not judge) and attached."""
    if extension.workload_kinds():
        extension.workload_running()
    else:
        extension.start_workload()
    pids = extension.pids()
    if not pids:
        pytest.skip("not applicable: no process of the extension runs to outlive the postmaster")
    extension.target.kill_postmaster()
    return pids, extension.target.last_signal_at


@pytest.mark.clause("ORPHAN-1")
def test_every_process_exits_with_the_postmaster(extension: Census, figures: Figures) -> None:
    pids, killed_at = _kill_postmaster_while_running(extension)
    left: list[int] = []

    def gone() -> bool:
        left[:] = sorted(pids & {p.pid for p in extension.target.processes()})
        return not left

    try:
        extension.target.wait_until(
            gone, PM_DEATH_S, what=f"every process of the extension gone {sorted(pids)}"
        )
    finally:
        figures.add("ORPHAN-1", "postmaster SIGKILL → all gone", time.monotonic() - killed_at, PM_DEATH_S)
        _kill_orphans(extension)


def _kill_orphans(extension: Census) -> list[str]:
    """SIGKILL whatever outlived the postmaster (so that the server can
    start again) and wait until nothing of the server is left; return what was killed."""
    orphans = extension.target.processes()
    extension.target.kill_all()
    return [f"{p.pid} {p.title}" for p in orphans]


@pytest.mark.clause("ORPHAN-2")
def test_next_start_is_clean(extension: Census) -> None:
    pids, _ = _kill_postmaster_while_running(extension)
    left: set[int] = set()

    def gone() -> bool:
        left.clear()
        left.update(pids & {p.pid for p in extension.target.processes()})
        return not left

    try:
        # ORPHAN-1's deadline and a margin: what outlives that blocks the next start
        extension.target.wait_until(gone, ORPHANS_GONE_S, what="the extension's processes gone")
    except AssertionError:
        pass
    offset = extension.target.log_offset()
    try:
        extension.target.start()
    except TargetError as exc:
        killed = _kill_orphans(extension)
        extension.target.start()
        pytest.fail(
            f"the next start failed while {sorted(left)} outlived the postmaster: {exc}; killed {killed}"
        )
    log = extension.target.log_since(offset)
    assert STALE_SHMEM not in log, log
    extension.wait_at_rest(START_S)
