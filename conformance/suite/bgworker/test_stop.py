"""STOP: a terminated background worker comes back within its promised
interval, exactly once; one declared to stay down stays down.  Every kind
is judged, each on its own: at rest (STOP-1), and again with the workload
running (STOP-2), where the workload's workers are judged too."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import pytest

from conformance.census import Census
from conformance.deadlines import (
    DUPLICATE_WATCH_S,
    RESTART_SLACK_S,
    STAYS_DOWN_S,
    WORKLOAD_BACK_S,
    WORKLOAD_GONE_S,
)
from conformance.errors import ProfileMismatch
from conformance.figures import Figures
from conformance.suite.checks import PerKind


@pytest.mark.clause("STOP-1")
def test_terminated_workers_come_back_once(
    extension: Census, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    terminate_each_kind(extension, "STOP-1", record_property, figures)


@pytest.mark.clause("STOP-2")
def test_terminated_workers_come_back_once_with_the_workload(
    extension: Census, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    terminate_each_kind(extension, "STOP-2", record_property, figures, workload=True)


class WorkloadThrough:
    """The workload's workers through faults aimed at the kinds at rest
    (STOP-2, KILL-2).  The workload runs, and its count of each of its kinds
    once steady is what it promises: through each fault, more of a kind at
    once is a duplicate (a restarted launcher that starts the jobs its
    predecessor left running), and once the faulted kind is back, each kind
    is at its count again within WORKLOAD_BACK_S.  After a crash-restart
    (``crashed``) that holds for a kind that promises to restart after one;
    one that stays down by design need not come back.  Each kind is judged
    on its own, over every fault, in the clause's ``verdicts``."""

    def __init__(self, extension: Census, clause: str, figures: Figures) -> None:
        self.extension = extension
        self.clause = clause
        self.figures = figures
        self.kinds = extension.workload_kinds()
        if not self.kinds:
            pytest.skip("not applicable: the profile has no workload that starts workers")
        self.counts = extension.workload_running()
        self.problems: dict[str, str] = {}
        self.details: dict[str, list[str]] = {}

    def _at_counts(self) -> bool:
        census = self.extension.census()
        return all(len(census[k.name]) == self.counts[k.name] for k in self.kinds)

    @contextmanager
    def through(self, fault: str, crashed: bool = False) -> Iterator[None]:
        """The block faults a kind at rest and waits for it back; the
        workload's workers are watched throughout and judged after it."""
        ext = self.extension
        if not self._at_counts():
            # the last fault ended the workload's work (a crash-restart, a kind that gives
            # up its jobs): started again, and its counts taken again
            try:
                ext.stop_workload()
                ext.target.wait_until(
                    lambda: not ext.workload_left(), WORKLOAD_GONE_S, what="the workload gone"
                )
                self.counts = ext.workload_running()
            except AssertionError as exc:
                for k in self.kinds:
                    self.problems.setdefault(k.name, f"before {fault}: {str(exc).splitlines()[0][:300]}")
                yield
                return
        with ext.watching(self.counts) as seen:
            yield
            back_at = time.monotonic()
            for k in self.kinds:
                if k.name in self.problems or (crashed and k.after_crash == "stays-down"):
                    continue
                try:
                    ext.target.wait_until(
                        lambda k=k: len(ext.census()[k.name]) == self.counts[k.name],
                        WORKLOAD_BACK_S,
                        what=f"{k.name} at its count ({self.counts[k.name]}) after {fault}",
                    )
                except AssertionError as exc:
                    now = ext.census()[k.name]
                    self.problems[k.name] = f"after {fault}: {str(exc).splitlines()[0][:300]}; now {now}"
                finally:
                    self.figures.add(
                        self.clause,
                        f"{fault} → {k.name} at its count",
                        time.monotonic() - back_at,
                        WORKLOAD_BACK_S,
                    )
        for k in self.kinds:
            most, count = seen[k.name], self.counts[k.name]
            if most > count:  # a duplicate: what a later wait for its count says is its consequence
                self.problems[k.name] = f"{most} at once through {fault}, the workload runs {count}" + (
                    f"; {self.problems[k.name]}" if k.name in self.problems else ""
                )
            self.details.setdefault(k.name, []).append(f"{fault}: at most {most} of {count}")

    def judge(self, verdicts: PerKind) -> None:
        for k in self.kinds:
            with verdicts.judging(k.name) as verdict:
                assert k.name not in self.problems, self.problems.get(k.name)
                verdict["detail"] = "; ".join(self.details.get(k.name, ["no fault reached"]))


