"""The kit's own tests.  ``interrupted/`` holds a test that the cleanup tests
run in a child pytest and interrupt; it is not collected here."""

collect_ignore = ["interrupted", "stub_ext", "data"]
