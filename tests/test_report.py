"""Reports, on recorded results: rendering, merging, the verdict, and the
pages as a person sees them in headless Chromium."""

from __future__ import annotations

import ast
import copy
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conformance import charts, report, verdicts
from conformance import figures as figs

RECORDED = Path(__file__).parent / "data" / "results_pg17.json"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "reports" / "screenshots"

pytest_plugins = ["pytester"]


def recorded() -> dict:  # type: ignore[type-arg]
    return json.loads(RECORDED.read_text())


def failing() -> dict:  # type: ignore[type-arg]
    res = copy.deepcopy(recorded())
    res["run"]["servers"][0]["target"] = "pg18"
    res["run"]["targets"] = ["pg18"]
    victim = next(t for t in res["tests"] if "CRASH-3" in t["clauses"])
    victim["outcome"], victim["message"] = "fail", "AssertionError: the pool was not fresh"
    return res


def test_clause_status_takes_the_worst_outcome_and_verdict_needs_every_must() -> None:
    contract = verdicts.load_contract()
    assert len(contract) >= 25 and all(c.level in ("MUST", "SHOULD") for c in contract.values())
    good, bad = recorded(), failing()
    assert verdicts.clause_status(bad)["CRASH-3"] == "fail"
    assert verdicts.verdict(bad, contract) is False
    # an all-pass run without recorded claims is conformant when it tested any clause of the contract
    assert verdicts.verdict(good, contract) is bool(set(verdicts.clause_status(good)) & set(contract))


def test_run_page_holds_summary_clauses_tests_and_drilldowns() -> None:
    res = failing()
    page = report.render_run(res)
    assert "NOT CONFORMANT" in page and "1 fail" in page
    line = verdicts.tier_line(verdicts.tier_verdicts(res, verdicts.load_contract()))
    assert f'id="verdict"><b>{html.escape(line)}</b>' in page
    for t in res["tests"]:
        assert f"id='{report.test_anchor(t)}'" in page
    assert "the pool was not fresh" in page
    assert "SIGKILL -&gt;" in page  # a fault on the timeline
    assert "http://" not in page and "https://" not in page  # self-contained


def test_merge_builds_a_matrix_linking_each_run(tmp_path: Path) -> None:
    for name, res in (("a", recorded()), ("b", failing())):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(res))
    out = tmp_path / "matrix.html"
    cli = [sys.executable, "-m", "conformance.cli", "report", "merge", str(tmp_path), "-o", str(out)]
    assert subprocess.run(cli, capture_output=True, text=True).returncode == 0
    page = out.read_text()
    assert "NON-CONFORMANT" in page and "pg18" in page
    assert "b/index.html#t-" in page and "a/index.html#t-" in page


TIERED = Path(__file__).parent / "data" / "contract_tiers.md"


def tiered() -> dict[str, verdicts.Clause]:
    return verdicts.load_contract(TIERED)


def claiming(*tiers: str, res: dict | None = None) -> dict:  # type: ignore[type-arg]
    res = copy.deepcopy(res or recorded())
    res["run"]["tiers"] = list(tiers)
    return res


def with_outcome(res: dict, clause: str, outcome: str) -> dict:  # type: ignore[type-arg]
    res = copy.deepcopy(res)
    for t in res["tests"]:
        if clause in t["clauses"]:
            t["outcome"] = outcome
    return res


def without(res: dict, *clauses: str) -> dict:  # type: ignore[type-arg]
    res = copy.deepcopy(res)
    res["tests"] = [t for t in res["tests"] if not set(t["clauses"]) & set(clauses)]
    return res