def terminate_each_kind(
    extension: Census,
    clause: str,
    record_property: Callable[[str, object], None],
    figures: Figures,
    workload: bool = False,
) -> None:
    """Each kind at rest of the census's server terminated and judged on its
    own under ``clause`` (STOP-1 on a primary, REPLICA-3 on a standby); with
    ``workload``, while the workload runs, its workers judged too (STOP-2)."""
    kinds = extension.at_rest_or_skip()
    verdicts = PerKind(clause, record_property)
    work = WorkloadThrough(extension, clause, figures) if workload else None
    for spec in (s for s in kinds if s.after_exit == "restart"):
        with (
            verdicts.judging(spec.name) as verdict,
            work.through(f"terminating {spec.name}") if work else nullcontext(),
        ):
            old = set(extension.census()[spec.name])
            terminated_at = time.monotonic()
            how = {extension.terminate(spec, pid) for pid in sorted(old)}
            deadline = spec.restart_s + RESTART_SLACK_S
            try:
                took, most = extension.wait_back(spec, old, deadline, since=terminated_at)
            finally:
                figures.add(
                    clause, f"terminate → {spec.name} back", time.monotonic() - terminated_at, deadline
                )
            most = max(most, extension.hold(spec, min(spec.restart_s + 1.0, DUPLICATE_WATCH_S)))
            assert most <= spec.count, f"{spec.name}: {most} at once after termination, promised {spec.count}"
            verdict["detail"] = f"back in {took:.2f}s (deadline {deadline:g}s) after {', '.join(sorted(how))}"
    _stay_down(extension, [s for s in kinds if s.after_exit == "stays-down"], verdicts)
    if work is not None:
        work.judge(verdicts)
    verdicts.done()


def _stay_down(extension: Census, kinds: list, verdicts: PerKind) -> None:  # type: ignore[type-arg]
    """Kinds declared to stay down after an exit: terminated together, then
    watched together for STAYS_DOWN_S (past the restart intervals extensions
    use): one that comes back contradicts its profile."""
    if not kinds:
        return
    old = {s.name: set(extension.census()[s.name]) for s in kinds}
    for spec in kinds:
        for pid in sorted(old[spec.name]):
            extension.terminate(spec, pid)
    extension.target.wait_until(
        lambda: not any(set(extension.census()[s.name]) & old[s.name] for s in kinds),
        RESTART_SLACK_S,
        what=f"{', '.join(old)} gone after termination",
    )
    came_back: dict[str, float] = {}
    t0 = time.monotonic()
    while time.monotonic() - t0 < STAYS_DOWN_S:
        census = extension.census()
        for s in kinds:
            if census[s.name] and s.name not in came_back:
                came_back[s.name] = round(time.monotonic() - t0, 2)
        if len(came_back) == len(kinds):
            break
        time.sleep(0.2)  # ok-sleep: an observation window, polled
    for s in kinds:
        with verdicts.judging(s.name) as verdict:
            if s.name in came_back:
                verdict.update(
                    outcome="profile mismatch", detail=f"came back {came_back[s.name]}s after termination"
                )
            else:
                verdict["detail"] = (
                    f"declared: stays down after termination (by design), watched {STAYS_DOWN_S:g}s"
                )
    if came_back:
        raise ProfileMismatch(
            "profile mismatch: declared to stay down after termination, yet came back: "
            + ", ".join(f"{k} after {v}s" for k, v in came_back.items())
            + '; fix the profile (after_exit = "restart", restart_s)'
        )
