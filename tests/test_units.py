"""Unit tests of the pieces that need no server: parsing, configuration, the CLI."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conformance.config import KitConfig
from conformance.errors import KitError
from conformance.images import Extension
from conformance.processes import parse_ps
from conformance.waiting import WaitTimeout, observed, wait_until
from conformance.workloads import Workload

STUB = Path(__file__).parent / "stub_ext"

PS = """\
  1     0 Ss   /usr/bin/tini -- sleep infinity
 10     1 Ss   /usr/lib/postgresql/17/bin/postgres -D /var/lib/bgwc/data -c cluster_name=bgwc_x
 11    10 Ss   postgres: bgwc_x: checkpointer
 12    10 Ss   postgres: bgwc_x: bgw_pool launcher
 13    10 Ss   postgres: bgwc_x: postgres postgres 172.17.0.1(4455) idle
 14    10 Ss   postgres: bgwc_x: bgw_pool worker slot 2 gen 7
 15    10 Zs   [postgres] <defunct>
 16     1 Ss   postgres: bgwc_other: checkpointer
"""


def test_parse_ps_keeps_this_clusters_live_processes() -> None:
    procs = {p.pid: p for p in parse_ps(PS, "bgwc_x")}
    assert sorted(procs) == [10, 11, 12, 13, 14]
    assert procs[10].backend_type == "postmaster"
    assert procs[11].backend_type == "checkpointer"
    assert procs[12].backend_type == "bgw_pool launcher"
    assert procs[13].backend_type == "client backend"
    assert procs[14].backend_type.startswith("bgw_pool worker")
    assert procs[14].ppid == 10


def _values(**over: str) -> dict[str, str]:
    base = {
        "target": "pg17",
        "extension": str(STUB),
        "library": "",
        "make_args": "",
        "base": "",
        "pg_config": "pg_config",
        "profile": "bgw_pool",
        "seed": "",
    }
    return {**base, **over}


def test_config_rejects_unknown_targets_and_bad_seeds() -> None:
    with pytest.raises(KitError, match="pg14"):
        KitConfig.from_values(_values(target="pg14"))
    with pytest.raises(KitError, match="seed"):
        KitConfig.from_values(_values(seed="abc"))
    kit = KitConfig.from_values(_values(target="pg13, local", seed="5"))
    assert kit.targets == ("pg13", "local") and kit.seed == 5


def test_extension_hash_follows_sources_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "Makefile").write_text("MODULES = x\n")
    (tmp_path / "x.control").write_text("default_version = '1.0'\n")
    (tmp_path / "x.c").write_text("int x;\n")
    ext = Extension.from_dir(tmp_path)
    before = ext.source_hash()
    (tmp_path / "x.o").write_bytes(b"\0build artifact")
    assert ext.source_hash() == before
    (tmp_path / "x.c").write_text("int y;\n")
    assert ext.source_hash() != before
    assert (ext.name, ext.library) == ("x", "x")


def test_extension_dir_must_be_pgxs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(KitError, match="not a PGXS extension"):
        Extension.from_dir(tmp_path)


def test_wait_until_returns_value_and_times_out_with_last_value() -> None:
    values = iter([0, 0, 7])
    assert wait_until(lambda: next(values), 5) == 7
    with pytest.raises(WaitTimeout, match=r"(?s)last observed: ValueError\('nope'\).*ctx"):
        wait_until(lambda: (_ for _ in ()).throw(ValueError("nope")), 0.2, context=lambda: "ctx")


def test_observers_are_told_of_every_wait_that_ends_with_what_it_took() -> None:
    seen: list[tuple[str, float, float]] = []
    with observed(lambda what, took, timeout: seen.append((what, took, timeout))):
        start = time.monotonic()
        wait_until(lambda: time.monotonic() - start > 0.2, 5, what="a fifth of a second")
        with pytest.raises(WaitTimeout):
            wait_until(lambda: False, 0.1, what="never")
        # a wait that takes 0.2 s by design: told what it took beyond that, against what is left
        start = time.monotonic()
        wait_until(lambda: time.monotonic() - start > 0.2, 5, what="by design", expected=0.2)
    wait_until(lambda: True, 1, what="unobserved")
    assert [(w, t) for w, _, t in seen] == [
        ("a fifth of a second", 5),
        ("never", 0.1),
        ("by design, beyond the 0.2 s it takes by design", 4.8),
    ]
    assert 0.2 < seen[0][1] < 5 and seen[1][1] >= 0.1 and 0 <= seen[2][1] < 0.2


def test_workload_gives_steps_examples_and_seeds() -> None:
    for w in (Workload.load(), Workload.load(table="churn")):
        assert w.steps >= 5 and w.examples >= 1 and len(set(w.ci_seeds)) == len(w.ci_seeds) >= 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["images", "build", "--pg", "12"], "supported majors"),
        (["images", "build", "--pg", "14"], "Debian never shipped PostgreSQL 14; name an apt source"),
        (["images", "build", "--pg", "x"], "give majors"),
        (["images", "build", "--pg", "17", "--extension", "/nonexistent"], "no such directory"),
        (["run", "--extension", "/nonexistent"], "no such directory"),
        (["run", "--extension", "/tmp"], "not a PGXS extension directory"),
        (["run", "--profile", "nosuch"], "no extension profile 'nosuch'"),
        (["run", "--target", "local", "--package", "postgresql-{major}-cron"], "container targets only"),
    ],
)
def test_cli_bad_input_is_one_line_and_nonzero(argv: list[str], message: str) -> None:
    res = subprocess.run([sys.executable, "-m", "conformance.cli", *argv], capture_output=True, text=True)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bgw-conformance: ") and message in lines[0], res.stderr


def _hold_lock(name: str, started: Any) -> None:
    from conformance.locks import host_lock

    with host_lock(name, 10, "holding it for a test"):
        started.set()
        signal.pause()  # until killed


def test_host_lock_is_exclusive_across_processes_and_freed_when_its_holder_dies() -> None:
    import multiprocessing

    from conformance.locks import host_lock

    name = f"bgwc-test-{os.getpid()}"
    started = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(name, started))
    holder.start()
    try:
        assert started.wait(10)
        with pytest.raises(KitError, match=r"waited 0\.6s for another bgw-conformance process building x"):
            with host_lock(name, 0.6, "building x"):
                pass
        holder.kill()  # SIGKILL: the kernel frees the name
        holder.join(10)
        with host_lock(name, 5, "after its holder died"):
            pass
    finally:
        holder.kill()
        holder.join(10)


def test_a_failing_sequence_is_shrunk_and_printed_as_a_script() -> None:
    """RAND's reading of hypothesis' failure: the minimal script of steps, for a
    machine that breaks once a counter reaches 3 (no server needed)."""
    from hypothesis import settings
    from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

    from conformance.suite.faults.test_randomized import minimal_sequences

    class Counter(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        @rule()
        def up(self) -> None:
            self.n += 1

        @rule()
        def noop(self) -> None:
            pass

        @invariant()
        def below_three(self) -> None:
            assert self.n < 3, f"n = {self.n}"

    with pytest.raises(Exception) as err:
        run_state_machine_as_test(Counter, settings=settings(max_examples=200, database=None, deadline=None))
    [found] = minimal_sequences(err.value)
    assert found["error"] == "AssertionError: n = 3"
    steps = [ln.strip() for ln in found["script"].splitlines()]
    assert [s for s in steps if s.startswith("state.up")] == ["state.up()"] * 3  # shrunk: no noop left
    assert "state.noop()" not in steps and steps[0] == "state = Counter()" and steps[-1] == "state.teardown()"


def test_a_test_past_its_budget_is_stopped_naming_its_last_wait() -> None:
    """The budget interrupts a wait that would otherwise run on (a wait swallows
    Exception, never HarnessTimeout), names that wait, and is disarmed after."""
    from conformance.errors import HarnessTimeout
    from conformance.suite.conftest import _Budget

    t0 = time.monotonic()
    with pytest.raises(
        HarnessTimeout, match=r"outlived its budget of 0.3s; last waiting for: a promise never kept"
    ):
        with _Budget(0.3, "test_x"):
            wait_until(lambda: False, 30, what="a promise never kept")
    assert time.monotonic() - t0 < 2
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_budgets_follow_the_clauses_deadlines_and_the_profile() -> None:
    """A budget grows with what its clause waits for in this profile: the
    kinds it judges, their restart intervals, a stays-down watch."""
    from dataclasses import replace

    from conformance.deadlines import STAYS_DOWN_S
    from conformance.profile import load_profile
    from conformance.suite import budgets

    pool = load_profile("bgw_pool")
    stop = budgets.budget_s(["STOP-1"], pool)
    launcher = pool.processes[0]
    slower = replace(
        pool, processes=(replace(launcher, restart_s=launcher.restart_s + 60), *pool.processes[1:])
    )
    assert budgets.budget_s(["STOP-1"], slower) == stop + 60
    down = replace(pool, processes=(replace(launcher, after_exit="stays-down"), *pool.processes[1:]))
    assert budgets.budget_s(["STOP-1"], down) == stop + STAYS_DOWN_S
    assert budgets.budget_s(["DB-1", "DB-3"], pool) == budgets.budget_s(["DB-1"], pool)
    assert budgets.budget_s(["JOB-1"], pool) == budgets.POOL_TEST_S + budgets.LADDER_S + budgets.MARGIN_S


def test_a_run_reads_its_profile_and_expectations_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI validates the config and hands it to pytest as an object: the
    profile and the expectations file are each read once per run."""
    import conformance.config as config_module
    from conformance import cli

    reads = {"profile": 0, "expectations": 0}
    real_profile, real_load = config_module.load_profile, config_module.load

    def profile(name: str):  # type: ignore[no-untyped-def]
        reads["profile"] += 1
        return real_profile(name)

    def expectations(path: Path):  # type: ignore[no-untyped-def]
        reads["expectations"] += 1
        return real_load(path)

    monkeypatch.setattr(config_module, "load_profile", profile)
    monkeypatch.setattr(config_module, "load", expectations)
    exp = tmp_path / "x.expectations.toml"
    exp.write_text("# nothing expected\n")
    argv = [
        "verify",
        "--repeat",
        "2",
        "--target",
        "local",
        "--expectations",
        str(exp),
        "--reports",
        str(tmp_path),
    ]
    code = cli.main([*argv, "-k", "no_test_has_this_name"])
    assert code == 2  # no test selected: the harness says so
    assert reads == {"profile": 1, "expectations": 1}, reads


