"""``bgw-conformance run`` in GitHub Actions (``conformance/github.py``): the
escaping of workflow commands, when the mode is on, the step summary and the
annotations rendered from a recorded run (no server), and (marked ``target``)
a real run whose profile promises what the reference pool does not keep,
with ``GITHUB_ACTIONS=true`` and ``GITHUB_STEP_SUMMARY`` set as a runner sets them."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from conformance import cli, engine, github, report, summary
from conformance import expectations as ex
from conformance.config import KitConfig
from conformance.paths import fixtures_dir

RECORDED = Path(__file__).parent / "data" / "results_pg17_tiers.json"  # a full run of the current suite
INDEX = Path("reports/20261207-120000-0123456789ab/index.html")


def recorded() -> dict[str, Any]:
    return json.loads(RECORDED.read_text())


def _test(res: dict[str, Any], clause: str) -> dict[str, Any]:
    return next(t for t in res["tests"] if clause in t["clauses"])


def _failing(res: dict[str, Any], clause: str, message: str) -> dict[str, Any]:
    t = _test(res, clause)
    t["outcome"], t["message"], t["summary"] = "fail", message, message
    return t


# -- workflow commands ----------------------------------------------------------------
def test_workflow_command_values_are_escaped_as_the_runner_reads_them() -> None:
    assert github.escape_data("50% of 2\r\nthen: a, b") == "50%25 of 2%0D%0Athen: a, b"
    assert github.escape_property("KILL-1, STOP-1: 50%\n") == "KILL-1%2C STOP-1%3A 50%25%0A"
    assert github.command("error", "a:b", "x\ny") == "::error title=a%3Ab::x%0Ay"
    # escaping % first: a value that looks escaped already comes back as it was written
    assert github.escape_data("%0A") == "%250A"


@pytest.mark.parametrize(
    "argv, env, on",
    [
        ([], {"GITHUB_ACTIONS": "true"}, True),
        ([], {"GITHUB_ACTIONS": "false"}, False),
        ([], {}, False),
        (["--github"], {}, True),
        (["--no-github"], {"GITHUB_ACTIONS": "true"}, False),  # the command line wins
    ],
)
def test_github_mode_is_the_flag_else_the_environment(argv: list[str], env: dict[str, str], on: bool) -> None:
    args = cli.build_parser().parse_args(["run", *argv])
    assert github.enabled(args.github, env) is on


# -- rendering a recorded run ---------------------------------------------------------
def _unexpected_run(tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The recorded run with a MUST failure (CRASH-3), a SHOULD failure (LOG-2) whose
    message needs escaping, and a clause listed as failing that passed (JOB-1)."""
    res = recorded()
    crash3 = _failing(res, "CRASH-3", "AssertionError: launcher not back | after 12.0s\nsecond line")
    crash3["properties"]["kinds"] = {  # judged kind by kind: the failed kinds' details are the reason
        "launcher": {"outcome": "fail", "detail": "back after 12.0s (deadline 6s)"},
        "worker": {"outcome": "pass", "detail": "stayed down"},
    }
    log2 = _failing(res, "LOG-2", "AssertionError: 100% of 40 lines in 10s: spam")
    log2["properties"]["clause_outcomes"] = {"LOG-1": "pass", "LOG-2": "fail"}
    path = tmp_path / "x.expectations.toml"
    path.write_text('[[expect]]\nclause = "JOB-1"\noutcome = "fail"\nreason = "was broken"\n')
    res["run"]["unexpected"] = ex.apply(res, ex.load(path))
    return res, summary.summarize(res, 1, tmp_path)


