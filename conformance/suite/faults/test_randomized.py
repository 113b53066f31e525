"""RAND: random sequences of pool operations checked against a model of the
pool, step by step, with hypothesis' stateful testing.

Each CI seed (fixtures/workloads/random_ops.toml) drives ``examples``
sequences of up to ``steps`` operations; ``--bgwc-seed N`` replays one seed.
RAND-1's sequences each start on a freshly restarted server; RAND-2's
(catalog churn in several sessions at once, ``churn.py``) on a pool whose
jobs were stopped and whose roles and databases were reset.  A sequence that
breaks the model is shrunk to a minimal one (hypothesis gives shrinking at
most SHRINK_S, 5 minutes, which the test's budget counts), which the failure
prints as a script of steps, after the command that replays it.
Faker makes the data the jobs carry (their error messages).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
import pytest
from faker import Faker
from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import engine
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from conformance.adapters import Handle
from conformance.config import KitConfig
from conformance.deadlines import CRASH_RECOVERY_S, SHRINK_S, SLOT_FREE_S
from conformance.plugin import CONFIG_KEY
from conformance.suite.faults.churn import NAMES, SEEN, TENANTS, ChurnMachine
from conformance.suite.pool_under_test import LONG_MS, Pool
from conformance.workloads import Workload

WORKLOAD = Workload.load()
CHURN = Workload.load(table="churn")
ANY = st.integers(min_value=0, max_value=10_000)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    kit: KitConfig = metafunc.config.stash[CONFIG_KEY]
    for name, workload in (("seed_", WORKLOAD), ("churn_seed", CHURN)):
        if name in metafunc.fixturenames:
            seeds = [kit.seed] if kit.seed is not None else list(workload.ci_seeds)
            metafunc.parametrize(name, seeds, ids=[f"seed{s}" for s in seeds])


@dataclass
class Model:
    """What the pool must hold: the live handles, and the ones that must end."""

    capacity: int
    live: dict[int, Handle] = field(default_factory=dict)  # slot -> handle
    ending: list[Handle] = field(default_factory=list)
    dead: list[Handle] = field(default_factory=list)

    def full(self) -> bool:
        return len(self.live) + len(self.ending) >= self.capacity


class PoolMachine(RuleBasedStateMachine):
    """One sequence: rules are the pool's operations, the invariant is that
    the pool (and the OS) agree with the model after every step."""

    def __init__(self, pool: Pool, sequences: list[list[str]]) -> None:
        super().__init__()
        self.pool = pool
        self.steps: list[str] = []  # what ran, as the falsifying script would say it
        sequences.append(self.steps)
        # every sequence starts from a freshly started pool: what one sequence
        # did (or broke) cannot change the next, so a failure replays and shrinks
        pool.target.restart("fast")
        pool.wait_fresh(CRASH_RECOVERY_S)
        self.model = Model(pool.configured_capacity())

    def _submit_long(self) -> None:
        h = self.pool.adapter.submit("sleep", {"ms": LONG_MS})
        assert h.slot not in self.model.live, f"slot {h.slot} handed out twice: {h}"
        self.model.live[h.slot] = h

    @precondition(lambda self: not self.model.full())
    @rule()
    def submit_sleep(self) -> None:
        self.steps.append("submit_sleep()")
        self._submit_long()

    @precondition(lambda self: not self.model.full())
    @rule(kind=st.sampled_from(["exit", "exit_at_once", "error"]), data=ANY)
    def submit_short(self, kind: str, data: int) -> None:
        self.steps.append(f"submit_short(kind={kind!r}, data={data})")
        fake = Faker()
        fake.seed_instance(data)
        args = {"exit": {"code": 0}, "exit_at_once": {}, "error": {"message": fake.sentence()}}[kind]
        self.model.ending.append(self.pool.adapter.submit(kind, args))

    @rule()
    def exhaust(self) -> None:
        """Fill the pool; one more submit must be refused with 53000."""
        self.steps.append("exhaust()")
        while not self.model.full():
            self._submit_long()
        with pytest.raises(psycopg.Error) as err:
            self.pool.adapter.submit("sleep", {"ms": LONG_MS})
        assert err.value.sqlstate == "53000", err.value

    @precondition(lambda self: bool(self.model.live))
    @rule(n=ANY)
    def terminate(self, n: int) -> None:
        self.steps.append(f"terminate(n={n})")
        h = self.model.live.pop(sorted(self.model.live)[n % len(self.model.live)])
        assert self.pool.adapter.terminate(h) is True, f"terminate({h}) of a live job"
        self.model.ending.append(h)

    @precondition(lambda self: bool(self.model.dead))
    @rule(n=ANY)
    def terminate_stale(self, n: int) -> None:
        self.steps.append(f"terminate_stale(n={n})")
        h = self.model.dead[n % len(self.model.dead)]
        assert self.pool.adapter.terminate(h) is False, f"terminate({h}) of a handle whose job ended"

    @precondition(lambda self: bool(self.model.live))
    @rule(n=ANY)
    def crash(self, n: int) -> None:
        """SIGKILL of a worker: a crash-restart, after which the pool is fresh."""
        self.steps.append(f"crash(n={n})")
        launcher = self.pool.adapter.launcher_pid()
        victim = self.model.live[sorted(self.model.live)[n % len(self.model.live)]]
        self.pool.target.kill(victim.os_pid, signal.SIGKILL)
        self.pool.wait_fresh(CRASH_RECOVERY_S, not_launcher=launcher)
        self.model.dead += list(self.model.live.values()) + self.model.ending
        self.model.live.clear()
        self.model.ending.clear()

    @invariant()
    def pool_agrees_with_model(self) -> None:
        pool, model = self.pool, self.model
        for h in model.ending:
            pool.wait_freed(h, SLOT_FREE_S)
        model.dead += model.ending
        model.ending.clear()
        busy = {s.slot: (s.generation, s.pid) for s in pool.adapter.slots() if s.state != "free"}
        expected = {n: (h.generation, h.pid) for n, h in model.live.items()}
        assert busy == expected, f"pool {busy} != model {expected}"
        assert pool.adapter.check() == []
        pool.wait_agreement(SLOT_FREE_S)

    def teardown(self) -> None:
        if not self.pool.target.is_running():
            return
        for h in list(self.model.live.values()):
            assert self.pool.adapter.terminate(h) is True, f"terminate({h}) at the end"
            self.model.ending.append(h)
        self.model.live.clear()
        self.pool_agrees_with_model()


def replay_command(
    kit: KitConfig, target: str, seed_: int, test: str = "test_random_sequences_agree_with_model"
) -> str:
    """The command that runs this seed's sequences again (and shrinks a failure the same way)."""
    inputs = f" --profile {kit.profile.name}" if kit.profile.name != "bgw_pool" else ""
    return f"bgw-conformance run --target {target}{inputs} --seed {seed_} -- -k {test}"