def test_target_names_with_a_standby_parse() -> None:
    from conformance.errors import KitError
    from conformance.targets.spec import TargetSpec

    spec = TargetSpec.parse("pg17+standby")
    assert (spec.major, spec.topology, spec.has_standby, spec.in_container) == (
        17,
        "primary+standby",
        True,
        True,
    )
    assert not TargetSpec.parse("pg17").has_standby
    for bad in ("pg17+replica", "local+standby", "pg12+standby", "pg17+"):
        with pytest.raises(KitError, match="pgNN\\+standby"):
            TargetSpec.parse(bad)


def test_profile_roles_and_promotion_defaults(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from conformance.profile import ProfileError, parse_profile

    data: dict[str, Any] = {"name": "p", "tiers": ["bgworker"]}
    data["process"] = [
        {"name": "a", "title": "a"},
        {"name": "b", "title": "b", "roles": ["standby"]},
        {"name": "c", "title": "c", "roles": ["primary", "standby"]},
    ]
    p = parse_profile(tmp_path / "p.toml", data)
    assert [(s.roles, s.after_promotion) for s in p.processes] == [
        (("primary",), "starts"),
        (("standby",), "stops"),
        (("primary", "standby"), "keeps"),
    ]
    data["process"] = [{"name": "a", "title": "a", "roles": ["witness"]}]
    with pytest.raises(ProfileError, match="roles"):
        parse_profile(tmp_path / "p.toml", data)
    data["process"] = [{"name": "a", "title": "a", "after_promotion": "keeps"}]
    with pytest.raises(ProfileError, match="after_promotion"):
        parse_profile(tmp_path / "p.toml", data)


def test_profile_progress_and_reload(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from conformance.profile import PROGRESS_WITHIN_S, RELOAD_WITHIN_S, ProfileError, parse_profile

    base: dict[str, Any] = {"name": "p", "tiers": ["bgworker"], "process": [{"name": "a", "title": "a"}]}
    p = parse_profile(tmp_path / "p.toml", base)
    assert p.progress is None and p.reload is None  # neither declared: PROGRESS-1, RELOAD-1 not applicable
    p = parse_profile(
        tmp_path / "p.toml",
        {
            **base,
            "progress": {"sql": "SELECT zoo_progress()"},
            "reload": {"setting": "zoo.naptime", "value": 250, "sql": "SELECT zoo_naptime_seen()"},
        },
    )
    assert p.progress is not None and p.reload is not None
    assert (p.progress.database, p.progress.within_s) == ("postgres", PROGRESS_WITHIN_S)
    assert (p.reload.value, p.reload.shows, p.reload.within_s) == ("250", "250", RELOAD_WITHIN_S)
    p = parse_profile(
        tmp_path / "p.toml",
        {
            **base,
            "progress": {"sql": "SELECT 1", "database": "db", "within_s": 3, "start": ["A"], "stop": ["B"]},
            "reload": {
                "setting": "x.y",
                "value": True,
                "sql": "SELECT 1",
                "expect": "t",
                "within_s": 2.5,
                "start": ["C"],
                "stop": ["D"],
            },
        },
    )
    assert (p.progress.database, p.progress.within_s) == ("db", 3.0)
    assert (p.progress.start, p.progress.stop) == (("A",), ("B",))
    assert (p.reload.start, p.reload.stop) == (("C",), ("D",))
    assert (p.reload.value, p.reload.shows, p.reload.within_s) == ("true", "t", 2.5)
    for bad, key in (
        ({"progress": {}}, "progress.sql"),
        ({"progress": {"sql": " "}}, "progress.sql"),
        ({"progress": {"sql": "SELECT 1", "within_s": 0}}, "progress.within_s"),
        ({"progress": {"sql": "SELECT 1", "within_s": "10"}}, "progress.within_s"),
        ({"progress": {"sql": "SELECT 1", "every": 1}}, "progress.every"),
        ({"progress": "SELECT 1"}, "progress"),
        ({"progress": {"sql": "SELECT 1", "start": "A"}}, "progress.start"),
        ({"reload": {"value": "1", "sql": "SELECT 1"}}, "reload.setting"),
        ({"reload": {"setting": "x.y", "sql": "SELECT 1"}}, "reload.value"),
        ({"reload": {"setting": "x.y", "value": "1"}}, "reload.sql"),
        ({"reload": {"setting": "x y; --", "value": "1", "sql": "SELECT 1"}}, "reload.setting"),
        ({"reload": {"setting": "x.y", "value": [1], "sql": "SELECT 1"}}, "reload.value"),
        ({"reload": {"setting": "x.y", "value": "1", "sql": "SELECT 1", "within_s": -1}}, "reload.within_s"),
        ({"reload": {"setting": "x.y", "value": "1", "sql": "SELECT 1", "expect": 1}}, "reload.expect"),
    ):
        with pytest.raises(ProfileError, match=f"'{re.escape(key)}'") as err:
            parse_profile(tmp_path / "p.toml", {**base, **bad})
        assert len(str(err.value).splitlines()) == 1, err.value


def test_profile_database_setting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """[extension] database_setting: a setting's name, or nothing (DB-4, DB-5 not applicable)."""
    from conformance.profile import ProfileError, parse_profile

    data: dict[str, Any] = {"name": "p", "tiers": ["bgworker"], "process": [{"name": "a", "title": "a"}]}
    assert parse_profile(tmp_path / "p.toml", data).database_setting is None
    data["extension"] = {"database_setting": "cron.database_name"}
    assert parse_profile(tmp_path / "p.toml", data).database_setting == "cron.database_name"
    for bad, problem in (
        ({"database_setting": "cron database"}, "not a setting's name"),
        ({"database_setting": ""}, "not a setting's name"),
        ({"database_setting": 3}, "expected str"),
        ({"database": "postgres"}, "unknown key"),
        ("cron.database_name", "expected a table"),
    ):
        data["extension"] = bad
        with pytest.raises(ProfileError, match=problem) as exc:
            parse_profile(tmp_path / "p.toml", data)
        assert "\n" not in str(exc.value) and "extension" in str(exc.value)
