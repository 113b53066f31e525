"""SIG: the signals a server in production sends its background workers.
SIGHUP (``pg_reload_conf()`` sends it to every process), SIGUSR1 (core's
multiplexed signal: barriers, catch-up interrupts, a worker's
notifications) and SIGINT (``pg_cancel_backend``, to the kinds SQL can
see: nothing in production cancels the others).  None of them asks a
process to stop for good: at rest and again with the workload running,
each kind at rest keeps its processes, or one that exits is back as its
``after_exit`` promises, at its exact count; the workload's workers keep
theirs through SIGHUP and SIGUSR1 (a cancel may end a job: that is what a
cancel is for)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest

from conformance.census import Census
from conformance.deadlines import RESTART_SLACK_S, SIGNAL_SETTLE_S
from conformance.figures import Figures
from conformance.profile import ProcessSpec
from conformance.suite.checks import PerKind

#: every kind gets these; a kind at rest that SQL can see also gets SIGINT (a cancel)
NOT_A_STOP = (signal.SIGHUP, signal.SIGUSR1)
AT_REST = (*NOT_A_STOP, signal.SIGINT)


@pytest.mark.clause("SIG-1")
def test_kinds_keep_running_through_the_signals_production_sends(
    extension: Census, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    kinds = extension.at_rest_or_skip()
    problems: dict[str, str] = {}  # a kind's first failure: it is not signalled again
    details: dict[str, list[str]] = {}
    for phase in ("at rest", "with the workload"):
        judged = [(s, AT_REST if s.connects else NOT_A_STOP) for s in kinds]
        if phase == "with the workload":
            extension.start_workload()
            workers = extension.workload_kinds()
            if not workers:
                break
            try:
                extension.wait_started()
                judged += [(s, NOT_A_STOP) for s in workers]
            except AssertionError as exc:
                if not problems:  # nothing failed at rest, yet the signals left no workload
                    for s in workers:
                        problems[s.name] = f"{phase}: did not start: {str(exc).splitlines()[0][:200]}"
        for spec, signals in judged:
            for sig in signals:
                if spec.name in problems:
                    break
                try:
                    outcome = _signal_kind(extension, spec, sig, figures)
                    details.setdefault(spec.name, []).append(f"{phase}, {sig.name}: {outcome}")
                except AssertionError as exc:
                    problems[spec.name] = f"{phase}, {sig.name}: {str(exc).splitlines()[0][:300]}"
    verdicts = PerKind("SIG-1", record_property)
    for name in dict.fromkeys([*details, *problems]):
        with verdicts.judging(name) as verdict:
            assert name not in problems, problems.get(name)
            verdict["detail"] = "; ".join(details[name])
    verdicts.done()


def _send(extension: Census, spec: ProcessSpec, pid: int, sig: signal.Signals) -> None:
    """SIGINT as production sends it, by pg_cancel_backend (a process that
    SQL cannot see gets none: nothing in production cancels it); the
    others as the postmaster and pg_reload_conf() send them, by the OS."""
    if sig == signal.SIGINT:
        assert spec.connects
        cancelled = extension.target.scalar("SELECT pg_cancel_backend(%s)", pid)
        assert cancelled, f"pg_cancel_backend({pid}) found no backend of {spec.name}"
        return
    extension.target.kill(pid, sig)


def _signal_kind(extension: Census, spec: ProcessSpec, sig: signal.Signals, figures: Figures) -> str:
    """Send ``sig`` to every process of ``spec`` and wait until the kind is
    settled again: its count, unchanged for SIGNAL_SETTLE_S (a process
    handles a signal at its next wake-up, which the signal's handler
    causes), within its restart interval and RESTART_SLACK_S.  A kind
    declared to stay down after an exit (and the workload's workers) must
    keep the very same processes."""
    count = spec.count or len(extension.census()[spec.name])
    must_keep = spec.count == 0 or spec.after_exit == "stays-down"
    # a kind that must keep its processes is judged as soon as one is gone
    deadline = (0.0 if must_keep else spec.restart_s + RESTART_SLACK_S) + SIGNAL_SETTLE_S
    extension.target.wait_until(
        lambda: len(extension.census()[spec.name]) == count,
        deadline,
        what=f"{spec.name} at its count ({count}) before {sig.name}",
    )
    old = set(extension.census()[spec.name])
    sent = time.monotonic()
    for pid in sorted(old):
        _send(extension, spec, pid, sig)
    now: set[int] = set(old)
    since, most = sent, len(old)

    def settled() -> bool:
        nonlocal now, since, most
        pids = set(extension.census()[spec.name])
        most = max(most, len(pids))
        if pids != now:
            now, since = pids, time.monotonic()
        if must_keep and old - pids:
            return True
        return len(pids) == count and time.monotonic() - since >= SIGNAL_SETTLE_S

    try:
        extension.target.wait_until(
            settled, deadline, what=f"{spec.name} settled at {count} after {sig.name} to {sorted(old)}"
        )
    except AssertionError:
        gone = sorted(old - now)
        raise AssertionError(
            f"{gone} exited on {sig.name}; {len(now)} running {sorted(now)} after {deadline:g}s, "
            f"promised {count}"
            if gone
            else f"not settled at {count} within {deadline:g}s: {sorted(now)}"
        ) from None
    finally:
        figures.add("SIG-1", f"{sig.name} → {spec.name} settled", time.monotonic() - sent, deadline)
    assert most <= count, f"{most} at once after {sig.name}, promised {count}"
    if old <= now:
        return "the same processes"
    assert not must_keep, f"{sorted(old - now)} exited on {sig.name}, and it stays down after an exit"
    return f"exited, back as {sorted(now)}"