def test_tiered_contract_parses_tiers_families_and_wrapped_clauses() -> None:
    contract = tiered()
    assert verdicts.load_tiers(TIERED) == {
        "bgworker": "any extension that runs background workers",
        "pool": "an SQL API to submit, stop and list work",
        "faults": "job kinds that crash, hang or ignore SIGTERM",
    }
    assert [c.tier for c in contract.values()] == ["bgworker"] * 4 + ["pool"] * 4 + ["faults"] * 2
    race2 = contract["RACE-2"]
    assert (race2.level, race2.family) == ("SHOULD", "RACE: startup races and databases")
    assert race2.text.endswith("fails the job, not the pool; this clause wraps over three lines.")
    assert contract["LIFE-1"].family == "LIFE: lifecycle" and contract["RACE-1"].text.endswith("success.")


def test_untiered_contract_still_parses_with_an_empty_tier(tmp_path: Path) -> None:
    old = tmp_path / "CONTRACT.md"
    old.write_text(
        "# c\n\npreamble\n\n## LIFE: lifecycle\n\n- **LIFE-1 (MUST)** One\n  launcher.\n"
        "- **LIFE-3 (SHOULD)** Slots.\n\n## CRASH: failures\n\n- **CRASH-1 (MUST)** Errors.\n"
    )
    contract = verdicts.load_contract(old)
    assert verdicts.load_tiers(old) == {}
    assert [(c.id, c.tier, c.family) for c in contract.values()] == [
        ("LIFE-1", "", "LIFE: lifecycle"),
        ("LIFE-3", "", "LIFE: lifecycle"),
        ("CRASH-1", "", "CRASH: failures"),
    ]
    assert contract["LIFE-1"].text == "One launcher."
    assert verdicts.verdict(claiming("pool"), contract) is True  # the untiered contract is always claimed
    assert verdicts.tier_line(verdicts.tier_verdicts(recorded(), contract)) == "contract: CONFORMANT"


def test_tier_verdicts_claimed_unclaimed_failed_and_should_only() -> None:
    contract = tiered()
    res = with_outcome(claiming("bgworker", "pool"), "LIFE-1", "fail")
    res = with_outcome(with_outcome(res, "TERM-1", "flaky"), "RACE-2", "error")
    v = verdicts.tier_verdicts(res, contract)
    assert list(v) == ["bgworker", "pool", "faults"]
    assert v["bgworker"] == verdicts.TierVerdict(
        "bgworker", True, "conformant", 0, 1, "CONFORMANT (1 SHOULD failed)"
    )
    assert (v["pool"].status, v["pool"].must_failed, v["pool"].text) == ("failed", 2, "2 MUST failed")
    faults = v["faults"]
    assert (faults.claimed, faults.status, faults.text) == (False, "not claimed", "not claimed")
    assert verdicts.verdict(res, contract) is False

    should_only = with_outcome(claiming("pool"), "LIFE-4", "fail")
    assert verdicts.tier_verdicts(should_only, contract)["pool"].text == "CONFORMANT (1 SHOULD failed)"
    assert verdicts.verdict(should_only, contract) is True


def test_an_unclaimed_tier_whose_tests_passed_is_still_not_claimed() -> None:
    contract = tiered()
    res = claiming("pool")  # every recorded test passed, the faults and bgworker ones too
    v = verdicts.tier_verdicts(res, contract)
    assert [(t.tier, t.status) for t in v.values()] == [
        ("bgworker", "not claimed"),
        ("pool", "conformant"),
        ("faults", "not claimed"),
    ]
    assert v["faults"].must_failed == 0 and v["faults"].text == "not claimed"
    # a failure in an unclaimed tier does not fail the run either
    assert verdicts.verdict(with_outcome(res, "CRASH-3", "fail"), contract) is True
    # and a run that only passed unclaimed tiers is not conformant
    assert verdicts.verdict(without(res, "LIFE-1", "LIFE-3", "LIFE-4", "TERM-1"), contract) is False


