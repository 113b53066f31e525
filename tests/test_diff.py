"""``report diff``: what changed between two runs, on real recorded runs of
the reference pool (tests/data/), edits of them for each kind of change, the
page in Chromium, and two real runs made here, one with a promise the
server does not keep (``-m target``)."""

from __future__ import annotations

import copy
import html
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_report import SCREENSHOTS, _browser

from conformance import diff, diff_report
from conformance import figures as figs
from conformance.config import KitConfig
from conformance.paths import fixtures_dir

DATA = Path(__file__).parent / "data"
CLI = [sys.executable, "-P", "-m", "conformance.cli"]


def load(name: str) -> dict[str, Any]:
    """A real run of the kit (reference pool): figures_pg17/19 have every test's figures (log
    excerpts dropped), pg17_tiers is a full tiered run, pg17 an early untiered one."""
    return json.loads((DATA / name).read_text())


def _test(res: dict[str, Any], clause: str) -> dict[str, Any]:
    return next(t for t in res["tests"] if t["clauses"] == [clause])


def _set(t: dict[str, Any], outcome: str, said: str = "") -> None:
    t["outcome"] = t["status"] = outcome
    if said:
        t["summary"] = t["message"] = said


def _figure(res: dict[str, Any], clause: str, name: str) -> dict[str, Any]:
    return next(f for t in res["tests"] for f in figs.of(t) if f["clause"] == clause and f["name"] == name)


def _names(changes: list[diff.Change], category: str) -> list[str]:
    return [c.name for c in changes if c.category == category]


def test_a_run_against_itself_changes_nothing() -> None:
    res = load("results_figures_pg17.json")
    d = diff.compare(res, copy.deepcopy(res))
    assert d.empty and not d.regressions
    assert d.figures_compared >= 100 and d.figures_unpaired == 0


def edited() -> tuple[dict[str, Any], dict[str, Any]]:
    """A real run, and a copy with one change of each kind."""
    a = load("results_figures_pg17.json")
    b = copy.deepcopy(a)
    _set(_test(b, "STOP-1"), "fail", "AssertionError: launcher not back within 6s")
    _set(_test(b, "SHUT-1"), "flaky", "flaky: 1 of 2 repetitions passed")
    _set(_test(b, "ORPHAN-2"), "not-reached", "the server could not be restored")
    _set(_test(b, "DB-2"), "not-applicable")
    _set(_test(a, "JOB-2"), "fail", "AssertionError: worker still there")  # fails in A, passes in B
    b["tests"].remove(_test(b, "TERM-2"))  # disappeared, and its clause with it
    renamed = _test(b, "LIFE-4")
    renamed["nodeid"] = renamed["nodeid"].replace("test_generation_rises_on_reuse", "test_generation_rises")
    new = copy.deepcopy(_test(b, "LIFE-2"))
    new["nodeid"], new["clauses"] = "pool/test_new.py::test_something_new[pg17]", ["NEW-1"]
    _set(new, "fail", "AssertionError: new and failing")
    b["tests"].append(new)
    _figure(b, "STOP-1", "terminate → launcher back")["value"] *= 3  # 1.05 s → 3.2 s: worse
    _figure(b, "SHUT-1", "fast shutdown")["value"] *= 0.3  # 0.18 s → 0.054 s (floor 0.5 s): noise
    _figure(b, "TERM-5", "launcher terminated → launcher back")["value"] *= 0.25  # 1.03 → 0.26 s: better
    _figure(b, "JOB-1", "submit → returned, p50")["value"] *= 2.5  # 4 ms → 10 ms (floor 0.44 ms): worse
    _figure(b, "LIFE-1", figs.CLOSEST_WAIT)["value"] *= 100  # 0.0018 s → 0.18 s, under 5% of 10 s: noise
    return a, b


