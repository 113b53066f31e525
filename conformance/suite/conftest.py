"""Fixtures of the conformance suite, one directory per tier.

- ``profile``: the extension profile (validated when the run started).
- ``extension``: the target at its baseline with the profile's settings and
  setup done, every process it promises at rest up (the ``bgworker`` tier).
- ``pair``: on a primary+standby target, ``extension`` and the census of the
  standby, following its primary, the kinds declared for a standby at rest
  (the REPLICA family); not applicable on a lone primary.
- ``pool``: the same, seen through the profile's pool adapter, with no worker
  left from an earlier test (the ``pool`` and ``faults`` tiers).  After every
  test that used it, the INV clauses are checked: each one's outcome is
  recorded among the test's ``clause_outcomes``, and a violation fails it.

A test of a tier that the profile does not claim is skipped with a reason
that starts with "not applicable" (reported as such, never as a pass), before
any of its fixtures run.  So is a test whose adapter raises NotApplicable.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from types import FrameType

import pytest

from conformance.adapters import NotApplicable, make_adapter
from conformance.census import Census
from conformance.config import KitConfig
from conformance.deadlines import SLOT_FREE_S, WORKLOAD_GONE_S
from conformance.errors import HarnessTimeout, NotReached, TargetError
from conformance.figures import CLOSEST_WAIT, Figures
from conformance.profile import TIERS, Profile
from conformance.suite.budgets import budget_s
from conformance.suite.pool_under_test import CAPACITY_LOST, INV_VIOLATED, Pool
from conformance.targets import StandbyTarget, Target
from conformance.waiting import last_wait, observed

#: servers whose setup ran: (cluster name, generation), a fresh data directory needs it again
_SET_UP: set[tuple[str, int]] = set()


def tier_of(item: pytest.Item) -> str | None:
    tier = item.path.parent.name
    return tier if tier in TIERS else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if tier := tier_of(item):
            item.user_properties.append(("tier", tier))


def pytest_runtest_setup(item: pytest.Item) -> None:
    kit: KitConfig = item.config.stash[_config_key()]
    tier = tier_of(item)
    if tier is not None and tier not in kit.profile.tiers:
        pytest.skip(f"not applicable: profile {kit.profile.name} does not claim the {tier} tier")


def _config_key() -> pytest.StashKey[KitConfig]:
    from conformance.plugin import CONFIG_KEY

    return CONFIG_KEY


@pytest.fixture
def figures(record_property: Callable[[str, object], None]) -> Figures:
    """What the test measures, each against its clause's deadline (``conformance.figures``)."""
    return Figures(record_property)


def _record_closest_wait(item: pytest.Item, waits: list[tuple[str, float, float]]) -> None:
    marker = item.get_closest_marker("clause")
    waits = [w for w in waits if w[2] > 0]
    if marker is None or not waits:
        return
    what, took, timeout = max(waits, key=lambda w: w[1] / w[2])
    figs = getattr(item, "funcargs", {}).get("figures")
    if not isinstance(figs, Figures):
        figs = Figures(lambda name, value: item.user_properties.append((name, value)))
    figs.add(marker.args[0], CLOSEST_WAIT, took, timeout, what=what)


@pytest.fixture(scope="session")
def profile(bgwc_config: KitConfig) -> Profile:
    return bgwc_config.profile


def _prepare(target: Target, profile: Profile) -> Census:
    """The target at its baseline with the profile's setup done (once per
    server, and again on a fresh data directory)."""
    if target.cluster_name not in {name for name, _ in _SET_UP}:
        target.set_baseline(**profile.server)
    target.ensure_baseline()
    workers = Census(target, profile)
    target.pid_namer = workers.name_pid
    if (target.cluster_name, target.generation) not in _SET_UP:
        workers.run_setup()
        _SET_UP.add((target.cluster_name, target.generation))
    return workers


def _left_as_promised(workers: Census) -> tuple[str, str] | None:
    """Why the server is not as a test may assume, and how to stop it: the
    previous test's workload still running (its workers ignored the stop, so
    an immediate stop), a kind short of its promise (a fast stop); or None."""
    try:
        workers.stop_workload()
        workers.target.wait_until(
            lambda: not workers.workload_left(), WORKLOAD_GONE_S, what="the workload's workers gone"
        )
    except (AssertionError, TargetError) as exc:
        return str(exc).splitlines()[0][:300], "immediate"
    try:
        workers.wait_at_rest()
    except (AssertionError, TargetError) as exc:
        return str(exc).splitlines()[0][:300], "fast"
    return None