def test_step_summary_has_the_verdicts_the_counts_and_each_unexpected_result_linked(tmp_path: Path) -> None:
    res, s = _unexpected_run(tmp_path)
    md = github.step_summary(s, res, INDEX)
    assert md.startswith("## bgw-conformance: bgw_pool on pg17: NOT CONFORMANT (exit 1)\n")
    labels = list(s["tiers"])
    assert f"| target | {' | '.join(labels)} |" in md
    assert "| pg17 | " + " | ".join(s["tiers"][lb]["text"] for lb in labels) + " |" in md
    assert "1 MUST failed" in s["tiers"]["faults"]["text"]  # CRASH-3 fails the faults tier
    assert " · ".join(f"{n} {st}" for st, n in sorted(s["counts"].items())) in md
    assert "### Gate: FAIL: 3 unexpected result(s)" in md
    page = report.render_run(res, summary=s)
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and "](reports/" in ln]
    assert len(rows) == 3, md
    by_clause = {row.split(" | ")[0].removeprefix("| "): row for row in rows}
    assert set(by_clause) == {"CRASH-3", "LOG-2", "JOB-1"}
    crash3 = _test(res, "CRASH-3")
    assert (
        f"| {crash3['test']} | pg17 | fail | AssertionError: launcher not back \\| after 12.0s; "
        "launcher: back after 12.0s (deadline 6s) |" in (by_clause["CRASH-3"])
    )
    assert "| fail (SHOULD: does not gate) |" in by_clause["LOG-2"]
    assert "| every test of JOB-1 | pg17 | pass | expected to fail (was broken)" in by_clause["JOB-1"]
    for clause, row in by_clause.items():  # each link is a test's drill-down on the run page
        anchor = re.search(r"\]\(reports/20261207-120000-0123456789ab/index\.html#([^)]+)\)", row)
        assert anchor and f"id='{anchor.group(1)}'" in page, row
        assert anchor.group(1) == report.test_anchor(_test(res, clause))


def test_annotations_are_one_per_unexpected_result_naming_its_clause(tmp_path: Path) -> None:
    res, s = _unexpected_run(tmp_path)
    lines = github.annotations(s, res, INDEX)
    assert len(lines) == 3 and all("\n" not in ln and "\r" not in ln for ln in lines)
    crash3, log2, job1 = (
        next(ln for ln in lines if f"title={c}::" in ln) for c in ("CRASH-3", "LOG-2", "JOB-1")
    )
    anchor = report.test_anchor(_test(res, "CRASH-3"))
    assert crash3 == (
        f"::error title=CRASH-3::unexpected fail on pg17: {_test(res, 'CRASH-3')['test']}: "
        "AssertionError: launcher not back | after 12.0s; launcher: back after 12.0s (deadline 6s); "
        f"report: {INDEX}#{anchor}"
    )
    assert log2.startswith("::warning title=LOG-2::unexpected fail (SHOULD: does not gate)")
    assert "100%25 of 40 lines" in log2
    assert job1.startswith(
        "::error title=JOB-1::unexpected pass on pg17: every test of JOB-1: expected to fail"
    )


def test_a_run_of_several_targets_gets_a_row_of_tier_verdicts_per_target(tmp_path: Path) -> None:
    res = recorded()
    other = copy.deepcopy(res)
    other["run"]["servers"][0].update(target="pg18", major=18)
    for t in other["tests"]:
        t["nodeid"], t["target"] = t["nodeid"].replace("[pg17", "[pg18"), "pg18"
    res["run"]["targets"] = ["pg17", "pg18"]
    res["run"]["servers"] += other["run"]["servers"]
    res["tests"] += other["tests"]
    failed = next(t for t in res["tests"] if "CRASH-3" in t["clauses"] and t["target"] == "pg18")
    failed["outcome"], failed["summary"] = "fail", "AssertionError: no"
    res["run"]["unexpected"] = ex.apply(res, None)
    s = summary.summarize(res, 1, tmp_path)
    md = github.step_summary(s, res, INDEX)
    (row17,) = [ln for ln in md.splitlines() if ln.startswith("| pg17 | ")]
    (row18,) = [ln for ln in md.splitlines() if ln.startswith("| pg18 | ")]
    assert "MUST failed" not in row17 and "1 MUST failed" in row18, md
    (line,) = github.annotations(s, res, INDEX)
    assert line.startswith("::error title=CRASH-3::unexpected fail on pg18: ")


