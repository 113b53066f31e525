"""Machine-readable results of a run: ``results.json``, one record per test.

Always recording; written when pytest gets ``--bgwc-results DIR``
(``bgw-conformance run`` passes it).  Each record: clauses, outcome as it ran
(pass, fail, error, skip, not-applicable; under ``--bgwc-repeat``, flaky when it both
passed and failed), its status against the
expectations (``conformance.expectations``), duration, the failure message,
whether the harness broke, the server log written during the test and the
faults injected, with times relative to the test's start.  The run's metadata
(kit, extension, servers, host, seed, times, tests collected, the unexpected
results) lets results from several machines be merged.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conformance import __version__, expectations, figures
from conformance.config import KitConfig
from conformance.errors import KitError
from conformance.profile import Profile

NOT_APPLICABLE = "not applicable"
#: a clause (or test) that was never evaluated: an earlier step of its scenario
#: failed, or its server could not be restored; gates as a harness error, never a product failure
NOT_REACHED = "not-reached"
#: the outcome of a test that both passed and failed when repeated (``--bgwc-repeat``)
FLAKY = "flaky"
LOG_EXCERPT_CHARS = 20_000


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _kit_commit() -> str | None:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


#: what the plugin hands a test's record, as plain data read from the live
#: server and the call as the report is made (``plugin._live``)
LIVE = pytest.StashKey[dict[str, Any]]()
#: the test's status against the expectations, judged once, as it is reported (plugin)
JUDGED = pytest.StashKey[expectations.Judged]()
#: per session: each server's description (``Target.describe``), and the escalation ladder's steps
SERVERS = pytest.StashKey[dict[str, dict[str, Any]]]()
ESCALATIONS = pytest.StashKey[list[dict[str, Any]]]()


class ResultsRecorder:
    """Builds one record per test from its reports and what the plugin hands
    over (``LIVE``, ``JUDGED``, ``SERVERS``, ``ESCALATIONS``): it reads
    records and data, never a server."""

    def __init__(self, out_dir: Path | None, kit: KitConfig) -> None:
        self.out_dir = out_dir
        self.kit = kit
        self.records: dict[str, dict[str, Any]] = {}
        self.servers: dict[str, dict[str, Any]] = {}
        self.started = _now()
        self.collected = 0
        self.repeat = 1

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.repeat = int(session.config.getoption("bgwc_repeat") or 1)
        self.collected = len(session.items) // self.repeat

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
        outcome = yield
        report: pytest.TestReport = outcome.get_result()
        live = item.stash.get(LIVE, {})
        rec = self.records.setdefault(
            item.nodeid,
            {
                "nodeid": item.nodeid,
                "name": item.name,
                "family": item.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
                if item.module
                else "",
                "clauses": list(live.get("clauses") or []),
                "outcome": "pass",
                "duration": 0.0,
                "message": None,
                "log_excerpt": "",
                "faults": [],
            },
        )
        if live.get("target"):
            rec["target"] = live["target"]
        rec["duration"] = round(rec["duration"] + report.duration, 3)
        rec["properties"] = dict(item.user_properties)
        if report.skipped:
            reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
            rec["outcome"] = "not-applicable" if NOT_APPLICABLE in reason else "skip"
            rec["message"] = reason.removeprefix("Skipped: ")
        elif report.failed:
            rec["outcome"] = "fail" if report.when == "call" else "error"
            rec["message"] = report.longreprtext[-4000:]
            crash = getattr(report.longrepr, "reprcrash", None)
            said = crash.message if crash is not None else report.longreprtext.strip()
            rec["summary"] = next((ln.strip() for ln in said.splitlines() if ln.strip()), "")[:300]
            if live.get("harness_error"):
                rec["harness_error"] = live["harness_error"]
            if live.get("not_reached"):
                rec["outcome"] = NOT_REACHED
            elif report.when == "call" and len(rec["clauses"]) > 1:
                # a scenario judging several clauses: one it failed before reaching was never evaluated
                own = dict(rec["properties"].get("clause_outcomes") or {})
                for clause in rec["clauses"]:
                    own.setdefault(clause, NOT_REACHED)
                item.user_properties.append(("clause_outcomes", own))  # kept past teardown's report
                rec["properties"]["clause_outcomes"] = own
        if "log_excerpt" in live and rec["outcome"] != "skip":
            rec["log_excerpt"] = live["log_excerpt"]
            rec["faults"] = live.get("faults") or []
            rec["started_at"] = live.get("started_at")

    def _escalations(self, session: pytest.Session) -> None:
        """Each step of the escalation ladder, on the record of the test that
        left the server in the state that needed it."""
        for e in session.stash.get(ESCALATIONS, []):
            rec = self.records.get(e["test"])
            if rec is not None:
                rec.setdefault("escalations", []).append({k: v for k, v in e.items() if k != "test"})

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        kit = self.kit
        self._escalations(session)
        self.servers = session.stash.get(SERVERS, {})
        judged = {i.nodeid: j for i in session.items if (j := i.stash.get(JUDGED, None)) is not None}
        results = self._results(int(exitstatus))
        unexpected = expectations.apply(results, kit.expectations, judged)
        results["run"]["unexpected"] = unexpected
        clause_passes = [u for u in unexpected if "clause" in u]
        if clause_passes and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # a clause expected to fail passed
        if clause_passes and (tr := session.config.pluginmanager.get_plugin("terminalreporter")):
            for u in clause_passes:
                tr.write_line(f"UNEXPECTED PASS {u['clause']} on {u['target']}: {u['message']}", red=True)
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))

    def _results(self, exitstatus: int) -> dict[str, Any]:
        run = run_record(self.kit, list(self.servers.values()), self.started, exitstatus, self.collected)
        if self.repeat > 1:
            run["repeat"] = self.repeat
            return {"run": run, "tests": fold_repeats(list(self.records.values()))}
        return {"run": run, "tests": list(self.records.values())}


def base_nodeid(nodeid: str) -> str:
    """A test's node id without its repetition (``test_x[pg17-repeat3]`` -> ``test_x[pg17]``)."""
    m = re.fullmatch(r"(.*)\[(.*)\]", nodeid)
    if m is None:
        return nodeid
    kept = [p for p in m.group(2).split("-") if not re.fullmatch(r"repeat\d+", p)]
    return f"{m.group(1)}[{'-'.join(kept)}]" if kept else m.group(1)


