"""What the suite's tests share: a pool under test, seen through its adapter
(SQL) and through the OS, with deadline-bounded waits."""

from __future__ import annotations

from dataclasses import dataclass

from conformance.adapters import Handle, NotApplicable, PoolAdapter, Slot
from conformance.processes import Process
from conformance.profile import Profile
from conformance.targets import Target

#: deadlines of CONTRACT.md, in seconds
SLOT_FREE_S = 2.0
LAUNCHER_START_S = 10.0
CRASH_RECOVERY_S = 30.0
PM_DEATH_S = 1.0
ALL_GONE_S = 10.0
CAPACITY_BACK_S = 5.0


@dataclass
class Pool:
    target: Target
    adapter: PoolAdapter
    profile: Profile

    # -- OS view ---------------------------------------------------------------
    def os_workers(self) -> list[Process]:
        return [p for p in self.target.processes() if p.backend_type.startswith(self.profile.worker_title)]

    def os_launchers(self) -> list[Process]:
        return [
            p
            for p in self.target.processes()
            if p.backend_type.startswith(self.profile.launcher_backend_type)
        ]

    # -- waits -----------------------------------------------------------------
    def slot(self, n: int) -> Slot:
        return next(s for s in self.adapter.slots() if s.slot == n)

    def wait_freed(self, handle: Handle, timeout: float = SLOT_FREE_S) -> Slot:
        """Wait until the slot of ``handle`` no longer holds that generation's worker."""

        def freed() -> Slot | None:
            s = self.slot(handle.slot)
            return s if s.state == "free" or s.generation != handle.generation else None

        return self.target.wait_until(
            freed, timeout, what=f"slot {handle.slot} gen {handle.generation} freed"
        )

    def wait_launcher(self, timeout: float = LAUNCHER_START_S, not_pid: int | None = None) -> int:
        def up() -> int | None:
            pid = self.adapter.launcher_pid()
            return pid if pid and pid != not_pid and [p.pid for p in self.os_launchers()] == [pid] else None

        return self.target.wait_until(up, timeout, what="exactly one launcher, in SQL and in the OS")

    def wait_fresh(self, timeout: float = CRASH_RECOVERY_S, not_launcher: int | None = None) -> None:
        """Wait for a fresh pool: launcher up (if it has one), every slot
        free and check empty (if it has them), no job listed, no worker."""
        if self.profile.pool is not None and self.profile.pool.launcher is not None:
            self.wait_launcher(timeout, not_launcher)
        self.target.wait_until(lambda: self.is_fresh() or None, timeout, what="a fresh pool")

    def is_fresh(self) -> bool:
        if self.adapter.jobs() or self.os_workers():
            return False
        try:
            slots = self.adapter.slots()
        except NotApplicable:
            return True
        return (
            all(s.state == "free" and s.pid is None and s.handle_status is None for s in slots)
            and not self.adapter.check()
        )

    def submit_within(self, timeout: float, kind: str, args: dict[str, object] | None = None) -> Handle:
        """Submit, retrying until ``timeout``: for capacity that is coming back
        (the postmaster frees a worker's registration only once it has reaped it)."""
        return self.target.wait_until(
            lambda: self.adapter.submit(kind, args), timeout, what=f"a {kind} submit to succeed"
        )

    def stop_all(self, handles: list[Handle]) -> None:
        """Terminate every handle and wait until each slot is free."""
        for h in handles:
            self.adapter.terminate(h)
        for h in handles:
            self.wait_freed(h)

    def wait_all_gone(self, timeout: float = ALL_GONE_S) -> None:
        """Every process of the server gone from the OS (after it was killed)."""
        self.target.wait_until(lambda: not self.target.processes(), timeout, what="every server process gone")

    def wait_gone(self, pids: set[int], timeout: float, what: str) -> None:
        self.target.wait_until(
            lambda: not ({p.pid for p in self.target.processes()} & pids), timeout, what=what
        )

    # -- settling --------------------------------------------------------------
    def agreement(self) -> list[str]:
        """Pool vs OS: every reported pid alive, every OS worker in the pool."""
        reported = {j.handle.pid for j in self.adapter.jobs() if j.handle.pid is not None}
        os_pids = {p.pid for p in self.os_workers()}
        problems = [f"pool reports pid {pid} that is not alive" for pid in sorted(reported - os_pids)]
        problems += [f"worker process {pid} is not in the pool" for pid in sorted(os_pids - reported)]
        return problems

    def quiesce(self) -> None:
        """Stop whatever a previous test left running; restart if it will not stop."""
        for j in self.adapter.jobs():
            if j.state in ("running", "starting"):
                self.adapter.terminate(j.handle)
        left: list[object] = []

        def none_left() -> bool:
            left[:] = [*self.adapter.jobs(), *self.os_workers()]
            return not left

        # workers an earlier test left in a session of its own (some pools bind
        # jobs to sessions): the kit's own leftovers, stopped as any backend is
        for proc in self.os_workers():
            self.target.sql("SELECT pg_terminate_backend(%s)", proc.pid)
        try:
            self.target.wait_until(none_left, 5, what="leftover workers to stop")
        except AssertionError:
            self.target.restart("immediate")
            self.wait_fresh()
