"""A shortage and its end, judged per kind: the scenarios FORK-1 (no fork
succeeds) and SLOTS-5 (parallel workers hold every free slot) share.

While the shortage lasts the workload is started, and its start answers (or
is refused) in time.  Where the clause judges the shortage itself (FORK-1:
SLOTS-1 and SLOTS-3 already judge a shortage of slots), the kinds at rest
keep their processes (one that exits is a crash), the log stays under the
storm bound (but for lines the caller says are core's own, one per failed
start) and the extension does not spin.  Once it ends, the kinds at rest
are at their count and the workload's kinds run again (a refused start
asked again first), each kind judged once over every phase of its test."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import psycopg

from conformance.census import Census
from conformance.deadlines import BUSY_CPU_S, OBSERVE_S, RESTART_SLACK_S, START_S, STORM_LINES
from conformance.figures import Figures
from conformance.profile import ProcessSpec
from conformance.suite.checks import PerKind


class Seen:
    """Each kind's first failure and what each phase saw of it: a kind is
    judged once, on every phase (a later phase never hides an earlier failure)."""

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

    def done(self, clause: str, record_property: Callable[[str, object], None]) -> None:
        verdicts = PerKind(clause, record_property)
        for name in dict.fromkeys([*self.details, *self.failed]):
            with verdicts.judging(name) as verdict:
                assert name not in self.failed, self.failed.get(name)
                verdict["detail"] = "; ".join(self.details[name])
        verdicts.done()


def cpu_now(extension: Census) -> dict[int, float]:
    """CPU seconds so far of the extension's processes and the postmaster
    (a start retried without a pause keeps both busy)."""
    postmaster = extension.target.postmaster_pid()
    return extension.cpu_seconds(extension.pids() | ({postmaster} if postmaster else set()))


def window_problems(
    extension: Census,
    figures: Figures,
    clause: str,
    what: str,
    log: str,
    cpu: dict[int, float],
    seconds: float,
    cores_lines: re.Pattern[str] | None = None,
) -> list[str]:
    """A storm (more than STORM_LINES per OBSERVE_S, not counting the lines
    ``cores_lines`` matches) or a spin (more than BUSY_CPU_S per OBSERVE_S
    of the processes in ``cpu``, measured from it to now) in a window of
    ``seconds`` whose log is ``log``."""
    lines = [ln for ln in log.splitlines() if ln.strip()]
    own = [ln for ln in lines if cores_lines is None or not cores_lines.search(ln)]
    after = extension.cpu_seconds(cpu)
    busy = {pid: round(after[pid] - cpu[pid], 2) for pid in cpu.keys() & after.keys()}
    scale = seconds / OBSERVE_S
    figures.add(clause, f"log lines {what}", len(own) / scale, STORM_LINES, "lines/10s")
    figures.add(clause, f"CPU {what}", sum(busy.values()) / scale, BUSY_CPU_S, "cpu s/10s")
    problems = []
    if len(own) > STORM_LINES * scale:
        problems.append(f"{len(own)} log lines in {seconds:g}s {what}:\n" + "\n".join(own[-20:]))
    if sum(busy.values()) > BUSY_CPU_S * scale:
        problems.append(f"spinning: CPU seconds over {seconds:g}s {what}: {busy}")
    return problems


def workload_through(
    extension: Census,
    clause: str,
    shortage: Callable[[], AbstractContextManager[None]],
    what: str,
    seconds: float,
    answer_s: float,
    seen: Seen,
    record_property: Callable[[str, object], None],
    figures: Figures,
    cores_lines: re.Pattern[str] | None = None,
    *,
    during: bool,
) -> None:
    """The workload started in ``shortage`` (entered after the sessions it
    needs are open), which lasts ``seconds``; then judged as the module says,
    the shortage itself only when ``during``.  ``what`` names the shortage in
    the details ("without forks")."""
    target = extension.target
    at_rest = {s.name: set(extension.census()[s.name]) for s in extension.at_rest()}
    cpu = cpu_now(extension)
    refused = None
    with extension.workload_session() as session:
        session.execute(f"SET statement_timeout = '{int(answer_s * 1000)}ms'")
        target.sql("SELECT 1")  # the kit's own session, live before the shortage
        offset = target.log_offset()
        with shortage():
            t0 = time.monotonic()
            try:
                extension.start_workload(conn=session)
            except psycopg.Error as exc:
                refused = exc
            answered = time.monotonic() - t0
            log = extension.observe_log(max(0.0, seconds - answered), offset)
            census = extension.census()
        ended = time.monotonic()
    figures.add(clause, f"workload's start answered {what}", answered, answer_s)
    record_property(
        f"workload {what}", f"refused: {refused.sqlstate} {refused}".strip() if refused else "accepted"
    )
    problems = (
        window_problems(extension, figures, clause, what, log, cpu, max(seconds, answered), cores_lines)
        if during
        else []
    )
    timed_out = isinstance(refused, psycopg.errors.QueryCanceled)
    phase = f"the workload {what}"

    def kept(name: str) -> str:
        gone = sorted(at_rest[name] - set(census[name]))
        assert not gone, f"{gone} exited {what} (the workload's start failed)"
        assert not problems, problems[0]
        return "kept its processes"

    def at_count(spec: ProcessSpec) -> str:
        deadline = spec.restart_s + RESTART_SLACK_S
        extension.target.wait_until(
            lambda: len(extension.census()[spec.name]) == spec.count,
            max(0.0, deadline - (time.monotonic() - ended)),
            what=f"{spec.name} at its count ({spec.count}) once the shortage ({what}) ended",
        )
        return f"at its count {time.monotonic() - ended:.2f}s after the shortage ended"

    for spec in extension.at_rest():
        seen.judge(
            spec.name, phase, (lambda s=spec: kept(s.name)) if during else (lambda s=spec: at_count(s))
        )
    if refused is not None and not timed_out:
        extension.start_workload()  # refused during the shortage: asked again, as a user would

    def running(spec: ProcessSpec) -> str:
        assert not timed_out, f"the workload's start did not answer within {answer_s:g}s {what}"
        assert not problems, problems[0]
        if spec.after_shortage == "stays-down" and refused is None:
            return "stays down after a shortage, as its profile declares"
        extension.target.wait_until(
            lambda: bool(extension.census()[spec.name]),
            max(0.0, START_S - (time.monotonic() - ended)),
            what=f"{spec.name} running once the shortage ({what}) ended",
        )
        took = time.monotonic() - ended
        figures.add(clause, f"shortage over → {spec.name} running", took, START_S)
        return f"running {took:.2f}s after the shortage ended"

    for spec in extension.workload_kinds():
        seen.judge(spec.name, phase, lambda spec=spec: running(spec))