def test_not_run_tiers_and_missing_must_records() -> None:
    contract = tiered()
    res = without(claiming("bgworker", "pool", "faults"), "CRASH-1", "CRASH-3", "LIFE-1")
    v = verdicts.tier_verdicts(res, contract)
    assert (v["faults"].claimed, v["faults"].status, v["faults"].text) == (True, "not run", "not run")
    assert v["pool"].status == "conformant"  # LIFE-1 has no test record (a -k selection): no failure
    assert verdicts.verdict(res, contract) is True
    only_skips = with_outcome(with_outcome(res, "TERM-1", "skip"), "LIFE-3", "not-applicable")
    only_skips = with_outcome(only_skips, "LIFE-4", "skip")
    assert verdicts.tier_verdicts(only_skips, contract)["pool"].status == "not run"
    nothing = without(res, *contract)
    assert {t.status for t in verdicts.tier_verdicts(nothing, contract).values()} == {"not run"}
    assert verdicts.verdict(nothing, contract) is False  # no claimed tier ran


def test_a_skipped_must_clause_fails_a_tier_that_ran() -> None:
    contract = tiered()
    res = with_outcome(with_outcome(claiming("pool"), "TERM-1", "skip"), "LIFE-1", "error")
    pool = verdicts.tier_verdicts(res, contract)["pool"]
    assert (pool.status, pool.must_failed, pool.must_skipped) == ("failed", 1, 1)
    assert pool.text == "1 MUST failed, 1 MUST skipped" and pool.short == "✗ 1 1 skipped"
    assert verdicts.verdict(res, contract) is False


def test_results_without_claims_claim_every_tier() -> None:
    contract = tiered()
    assert {v.claimed for v in verdicts.tier_verdicts(recorded(), contract).values()} == {True}
    assert verdicts.verdict(recorded(), contract) is True
    assert verdicts.verdict(failing(), contract) is False


def test_terminal_summary_ends_with_the_tier_line() -> None:
    res = with_outcome(with_outcome(claiming("bgworker", "pool"), "LIFE-1", "fail"), "TERM-1", "fail")
    for color in (False, True):
        out = report.terminal_summary(res, Path("reports/r/index.html"), color=color, contract=tiered())
        assert out.splitlines()[-1] == (
            "bgworker: CONFORMANT · pool: 2 MUST failed · faults: not claimed; report: reports/r/index.html"
        )
    assert "LIFE-1 fail" in out and "\033[31m" in out  # the family lines are kept, coloured


def test_run_page_shows_the_tier_table_and_groups_clauses_by_tier() -> None:
    res = with_outcome(claiming("bgworker", "pool"), "LIFE-1", "fail")
    page = report.render_run(res, tiered(), tiers=verdicts.load_tiers(TIERED))
    assert 'id="verdict"><b>bgworker: CONFORMANT · pool: 1 MUST failed · faults: not claimed</b>' in page
    assert "NOT CONFORMANT" in page
    assert (
        "<tr id='tier-pool'><td>pool</td><td>an SQL API to submit, stop and list work</td><td>yes</td>"
        "<td class='fail'>1 MUST failed</td></tr>" in page
    )
    assert "<tr id='tier-faults'><td>faults</td>" in page and "<td>no</td><td class='not-applicable'>" in page
    clauses = page[page.index('<table id="clauses">') : page.index("<h2>Tests</h2>")]
    head = "<tr class='tier-head'><th colspan='6'>Tier {}:"
    heads = [clauses.index(head.format(t)) for t in ("bgworker", "pool", "faults")]
    assert heads == sorted(heads) and heads[1] < clauses.index("<td>LIFE-1</td>") < heads[2]
    crash = clauses[heads[2] :]
    assert "not claimed" in crash and "class='pass'>pass<" not in crash  # unclaimed passes are not passes
    assert "http://" not in page and "https://" not in page


