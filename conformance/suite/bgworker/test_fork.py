"""FORK: the postmaster cannot fork, then can again.  While the server's
cgroup allows no new process, a worker the extension asks for fails to
start (its handle reports it stopped) and a static worker that exited is
not restarted; the extension must neither crash nor storm nor spin
meanwhile, and every promised worker is back once forks succeed again."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import psycopg
import pytest

from conformance.census import Census
from conformance.deadlines import (
    BUSY_CPU_S,
    FORK_ANSWER_S,
    OBSERVE_S,
    RESTART_SLACK_S,
    START_S,
    STORM_LINES,
)
from conformance.figures import Figures
from conformance.profile import ProcessSpec
from conformance.suite.checks import PerKind

#: core's line for each start that failed to fork (a background worker's or a session's):
#: the postmaster writes one per attempt, at the pace the extension (or the kind's
#: restart interval) asks for; the storm bound counts the others
FORK_FAILED = re.compile(r"could not fork (?:new process for connection|(?:background )?worker process)")


@pytest.mark.clause("FORK-1")
def test_workers_survive_fork_failure_and_come_back(
    extension: Census, record_property: Callable[[str, object], None], figures: Figures
) -> None:
    target = extension.target
    why_not = target.forks_unfailable()
    if why_not:
        pytest.skip(f"not applicable: {why_not}")
    kinds = extension.at_rest()
    restartable = [s for s in kinds if s.after_exit == "restart"]
    workers = extension.workload_kinds()
    if not restartable and not workers:
        pytest.skip("not applicable: no worker of the profile is started again (no workload, no restart)")
    seen = _Seen()
    if workers:
        _workload_without_forks(extension, workers, seen, record_property, figures)
    if restartable:
        _restarts_without_forks(extension, restartable, seen, figures)
    verdicts = PerKind("FORK-1", record_property)
    for name in dict.fromkeys([*seen.details, *seen.failed]):
        with verdicts.judging(name) as verdict:
            assert name not in seen.failed, seen.failed.get(name)
            verdict["detail"] = "; ".join(seen.details[name])
    verdicts.done()


class _Seen:
    """Each kind's first failure and what each phase saw of it: a kind is
    judged once, on both phases (a later phase never hides an earlier failure)."""

    def __init__(self) -> None:
        self.failed: dict[str, str] = {}
        self.details: dict[str, list[str]] = {}

    def judge(self, name: str, phase: str, check: Callable[[], str]) -> None:
        if name in self.failed:
            return
        try:
            self.details.setdefault(name, []).append(f"{phase}: {check()}")
        except AssertionError as exc:
            self.failed[name] = f"{phase}: " + (str(exc).strip().splitlines() or ["failed"])[0][:400]


def _window(
    extension: Census,
    record_property: Callable[[str, object], None],
    figures: Figures,
    phase: str,
    log: str,
    cpu: dict[int, float],
) -> list[str]:
    """What the window without forks showed: the log lines other than core's
    one per failed fork, and the CPU of the processes that lived through it."""
    lines = [ln for ln in log.splitlines() if ln.strip()]
    forks = [ln for ln in lines if FORK_FAILED.search(ln)]
    own = [ln for ln in lines if not FORK_FAILED.search(ln)]
    after = extension.cpu_seconds(cpu)
    busy = {pid: round(after[pid] - cpu[pid], 2) for pid in cpu.keys() & after.keys()}
    record_property(f"fork failures logged ({phase})", len(forks))
    figures.add("FORK-1", f"log lines without forks ({phase})", len(own), STORM_LINES, "lines/10s")
    figures.add("FORK-1", f"CPU without forks ({phase})", sum(busy.values()), BUSY_CPU_S, "cpu s/10s")
    problems = []
    if len(own) > STORM_LINES:
        problems.append(f"{len(own)} log lines in {OBSERVE_S:g}s without forks:\n" + "\n".join(own[-20:]))
    if sum(busy.values()) > BUSY_CPU_S:
        problems.append(f"spinning: CPU seconds over {OBSERVE_S:g}s without forks: {busy}")
    return problems


def _workload_without_forks(
    extension: Census,
    workers: list[ProcessSpec],
    seen: _Seen,
    record_property: Callable[[str, object], None],
    figures: Figures,
) -> None:
    """The workload started while no fork succeeds: its start answers (or
    is refused) in time, the kinds at rest keep their processes (a crash
    would show as one gone: it could not come back), and once forks
    succeed its workers start, without being asked again unless the start
    was refused."""
    target = extension.target
    at_rest = {s.name: set(extension.census()[s.name]) for s in extension.at_rest()}
    cpu = _cpu(extension)
    refused = None
    with extension.workload_session() as session:
        session.execute(f"SET statement_timeout = '{int(FORK_ANSWER_S * 1000)}ms'")
        target.sql("SELECT 1")  # the kit's own session, live before the limit
        offset = target.log_offset()
        with target.forks_failing("the workload started"):
            t0 = time.monotonic()
            try:
                extension.start_workload(conn=session)
            except psycopg.Error as exc:
                refused = exc
            answered = time.monotonic() - t0
            log = extension.observe_log(max(0.0, OBSERVE_S - answered), offset)
            census = extension.census()
        lifted = time.monotonic()
    figures.add("FORK-1", "workload's start answered without forks", answered, FORK_ANSWER_S)
    record_property(
        "workload without forks",
        "refused: " + f"{refused.sqlstate} {refused}".strip() if refused else "accepted",
    )
    problems = _window(extension, record_property, figures, "workload", log, cpu)
    timed_out = isinstance(refused, psycopg.errors.QueryCanceled)

    def kept(name: str) -> str:
        gone = sorted(at_rest[name] - set(census[name]))
        assert not gone, f"{gone} exited while no fork succeeded (the workload's start failed to fork)"
        assert not problems, problems[0]
        return "kept its processes"

    for name in at_rest:
        seen.judge(name, "the workload without forks", lambda name=name: kept(name))
    if refused is not None and not timed_out:
        extension.start_workload()  # refused while forks failed: asked again, as a user would

    def running(spec: ProcessSpec) -> str:
        assert not timed_out, f"the workload's start did not answer within {FORK_ANSWER_S:g}s without forks"
        assert not problems, problems[0]
        took = _wait_running(extension, spec, START_S, lifted)
        figures.add("FORK-1", f"forks back → {spec.name} running", took, START_S)
        return f"running {took:.2f}s after forks succeeded again"

    for spec in workers:
        seen.judge(spec.name, "the workload without forks", lambda spec=spec: running(spec))


def _restarts_without_forks(
    extension: Census, kinds: list[ProcessSpec], seen: _Seen, figures: Figures
) -> None:
    """Each restartable kind terminated while no fork succeeds, and kept
    without forks past its restart interval (so the postmaster's restart
    fails at least once): back at its count, with no duplicate, within its
    interval and RESTART_SLACK_S of forks succeeding again."""
    target = extension.target
    old = {s.name: set(extension.census()[s.name]) for s in kinds}
    window = max(OBSERVE_S, max(s.restart_s for s in kinds) + 1.0)
    cpu = _cpu(extension)
    target.sql("SELECT 1")
    offset = target.log_offset()
    with target.forks_failing("the kinds at rest terminated"):
        for spec in kinds:
            for pid in sorted(old[spec.name]):
                extension.terminate(spec, pid)
        log = extension.observe_log(window, offset)
    lifted = time.monotonic()
    problems = _window(extension, lambda *_: None, figures, "restarts", log, cpu)

    def back(spec: ProcessSpec) -> str:
        assert not problems, problems[0]
        deadline = spec.restart_s + RESTART_SLACK_S
        try:
            took, most = extension.wait_back(spec, old[spec.name], deadline, since=lifted)
        finally:
            figures.add("FORK-1", f"forks back → {spec.name} back", time.monotonic() - lifted, deadline)
        assert most <= spec.count, f"{most} at once after forks came back, promised {spec.count}"
        return f"back {took:.2f}s after forks succeeded again (deadline {deadline:g}s)"

    for spec in kinds:
        seen.judge(spec.name, "terminated without forks", lambda spec=spec: back(spec))


def _wait_running(extension: Census, spec: ProcessSpec, timeout: float, since: float) -> float:
    extension.target.wait_until(
        lambda: bool(extension.census()[spec.name]),
        max(0.0, timeout - (time.monotonic() - since)),
        what=f"{spec.name} running once forks succeed again",
    )
    return time.monotonic() - since


def _cpu(extension: Census) -> dict[int, float]:
    """CPU seconds so far of the extension's processes and the postmaster
    (a start retried without a pause keeps both busy)."""
    postmaster = extension.target.postmaster_pid()
    return extension.cpu_seconds(extension.pids() | ({postmaster} if postmaster else set()))
