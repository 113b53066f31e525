"""HOT: a pool on a hot standby (targets ``pgNN+standby``; not applicable on
a lone primary): a submit there is refused with the SQLSTATE the profile
declares, and starts nothing."""

from __future__ import annotations

import time

import psycopg
import pytest

from conformance.census import Census
from conformance.deadlines import SLOT_FREE_S, START_S
from conformance.figures import Figures
from conformance.suite.conftest import standby_at_rest, standby_of
from conformance.suite.pool_under_test import Pool


@pytest.mark.clause("HOT-1")
def test_submit_on_a_standby_is_refused(pool: Pool, figures: Figures, request: pytest.FixtureRequest) -> None:
    standby = standby_of(pool.target)
    assert pool.profile.pool is not None
    promised = pool.profile.pool.standby_submit_sqlstate
    if promised is None:
        pytest.skip("not applicable: the profile declares no standby_submit_sqlstate")
    census = standby_at_rest(standby, Census(pool.target, pool.profile), request.node.nodeid)
    worker = pool.profile.process(pool.profile.pool.worker or "")
    with standby.connect() as conn:
        asked = time.monotonic()
        with pytest.raises(psycopg.Error) as refused:
            pool.adapter.submit("sleep", {"ms": 60_000}, conn=conn)
        took = time.monotonic() - asked
    figures.add("HOT-1", "submit on the standby → refused", took, START_S)
    error = refused.value
    assert error.sqlstate == promised, (
        f"a submit on the standby failed with {error.sqlstate}, promised {promised}: {error}"
    )
    assert took <= START_S, f"the refusal took {took:.2f}s"
    most = census.hold(worker, SLOT_FREE_S)
    assert most == 0, f"{most} {worker.name} process(es) on the standby after a refused submit"
