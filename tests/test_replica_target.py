"""The primary+standby topology on every container target: a real base
backup, real streaming, a real promotion, and nothing left behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conformance import engine
from conformance.config import KitConfig
from conformance.targets import ContainerTarget, StandbyTarget, Target, TargetSpec, make_target


@pytest.fixture(scope="module")
def primary(bgwc_config: KitConfig) -> Iterator[Target]:
    spec = TargetSpec.parse(bgwc_config.targets[0])
    if not spec.in_container:
        pytest.skip("not applicable: a standby runs beside a container target only")
    target = make_target(f"{spec.name}+standby", bgwc_config)
    try:
        yield target
    finally:
        target.close()


def _standby(primary: Target) -> StandbyTarget:
    assert isinstance(primary.standby, StandbyTarget)
    return primary.standby


def test_standby_streams_and_replays_what_the_primary_commits(primary: Target) -> None:
    standby = _standby(primary)
    assert primary.topology == "primary+standby" and standby.topology == "standby"
    assert standby.in_recovery()
    names = {r[0] for r in primary.sql("SELECT application_name FROM pg_stat_replication")}
    assert standby.cluster_name in names, names
    with primary.connect() as conn:
        conn.execute("SET synchronous_commit = on")  # flushed when it returns
        conn.execute("CREATE TABLE IF NOT EXISTS bgwc_replicated (v text)")
        conn.execute("INSERT INTO bgwc_replicated VALUES ('seen')")
    standby.wait_caught_up()
    assert standby.scalar("SELECT count(*) FROM bgwc_replicated WHERE v = 'seen'") >= 1


def test_standby_follows_again_after_a_primary_restart(primary: Target) -> None:
    standby = _standby(primary)
    primary.restart()
    generation = standby.generation
    standby.follow("the test restarted the primary")
    assert standby.generation == generation, "a restart of the primary needs no rebuild"
    assert standby.streaming()


def test_promoted_standby_is_rebuilt_by_follow(primary: Target) -> None:
    standby = _standby(primary)
    standby.promote()
    assert not standby.in_recovery()
    generation = standby.generation
    standby.follow("the test promoted it")
    assert standby.generation == generation + 1
    assert standby.in_recovery() and standby.streaming()
    assert any(f[1] == "rebuild" for f in standby.faults), standby.faults


def test_close_removes_both_containers_and_the_network(bgwc_config: KitConfig) -> None:
    spec = TargetSpec.parse(bgwc_config.targets[0])
    if not spec.in_container:
        pytest.skip("not applicable: a standby runs beside a container target only")
    target = make_target(f"{spec.name}+standby", bgwc_config)
    assert isinstance(target, ContainerTarget) and target.network
    names = [target.cluster_name, _standby(target).cluster_name]
    target.close()
    left = [c.name for c in engine.client().containers.list(all=True) if c.name in names]
    assert left == []
    assert not engine.client().networks.list(names=[target.network])
