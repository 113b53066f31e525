"""Fixtures of the conformance suite.

``pool``: the pool under test on a target brought back to its baseline, with
no worker left from an earlier test.  After every test that used it, the INV
clauses are checked; a violation fails that test (not a later one).  An
adapter that raises NotApplicable makes the test a skip whose reason starts
with "not applicable" (reported as such, never as a pass).
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from conformance.adapters import NotApplicable, Profile, load_profile, make_adapter
from conformance.config import KitConfig
from conformance.suite.harness import SLOT_FREE_S, Pool
from conformance.targets import Target

_INSTALLED: set[str] = set()


@pytest.fixture(scope="session")
def profile(bgwc_config: KitConfig) -> Profile:
    return load_profile(bgwc_config.profile)


@pytest.fixture
def pool(pg_target: Target, profile: Profile) -> Pool:
    if pg_target.cluster_name not in _INSTALLED:
        pg_target.set_baseline(**profile.server)
    pg_target.ensure_baseline()
    p = Pool(pg_target, make_adapter(profile, pg_target), profile)
    if pg_target.cluster_name not in _INSTALLED:
        p.adapter.install()
        _INSTALLED.add(pg_target.cluster_name)
    p.wait_launcher()
    p.quiesce()
    pg_target.begin_test()
    return p


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    outcome = yield
    if outcome.excinfo is not None and isinstance(outcome.excinfo[1], NotApplicable):
        # the adapter cannot offer an operation: skipped with the reason, never a pass
        outcome.force_exception(pytest.skip.Exception(f"not applicable: {outcome.excinfo[1]}"))
        return
    pool = getattr(item, "funcargs", {}).get("pool")
    if pool is None or outcome.excinfo is not None:
        return
    try:
        _settle_then_check(pool)
    except AssertionError as exc:
        outcome.force_exception(exc)


def _settle_then_check(pool: Pool) -> None:
    if not pool.target.is_running():
        return
    last: list[str] = []

    def clean() -> bool:
        last[:] = pool.adapter.check() + pool.agreement()
        return not last

    try:
        pool.target.wait_until(clean, SLOT_FREE_S, what="pool invariants (INV-1, INV-2)")
    except AssertionError:
        raise AssertionError(f"INV-1/INV-2 violated after the test: {last}") from None