def test_publish_appends_the_summary_and_prints_the_annotations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    res, s = _unexpected_run(tmp_path)
    out = tmp_path / "step_summary.md"
    out.write_text("an earlier step's summary\n")
    github.publish(s, res, tmp_path / "run", {"GITHUB_STEP_SUMMARY": str(out)})
    text = out.read_text()
    assert text.startswith("an earlier step's summary\n## bgw-conformance: ")
    assert f"`{tmp_path / 'run' / 'index.html'}`" in text  # outside the workspace: the path as it is
    printed = capsys.readouterr().out.splitlines()
    assert sorted(ln.split("::")[1] for ln in printed) == [
        "error title=CRASH-3",
        "error title=JOB-1",
        "warning title=LOG-2",
    ]
    github.publish(s, res, tmp_path / "run", {})  # no summary file named: the annotations alone
    assert out.read_text() == text and len(capsys.readouterr().out.splitlines()) == 3


def test_a_broken_run_is_one_error_with_its_cause(tmp_path: Path) -> None:
    s = summary.harness_error("image build failed: postgresql-17-x not found", "x", ["pg17"])
    res = {"run": {"profile": "x", "targets": ["pg17"]}, "tests": []}
    assert github.annotations(s, res, INDEX) == [
        "::error title=HARNESS ERROR::image build failed: postgresql-17-x not found (exit 2); "
        f"report: {INDEX}"
    ]
    md = github.step_summary(s, res, INDEX)
    assert "HARNESS ERROR (exit 2)" in md and "image build failed" in md and "Gate: PASS" not in md


# -- a real run -----------------------------------------------------------------------
def _slow_launcher_profile(tmp_path: Path) -> Path:
    """The reference pool's profile with its launcher restarted by the postmaster after 10 s
    while it still promises 1 s: STOP-1 fails (an extension that does not keep its promise)."""
    text = (fixtures_dir() / "profiles" / "bgw_pool.toml").read_text()
    old = '"bgw_pool.launcher_restart_s" = 1\n'
    assert text.count(old) == 1 and "\nrestart_s = 1\n" in text
    path = tmp_path / "bgw_pool.toml"
    path.write_text(text.replace(old, '"bgw_pool.launcher_restart_s" = 10\n'))
    return path


def test_a_run_in_github_actions_writes_the_step_summary_and_an_error_per_unexpected_failure(
    tmp_path: Path, bgwc_config: KitConfig
) -> None:
    target, run_id = bgwc_config.targets[0], f"gh{uuid.uuid4().hex[:8]}"
    step_summary = tmp_path / "step_summary.md"
    env = {**os.environ, "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(step_summary)}
    argv = ["run", "--profile", str(_slow_launcher_profile(tmp_path)), "--target", target]
    argv += ["--reports", "reports", "--clauses", "STOP-1"]
    res = subprocess.run(
        [sys.executable, "-m", "conformance.cli", *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**env, "BGWC_RUN_ID": run_id},
    )
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-2000:]
    found = engine.client().containers.list(all=True, filters={"label": f"{engine.LABEL_RUN}={run_id}"})
    assert found == [], "the run left containers behind"
    (run_dir,) = (tmp_path / "reports").iterdir()
    assert (run_dir / "junit.xml").is_file()
    errors = [ln for ln in res.stdout.splitlines() if ln.startswith("::")]
    assert len(errors) == 1, res.stdout[-3000:]
    test = f"bgworker/test_stop.py::test_terminated_workers_come_back_once[{target}]"
    anchor = "t-" + re.sub(r"[^A-Za-z0-9]+", "-", test).strip("-")
    index = f"reports/{run_dir.name}/index.html"
    assert errors[0].startswith(f"::error title=STOP-1::unexpected fail on {target}: ")
    assert "; launcher: " in errors[0]  # the kind that failed, with its detail
    assert errors[0].endswith(f"; report: {index}#{anchor}")
    assert f"id='{anchor}'" in (run_dir / "index.html").read_text()
    md = step_summary.read_text()
    assert md.startswith(f"## bgw-conformance: bgw_pool on {target}: NOT CONFORMANT (exit 1)\n"), md
    assert f"| {target} | 1 MUST failed on 1 of " in md, md
    assert "### Gate: FAIL: 1 unexpected result(s)" in md
    (row,) = [ln for ln in md.splitlines() if ln.startswith("| STOP-1 | ")]
    assert f"| {target} | fail | AssertionError: STOP-1" in row and f"]({index}#{anchor}) |" in row
