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

import pytest

from conformance import engine
from conformance.config import OPTIONS, KitConfig
from conformance.errors import KitError
from conformance.targets import ContainerTarget, LocalTarget, Target

CONFIG_KEY = pytest.StashKey[KitConfig]()


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
        "--bgwc-clauses",
        dest="bgwc_clauses",
        default=None,
        help="run only the tests of these clauses (comma-separated ids, e.g. RACE-6,SEC-1)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "clause(*ids): conformance clauses a test checks")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = {c.strip() for c in (config.getoption("bgwc_clauses") or "").split(",") if c.strip()}
    if not wanted:
        return
    keep = [i for i in items if wanted & {c for m in i.iter_markers("clause") for c in m.args}]
    config.hook.pytest_deselected(items=[i for i in items if i not in keep])
    items[:] = keep


def _read_config(config: pytest.Config) -> KitConfig:
    values = {}
    for name in OPTIONS:
        cli = config.getoption(f"bgwc_{name}")
        values[name] = cli if cli is not None else config.getini(f"bgwc_{name}")
    try:
        return KitConfig.from_values(values)
    except KitError as exc:
        raise pytest.UsageError(str(exc)) from exc


def pytest_sessionstart(session: pytest.Session) -> None:
    kit = _read_config(session.config)
    session.config.stash[CONFIG_KEY] = kit
    if out := session.config.getoption("bgwc_results"):
        from pathlib import Path

        from conformance.results import ResultsRecorder

        session.config.pluginmanager.register(ResultsRecorder(Path(out), kit), "bgwc-results")
    if any(t != "local" for t in kit.targets):
        engine.client()
        engine.sweep_stale()


@pytest.fixture(scope="session")
def bgwc_config(pytestconfig: pytest.Config) -> KitConfig:
    return pytestconfig.stash[CONFIG_KEY]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "pg_target" in metafunc.fixturenames:
        kit = metafunc.config.stash.get(CONFIG_KEY, None) or _read_config(metafunc.config)
        metafunc.parametrize("pg_target", kit.targets, indirect=True, scope="session")


def make_target(name: str, kit: KitConfig) -> Target:
    """The one place that creates and starts a target."""
    from conformance import images

    if name == "local":
        return LocalTarget(kit.extension, kit.pg_config).setup()
    major = int(name.removeprefix("pg"))
    image = images.build_extension(major, kit.extension, kit.base)
    return ContainerTarget(image.tag, major).setup()


@pytest.fixture(scope="session")
def pg_target(request: pytest.FixtureRequest, bgwc_config: KitConfig) -> Iterator[Target]:
    target = make_target(request.param, bgwc_config)
    try:
        yield target
    finally:
        target.close()


@pytest.fixture
def target(pg_target: Target) -> Target:
    pg_target.ensure_baseline()
    pg_target.begin_test()
    return pg_target
