"""Several clauses judged in one scenario, each on its own: an expensive
scenario (a 10 s observation window, a restart) is run once, and a failure
of one clause does not mark the others failed.  Each verdict is recorded as
it is reached (``clause_outcomes``); a clause the test never reached takes
the test's own outcome.

One promise per assertion chain: where a test checks independent promises
one after the other (of one clause or of several), each is judged in a
``Checks.promise`` block, so that the first one's failure never hides the
next; ``done()`` then fails the test with every failure."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

#: what a failed promise raises: an assertion, a wait that ran out, pytest.fail / pytest.raises
FAILED = (AssertionError, pytest.fail.Exception)


class Checks:
    def __init__(self, record_property: Callable[[str, object], None]) -> None:
        self._record = record_property
        self.outcomes: dict[str, str] = {}
        self.failures: list[str] = []

        self.promises: dict[str, dict[str, str]] = {}

    def check(self, clause: str, ok: bool, message: str) -> bool:
        """Record ``clause`` passed or failed; once failed it stays failed."""
        self.outcomes[clause] = "pass" if ok and self.outcomes.get(clause) != "fail" else "fail"
        if not ok:
            self.failures.append(f"{clause}: {message}")
        self._record("clause_outcomes", dict(self.outcomes))
        return ok

    @contextmanager
    def promise(self, clause: str, what: str) -> Iterator[None]:
        """Judge one promise of ``clause`` in the block, on its own: a failed
        assertion (or wait, or pytest.raises) in it fails the promise and its
        clause, and the test goes on to its next promise; each promise's
        outcome and first line of detail are recorded (``promises``).
        Anything else means the scenario broke: the promise is not reached,
        the clause takes the test's own outcome (unless it already failed),
        and the test ends there."""
        name = f"{clause}: {what}"
        verdict = {"outcome": "pass", "detail": ""}
        try:
            yield
        except FAILED as exc:
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:400]
            verdict.update(outcome="fail", detail=detail)
            self.check(clause, False, f"{what}: {str(exc).strip()[:2000]}")
        except BaseException as exc:
            verdict.update(outcome="not-reached", detail=f"{type(exc).__name__}: {exc}"[:400])
            if self.outcomes.get(clause) != "fail":
                self.outcomes.pop(clause, None)
                self._record("clause_outcomes", dict(self.outcomes))
            raise
        else:
            self.check(clause, True, "")
        finally:
            self.promises[name] = verdict
            self._record("promises", dict(self.promises))

    def done(self) -> None:
        """Fail the test if any clause failed (each keeps its own outcome)."""
        if self.failures:
            raise AssertionError("\n".join(self.failures))


class PerKind:
    """One clause judged on every process kind: each kind gets its own
    outcome and detail (``kinds``), a failing kind does not stop the others
    from being judged, and the clause fails naming every kind that failed.
    ``noun`` names what is judged in the failure's first line, for a clause
    judged per case rather than per kind (TXN-1)."""

    def __init__(
        self, clause: str, record_property: Callable[[str, object], None], noun: str = "kinds"
    ) -> None:
        self.clause = clause
        self._record = record_property
        self.noun = noun
        self.kinds: dict[str, dict[str, str]] = {}

    @contextmanager
    def judging(self, kind: str) -> Iterator[dict[str, str]]:
        """Judge ``kind`` in the block: it passes unless the block fails an
        assertion (or a wait); the block may put its detail in the dict it gets."""
        verdict = {"outcome": "pass", "detail": ""}
        try:
            yield verdict
        except AssertionError as exc:
            verdict.update(outcome="fail", detail=str(exc).strip().splitlines()[0][:400])
        except BaseException as exc:  # the scenario broke: this kind was not judged, nor the rest
            verdict.update(outcome="not-reached", detail=f"{type(exc).__name__}: {exc}"[:400])
            raise
        finally:
            self.kinds[kind] = verdict
            self._record("kinds", dict(self.kinds))

    def done(self) -> None:
        failed = {k: v["detail"] for k, v in self.kinds.items() if v["outcome"] == "fail"}
        if failed:
            passed = [k for k, v in self.kinds.items() if v["outcome"] == "pass"]
            raise AssertionError(
                f"{self.clause}: {len(failed)} of {len(self.kinds)} {self.noun} failed"
                + (f" (passed: {', '.join(passed)})" if passed else "")
                + "".join(f"\n- {k}: {why}" for k, why in failed.items())
            )
