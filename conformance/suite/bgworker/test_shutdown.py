"""SHUT: fast and smart shutdown complete within a deadline while the
extension's workers run.  A shutdown that hangs is ended by the escalation
ladder (recorded against this test), so the next test starts clean."""

from __future__ import annotations

import time

import pytest

from conformance.census import Census
from conformance.deadlines import SHUTDOWN_S, START_S
from conformance.errors import TargetError
from conformance.figures import Figures


def _shutdown_while_running(extension: Census, mode: str, figures: Figures) -> None:
    clause = "SHUT-1" if mode == "fast" else "SHUT-2"
    extension.start_workload()
    if extension.workload_kinds():
        extension.wait_started()
    t0 = time.monotonic()
    try:
        extension.target.stop(mode, timeout=SHUTDOWN_S)
    except TargetError as exc:
        figures.add(clause, f"{mode} shutdown", time.monotonic() - t0, SHUTDOWN_S)
        running = extension.census()
        extension.target.bring_down(f"a {mode} shutdown did not complete", mode, tried=True)
        pytest.fail(
            f"{mode} shutdown did not complete in {SHUTDOWN_S:g}s; still running: {running}\n"
            f"{str(exc).splitlines()[0]}"
        )
    took = time.monotonic() - t0
    figures.add(clause, f"{mode} shutdown", took, SHUTDOWN_S)
    assert not extension.target.processes(), "server processes left after the shutdown"
    extension.target.start()
    extension.wait_at_rest(START_S)


@pytest.mark.clause("SHUT-1")
def test_fast_shutdown_completes(extension: Census, figures: Figures) -> None:
    _shutdown_while_running(extension, "fast", figures)


@pytest.mark.clause("SHUT-2")
def test_smart_shutdown_completes(extension: Census, figures: Figures) -> None:
    _shutdown_while_running(extension, "smart", figures)