def _folded_outcome(outcomes: list[str]) -> str:
    ran = [o for o in outcomes if o in ("pass", "fail", "error")]
    if not ran:
        return outcomes[0] if outcomes else "skip"
    if "pass" in ran and len(set(ran)) > 1:
        return FLAKY
    return "error" if "error" in ran else ran[0]


def _worst_figures(reps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each figure at its worst over the repetitions, with every repetition's value."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for r in reps:
        for f in figures.of(r):
            key = (f["clause"], f["name"])
            seen = merged.setdefault(key, {**f, "values": []})
            seen["values"].append(f["value"])
            if f["value"] > seen["value"]:
                merged[key] = {**f, "values": seen["values"]}
    return list(merged.values())


def fold_repeats(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per test from its repetitions: ``pass`` or ``fail`` when every
    repetition agreed, ``flaky`` when it both passed and failed (never a pass).
    Each repetition's outcome, duration, failure and properties are kept in
    ``repeats``; the record shows the first failing repetition (else the last)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault(base_nodeid(rec["nodeid"]), []).append(rec)
    folded = []
    for nodeid, reps in groups.items():
        shown = next((r for r in reps if r["outcome"] in ("fail", "error")), reps[-1])
        rec = {**shown, "nodeid": nodeid, "name": base_nodeid(shown["name"])}
        rec["outcome"] = _folded_outcome([r["outcome"] for r in reps])
        rec["duration"] = round(sum(r["duration"] for r in reps), 3)
        rec["repeats"] = [
            {
                "outcome": r["outcome"],
                "duration": r["duration"],
                "summary": r.get("summary"),
                "properties": r.get("properties") or {},
            }
            for r in reps
        ]
        if rec["outcome"] == FLAKY:
            said = [f"{i}: {r['outcome']}" for i, r in enumerate(reps, 1) if r["outcome"] != "pass"]
            rec["summary"] = (
                f"flaky: {sum(r['outcome'] == 'pass' for r in reps)} of {len(reps)} repetitions passed "
                f"(failed: {', '.join(said)}); first failure: {shown.get('summary') or ''}"
            )[:600]
        rec["properties"] = {**(rec.get("properties") or {}), "figures": _worst_figures(reps)}
        broken = next((r["harness_error"] for r in reps if r.get("harness_error")), None)
        if broken:
            rec["harness_error"] = broken
        folded.append(rec)
    return folded


def run_record(
    kit: KitConfig,
    servers: list[dict[str, Any]],
    started: str,
    exitstatus: int,
    collected: int,
    targets: list[str] | None = None,
) -> dict[str, Any]:
    """The ``run`` part of results.json."""
    return {
        "kit_version": __version__,
        "kit_commit": _kit_commit(),
        "extension": {
            "name": kit.extension.name,
            "source_hash": kit.extension.source_hash() if kit.extension.source else None,
            "packages": list(kit.extension.packages),
            "apt_sources": [src.describe() for src in kit.extension.apt_sources],
            "recipe": kit.extension.recipe,
            "library": kit.extension.library,
            "source": str(kit.extension.source) if kit.extension.source else None,
            "make_args": kit.extension.make_args,
        },
        "profile": kit.profile.name,
        "profile_spec": profile_spec(kit.profile),
        "tiers": list(kit.profile.tiers),
        "targets": targets if targets is not None else list(kit.targets),
        "servers": servers,
        "seed": kit.seed,
        "host_kernel": os.uname().release,
        "started": started,
        "finished": _now(),
        "exit_status": exitstatus,
        "collected": collected,
    }


def profile_spec(profile: Profile) -> dict[str, Any]:
    """What a server of the run was given and watched, from its profile: enough for
    ``bgw-conformance repro`` to rebuild it without the kit (settings, setup SQL,
    the kinds of processes, the workload)."""
    return {
        "path": str(profile.path),
        "server": dict(profile.server),
        "setup": [{"database": s.database, "sql": list(s.sql)} for s in profile.setup],
        "processes": [dataclasses.asdict(p) for p in profile.processes],
        "workload": dataclasses.asdict(profile.workload) if profile.workload else None,
    }


def not_packaged(kit: KitConfig, target: str, major: int, packages: list[str], suite: str) -> dict[str, Any]:
    """The results of a run on a major that Debian does not package the
    extension for: no test ran, and every claimed tier says so."""
    started = _now()
    run = run_record(kit, [{"target": target, "major": major, "version": ""}], started, 0, 0, [target])
    run["not_packaged"] = {"packages": packages, "suite": suite}
    run["expectations"] = None
    run["unexpected"] = []
    return {"run": run, "tests": []}


def _schema_problem(data: object) -> str | None:
    """What keeps ``data`` from being a results.json this kit wrote (None when nothing does)."""
    if not isinstance(data, dict) or not isinstance(data.get("run"), dict):
        return "no 'run' object"
    run = data["run"]
    if not isinstance(run.get("targets"), list) or not isinstance(run.get("started"), str):
        return "its 'run' has no 'targets' list or 'started' time"
    if not isinstance(data.get("tests"), list):
        return "no 'tests' list"
    for t in data["tests"]:
        if not (
            isinstance(t, dict) and isinstance(t.get("nodeid"), str) and isinstance(t.get("outcome"), str)
        ):
            return "a test record without 'nodeid' and 'outcome'"
        if not isinstance(t.get("clauses"), list):
            return f"test {t['nodeid']} has no 'clauses' list"
    return None


def load(path: Path) -> dict[str, Any]:
    """A results.json, checked to be one: bad input is one line naming the file (``KitError``)."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise KitError(f"{path}: cannot read it ({exc.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KitError(f"{path}: not a results.json (not JSON: {exc})") from None
    problem = _schema_problem(data)
    if problem:
        raise KitError(f"{path}: not a results.json of bgw-conformance ({problem})")
    return data
