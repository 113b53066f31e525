"""Each test's hard wall-clock budget, derived from its clauses' deadlines.

A test's budget is what its waits may take by its clauses' own deadlines
(for the profile it runs with: its kinds, their restart intervals), plus one
escalation ladder and a start (a server the extension holds up is brought
down within that), plus a margin for the harness's own statements.  A test
that outlives its budget is stopped and recorded as a harness timeout naming
the last thing it waited for (``conftest.pytest_runtest_call``): the budget
is a promise of the kit about itself, so it is never the extension's failure.
A whole run cannot outlive the sum of its tests' budgets and their set-ups.
"""

from __future__ import annotations

from collections.abc import Callable

from conformance import deadlines as w
from conformance.profile import ProcessSpec, Profile
from conformance.targets.base import LADDER_STEP_S, START_TIMEOUT_S, STATEMENT_TIMEOUT_S

#: bringing a server down by the ladder (fast, immediate, SIGKILL), then starting it
LADDER_S = 3 * LADDER_STEP_S + START_TIMEOUT_S
#: the harness's own statements and process listings, over a whole test
MARGIN_S = 30.0
#: tests of the pool and faults tiers: a few waits, each at most a crash recovery
POOL_TEST_S = 4 * w.CRASH_RECOVERY_S


def _at_rest(p: Profile) -> list:  # type: ignore[type-arg]
    return [s for s in p.processes if s.count > 0]


def _stays_down_watch(p: Profile, attr: str) -> float:
    return w.STAYS_DOWN_S if any(getattr(s, attr) == "stays-down" for s in _at_rest(p)) else 0.0


def _back_s(s: ProcessSpec) -> float:
    """How long a kind may take to be back after an exit (0: it must not exit)."""
    return s.restart_s + w.RESTART_SLACK_S if s.count > 0 and s.after_exit == "restart" else 0.0


def _stop(p: Profile) -> float:
    back = sum(s.restart_s + w.RESTART_SLACK_S + w.DUPLICATE_WATCH_S for s in _at_rest(p))
    return back + w.RESTART_SLACK_S + _stays_down_watch(p, "after_exit") + w.START_S


def _kill(p: Profile) -> float:
    # each kind: at rest again, the crash-restart logged, back (or watched down), no duplicate, the canary
    each = 2 * w.CRASH_RECOVERY_S + w.CRASH_RECOVERY_S + w.RESTART_SLACK_S + w.DUPLICATE_WATCH_S
    down = sum(w.STAYS_DOWN_S for s in _at_rest(p) if s.after_crash == "stays-down")
    return len(_at_rest(p)) * (each + STATEMENT_TIMEOUT_S) + down


def _cycle(p: Profile) -> float:
    # each cycle: the crash-restart logged, every kind at rest again, every restartable kind back
    back = sum(w.CRASH_RECOVERY_S + w.RESTART_SLACK_S for s in _at_rest(p))
    terminations = sum(s.restart_s + w.RESTART_SLACK_S for s in _at_rest(p))
    return w.CYCLES * (w.CRASH_RECOVERY_S + back + terminations + w.START_S)


def _slots(p: Profile) -> float:
    no_slot = 2 * LADDER_S + w.OBSERVE_S + 2 * w.START_S  # SLOTS-1..3
    below_rest = w.BELOW_REST_VALUES * (LADDER_S + w.OBSERVE_S) + LADDER_S + w.START_S  # SLOTS-4
    # SLOTS-5: the restart, the parallel workers up, the window, their end, the workload's kinds
    held = (
        LADDER_S + w.START_S + 10.0 + w.SHORTAGE_ANSWER_S + w.SLOTS_HELD_S + STATEMENT_TIMEOUT_S + w.START_S
    )
    return max(no_slot, below_rest, held)


def _database(p: Profile) -> float:
    return 4 * STATEMENT_TIMEOUT_S + w.DB_COMMAND_S + w.DB_RETRY_GRACE_S + w.OBSERVE_S + 2 * w.START_S


def _progress(p: Profile) -> float:
    if p.progress is None:
        return 0.0
    # each event: its first reading (a server starting) and the increase
    probe = w.START_S + p.progress.within_s
    back = sum(s.restart_s + w.RESTART_SLACK_S + probe for s in _at_rest(p) if s.after_exit == "restart")
    crash = 2 * w.CRASH_RECOVERY_S + probe
    pm_death = LADDER_S + w.START_S + probe
    # the shortage: a restart, the probe watched, a restart with capacity back, at rest, the probe
    slots = 2 * LADDER_S + probe + w.START_S + probe
    return probe + back + crash + pm_death + slots