def test_matrix_columns_show_tier_verdicts_and_rows_group_by_tier(tmp_path: Path) -> None:
    good = claiming("bgworker", "pool")
    bad = with_outcome(claiming("bgworker", "pool", "faults"), "TERM-1", "fail")
    bad = with_outcome(bad, "LIFE-3", "error")
    page = report.render_matrix(
        [(tmp_path / "a" / "results.json", good), (tmp_path / "b" / "results.json", bad)],
        tiered(),
        out_dir=tmp_path,
        tiers=verdicts.load_tiers(TIERED),
    )
    assert "bgworker ✓" in page and "pool ✓" in page and "faults \u2013" in page  # an en dash: not claimed
    assert "pool ✗ 2" in page and "faults ✓" in page
    rows = [page.index(f"id='matrix-tier-{t}'") for t in ("bgworker", "pool", "faults")]
    assert rows == sorted(rows) and rows[1] < page.index(">TERM-1<") < rows[2]
    assert "<th class='fail'>2 MUST failed</th>" in page
    assert page.count("class='cell ") == 2 * len(tiered())
    assert "a/index.html#t-" in page and "b/index.html#t-" in page


def _chromium() -> str:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("Debian's chromium is not installed (bootstrap.sh installs it)")
    return exe


def _browser(url: str, *extra: str) -> str:
    with tempfile.TemporaryDirectory(prefix="bgwc-chromium-") as profile:
        argv = [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--window-size=1300,3000",
            *extra,
            url,
        ]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def test_pages_render_filter_and_drill_down_in_chromium(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    res = failing()
    (run_dir / "index.html").write_text(report.render_run(res))
    (tmp_path / "matrix.html").write_text(
        report.render_matrix([(run_dir / "results.json", res)], out_dir=tmp_path)
    )

    dom = _browser(f"file://{run_dir}/index.html#outcome=fail", "--dump-dom")
    rows = [line for line in dom.split('<tr class="test"')[1:]]
    shown = [r for r in rows if "display: none" not in r.split(">", 1)[0]]
    assert len(rows) == len(res["tests"]) and len(shown) == 1, "the outcome filter did not apply"
    assert 'data-outcome="fail"' in shown[0]

    victim = next(t for t in res["tests"] if t["outcome"] == "fail")
    dom = _browser(f"file://{run_dir}/index.html#{report.test_anchor(victim)}", "--dump-dom")
    assert f'<details id="{report.test_anchor(victim)}" open="">' in dom, "the drill-down did not open"

    assert '<tr id="tier-' in dom, "the tier table is missing"
    dom = _browser(f"file://{tmp_path}/matrix.html", "--dump-dom")
    assert dom.count('class="cell ') >= len(verdicts.load_contract())
    assert 'class="tier-head"' in dom, "the matrix is not grouped by tier"

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, url in (
        ("run-filtered.png", f"file://{run_dir}/index.html#outcome=fail"),
        ("matrix.png", f"file://{tmp_path}/matrix.html"),
    ):
        _browser(url, f"--screenshot={SCREENSHOTS / name}")
        assert (SCREENSHOTS / name).stat().st_size > 10_000


def test_one_scenario_several_clauses_each_judged_on_its_own() -> None:
    from conformance.verdicts import clause_status

    def rec(outcome: str, own: dict[str, str] | None) -> dict[str, object]:
        return {
            "clauses": ["S-1", "S-2", "S-3"],
            "outcome": outcome,
            "properties": {"clause_outcomes": own} if own else {},
        }

    # S-2 failed, S-1 passed, S-3 was never reached: an error, not a pass
    assert clause_status({"tests": [rec("fail", {"S-1": "pass", "S-2": "fail"})]}) == {
        "S-1": "pass",
        "S-2": "fail",
        "S-3": "error",
    }
    # without per-clause outcomes every clause takes the test's
    assert set(clause_status({"tests": [rec("fail", None)]}).values()) == {"fail"}
    assert set(clause_status({"tests": [rec("skip", {"S-1": "pass"})]}).values()) == {"skip"}


def figured() -> list[dict]:  # type: ignore[type-arg]
    """Real runs (reference pool, 17 and 19) whose tests recorded figures; log excerpts dropped."""
    return [json.loads(p.read_text()) for p in sorted(RECORDED.parent.glob("results_figures_pg*.json"))]


def test_run_page_shows_measured_against_deadline_and_flags_above_half() -> None:
    res = figured()[-1]
    pmd = next(t for t in res["tests"] if "PMD-1" in t["clauses"])
    fig = next(f for f in figs.of(pmd) if f["name"] == "postmaster SIGKILL → all gone")
    page = report.render_run(res)
    assert "<th>measured / deadline</th>" in page
    assert f"<span class='fig'>postmaster SIGKILL → all gone: {fig['value']:.3g} / 1 s</span>" in page
    fig["value"] = 0.62  # above half of 1 s
    pmd["properties"]["figures"] = [fig]
    page = report.render_run(res)
    assert (
        "<span class='fig near'>postmaster SIGKILL → all gone: 0.62 / 1 s <b>▲ above half its deadline</b>"
        in page
    )
    # the drill-down: each figure of the test, then its other properties (the tier is neither)
    details = page[page.index(f"<details id='{report.test_anchor(pmd)}'>") :]
    assert "<h3>figures</h3>" in details and "<td>postmaster SIGKILL → all gone</td>" in details
    assert "<tr><th>tier</th><td>" not in page
    job1 = next(t for t in res["tests"] if t["name"].startswith("test_submit_latency"))
    p50 = next(f for f in figs.of(job1) if f["name"].endswith("p50"))
    assert p50["unit"] == "ms" and 0 < p50["floor"] < p50["value"] < p50["deadline"]
    assert f"(floor {p50['floor']:.3g} ms)" in page
    # every test that waited records its wait closest to its deadline, naming the step
    closest = [f for t in res["tests"] for f in figs.of(t) if f["name"] == figs.CLOSEST_WAIT]
    assert len(closest) >= 60 and all(f["what"] and f["value"] < f["deadline"] for f in closest)
    worst = max(closest, key=lambda f: f["value"] / f["deadline"])
    shown = f"{figs.CLOSEST_WAIT} ({worst['what']}): {worst['value']:.3g} / {worst['deadline']:g} s"
    assert html.escape(shown, quote=True) in report.render_run(res)


_PROBE = """<script>
window.addEventListener('load', function () {
  var out = [];
  document.querySelectorAll('svg.chart').forEach(function (svg) {
    var bars = [];
    svg.querySelectorAll('rect.bar').forEach(function (r) {
      bars.push({value: parseFloat(r.dataset.value), width: r.getBBox().width,
                 shown: r.getBoundingClientRect().width, text: r.nextElementSibling.textContent});
    });
    out.push({clause: svg.dataset.clause, figure: svg.dataset.figure, bars: bars,
              box: svg.getBoundingClientRect().width});
  });
  var pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def test_matrix_charts_render_real_figures_in_chromium(tmp_path: Path) -> None:
    runs = figured()
    assert len({r["run"]["targets"][0] for r in runs}) >= 2, "charts across majors need two recorded runs"
    page = report.render_matrix([(tmp_path / f"r{i}" / "results.json", r) for i, r in enumerate(runs)])
    assert (
        "<script" not in page and "http://" not in page and "https://" not in page
    )  # nothing from elsewhere
    labels = [report.chart_label(r) for r in runs]
    series = charts.figure_series(list(zip(labels, runs, strict=True)))
    assert page.count("<svg ") == len(series) >= 20
    (tmp_path / "matrix.html").write_text(page.replace("</body>", _PROBE + "</body>"))
    dom = _browser(f"file://{tmp_path}/matrix.html", "--dump-dom", "--virtual-time-budget=5000")
    probe = json.loads(html.unescape(dom.split('<pre id="probe">')[1].split("</pre>")[0]))
    assert len(probe) == len(series)
    for chart, ((clause, name), points) in zip(probe, series.items(), strict=True):
        assert (chart["clause"], chart["figure"]) == (clause, name) and chart["box"] > 500
        assert [b["value"] for b in chart["bars"]] == [f["value"] for _, f in points]
        assert [b["text"] for b in chart["bars"]] == [figs.text(f) for _, f in points]
        for bar in chart["bars"]:
            assert bar["shown"] >= 1, f"{clause} {name}: a bar that does not render"
        drawn = [(b["value"], b["width"]) for b in chart["bars"] if b["width"] > 2]
        if len(drawn) > 1:  # bar lengths in proportion to the values
            ratios = [w / v for v, w in drawn]
            assert max(ratios) - min(ratios) <= 0.02 * max(ratios) + 1, (clause, name, drawn)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "matrix-figures.png"
    section = charts.charts_section(list(zip(labels, runs, strict=True)))
    (tmp_path / "figures.html").write_text(f"<!doctype html><html><body>{section}</body></html>")
    _browser(f"file://{tmp_path}/figures.html", f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000


def test_randomized_test_shows_its_replay_command_and_minimal_sequence() -> None:
    res = figured()[0]
    rand = next(t for t in res["tests"] if "RAND-1" in t["clauses"])
    props = rand["properties"]
    assert props["replay"].startswith("bgw-conformance run --target pg17 --seed ")
    page = report.render_run(res)
    assert f"<pre class='replay'>{html.escape(props['replay'], quote=True)}</pre>" in page
    assert f"{len(props['sequences'])} sequence(s) run" in page and "minimal failing sequence" not in page
    rand["outcome"] = "fail"  # as RAND records a failure it shrank
    said = "AssertionError: pool {0: (3, 41)} != model {}"
    props["minimal_sequences"] = [{"error": said, "script": "state = PoolMachine()\nstate.exhaust()"}]
    page = report.render_run(res)
    shown = f"<pre class='minimal'>{said}\nstate = PoolMachine()\nstate.exhaust()</pre>"
    assert "<h3>minimal failing sequence</h3>" + shown in page


def test_a_clause_never_evaluated_is_not_reached_never_failed() -> None:
    """DB-1 failed, so its scenario never judged DB-3: the report, the tier
    verdict and the exit status say DB-3 was not reached, never that it failed;
    with no failure at all, a clause not reached gates as the harness's (2)."""
    from conformance import expectations, summary

    res = json.loads((Path(__file__).parent / "data" / "results_figures_pg17.json").read_text())
    rec = next(t for t in res["tests"] if "DB-3" in t["clauses"])
    rec["outcome"], rec["status"] = "fail", None
    rec["properties"]["clause_outcomes"] = {"DB-1": "fail", "DB-3": "not-reached"}
    res["run"]["unexpected"] = expectations.apply(res, None)
    status = verdicts.clause_status(res)
    assert status["DB-1"] == "fail" and status["DB-3"] == "not-reached"
    page = report.render_run(res)
    assert "not-reached" in page
    summ = summary.summarize(res, 1)
    assert summ["exit_status"] == summary.EXIT_UNEXPECTED and summ["verdict"] == summary.NOT_CONFORMANT
    assert "1 MUST not reached" in summ["tiers"]["bgworker"]["text"]
    rec["properties"]["clause_outcomes"] = {"DB-1": "pass", "DB-3": "not-reached"}
    rec["outcome"], rec["status"] = "error", None
    res["run"]["unexpected"] = expectations.apply(res, None)
    summ = summary.summarize(res, 1)
    assert verdicts.clause_status(res)["DB-1"] == "pass"
    assert summ["exit_status"] == summary.EXIT_HARNESS, summ
    assert "not reached: DB-3" in summ["cause"], summ["cause"]


#: names the verdicts own (``conformance/verdicts.py``): the report renders them, never defines them
_JUDGING = {
    "CONTRACT",
    "Clause",
    "TierVerdict",
    "TIER_STATUSES",
    "tier_label",
    "load_contract",
    "load_tiers",
    "clause_outcomes",
    "clause_status",
    "claimed_tiers",
    "tier_verdicts",
    "overall",
    "verdict",
    "tier_line",
    "_tier_at",
    "_tier_verdict",
    "_overall",
    "_PRECEDENCE",
    "_FAILED",
    "_RAN",
    "_CLAUSE",
    "_FAMILY",
    "_TIER",
    "_SECTION",
}


def _defined(path: Path) -> set[str]:
    """The names a module's top level defines (functions, classes, assignments)."""
    out: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            out |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return out


def test_the_report_only_renders_and_the_verdicts_judge() -> None:
    """The contract model, clause outcomes and tier verdicts live in one place
    (``conformance.verdicts``): ``report.py`` defines none of them, and nothing
    reaches them through ``report``."""
    kit = Path(verdicts.__file__).parent
    assert _defined(Path(report.__file__)) & _JUDGING == set()
    assert _JUDGING - {"_overall"} <= _defined(Path(verdicts.__file__))
    through_report = re.compile(r"\breport\.(" + "|".join(sorted(_JUDGING)) + r")\b")
    for path in [*kit.rglob("*.py"), *Path(__file__).parent.glob("*.py")]:
        if path != Path(__file__):
            assert not through_report.search(path.read_text()), f"{path} judges through report"


def test_an_after_test_invariant_is_its_clause_outcome() -> None:
    """TERM-1's scenario passed, then the after-test check found INV-1/INV-2
    violated: the test fails; TERM-1 passed, INV-1 and INV-2 failed, whatever
    the message says and although the test names neither."""
    from conformance import expectations, mutation, summary

    res = json.loads((Path(__file__).parent / "data" / "results_pg17_tiers.json").read_text())
    rec = next(t for t in res["tests"] if t["clauses"] == ["TERM-1"])
    rec["outcome"], rec["message"] = "fail", "AssertionError: the pool was left broken"
    rec["properties"]["clause_outcomes"] = {"TERM-1": "pass", "INV-1": "fail", "INV-2": "fail"}
    res["run"]["unexpected"] = expectations.apply(res, None)
    status = verdicts.clause_status(res)
    assert (status["TERM-1"], status["INV-1"], status["INV-2"]) == ("pass", "fail", "fail")
    pool = verdicts.tier_verdicts(res, verdicts.load_contract())["pool"]
    assert (pool.status, pool.must_failed) == ("failed", 2)
    assert mutation.failed_clauses(rec) == {"INV-1", "INV-2"}
    summ = summary.summarize(res, 1)
    assert (summ["verdict"], summ["exit_status"]) == (summary.NOT_CONFORMANT, summary.EXIT_UNEXPECTED)
    # a passing test's after-test check counts toward the INV clauses too
    other = next(t for t in res["tests"] if t["clauses"] == ["EXH-1"])
    other["properties"]["clause_outcomes"] = {
        "EXH-1": "pass",
        "INV-1": "pass",
        "INV-2": "pass",
        "INV-3": "pass",
    }
    rec["properties"]["clause_outcomes"] = {"TERM-1": "pass", "INV-1": "pass", "INV-2": "pass"}
    rec["outcome"] = "pass"
    res["run"]["unexpected"] = expectations.apply(res, None)
    assert verdicts.clause_status(res)["INV-3"] == "pass"
    assert verdicts.verdict(res, verdicts.load_contract()) is True
    # a test expected to fail that passed: its own clause is the unexpected pass, not the invariants
    rec["status"] = "unexpected-pass"
    status = verdicts.clause_status(res)
    assert (status["TERM-1"], status["INV-1"]) == ("unexpected-pass", "pass")


AFTER_TEST_CONFTEST = """
import types

import pytest

from conformance.adapters import NotApplicable
from conformance.suite.conftest import pytest_runtest_call  # noqa: F401


class _Target:
    def is_running(self):
        return True

    def ensure_baseline(self):
        pass

    def wait_until(self, ok, timeout, what=""):
        if not ok():
            raise AssertionError(f"timed out waiting for {what}")


class _Adapter:
    def __init__(self, left):
        self.left = left

    def check(self):
        return list(self.left)

    def jobs(self):
        return []

    def busy(self):
        return False


class _Pool:
    def __init__(self, left=(), lost=None):
        self.target, self.adapter, self.lost = _Target(), _Adapter(left), lost
        self.profile = types.SimpleNamespace(pool=None)

    def agreement(self):
        return []

    def configured_capacity(self):
        if self.lost is None:
            raise NotApplicable("no capacity")
        return 4

    def os_workers(self):
        return []

    def capacity_witness(self):
        if self.lost:
            raise AssertionError("3 of 4 submits ran at once")


@pytest.fixture
def pool(request):
    return _Pool(**getattr(request, "param", {}))
"""

AFTER_TEST_TESTS = """
import pytest


@pytest.mark.clause("TERM-1")
def test_leaves_it_clean(pool):
    pass


@pytest.mark.clause("EXH-1")
@pytest.mark.parametrize("pool", [{"left": ["slot 3 leaked"]}], indirect=True)
def test_leaves_a_slot(pool):
    pass


@pytest.mark.clause("TERM-3")
@pytest.mark.parametrize("pool", [{"lost": True}], indirect=True)
def test_loses_capacity(pool):
    pass


@pytest.mark.clause("TERM-2")
@pytest.mark.parametrize("pool", [{"left": ["slot 3 leaked"]}], indirect=True)
def test_fails_on_its_own(pool):
    assert False, "its own failure"
"""


def test_the_after_test_checks_record_their_clause_outcomes(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """The suite's after-test checks, on a pool that is not a server: each
    records INV-1 to INV-3 among the test's clause outcomes (its own clause
    passed) and fails the test on a violation; a test that failed is not checked."""
    from conformance import mutation

    pytester.makeconftest(AFTER_TEST_CONFTEST)
    pytester.makepyfile(test_after=AFTER_TEST_TESTS)
    result = pytester.runpytest_subprocess("--bgwc-target=local", f"--bgwc-results={tmp_path}")
    result.assert_outcomes(passed=1, failed=3)
    res = json.loads((tmp_path / "results.json").read_text())
    tests = {t["name"].split("[")[0]: t for t in res["tests"]}
    own = {name: verdicts.clause_outcomes(t) for name, t in tests.items()}
    assert own["test_leaves_it_clean"] == {"TERM-1": "pass", "INV-1": "pass", "INV-2": "pass"}
    assert own["test_leaves_a_slot"] == {"EXH-1": "pass", "INV-1": "fail", "INV-2": "fail"}
    assert own["test_loses_capacity"] == {"TERM-3": "pass", "INV-1": "pass", "INV-2": "pass", "INV-3": "fail"}
    assert own["test_fails_on_its_own"] == {}
    assert "INV-1/INV-2 violated after the test" in tests["test_leaves_a_slot"]["message"]
    failed = {name: mutation.failed_clauses(t) for name, t in tests.items() if t["outcome"] == "fail"}
    assert failed == {
        "test_leaves_a_slot": {"INV-1", "INV-2"},
        "test_loses_capacity": {"INV-3"},
        "test_fails_on_its_own": {"TERM-2"},
    }
    status = verdicts.clause_status(res)
    assert {c: status[c] for c in ("TERM-1", "EXH-1", "TERM-3", "TERM-2", "INV-1", "INV-2", "INV-3")} == {
        "TERM-1": "pass",
        "EXH-1": "pass",
        "TERM-3": "pass",
        "TERM-2": "fail",
        "INV-1": "fail",
        "INV-2": "fail",
        "INV-3": "fail",
    }