def test_each_kind_of_change_is_named() -> None:
    a, b = edited()
    d = diff.compare(a, b)
    assert _names(d.clauses, "newly failing") == ["STOP-1"]
    assert "launcher not back within 6s" in d.clauses[0].detail
    assert _names(d.clauses, "newly flaky") == ["SHUT-1"]
    assert _names(d.clauses, "newly not-reached") == ["ORPHAN-2"]
    assert _names(d.clauses, "newly not-applicable") == ["DB-2"]
    assert _names(d.clauses, "newly passing") == ["JOB-2"]
    assert _names(d.clauses, "appeared") == ["NEW-1"]
    assert _names(d.clauses, "disappeared") == ["TERM-2"]
    stop1 = "bgworker/test_stop.py::test_terminated_workers_come_back_once"
    assert _names(d.tests, "newly failing") == [stop1]
    assert _names(d.tests, "appeared") == ["pool/test_new.py::test_something_new"]
    assert _names(d.tests, "disappeared") == [
        "pool/test_termination.py::test_stale_handle_is_a_noop_even_after_reuse"
    ]
    (ren,) = [c for c in d.tests if c.category == "renamed"]
    assert ren.name == "pool/test_lifecycle.py::test_generation_rises"
    assert ren.detail == "was pool/test_lifecycle.py::test_generation_rises_on_reuse"
    # newly failing or flaky, a new failing test and clause included; never the newly passing
    assert sorted(c.name for c in d.regressions) == sorted(
        [
            "STOP-1",
            "SHUT-1",
            "NEW-1",
            stop1,
            "bgworker/test_shutdown.py::test_fast_shutdown_completes",
            "pool/test_new.py::test_something_new",
        ]
    )
    tiers = {t.tier: (t.before, t.after) for t in d.tiers}
    assert tiers["bgworker"][0].startswith("CONFORMANT") and "MUST failed" in tiers["bgworker"][1]
    # figures: those past the factor, each way; the noise under the floor never
    moved = {(m.clause, m.name): m for m in d.figures}
    assert set(moved) == {
        ("STOP-1", "terminate → launcher back"),
        ("TERM-5", "launcher terminated → launcher back"),
        ("JOB-1", "submit → returned, p50"),
    }
    stop = moved[("STOP-1", "terminate → launcher back")]
    assert stop.worse and stop.ratio == pytest.approx(3.0, rel=0.01) and stop.floor == pytest.approx(0.3)
    assert not moved[("TERM-5", "launcher terminated → launcher back")].worse
    job = moved[("JOB-1", "submit → returned, p50")]
    assert job.worse and job.floor == job.after["floor"]  # a latency's floor is its measured one
    line = diff_report.moved_text(stop)
    assert line.startswith(
        "STOP-1 terminate → launcher back [bgworker/test_stop.py::test_terminated_workers_come_back_once]: "
        f"{stop.before['value']:.3g} → {stop.after['value']:.3g} s (deadline 6 s), 3.0x worse (floor 0.3 s)"
    )
    # a higher factor: only what moved more than it
    assert [m.clause for m in diff.compare(a, b, factor=2.8).figures] == ["STOP-1", "TERM-5"]


def test_pairs_by_profile_and_target_and_says_what_it_could_not_pair(tmp_path: Path) -> None:
    p17, p19 = load("results_figures_pg17.json"), load("results_figures_pg19.json")
    d = diff.pair([(Path("a17"), p17)], [(Path("b19"), p19)])
    assert (
        d.pairs == []
        and [r.target for r in d.only_a] == ["pg17"]
        and [r.target for r in d.only_b] == ["pg19"]
    )
    assert "not paired: A bgw_pool · pg17" in diff_report.text(d)
    page = diff_report.render(d)
    assert "<td>A</td><td>bgw_pool</td><td>pg17</td><td>a17</td>" in page
    assert "<td>B</td><td>bgw_pool</td><td>pg19</td><td>b19</td>" in page

    # a run on both targets at once is split, each target paired with its own
    both = copy.deepcopy(p17)
    both["run"]["targets"] = ["pg17", "pg19"]
    both["run"]["servers"] += p19["run"]["servers"]
    both["tests"] += [t for t in p19["tests"] if t.get("target") == "pg19"]
    older = load("results_pg17_tiers.json")  # an older run of bgw_pool on pg17: superseded
    d = diff.pair([(Path("both"), both)], [(Path("b17"), p17), (Path("b19"), p19), (Path("old"), older)])
    assert [(p.a.target, p.b.path) for p in d.pairs] == [("pg17", "b17"), ("pg19", "b19")]
    assert all(p.empty for p in d.pairs) and not d.only_a and not d.only_b
    assert [r.path for r in d.superseded] == ["old"]


def test_an_early_run_against_a_tiered_one_finds_moved_tests() -> None:
    """The suite moved its tests into tier directories: same file name, same clauses: renamed."""
    d = diff.compare(load("results_pg17.json"), load("results_pg17_tiers.json"))
    renamed = {c.detail: c.name for c in d.tests if c.category == "renamed"}
    assert renamed["was test_lifecycle.py::test_generation_rises_on_reuse"] == (
        "pool/test_lifecycle.py::test_generation_rises_on_reuse"
    )
    assert not d.regressions and "bgworker" in {t.tier for t in d.tiers}


