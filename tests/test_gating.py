"""Gating a CI on unexpected results: expectations files, statuses, the
summary, exit status 0/1/2 and junit.xml.

The first part judges recorded results (no server).  The second runs the
real command against real servers (``-m images``: once, in ``tox -e images``):
the reference pool with a stale expectation, a server that does not start,
an interrupted run, and pg_cron's known orphan findings accepted into an
expectations file.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from conformance import expectations as ex
from conformance import report, summary, verdicts
from conformance.config import KitConfig
from conformance.paths import fixtures_dir
from conformance.waiting import wait_until

RECORDED = Path(__file__).parent / "data" / "results_pg17_tiers.json"  # a full run of the current suite
CLI = [sys.executable, "-P", "-m", "conformance.cli"]


def recorded() -> dict[str, Any]:
    return json.loads(RECORDED.read_text())


def _test(res: dict[str, Any], clause: str) -> dict[str, Any]:
    return next(t for t in res["tests"] if clause in t["clauses"])


def _exp(tmp_path: Path, text: str) -> ex.Expectations:
    path = tmp_path / "x.expectations.toml"
    path.write_text(text)
    return ex.load(path)


# -- the file -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, message",
    [
        (
            '[[expect]]\ntest = "a"\noutcome = "pass"\nreason = "r"\n',
            "outcome 'pass' is not one of fail, flaky",
        ),
        (
            '[[expect]]\ntest = "a"\nclause = "B-1"\noutcome = "fail"\nreason = "r"\n',
            "exactly one of test or",
        ),
        ('[[expect]]\noutcome = "fail"\nreason = "r"\n', "exactly one of test or clause"),
        ('[[expect]]\ntest = "a"\noutcome = "fail"\n', "give a reason"),
        ('[[expect]]\ntest = "a"\noutcome = "fail"\nreason = "r"\nwhy = 1\n', "unknown key 'why'"),
        ('[[expect]]\ntest = "a"\noutcome = "fail"\nreason = "r"\nmajors = ["17"]\n', "majors must be"),
        ('[[expect]]\ntest = "a"\noutcome = "fail"\nreason = "r"\ntargets = "pg17"\n', "targets must be"),
        ("[other]\n", "unknown table 'other'"),
        ("[[expect]\n", "not valid TOML"),
    ],
)
def test_bad_expectations_file_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ex.ExpectationsError, match=None) as err:
        _exp(tmp_path, text)
    assert message in str(err.value) and str(tmp_path) in str(err.value)


def test_rendered_file_loads_back_to_the_same_entries(tmp_path: Path) -> None:
    entries = [
        ex.Expectation("fail", 'a "quoted" reason', test="bgworker/t.py::x[drop]", targets=("pg13", "pg17")),
        ex.Expectation("flaky", "sometimes", clause="KILL-1", majors=(18,), link="https://example.org/1"),
        ex.Expectation("skip", "hangs the server", test="faults/t.py::y"),
    ]
    path = tmp_path / "p.expectations.toml"
    path.write_text(ex.render("p", entries))
    assert list(ex.load(path).entries) == entries


def test_test_id_drops_only_the_target() -> None:
    assert ex.test_id("a.py::t[pg17]", "pg17") == "a.py::t"
    assert ex.test_id("a.py::t[pg17-worker-before-connect]", "pg17") == "a.py::t[worker-before-connect]"
    assert ex.test_id("a.py::t[seed11-local]", "local") == "a.py::t[seed11]"
    assert ex.test_id("a.py::t", None) == "a.py::t"


# -- a test's status ----------------------------------------------------------------
def test_statuses_from_outcome_and_entries(tmp_path: Path) -> None:
    exp = _exp(
        tmp_path,
        '[[expect]]\ntest = "t.py::a"\ntargets = ["pg17"]\noutcome = "fail"\nreason = "known"\n'
        '[[expect]]\nclause = "DB-3"\nmajors = [18]\noutcome = "fail"\nreason = "retries"\n'
        '[[expect]]\ntest = "t.py::f"\noutcome = "flaky"\nreason = "sometimes"\n',
    )
    assert ex.judge(exp, "t.py::a", "pg17", 17, "fail", ["X-1"]).status == "expected-fail"
    assert ex.judge(exp, "t.py::a", "pg17", 17, "error", ["X-1"]).status == "expected-fail"
    assert ex.judge(exp, "t.py::a", "pg18", 18, "fail", ["X-1"]).status == "fail"  # not there
    assert ex.judge(exp, "t.py::a", "pg17", 17, "pass", ["X-1"]).status == "unexpected-pass"
    assert ex.judge(exp, "t.py::b", "pg17", 17, "fail", ["X-1"]).status == "fail"
    # a clause entry covers the clause's failure, not another clause of the same test
    assert ex.judge(
        exp, "t.py::d", "pg18", 18, "fail", ["DB-1", "DB-3"], {"DB-1": "pass", "DB-3": "fail"}
    ).status == ("expected-fail")
    assert ex.judge(
        exp, "t.py::d", "pg18", 18, "fail", ["DB-1", "DB-3"], {"DB-1": "fail", "DB-3": "fail"}
    ).status == ("fail")
    assert (
        ex.judge(exp, "t.py::d", "local", 18, "fail", ["DB-3"]).status == "expected-fail"
    )  # majors: local too
    # a passing test of a clause expected to fail is a pass; the clause is judged as a whole
    assert ex.judge(exp, "t.py::d", "pg18", 18, "pass", ["DB-3"]).status == "pass"
    assert ex.judge(exp, "t.py::f", "pg13", 13, "pass", []).status == "flaky"
    assert ex.judge(exp, "t.py::f", "pg13", 13, "fail", []).status == "flaky"
    assert ex.judge(exp, "t.py::a", "pg17", 17, "not-applicable", ["X-1"]).status == "not-applicable"


def _failing(res: dict[str, Any], clause: str, message: str = "AssertionError: no") -> dict[str, Any]:
    t = _test(res, clause)
    t["outcome"], t["message"], t["summary"] = "fail", message, message
    return t


def test_summary_gates_on_unexpected_must_results_only(tmp_path: Path) -> None:
    contract = verdicts.load_contract()
    res = recorded()
    _failing(res, "CRASH-3")
    _failing(res, "LOG-2")["properties"]["clause_outcomes"] = {"LOG-1": "pass", "LOG-2": "fail"}  # a SHOULD
    res["run"]["unexpected"] = ex.apply(res, None)
    s = summary.summarize(res, 1, tmp_path, contract)
    assert (s["verdict"], s["exit_status"], s["gate"]) == ("NOT CONFORMANT", 1, "fail")
    assert sorted((u["clauses"], u["level"]) for u in s["unexpected"]) == [
        (["CRASH-3"], "MUST"),
        (["LOG-2"], "SHOULD"),
    ]
    line = summary.terminal(s, tmp_path)
    assert "UNEXPECTED FAIL CRASH-3 on pg17" in line and "(SHOULD: does not gate)" in line

    crash3 = ex.test_id(_test(res, "CRASH-3")["nodeid"], "pg17")
    exp = _exp(
        tmp_path, f'[[expect]]\ntest = "{crash3}"\noutcome = "fail"\nreason = "known"\nlink = "https://x/1"\n'
    )
    res["run"]["unexpected"] = ex.apply(res, exp)
    s = summary.summarize(res, 1, tmp_path, contract)
    assert (s["verdict"], s["exit_status"], s["gate"]) == (
        "NOT CONFORMANT",
        0,
        "pass",
    )  # never green, not gating
    assert [e["link"] for e in s["expected"]] == ["https://x/1"]
    faults = verdicts.tier_verdicts(res, contract)["faults"]
    assert faults.text == "1 MUST failed (1 expected)" and faults.status == "failed"
    page = report.render_run(res, summary=s)
    assert "class='expected-fail'" in page and "Gate: PASS" in page and "https://x/1" in page


def test_a_listed_failure_that_passes_is_prominent(tmp_path: Path) -> None:
    res = recorded()
    tid = ex.test_id(_test(res, "JOB-3")["nodeid"], "pg17")
    exp = _exp(
        tmp_path,
        f'[[expect]]\ntest = "{tid}"\noutcome = "fail"\nreason = "was broken"\n'
        '[[expect]]\nclause = "JOB-1"\ntargets = ["pg17"]\noutcome = "fail"\nreason = "was broken too"\n',
    )
    res["run"]["unexpected"] = ex.apply(res, exp)
    s = summary.summarize(res, 0, tmp_path)
    assert s["exit_status"] == 1 and s["verdict"] == "CONFORMANT"
    assert sorted(u.get("test") or u.get("clause") for u in s["unexpected"]) == sorted([tid, "JOB-1"])
    page = report.render_run(res, summary=s)
    assert "update the expectations file" in page and "class='unexpected-pass'" in page
    assert "expectations update" in summary.terminal(s, tmp_path)


def test_broken_harness_and_interrupt_are_never_a_verdict(tmp_path: Path) -> None:
    res = recorded()
    t = _failing(res, "KILL-1")
    t["outcome"], t["harness_error"] = (
        "error",
        "TargetError: pg_ctl start exited 1\n... FATAL:  invalid value",
    )
    res["run"]["unexpected"] = ex.apply(res, None)
    s = summary.summarize(res, 1, tmp_path)
    assert (s["verdict"], s["exit_status"]) == ("HARNESS ERROR", 2) and "FATAL:  invalid value" in s["cause"]
    assert "NOT CONFORMANT" not in summary.terminal(s, tmp_path)
    assert "HARNESS ERROR" in report.render_run(res, summary=s)

    res = recorded()
    res["run"]["collected"] = len(res["tests"]) + 10
    res["run"]["unexpected"] = ex.apply(res, None)
    s = summary.summarize(res, 2, tmp_path)
    assert (s["verdict"], s["exit_status"]) == ("INTERRUPTED", 2)
    assert s["cause"] == f"interrupted after {len(res['tests'])} of {len(res['tests']) + 10} tests"
    for code, cause in ((3, "internal error"), (4, "command line"), (5, "no test was selected")):
        s = summary.summarize(recorded(), code, tmp_path)
        assert s["verdict"] == "HARNESS ERROR" and cause in s["cause"] and s["exit_status"] == 2


# -- accepting runs -------------------------------------------------------------------
def _as(res: dict[str, Any], target: str) -> dict[str, Any]:
    res = copy.deepcopy(res)
    res["run"]["targets"] = [target]
    res["run"]["servers"][0].update(target=target, major=int(target[2:]))
    for t in res["tests"]:
        t["nodeid"] = t["nodeid"].replace("[pg17", f"[{target}")
        t["target"] = target
    return res


def test_update_accepts_failures_drops_fixed_ones_and_marks_flaky(tmp_path: Path) -> None:
    bad17 = recorded()
    _failing(bad17, "CRASH-3", "AssertionError: not fresh")
    bad18 = _as(bad17, "pg18")
    entries, changes = ex.update(None, [bad17, bad18])
    crash3 = ex.test_id(_test(bad17, "CRASH-3")["nodeid"], "pg17")
    assert [(e.test, e.targets, e.outcome) for e in entries] == [(crash3, ("pg17", "pg18"), "fail")]
    assert entries[0].reason == "CRASH-3 fails: not fresh"
    assert len(changes) == 2

    # later: fixed on 18, flaky on 17 (one run failed, one passed); pg13 (not run) keeps its entry
    before = ex.Expectations(None, (*entries, ex.Expectation("fail", "old", test=crash3, targets=("pg13",))))
    good18 = _as(recorded(), "pg18")
    entries, changes = ex.update(before, [bad17, recorded(), good18])
    got = {(e.outcome, e.targets, e.reason) for e in entries}
    assert got == {
        ("fail", ("pg13",), "old"),
        ("flaky", ("pg17",), "passed and failed in the runs accepted"),
    }, entries
    # and the file it writes judges the same runs as nothing unexpected
    path = tmp_path / "p.expectations.toml"
    path.write_text(ex.render("p", entries))
    for res in (bad17, recorded(), good18):
        assert [u for u in ex.apply(copy.deepcopy(res), ex.load(path))] == []


def test_update_drops_a_clause_entry_where_every_test_of_it_passed() -> None:
    """An entry that covered every target and now passes on pg17 keeps covering
    every other target there is: each supported major (19 included) and local."""
    from conformance.targets.spec import all_names

    before = ex.Expectations(None, (ex.Expectation("fail", "old", clause="JOB-1"),))
    entries, _ = ex.update(before, [recorded()])
    assert [(e.clause, set(e.targets)) for e in entries] == [("JOB-1", set(all_names()) - {"pg17"})]
    assert {"pg13", "pg15", "pg18", "pg19", "local"} == set(entries[0].targets)


# -- the command line -----------------------------------------------------------------
def test_bad_expectations_file_is_exit_2_before_anything_starts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[expect]]\ntest = "a"\noutcome = "maybe"\nreason = "r"\n')
    t0 = time.monotonic()
    res = subprocess.run([*CLI, "run", "--expectations", str(bad)], capture_output=True, text=True)
    assert res.returncode == 2 and time.monotonic() - t0 < 20
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "outcome 'maybe' is not one of" in lines[0], res.stderr
    res = subprocess.run([*CLI, "run", "--target", "pg99"], capture_output=True, text=True)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    res = subprocess.run([*CLI, "run", "--no-such-option"], capture_output=True, text=True)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_version() -> None:
    from conformance import __version__

    res = subprocess.run([*CLI, "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == f"bgw-conformance {__version__}"


# -- real runs ------------------------------------------------------------------------
def _run(
    args: list[str], tmp_path: Path, timeout: float = 600
) -> tuple[subprocess.CompletedProcess[str], Path]:
    reports = tmp_path / "reports"
    res = subprocess.run(
        [*CLI, "run", "--reports", str(reports), *args], capture_output=True, text=True, timeout=timeout
    )
    runs = sorted(reports.glob("*/summary.json"))
    return res, runs[-1].parent if runs else reports


def _junit(run_dir: Path) -> dict[str, ET.Element]:
    return {tc.get("name", ""): tc for tc in ET.parse(run_dir / "junit.xml").getroot().iter("testcase")}


@pytest.mark.images
def test_stale_expectation_fails_the_gate_and_json_is_the_summary(
    tmp_path: Path, bgwc_config: KitConfig
) -> None:
    target = bgwc_config.targets[0]
    exp = tmp_path / "stale.toml"
    exp.write_text(
        '[[expect]]\ntest = "pool/test_jobs.py::test_finished_job_leaves"\n'
        'outcome = "fail"\nreason = "was broken"\n'
    )
    res, run_dir = _run(
        ["--target", target, "--expectations", str(exp), "--json", "--", "-k", "test_jobs"], tmp_path
    )
    assert res.returncode == 1, res.stderr[-3000:]
    s = json.loads(res.stdout)  # stdout holds the summary and nothing else
    assert s == json.loads((run_dir / "summary.json").read_text())
    assert (s["verdict"], s["gate"]) == ("CONFORMANT", "fail")
    assert [(u["test"], u["status"]) for u in s["unexpected"]] == [
        ("pool/test_jobs.py::test_finished_job_leaves", "unexpected-pass")
    ]
    assert "UNEXPECTED PASS" in res.stderr and "expectations update" in res.stderr
    failure = _junit(run_dir)[f"test_finished_job_leaves[{target}]"].find("failure")
    assert failure is not None and "unexpected pass" in failure.get("message", "")


@pytest.mark.images
def test_server_that_does_not_start_is_a_harness_error(tmp_path: Path, bgwc_config: KitConfig) -> None:
    text = (fixtures_dir() / "profiles" / "bgw_pool.toml").read_text()
    assert "\n[server]\n" in text
    broken = tmp_path / "broken.toml"
    broken.write_text(
        text.replace('name = "bgw_pool"', 'name = "broken"').replace(
            "\n[server]\n", '\n[server]\n"shared_buffers" = "nonsense"\n'
        )
    )
    res, run_dir = _run(
        ["--profile", str(broken), "--target", bgwc_config.targets[0], "--", "-k", "test_start"], tmp_path
    )
    assert res.returncode == 2, res.stdout[-3000:]
    assert "HARNESS ERROR" in res.stdout and "NOT CONFORMANT" not in res.stdout + res.stderr
    assert '"shared_buffers"' in res.stdout or "shared_buffers" in res.stdout
    assert json.loads((run_dir / "summary.json").read_text())["verdict"] == "HARNESS ERROR"


@pytest.mark.images
def test_interrupted_run_says_interrupted(tmp_path: Path, bgwc_config: KitConfig) -> None:
    reports = tmp_path / "reports"
    out = tmp_path / "out.log"
    with out.open("w") as log:
        child = subprocess.Popen(
            [
                *CLI,
                "run",
                "--target",
                bgwc_config.targets[0],
                "--reports",
                str(reports),
                "--",
                "-v",
                "-k",
                "pool",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            wait_until(
                lambda: " PASSED" in out.read_text(),
                180,
                what="the run's first passed test",
                context=lambda: out.read_text()[-2000:],
            )
            child.send_signal(signal.SIGINT)
            wait_until(lambda: child.poll() is not None, 120, what="the run to end after Ctrl-C")
        finally:
            if child.poll() is None:
                child.kill()
    text = out.read_text()
    assert child.returncode == 2, text[-3000:]
    assert "INTERRUPTED" in text and "NOT CONFORMANT" not in text, text[-3000:]
    (summ,) = reports.glob("*/summary.json")
    s = json.loads(summ.read_text())
    assert (
        s["verdict"] == "INTERRUPTED" and s["exit_status"] == 2 and s["cause"].startswith("interrupted after")
    )


@pytest.mark.images
def test_known_findings_accepted_then_gated(tmp_path: Path) -> None:
    """pg_cron's orphan findings (reproduced by hand: fixtures/profiles/notes/pg_cron.md): run,
    accept, run again: the second run passes the gate and junit shows them skipped with the reason."""
    exp = tmp_path / "pg_cron.expectations.toml"
    args = ["--profile", "pg_cron", "--target", "pg17", "--expectations", str(exp), "--", "-k", "orphan"]
    exp.write_text(ex.render("pg_cron"))
    first, run1 = _run(args, tmp_path)
    assert first.returncode == 1, first.stdout[-3000:]
    assert "UNEXPECTED FAIL ORPHAN-1 on pg17" in first.stdout
    upd = subprocess.run(
        [*CLI, "expectations", "update", "--profile", "pg_cron", "--expectations", str(exp), str(run1)],
        capture_output=True,
        text=True,
    )
    assert upd.returncode == 0, upd.stderr
    accepted = ex.load(exp)
    assert {e.test for e in accepted.entries} == {
        "bgworker/test_orphan.py::test_every_process_exits_with_the_postmaster",
        "bgworker/test_orphan.py::test_next_start_is_clean",
    }
    second, run2 = _run(args, tmp_path)
    assert second.returncode == 0, second.stdout[-3000:]
    assert "NOT CONFORMANT (exit 0)" in second.stdout and "2 known failure(s)" in second.stdout
    for name, case in _junit(run2).items():
        skipped = case.find("skipped")
        assert skipped is not None and skipped.get("message", "").startswith("expected-fail: ORPHAN-"), name
    assert os.path.getsize(run2 / "index.html") > 0