@pytest.mark.clause("RAND-1")
def test_random_sequences_agree_with_model(
    pool: Pool, seed_: int, bgwc_config: KitConfig, request: pytest.FixtureRequest
) -> None:
    replay = replay_command(bgwc_config, pool.target.name, seed_)
    print(f"RAND-1 seed={seed_}; replay: {replay}")
    request.node.user_properties += [("seed", seed_), ("replay", replay)]

    sequences: list[list[str]] = []

    def machine() -> PoolMachine:
        return PoolMachine(pool, sequences)

    run_sequences(machine, WORKLOAD, seed_, replay, request, sequences)


@pytest.mark.clause("RAND-2")
def test_catalog_churn_agrees_with_model(
    pool: Pool, churn_seed: int, bgwc_config: KitConfig, request: pytest.FixtureRequest
) -> None:
    replay = replay_command(bgwc_config, pool.target.name, churn_seed, "test_catalog_churn_agrees_with_model")
    print(f"RAND-2 seed={churn_seed}; replay: {replay}")
    request.node.user_properties += [("seed", churn_seed), ("replay", replay)]
    t = pool.target
    sequences: list[list[str]] = []
    tally: dict[str, int] = {}
    with pool.granted_roles(*TENANTS.values()):  # NotApplicable for a pool that cannot be granted
        pool.adapter.revoke_submit(TENANTS["a"])  # NotApplicable for one that cannot be taken back
        t.sql(f"DROP TABLE IF EXISTS {SEEN}", idempotent=True)
        t.sql(f"CREATE TABLE {SEEN} (tag text, cu text, su text, path text)")
        t.sql(f"GRANT INSERT ON {SEEN} TO PUBLIC")
        t0 = time.monotonic()
        try:
            run_sequences(
                lambda: ChurnMachine(pool, sequences, tally), CHURN, churn_seed, replay, request, sequences
            )
        finally:
            request.node.user_properties += [("ops", tally), ("took_s", round(time.monotonic() - t0, 1))]
            print(f"RAND-2 seed={churn_seed}: {tally} in {time.monotonic() - t0:.1f} s")
            if t.is_running():
                for name in NAMES:
                    t.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", idempotent=True)
                t.sql(f"DROP TABLE IF EXISTS {SEEN}", idempotent=True)


def run_sequences(
    machine: Callable[[], RuleBasedStateMachine],
    workload: Workload,
    seed_: int,
    replay: str,
    request: pytest.FixtureRequest,
    sequences: list[list[str]],
) -> None:
    """Run the seed's sequences; a failure is shrunk (for SHRINK_S at most), and
    reported as the minimal script(s)."""
    bound = engine.MAX_SHRINKING_SECONDS
    engine.MAX_SHRINKING_SECONDS = int(SHRINK_S)  # hypothesis' own bound, which the budget counts
    try:
        run_state_machine_as_test(
            seed(seed_)(machine),
            settings=settings(
                max_examples=workload.examples,
                stateful_step_count=workload.steps,
                deadline=None,
                database=None,
                phases=(Phase.generate, Phase.shrink),
                suppress_health_check=list(HealthCheck),
                print_blob=False,
            ),
        )
    except Exception as exc:  # a failure, or several distinct ones (ExceptionGroup), each shrunk
        found = minimal_sequences(exc)
        if not found:
            raise
        request.node.user_properties.append(("minimal_sequences", found))
        said = "\n\n".join(f"{f['error']}\n{f['script']}" for f in found)
        raise AssertionError(
            f"{len(found)} failing sequence(s), each shrunk to a minimal one; replay: {replay}\n\n{said}"
        ) from exc
    finally:
        engine.MAX_SHRINKING_SECONDS = bound
        request.node.user_properties.append(("sequences", sequences))


def minimal_sequences(exc: BaseException) -> list[dict[str, str]]:
    """Each failure hypothesis found, with the minimal script of steps it printed for it."""
    found = []
    for e in exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,):
        notes = "\n".join(getattr(e, "__notes__", []))
        start = notes.find("state = ")
        if start < 0:
            continue
        end = notes.find("state.teardown()", start)
        script = notes[start : end + len("state.teardown()")] if end >= 0 else notes[start:]
        first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        found.append({"error": f"{type(e).__name__}: {first}"[:300], "script": script})
    return found