def _write(tmp_path: Path, name: str, res: dict[str, Any]) -> Path:
    (tmp_path / name).mkdir(parents=True)
    path = tmp_path / name / "results.json"
    path.write_text(json.dumps(res))
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "report", "diff", *args], capture_output=True, text=True, timeout=120)


def test_command_line_text_exit_status_and_bad_input(tmp_path: Path) -> None:
    a, b = edited()
    pa, pb = _write(tmp_path, "a", a), _write(tmp_path, "b", b)
    res = _cli(str(pa.parent), str(pb))
    assert res.returncode == 0, res.stderr
    assert "clauses newly failing (1):\n    STOP-1: pass → fail" in res.stdout
    assert "verdict bgworker: CONFORMANT" in res.stdout and "5% of its deadline" in res.stdout
    assert _cli(str(pa), str(pb), "--fail-on-regression").returncode == 1
    assert _cli(str(pa), str(pa), "--fail-on-regression").returncode == 0
    (tmp_path / "junk.json").write_text("not json")
    (tmp_path / "other.json").write_text('{"run": {"targets": ["pg17"]}, "tests": []}')
    for bad, said in (
        ([str(tmp_path / "nope"), str(pb)], "no such file or directory"),
        ([str(tmp_path / "junk.json"), str(pb)], "not a results.json (not JSON"),
        ([str(pa), str(tmp_path / "other.json")], "not a results.json of bgw-conformance"),
        ([str(pa), str(pb), "--factor", "1"], "--factor 1: must be more than 1"),
        ([str(tmp_path / "a" / "empty"), str(pb)], "no such file"),
    ):
        res = _cli(*bad)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert said in res.stderr and res.stdout == "", res.stderr


def test_diff_page_is_self_contained_and_renders_in_chromium(tmp_path: Path) -> None:
    a, b = edited()
    page_path = tmp_path / "diff.html"
    res = _cli(str(_write(tmp_path, "a", a)), str(_write(tmp_path, "b", b)), "-o", str(page_path))
    assert res.returncode == 0, res.stderr
    page = page_path.read_text()
    assert "<script" not in page and "http://" not in page and "https://" not in page
    d = diff.compare(a, b)
    dom = _browser(f"file://{page_path}", "--dump-dom")
    for category in ("newly failing", "newly flaky", "newly passing", "appeared", "disappeared", "renamed"):
        shown = dom.count(f'data-category="{category}"')
        assert shown == len(_names(d.clauses, category)) + len(_names(d.tests, category)), category
    assert dom.count('<tr class="moved">') == len(d.figures) == 3
    assert html.escape(figs.text(_figure(b, "STOP-1", "terminate → launcher back"))) in dom
    assert 'class="verdict-bad"' in dom and "6 newly failing or flaky" in dom
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "diff.png"
    _browser(f"file://{page_path}", f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000


def test_two_real_runs_one_with_a_broken_promise(tmp_path: Path, bgwc_config: KitConfig) -> None:
    """The reference pool twice, STOP-1 only: the second time its launcher restarts after 10 s
    while the profile still promises 1 s; the diff names STOP-1 newly failing and its figure."""
    target = bgwc_config.targets[0]
    text = (fixtures_dir() / "profiles" / "bgw_pool.toml").read_text()
    promise, kept = "restart_s = 1\n", '"bgw_pool.launcher_restart_s" = 1\n'
    assert promise in text and kept in text
    runs = []
    for name, profile in (("a", text), ("b", text.replace(kept, '"bgw_pool.launcher_restart_s" = 10\n'))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "bgw_pool.toml").write_text(profile)
        args = ["run", "--profile", str(tmp_path / name / "bgw_pool.toml"), "--target", target]
        args += ["--reports", str(tmp_path / name / "reports"), "--report-only"]
        res = subprocess.run(
            [*CLI, *args, "--clauses", "STOP-1"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
        runs.append(tmp_path / name / "reports")
    out = tmp_path / "diff.html"
    res = _cli(str(runs[0]), str(runs[1]), "-o", str(out), "--fail-on-regression")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "clauses newly failing (1):\n    STOP-1: pass → fail" in res.stdout, res.stdout
    assert f"bgw_pool · {target}: A " in res.stdout and "not paired:" not in res.stdout
    assert "STOP-1 terminate → launcher back" in res.stdout and "x worse" in res.stdout, res.stdout
    assert "STOP-1" in out.read_text()
