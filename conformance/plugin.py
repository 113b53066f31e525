"""The pytest plugin (entry point ``pytest11``): options, targets as
session-scoped fixtures, cleanup of containers and servers.

Fixtures:
- ``bgwc_config``: the KitConfig.
- ``pg_target``: a started Target, one per ``--bgwc-target`` entry; tests that
  use it are run once per target.  Session-scoped: one server per target.
- ``target``: ``pg_target`` brought back to its baseline (running, no
  configuration overrides) before the test.
"""

from __future__ import annotations

from collections.abc import Iterator

import docker.errors
import pytest

from conformance import engine, expectations
from conformance.config import OPTIONS, KitConfig
from conformance.errors import HarnessError, HarnessTimeout, KitError, NotReached, ProfileMismatch
from conformance.results import ESCALATIONS, JUDGED, LIVE, LOG_EXCERPT_CHARS, SERVERS, ResultsRecorder
from conformance.targets import Target, make_target

CONFIG_KEY = pytest.StashKey[KitConfig]()
#: the parameter that numbers the repetitions of a test (``--bgwc-repeat``)
REPEAT = "bgwc_repeat"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bgw-conformance")
    for name, (default, help_text) in OPTIONS.items():
        flag = "--bgwc-" + name.replace("_", "-")
        group.addoption(flag, dest=f"bgwc_{name}", default=None, help=help_text)
        parser.addini(f"bgwc_{name}", help_text, default=default)

    group.addoption(
        "--bgwc-results",
        dest="bgwc_results",
        default=None,
        help="write results.json (per-test records and run metadata) into this directory",
    )
    group.addoption(
        "--bgwc-repeat",
        dest="bgwc_repeat",
        type=int,
        default=1,
        help="run each selected test N times in a row per target (bgw-conformance verify); "
        "a test that both passed and failed is flaky",
    )
    group.addoption(
        "--bgwc-clauses",
        dest="bgwc_clauses",
        default=None,
        help="run only the tests of these clauses or families (comma-separated, e.g. RACE-6,SEC-1,REPLICA)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "clause(*ids): conformance clauses a test checks")


def clauses_of(item: pytest.Item) -> list[str]:
    return [c for m in item.iter_markers("clause") for c in m.args]


def target_of(item: pytest.Item) -> str | None:
    """The target a test runs on (its ``pg_target`` parameter), if it uses one."""
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("pg_target") if callspec is not None else None


def is_harness_error(call: pytest.CallInfo[None]) -> bool:
    """The harness broke: no engine (anywhere), a server or image that a test's
    fixtures could not bring up, a test that outlived its budget, or a
    profile that contradicts what the extension does.  A server that fails
    to start again inside a test is the extension's doing, and judged as a failure."""
    excinfo = call.excinfo
    if excinfo is None:
        return False

    if excinfo.errisinstance((docker.errors.DockerException, HarnessTimeout, ProfileMismatch)):
        return True
    return call.when == "setup" and excinfo.errisinstance(HarnessError)


def is_not_reached(call: pytest.CallInfo[None]) -> bool:
    """The test never ran: its server could not be restored after an earlier test."""
    return call.excinfo is not None and call.excinfo.errisinstance(NotReached)


def repeat_of(item: pytest.Item) -> int:
    """Which repetition of its test an item is (0 when the run does not repeat)."""
    callspec = getattr(item, "callspec", None)
    return int(callspec.params.get(REPEAT, 0)) if callspec is not None else 0


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if (config.getoption("bgwc_repeat") or 1) > 1:  # N consecutive runs of the selection, per target
        order = {t: i for i, t in enumerate(dict.fromkeys(target_of(i) or "" for i in items))}
        items.sort(key=lambda i: (order[target_of(i) or ""], repeat_of(i)))
    wanted = {c.strip() for c in (config.getoption("bgwc_clauses") or "").split(",") if c.strip()}
    if wanted:
        keep = [i for i in items if wanted & {x for c in clauses_of(i) for x in (c, c.split("-")[0])}]
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep
    kit = config.stash.get(CONFIG_KEY, None)
    if kit is None or kit.expectations is None:
        return
    for item in items:  # tests expected to be skipped (they hang or break the server there) never run
        target = target_of(item)
        tid = expectations.test_id(item.nodeid, target)
        entries = expectations.entries_for(kit.expectations, tid, target, None)
        skip = next(
            (e for e in entries if e.outcome == "skip" and (e.test == tid or e.clause in clauses_of(item))),
            None,
        )
        if skip is not None:
            item.add_marker(pytest.mark.skip(reason=f"expected skip: {skip.reason}"))


def _live(item: pytest.Item, call: pytest.CallInfo[None]) -> dict[str, object]:
    """What the test's record needs from its live server and from the call,
    as plain data: the results read this, never a server."""
    live: dict[str, object] = {
        "clauses": clauses_of(item),
        "harness_error": (
            f"{call.excinfo.typename}: {str(call.excinfo.value)[:1000]}"
            if call.excinfo is not None and is_harness_error(call)
            else None
        ),
        "not_reached": is_not_reached(call),
    }
    target = getattr(item, "funcargs", {}).get("pg_target")
    if not isinstance(target, Target):
        return live
    live["target"] = target.name
    servers = item.session.stash.setdefault(SERVERS, {})
    if target.name not in servers and call.when == "call":
        servers[target.name] = target.describe()
    if call.when in ("call", "teardown"):
        live["log_excerpt"] = _excerpt(target)
        faults = [{"t": t, "what": w, "detail": d} for t, w, d in target.faults]
        if target.standby is not None and target.standby.current_test == item.nodeid:
            # a test of the REPLICA family: the standby's log and faults too
            live["log_excerpt"] = (
                f"{live['log_excerpt']}\n--- {target.standby.name} ---\n{_excerpt(target.standby)}"
            )
            faults += [{"t": t, "what": w, "detail": f"standby: {d}"} for t, w, d in target.standby.faults]
        live["faults"] = faults
        live["started_at"] = target.test_started_wall
    return live


def _excerpt(target: Target) -> str:
    """The server's log since its test began (its end, if long)."""
    try:
        return target.log_since(target.test_log_offset)[-LOG_EXCERPT_CHARS:]
    except Exception as exc:  # noqa: BLE001 - the server may be gone
        return f"(log unavailable: {exc})"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Hands the record its live data (``LIVE``) and judges the test against
    the expectations, once (``JUDGED``).  An expected failure is reported as
    pytest reports an xfail (skipped, with its reason: so it shows in
    junit.xml); a test expected to fail that passes fails.  The outermost
    wrapper: results.json records the outcome as it was."""
    item.stash[LIVE] = _live(item, call)
    report: pytest.TestReport = yield
    kit = item.config.stash.get(CONFIG_KEY, None)
    if kit is None or report.skipped or is_harness_error(call):
        return report
    if report.failed:
        outcome = "fail" if report.when == "call" else "error"
    elif report.when == "call":
        outcome = "pass"
    else:
        return report
    target = target_of(item)
    server = getattr(item, "funcargs", {}).get("pg_target")
    own = dict(item.user_properties).get("clause_outcomes")
    j = expectations.judge(
        kit.expectations,
        expectations.test_id(item.nodeid, target),
        target,
        getattr(server, "major", None),
        outcome,
        clauses_of(item),
        own if isinstance(own, dict) else None,
    )
    item.stash[JUDGED] = j
    if report.failed and j.entry is not None and j.status in ("expected-fail", "flaky"):
        report.outcome = "skipped"
        report.wasxfail = f"{j.status}: {j.entry.reason}" + (f" ({j.entry.link})" if j.entry.link else "")
    elif j.status == "unexpected-pass" and j.entry is not None:
        report.outcome = "failed"
        report.longrepr = (
            f"[unexpected pass] expected to fail on {target}: {j.entry.reason}; "
            "update the expectations file (bgw-conformance expectations update)"
        )
    return report


def _read_config(config: pytest.Config) -> KitConfig:
    values = {}
    for name in OPTIONS:
        cli = config.getoption(f"bgwc_{name}")
        values[name] = cli if cli is not None else config.getini(f"bgwc_{name}")
    try:
        return KitConfig.from_values(values)
    except KitError as exc:
        raise pytest.UsageError(str(exc)) from exc


class HandOff:
    """The kit's validated config handed to pytest as an object (the CLI's
    way: ``pytest.main(argv, plugins=[HandOff(kit)])``), so that nothing is
    read or parsed twice; plain ``pytest`` reads the ``--bgwc-*`` options instead."""

    def __init__(self, kit: KitConfig) -> None:
        self.kit = kit

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        config.stash[CONFIG_KEY] = self.kit


def pytest_sessionstart(session: pytest.Session) -> None:
    kit = session.config.stash.get(CONFIG_KEY, None) or _read_config(session.config)
    session.config.stash[CONFIG_KEY] = kit
    from pathlib import Path

    out = session.config.getoption("bgwc_results")
    session.config.pluginmanager.register(ResultsRecorder(Path(out) if out else None, kit), "bgwc-results")
    if any(spec.in_container for spec in kit.specs):
        engine.client()
        engine.sweep_stale()


@pytest.fixture(scope="session")
def bgwc_config(pytestconfig: pytest.Config) -> KitConfig:
    return pytestconfig.stash[CONFIG_KEY]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "pg_target" in metafunc.fixturenames:
        kit = metafunc.config.stash.get(CONFIG_KEY, None) or _read_config(metafunc.config)
        metafunc.parametrize("pg_target", kit.targets, indirect=True, scope="session")
    repeat = metafunc.config.getoption("bgwc_repeat") or 1
    if repeat > 1:
        metafunc.fixturenames.append(REPEAT)
        metafunc.parametrize(REPEAT, range(1, repeat + 1), ids=[f"repeat{i}" for i in range(1, repeat + 1)])


@pytest.fixture(scope="session")
def pg_target(request: pytest.FixtureRequest, bgwc_config: KitConfig) -> Iterator[Target]:
    target = make_target(request.param, bgwc_config)
    try:
        yield target
    finally:
        # the escalation ladder's steps, as data, for the records of the tests that needed them
        request.session.stash.setdefault(ESCALATIONS, []).extend(e.as_record() for e in target.escalations)
        target.close()


@pytest.fixture
def bgwc_repeat(request: pytest.FixtureRequest) -> int:
    """Which repetition this is (1..N) under ``--bgwc-repeat N``."""
    return int(getattr(request, "param", 0))


@pytest.fixture
def target(pg_target: Target) -> Target:
    pg_target.ensure_baseline()
    pg_target.begin_test()
    return pg_target
