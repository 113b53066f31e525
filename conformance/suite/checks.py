"""Several clauses judged in one scenario, each on its own: an expensive
scenario (a 10 s observation window, a restart) is run once, and a failure
of one clause does not mark the others failed.  Each verdict is recorded as
it is reached (``clause_outcomes``); a clause the test never reached takes
the test's own outcome."""

from __future__ import annotations

from collections.abc import Callable


class Checks:
    def __init__(self, record_property: Callable[[str, object], None]) -> None:
        self._record = record_property
        self.outcomes: dict[str, str] = {}
        self.failures: list[str] = []

    def check(self, clause: str, ok: bool, message: str) -> bool:
        self.outcomes[clause] = "pass" if ok else "fail"
        if not ok:
            self.failures.append(f"{clause}: {message}")
        self._record("clause_outcomes", dict(self.outcomes))
        return ok

    def done(self) -> None:
        """Fail the test if any clause failed (each keeps its own outcome)."""
        if self.failures:
            raise AssertionError("\n".join(self.failures))