def _reload(p: Profile) -> float:
    if p.reload is None:
        return 0.0
    # each phase: the server's own value shown, then a set and a reset, each a reload the
    # postmaster reads and the effect shown
    phase = p.reload.within_s + 2 * (w.POSTMASTER_RELOAD_S + p.reload.within_s)
    back = sum(s.restart_s + w.RESTART_SLACK_S + phase for s in _at_rest(p) if s.after_exit == "restart")
    return p.reload.within_s + phase + back


def _workload_through(p: Profile, back_after: float) -> float:
    """STOP-2, KILL-2 beyond STOP-1's and KILL-1's: the workload started and
    settled, then for each kind at rest started again (stop, gone, start,
    settle) and its workers at their count after the fault."""
    settle = w.WORKLOAD_GONE_S + 2 * w.START_S + w.WORKLOAD_BACK_S + STATEMENT_TIMEOUT_S
    return 2 * w.START_S + len(_at_rest(p)) * (settle + back_after)


def _configured(p: Profile) -> float:
    """DB-4, DB-5: a start in the configured database, the rename (and back), the
    drop, each with its grace and window, the create and the kinds back, the start
    with the setting as it was."""
    window = w.CONFIGURED_GRACE_S + w.OBSERVE_S + STATEMENT_TIMEOUT_S
    back = max((s.restart_s for s in _at_rest(p)), default=0.0) + w.RESTART_SLACK_S
    return LADDER_S + 2 * w.START_S + 3 * w.DB_COMMAND_S + 2 * window + 2 * back + 6 * STATEMENT_TIMEOUT_S


#: clauses whose scenario outgrows their family's
_CLAUSE: dict[str, Callable[[Profile], float]] = {
    "STOP-2": lambda p: _stop(p) + _workload_through(p, 0.0),
    "KILL-2": lambda p: _kill(p) + _workload_through(p, w.CRASH_RECOVERY_S),
    "DB-4": _configured,
    "DB-5": _configured,
}

#: the budget of a test judging the family, beyond the ladder and the margin
_FAMILY: dict[str, Callable[[Profile], float]] = {
    "START": lambda p: 2 * w.START_S,
    "STOP": _stop,
    "KILL": _kill,
    "ORPHAN": lambda p: 2 * w.START_S + w.PM_DEATH_S + 5.0,
    # SHUT-3: the workload up, a commit waiting, the shutdown, the writer's end, the start
    "SHUT": lambda p: 3 * w.START_S + 2 * w.SHUTDOWN_S,
    "SLOTS": _slots,
    "DB": _database,
    "BARRIER": lambda p: 2 * (3 * w.BARRIER_S + 2 * w.BARRIER_S + 2 * STATEMENT_TIMEOUT_S) + w.START_S,
    "CYCLE": _cycle,
    # the workload's start, the window without forks, its workers
    "FORK": lambda p: w.SHORTAGE_ANSWER_S + w.OBSERVE_S + w.START_S + 2 * STATEMENT_TIMEOUT_S,
    "PROGRESS": _progress,
    "RELOAD": _reload,
    "LOG": lambda p: w.START_S + 2 * w.OBSERVE_S,
    # the sequences, then the shrinking of a failure
    "RAND": lambda p: POOL_TEST_S + w.SHRINK_S,
    # each kind (and each workload kind), three signals, twice: at its count, then settled
    "SIG": lambda p: 2 * 3 * sum(2 * (_back_s(s) + w.SIGNAL_SETTLE_S) for s in p.processes) + 2 * w.START_S,
    # the standby's scenarios: STOP's or KILL's on it, an observation window, a
    # promotion, two shutdowns and the starts after them
    "REPLICA": lambda p: (
        max(_stop(p), _kill(p))
        + w.OBSERVE_S
        + max((s.promotion_s for s in _at_rest(p)), default=0.0)
        + 2 * w.SHUTDOWN_S
        + 3 * w.START_S
    ),
}


def budget_s(clauses: list[str], profile: Profile) -> float:
    """The test's budget, in seconds: the largest of its clauses' families
    (a scenario judging several clauses runs once), the ladder and the margin."""
    families = {c.split("-")[0] for c in clauses}
    own = max((_FAMILY[f](profile) if f in _FAMILY else POOL_TEST_S for f in families), default=POOL_TEST_S)
    own = max([own, *(_CLAUSE[c](profile) for c in clauses if c in _CLAUSE)])
    return round(own + LADDER_S + MARGIN_S, 1)
