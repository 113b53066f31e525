"""The kit's own tests.  ``interrupted/`` holds a test that the cleanup tests
run in a child pytest and interrupt; it is not collected here."""

import pytest

collect_ignore = ["interrupted", "stub_ext", "data", "zoo"]

#: a test that uses one of these needs a server of the target under test: it
#: runs once per target (tox's pg*/local environments); the others run once
TARGETED = {"target", "pg_target", "bgwc_config"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if TARGETED & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.target)