@pytest.fixture
def extension(
    request: pytest.FixtureRequest, pg_target: Target, profile: Profile
) -> Generator[Census, None, None]:
    """The server at rest as promised.  What an earlier test left (a worker
    that never came back, workers that ignore the workload's stop, a server
    that will not stop) is undone by the escalation ladder, recorded against
    that test; a server that cannot be restored makes this test not reached."""
    try:
        workers = _prepare(pg_target, profile)
        left = _left_as_promised(workers)
        if left is not None:
            why, mode = left
            pg_target.recover(f"not as promised after the test: {why}", mode=mode)
            workers = _prepare(pg_target, profile)
            workers.wait_at_rest()
    except (AssertionError, TargetError) as exc:
        raise NotReached(f"not reached (server could not be restored): {exc}") from exc
    pg_target.begin_test(request.node.nodeid)
    yield workers
    if pg_target.is_running():
        try:
            workers.stop_workload()
        except Exception:  # noqa: BLE001 - the next test's set-up judges what is left
            pass


@dataclass(frozen=True)
class Pair:
    """A primary+standby target as the REPLICA family sees it: the census of each."""

    primary: Census
    standby: Census


def standby_of(target: Target) -> StandbyTarget:
    """The target's standby; a test on a lone primary is not applicable."""
    if not isinstance(target.standby, StandbyTarget):
        pytest.skip(f"not applicable: {target.name} has no standby (run it on pg{target.major}+standby)")
    return target.standby


def standby_at_rest(standby: StandbyTarget, primary: Census, nodeid: str = "") -> Census:
    """The standby with the profile's settings, following its primary (rebuilt
    from a new base backup when it does not), its kinds at rest as promised;
    then the test (``nodeid``) begins there, a rebuild among its faults."""
    if standby.cluster_name not in {name for name, _ in _SET_UP}:
        standby.set_baseline(**primary.profile.server)
        _SET_UP.add((standby.cluster_name, 0))
    standby.ensure_baseline()
    rebuilt = standby.follow("it did not stream from its primary before the test")
    census = Census(standby, primary.profile, "standby", primary)
    standby.pid_namer = census.name_pid
    census.wait_at_rest()
    standby.begin_test(nodeid)
    if rebuilt:
        standby.faults.append((0.0, "rebuild", rebuilt))
    return census


@pytest.fixture
def pair(request: pytest.FixtureRequest, pg_target: Target, profile: Profile) -> Pair:
    """The primary at rest as promised (``extension``), and its standby
    following it with the kinds declared for a standby at rest.  A standby
    not as promised is restarted, then rebuilt; one that cannot be restored
    makes the test not reached."""
    standby = standby_of(pg_target)
    primary: Census = request.getfixturevalue("extension")
    try:
        try:
            census = standby_at_rest(standby, primary, request.node.nodeid)
        except (AssertionError, TargetError) as exc:
            standby.recover(f"standby not as promised before the test: {str(exc).splitlines()[0][:300]}")
            census = standby_at_rest(standby, primary, request.node.nodeid)
    except (AssertionError, TargetError) as exc:
        raise NotReached(f"not reached (standby could not be restored): {exc}") from exc
    return Pair(primary, census)


@pytest.fixture
def pool(request: pytest.FixtureRequest, pg_target: Target, profile: Profile) -> Pool:
    try:
        _prepare(pg_target, profile)
    except TargetError as exc:
        raise NotReached(f"not reached (server could not be restored): {exc}") from exc
    p = Pool(pg_target, make_adapter(profile, pg_target), profile)
    if profile.pool is not None and profile.pool.launcher is not None:
        p.wait_launcher()
    p.quiesce()
    pg_target.begin_test(request.node.nodeid)
    return p


