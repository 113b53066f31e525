"""Several clauses judged in one scenario, each on its own: an expensive
scenario (a 10 s observation window, a restart) is run once, and a failure
of one clause does not mark the others failed.  Each verdict is recorded as
it is reached (``clause_outcomes``); a clause the test never reached takes
the test's own outcome."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


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
