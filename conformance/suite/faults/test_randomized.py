"""RAND: seeded random sequences checked against a model of the pool."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

import psycopg
import pytest

from conformance.adapters import Handle
from conformance.config import KitConfig
from conformance.plugin import CONFIG_KEY
from conformance.suite.harness import CRASH_RECOVERY_S, LONG_MS, SLOT_FREE_S, Pool
from conformance.workloads import Workload

WORKLOAD = Workload.load()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "seed" in metafunc.fixturenames:
        kit: KitConfig = metafunc.config.stash[CONFIG_KEY]
        seeds = [kit.seed] if kit.seed is not None else list(WORKLOAD.ci_seeds)
        metafunc.parametrize("seed", seeds, ids=[f"seed{s}" for s in seeds])


@dataclass
class Model:
    """What the pool must hold: the live handles, and the ones that must end."""

    capacity: int
    live: dict[int, Handle] = field(default_factory=dict)  # slot -> handle
    ending: list[Handle] = field(default_factory=list)
    dead: list[Handle] = field(default_factory=list)

    def full(self) -> bool:
        return len(self.live) + len(self.ending) >= self.capacity


def _settle(pool: Pool, model: Model, step: str) -> None:
    for h in model.ending:
        pool.wait_freed(h, SLOT_FREE_S)
    model.dead += model.ending
    model.ending.clear()
    slots = {s.slot: s for s in pool.adapter.slots()}
    busy = {n: (s.generation, s.pid) for n, s in slots.items() if s.state != "free"}
    expected = {n: (h.generation, h.pid) for n, h in model.live.items()}
    assert busy == expected, f"after {step}: pool {busy} != model {expected}"
    assert pool.adapter.check() == [], step
    pool.target.wait_until(
        lambda: pool.agreement() == [], SLOT_FREE_S, what=f"pool/OS agreement after {step}"
    )


@pytest.mark.clause("RAND-1")
def test_random_sequence_agrees_with_model(pool: Pool, seed: int, request: pytest.FixtureRequest) -> None:
    print(f"RAND-1 seed={seed} (replay: --bgwc-seed {seed})")
    request.node.user_properties.append(("seed", seed))
    model = Model(pool.adapter.capacity())
    for i, (op, n) in enumerate(WORKLOAD.operations(seed)):
        step = f"step {i} {op} (seed {seed})"
        if (op in ("submit_sleep", "submit_short", "exhaust") and model.full()) or op == "exhaust":
            while not model.full():
                h = pool.adapter.submit("sleep", {"ms": LONG_MS})
                model.live[h.slot] = h
            with pytest.raises(psycopg.Error) as err:
                pool.adapter.submit("sleep", {"ms": LONG_MS})
            assert err.value.sqlstate == "53000", step
        elif op == "submit_sleep":
            h = pool.adapter.submit("sleep", {"ms": LONG_MS})
            assert h.slot not in model.live, step
            model.live[h.slot] = h
        elif op == "submit_short":
            kind, args = [("exit", {"code": 0}), ("exit_at_once", {}), ("error", {"message": "rand"})][n % 3]
            model.ending.append(pool.adapter.submit(kind, args))
        elif op == "terminate" and model.live:
            h = model.live.pop(sorted(model.live)[n % len(model.live)])
            assert pool.adapter.terminate(h) is True, step
            model.ending.append(h)
        elif op == "terminate_stale" and model.dead:
            h = model.dead[n % len(model.dead)]
            assert pool.adapter.terminate(h) is False, step
        elif op == "crash" and model.live:
            launcher = pool.adapter.launcher_pid()
            victim = model.live[sorted(model.live)[n % len(model.live)]]
            pool.target.kill(victim.os_pid, signal.SIGKILL)
            pool.wait_fresh(CRASH_RECOVERY_S, not_launcher=launcher)
            model.dead += list(model.live.values()) + model.ending
            model.live.clear()
            model.ending.clear()
        _settle(pool, model, step)
    for h in list(model.live.values()):
        assert pool.adapter.terminate(h) is True
        model.ending.append(h)
    model.live.clear()
    _settle(pool, model, "final cleanup")