class _Budget:
    """The test's hard wall-clock budget (``budgets``): SIGALRM in the main
    thread raises HarnessTimeout wherever the test is, naming its last wait."""

    def __init__(self, seconds: float, nodeid: str) -> None:
        self.seconds, self.nodeid = seconds, nodeid
        self.armed = threading.current_thread() is threading.main_thread()

    def _expired(self, signum: int, frame: FrameType | None) -> None:
        raise HarnessTimeout(
            f"harness timeout: {self.nodeid} outlived its budget of {self.seconds:g}s; "
            f"last waiting for: {last_wait() or 'nothing'}"
        )

    def __enter__(self) -> _Budget:
        if self.armed:
            self._old = signal.signal(signal.SIGALRM, self._expired)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """The test's figure of the wait that came closest to its deadline
    (CLOSEST_WAIT: whatever else it measured, how near its slowest step came
    to failing it); then, for a pool test that passed, the INV checks."""
    waits: list[tuple[str, float, float]] = []
    kit: KitConfig = item.config.stash[_config_key()]
    budget = budget_s([c for m in item.iter_markers("clause") for c in m.args], kit.profile)
    item.user_properties.append(("budget_s", budget))
    with (
        observed(lambda what, took, timeout: waits.append((what, took, timeout))),
        _Budget(budget, item.nodeid),
    ):
        outcome = yield
    _record_closest_wait(item, waits)
    pool = getattr(item, "funcargs", {}).get("pool")
    if pool is None or outcome.excinfo is not None:
        return
    judged: dict[str, str] = {}
    try:
        _settle_then_check(pool, judged)
        t0 = time.monotonic()
        _capacity_after(pool, judged)
        item.user_properties.append(("capacity_witness_s", round(time.monotonic() - t0, 3)))
    except AssertionError as exc:
        outcome.force_exception(exc)
    _record_after_test(item, judged)  # not when a check broke: the test fails on its own clauses


def _record_after_test(item: pytest.Item, judged: dict[str, str]) -> None:
    """The after-test checks' outcomes (INV-1 to INV-3) among the test's
    clause outcomes, where ``verdicts.clause_status`` and
    ``mutation.failed_clauses`` read them: its scenario passed (so did each
    of its clauses it did not record on its own), then the checks judged the
    INV clauses, whatever clauses the test names."""
    if not judged:
        return
    recorded = dict(item.user_properties).get("clause_outcomes")
    own = dict.fromkeys([c for m in item.iter_markers("clause") for c in m.args], "pass")
    own |= recorded if isinstance(recorded, dict) else {}
    item.user_properties.append(("clause_outcomes", own | judged))  # the last value of a key counts


def _capacity_after(pool: Pool, judged: dict[str, str]) -> None:
    """INV-3: whatever path the test took to free its slots, exactly the
    configured capacity runs at once afterwards.  What the test left running
    is stopped first; a pool with no capacity has no such witness.  Its
    outcome goes into ``judged`` when it was judged."""
    if not pool.target.is_running():
        return
    try:
        pool.configured_capacity()
    except NotApplicable:
        return
    try:
        # a test that shrank max_worker_processes is judged at the baseline it shrank from
        pool.target.ensure_baseline()
        if pool.profile.pool is not None and pool.profile.pool.launcher is not None:
            pool.wait_launcher()
        for job in pool.adapter.jobs():
            pool.adapter.terminate(job.handle)
        pool.target.wait_until(
            lambda: not pool.os_workers() and not pool.adapter.busy(),
            SLOT_FREE_S,
            what="the test's jobs stopped",
        )
        pool.capacity_witness()
    except AssertionError as exc:
        judged["INV-3"] = "fail"
        raise AssertionError(f"{CAPACITY_LOST}: {exc}") from None
    judged["INV-3"] = "pass"


def _settle_then_check(pool: Pool, judged: dict[str, str]) -> None:
    """INV-1 and INV-2, once the pool settled: its own check empty, and the
    OS agreeing with it.  Their outcome goes into ``judged`` when judged."""
    if not pool.target.is_running():
        return
    last: list[str] = []

    def own_check() -> list[str]:
        try:
            return pool.adapter.check()
        except NotApplicable:  # a pool with no self-check: the OS agreement still holds
            return []

    def clean() -> bool:
        last[:] = own_check() + pool.agreement()
        return not last

    try:
        pool.target.wait_until(clean, SLOT_FREE_S, what="pool invariants (INV-1, INV-2)")
    except AssertionError:
        judged.update({"INV-1": "fail", "INV-2": "fail"})
        raise AssertionError(f"{INV_VIOLATED}: {last}") from None
    judged.update({"INV-1": "pass", "INV-2": "pass"})
