"""SHUT: fast and smart shutdown complete within a deadline while the
extension's workers run, and a fast one while commits wait for a
synchronous standby that is not there.  A shutdown that hangs is ended by the escalation
ladder (recorded against this test), so the next test starts clean."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from conformance.census import Census
from conformance.deadlines import SHUTDOWN_S, START_S
from conformance.errors import TargetError
from conformance.figures import Figures
from conformance.targets import StandbyTarget


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


#: the name in synchronous_standby_names on a lone primary: a standby that never connects
ABSENT_STANDBY = "bgwc_absent_standby"
#: SHUT-3: how long the extension's workers are given to commit (and so to wait) before the
#: shutdown, from the workload's start: a worker on a loop of a second or two, or one that
#: records the start of its work, commits within it
SYNC_WINDOW_S = 3.0


@pytest.mark.clause("SHUT-3")
def test_fast_shutdown_completes_with_the_synchronous_standby_gone(
    extension: Census, figures: Figures
) -> None:
    """Commits wait for a synchronous standby that is not there: on a
    primary+standby target its standby, stopped; on a lone server a name no
    standby has.  The workload starts only then (the harness's own session
    commits locally), so that the extension's first commits of its work
    wait too; with a session's commit waiting, and once a process of the
    extension waits (or SYNC_WINDOW_S has passed: it may never commit), a
    fast shutdown completes within SHUTDOWN_S (core ends every wait for
    synchronous replication at a fast shutdown: a worker that does not let
    its wait end holds it)."""
    target = extension.target
    standby = target.standby if isinstance(target.standby, StandbyTarget) else None
    if standby is not None:
        standby.stop("fast")
    target.set_conf(
        synchronous_standby_names=standby.cluster_name if standby else ABSENT_STANDBY,
        synchronous_commit="on",
    )
    target.reload()
    writer = threading.Thread(target=_write_until_ended, args=(target.conninfo(),), daemon=True)
    writer.start()
    waiting = "SELECT array_agg(pid) FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
    target.wait_until(
        lambda: target.scalar(waiting, idempotent=True), START_S, what="the session's commit waiting"
    )
    extension.start_workload(session={"synchronous_commit": "local"})
    # an observation window, not a wait for a state: a worker may never commit
    end = time.monotonic() + SYNC_WINDOW_S
    while (
        time.monotonic() < end and not set(target.scalar(waiting, idempotent=True) or ()) & extension.pids()
    ):
        time.sleep(0.1)  # ok-sleep: polled through an observation window
    t0 = time.monotonic()
    try:
        target.stop("fast", timeout=SHUTDOWN_S)
    except TargetError as exc:
        figures.add("SHUT-3", "fast shutdown, synchronous standby gone", time.monotonic() - t0, SHUTDOWN_S)
        running = extension.census()
        target.bring_down("a fast shutdown with the synchronous standby gone did not complete", tried=True)
        pytest.fail(
            f"fast shutdown did not complete in {SHUTDOWN_S:g}s with the synchronous standby gone; "
            f"still running: {running}\n{str(exc).splitlines()[0]}"
        )
    finally:
        writer.join(SHUTDOWN_S)
    figures.add("SHUT-3", "fast shutdown, synchronous standby gone", time.monotonic() - t0, SHUTDOWN_S)
    assert not target.processes(), "server processes left after the shutdown"
    target.reset_conf()
    target.start()
    if standby is not None:
        standby.start()
    extension.wait_at_rest(START_S)


def _write_until_ended(conninfo: str) -> None:
    """Commit rows, one transaction each, until the server ends the session."""
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS bgwc_sync_writes (at timestamptz)")
            while True:
                conn.execute("INSERT INTO bgwc_sync_writes VALUES (now())")
    except psycopg.Error:
        return
