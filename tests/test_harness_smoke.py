"""Smoke tests of the harness on every target: real servers, real signals."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from conformance.errors import TargetError
from conformance.targets import Target

KILL_DEADLINE_S = 5


def test_server_starts_and_reports_its_major(target: Target) -> None:
    version = target.scalar("SELECT current_setting('server_version_num')::int")
    assert version // 10000 == target.major, target.scalar("SELECT version()")


def test_library_is_preloaded(target: Target, bgwc_config) -> None:  # type: ignore[no-untyped-def]
    preload = target.scalar("SHOW shared_preload_libraries")
    assert bgwc_config.extension.library in [p.strip() for p in preload.split(",")]


def test_processes_show_the_postmaster_and_its_children(target: Target) -> None:
    procs = target.processes()
    pm = target.postmaster_pid()
    assert pm in {p.pid for p in procs if p.backend_type == "postmaster"}, procs
    assert any(p.backend_type == "checkpointer" and p.ppid == pm for p in procs), procs


def test_kill_postmaster_leaves_no_process_and_start_brings_it_back(target: Target) -> None:
    old = target.kill_postmaster()
    gone = target.wait_until(
        lambda: not target.processes() or None,
        KILL_DEADLINE_S,
        what="every server process gone after SIGKILL of the postmaster",
    )
    assert gone is None or gone  # wait_until raised if any process stayed
    assert target.processes() == []
    target.start()
    assert target.postmaster_pid() not in (None, old)
    assert target.scalar("SELECT 1") == 1


def test_sql_reconnects_after_crash_restart(target: Target) -> None:
    target.sql("SELECT 1")
    backend = target.scalar("SELECT pg_backend_pid()")
    target.kill(backend, signal.SIGKILL)  # a backend killed with -9 forces a crash-restart
    target.wait_until(
        lambda: target.scalar("SELECT pg_backend_pid()") != backend,
        60,
        what="a new connection after the crash-restart",
    )


def test_set_conf_persists_and_restarts_for_postmaster_gucs(target: Target) -> None:
    pm = target.postmaster_pid()
    target.set_conf(max_worker_processes=11)
    assert target.scalar("SHOW max_worker_processes") == "11"
    assert target.postmaster_pid() != pm
    target.restart()
    assert target.scalar("SHOW max_worker_processes") == "11"
    target.set_conf(work_mem="7MB")
    assert target.scalar("SHOW work_mem") == "7MB"


def test_wait_for_log_sees_a_logged_line(target: Target) -> None:
    offset = target.log_offset()
    target.sql("DO $$ BEGIN RAISE LOG 'bgwc-marker-%', 42; END $$")
    assert target.wait_for_log(r"bgwc-marker-42", offset, timeout=10)


def test_wait_until_timeout_reports_last_value_and_log(target: Target) -> None:
    from conformance.waiting import WaitTimeout

    with pytest.raises(WaitTimeout, match=r"(?s)last observed: 0.*server log"):
        target.wait_until(lambda: 0, 0.3, what="a value that never comes")


def test_kill_refuses_anything_but_the_server_under_test(target: Target) -> None:
    """``kill(h.pid or 0)`` once ran ``kill -s KILL 0``: a whole process group.
    Target.kill signals only the postmaster and its children."""
    for pid in (-1, 0, 1):
        with pytest.raises(TargetError, match=f"refusing to signal pid {pid}"):
            target.kill(pid, signal.SIGKILL)
    server = {p.pid for p in target.processes()}
    # a live process beside the server: the kit itself (local), or the container's idle child
    here = os.getpid() if target.name == "local" else None
    candidates = [int(x) for x in target.run(["ps", "-eo", "pid="], user="root").split()]
    foreign = here or next(p for p in candidates if p > 1 and p not in server)
    assert foreign not in server
    with pytest.raises(TargetError, match=f"refusing to signal pid {foreign}: not a process of the server"):
        target.kill(foreign, signal.SIGKILL)
    assert target.exec(["kill", "-0", str(foreign)], user="root").code == 0, (
        "the foreign process was signalled"
    )
    # a server process is still killed for real
    backend = target.scalar("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
    assert backend in server
    target.kill(backend, signal.SIGCONT)  # harmless, but a real signal to a real server process
    assert target.pid_alive(backend)


def test_kill_treats_an_exited_process_as_gone(target: Target) -> None:
    """A process that has exited but is not yet reaped (a zombie: a server
    process whose postmaster was SIGKILLed, before init reaps it) is gone:
    ``kill`` neither signals nor refuses it.  Found in CI: ORPHAN-1's clean-up
    refused such a pid as "not a process of the server under test"."""
    # a zombie held beside the server: its parent execs into a sleep that never reaps it
    holder = int(
        target.run(
            ["sh", "-c", "sh -c 'sleep 0 & exec sleep 60' </dev/null >/dev/null 2>&1 & echo $!"]
        ).strip()
    )
    try:

        def zombie() -> int | None:
            rows = [
                ln.split() for ln in target.run(["ps", "-eo", "pid=,ppid=,stat="], user="root").splitlines()
            ]
            return next((int(r[0]) for r in rows if r[1] == str(holder) and r[2].startswith("Z")), None)

        pid = target.wait_until(zombie, KILL_DEADLINE_S, what=f"a zombie child of {holder}")
        target.kill(pid, signal.SIGKILL)  # gone: not signalled, not refused
        assert zombie() == pid, "the zombie was reaped meanwhile: the check proved nothing"
        with pytest.raises(
            TargetError, match=f"refusing to signal pid {holder}: not a process of the server"
        ):
            target.kill(holder, signal.SIGKILL)  # its live parent is still refused
    finally:
        target.exec(["kill", "-s", "KILL", str(holder)], user="root")


def test_stop_when_idle_stops_a_process_asleep_in_its_wait(target: Target) -> None:
    """A slow process, stopped only while it sleeps in a kernel wait: the
    checkpointer, idle, is stopped (state T), still answers nothing the
    server needs meanwhile, and goes on once resumed; a foreign pid is refused."""
    pid = target.scalar("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
    target.stop_when_idle(pid)
    try:
        stat = target.run(["cat", f"/proc/{pid}/stat"], user="root")
        assert stat.split(") ", 1)[1].startswith("T"), stat
        assert target.scalar("SELECT 1") == 1, "a stopped idle checkpointer blocked a query"
    finally:
        target.kill(pid, signal.SIGCONT)
    target.wait_until(
        lambda: not target.run(["cat", f"/proc/{pid}/stat"], user="root").split(") ", 1)[1].startswith("T"),
        KILL_DEADLINE_S,
        what=f"checkpointer {pid} resumed",
    )
    with pytest.raises(TargetError, match="refusing to stop pid 1"):
        target.stop_when_idle(1)


def test_sessions_held_makes_new_sessions_wait_in_their_start(target: Target) -> None:
    """While ``sessions_held`` lasts, a new session waits in its start (seen in
    ``waiting_at_start``) and the sessions already open go on; once it ends,
    the new session starts."""
    started = threading.Event()

    def connect() -> None:
        with target.connect() as conn:
            conn.execute("SELECT 1")
            started.set()

    with target.sessions_held():
        assert target.waiting_at_start() == []
        threading.Thread(target=connect, daemon=True).start()
        waiter = target.wait_until(target.waiting_at_start, KILL_DEADLINE_S, what="a new session waiting")
        assert len(waiter) == 1 and not started.is_set()
        assert target.scalar("SELECT 1") == 1, "an open session was held"
    target.wait_until(started.is_set, KILL_DEADLINE_S, what="the held session started")
