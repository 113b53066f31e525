"""The pool adapter interface: what the conformance suite asks of a pool."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from conformance.profile import Profile
from conformance.targets import Target

JOB_KINDS = ("sleep", "sql", "exit", "error", "fatal", "crash", "ignore_sigterm", "exit_at_once")


class NotApplicable(pytest.skip.Exception):  # type: ignore[misc,name-defined]
    """The adapter cannot offer an operation; its clauses are not applicable.
    It is pytest's own skip outcome (a BaseException, so that no wait or
    ``except Exception`` mistakes it for a failed observation), with a reason
    that starts "not applicable": raised in a test or in a fixture, the test
    is reported not applicable, never passed and never errored."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"not applicable: {reason}")


@dataclass(frozen=True)
class Handle:
    """What a submit returns.  A slot pool gives (slot, generation); a pool
    that knows its work by pid gives the pid, and a cookie as generation
    where it has one (pids are reused; a handle must not be)."""

    slot: int | None
    generation: int | None
    pid: int | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Handle:
        """The handle in a row (or JSON object) with ``slot``, ``generation``
        (or ``cookie``) and ``pid`` keys, each where the pool has it."""
        return cls(row.get("slot"), row.get("generation", row.get("cookie")), row.get("pid"))

    @property
    def os_pid(self) -> int:
        """The worker's pid, for a signal or an OS check.  A handle without one
        fails the test: never a stand-in like 0, which ``kill`` reads as "my
        whole process group"."""
        if self.pid is None:
            raise AssertionError(f"the pool gave no pid for {self}")
        return self.pid


@dataclass(frozen=True)
class Job:
    """One piece of work the pool lists as live."""

    handle: Handle
    state: str  # starting, running, stopping


@dataclass(frozen=True)
class Slot:
    slot: int
    state: str  # free, starting, running, stopping
    generation: int
    database: str | None
    pid: int | None
    handle_status: str | None
    job: str | None
    last_exit_code: int | None


class PoolAdapter(ABC):
    """Operations on one pool.  Methods take an optional connection so that
    concurrent submitters each use their own; by default the target's."""

    def __init__(self, profile: Profile, target: Target) -> None:
        self.profile = profile
        self.target = target

    @abstractmethod
    def submit(
        self,
        kind: str,
        args: dict[str, Any] | None = None,
        dbname: str | None = None,
        conn: psycopg.Connection[Any] | None = None,
    ) -> Handle:
        """Start a job; return its handle once the worker runs, or raise a
        psycopg error carrying the SQLSTATE."""

    @abstractmethod
    def terminate(self, handle: Handle, conn: psycopg.Connection[Any] | None = None) -> bool:
        """Ask the pool to stop the worker of ``handle`` (from ``conn``, the
        session that submitted it, where the pool binds jobs to sessions);
        False for a stale handle."""

    @abstractmethod
    def slots(self, conn: psycopg.Connection[Any] | None = None) -> list[Slot]:
        """Every slot of the pool, as its status view shows them (read in
        ``conn`` where given: a probe that may block must not hold the
        target's kept session)."""

    @abstractmethod
    def launcher_pid(self) -> int | None: ...

    @abstractmethod
    def check(self) -> list[str]:
        """The pool's own invariant violations, empty when consistent."""

    def jobs(self) -> list[Job]:
        """The live work the pool lists (by default: its busy slots)."""
        return [Job(Handle(s.slot, s.generation, s.pid), s.state) for s in self.busy()]

    def capacity(self) -> int:
        return len(self.slots())

    def busy(self) -> list[Slot]:
        return [s for s in self.slots() if s.state != "free"]

    # -- security: a pool that can be granted to a role is judged by the SEC clauses
    def grant_submit(self, role: str, conn: psycopg.Connection[Any] | None = None) -> None:
        """Grant ``role`` what it needs to submit, terminate and list jobs (in
        ``conn``, in one transaction, where given)."""
        raise NotApplicable("the profile does not say how to grant the pool to a role")

    def revoke_submit(self, role: str, conn: psycopg.Connection[Any] | None = None) -> None:
        """Take back from ``role`` what ``grant_submit`` gave it (in ``conn``,
        in one transaction, where given)."""
        raise NotApplicable("the profile does not say how to take the pool back from a role")

    def submit_sql(self, query: str) -> str:
        """The SQL text of a query that submits an ``sql`` job running
        ``query`` into the current database and returns one row, its handle
        (columns ``slot``, ``generation`` or ``cookie``, ``pid``, as
        ``Handle.from_row`` reads them): for a submit made from SQL, e.g. in a
        function's body (SEC-6)."""
        raise NotApplicable("the adapter gives no SQL text of a submit")

    def argument_limits(self) -> dict[str, tuple[int, int]]:
        """The inclusive limits the pool documents for its numeric job
        arguments (``"sleep.ms"``, ``"ignore_sigterm.ms"``, ``"exit.code"``,
        ``"text.bytes"``): BOUND-2 submits each at its limits and just past
        them.  A pool that documents none has those cells not applicable."""
        raise NotApplicable("the pool documents no limits for its job arguments")

    def test_only_settings(self) -> tuple[str, ...]:
        """The server settings that exist only to enable the pool's test hooks
        (its pause points): a production server runs without them (SEC-7)."""
        return ()

    # -- pause points: a pool that offers them makes its handshake races
    # deterministic (the RACE clauses from RACE-6 on, TERM-6) and is judged
    # on what they can do to a production server (SEC-7); others are not judged
    def pause_arm(self, point: str) -> None:
        """Make every process that reaches ``point`` wait there."""
        raise NotApplicable("the pool offers no pause points")

    def pause_release(self, point: str) -> None:
        """Disarm ``point`` and let its waiters go on (a no-op when not armed)."""
        raise NotApplicable("the pool offers no pause points")

    def paused_at(self, point: str) -> list[int]:
        """The pids waiting at ``point``."""
        raise NotApplicable("the pool offers no pause points")
