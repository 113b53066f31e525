"""Reports, on recorded results: rendering, merging, the verdict, and the
pages as a person sees them in headless Chromium."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conformance import report

RECORDED = Path(__file__).parent / "data" / "results_pg17.json"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "reports" / "screenshots"


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
    contract = report.load_contract()
    assert len(contract) >= 25 and all(c.level in ("MUST", "SHOULD") for c in contract.values())
    good, bad = recorded(), failing()
    assert report.clause_status(bad)["CRASH-3"] == "fail"
    assert report.verdict(bad, contract) is False
    tested = set(report.clause_status(good))
    assert report.verdict(good, contract) is (tested >= {c for c, v in contract.items() if v.level == "MUST"})


def test_run_page_holds_summary_clauses_tests_and_drilldowns() -> None:
    res = failing()
    page = report.render_run(res)
    assert "NOT CONFORMANT" in page and "1 fail" in page
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

    dom = _browser(f"file://{tmp_path}/matrix.html", "--dump-dom")
    assert dom.count('class="cell ') >= len(report.load_contract())

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, url in (
        ("run-filtered.png", f"file://{run_dir}/index.html#outcome=fail"),
        ("matrix.png", f"file://{tmp_path}/matrix.html"),
    ):
        _browser(url, f"--screenshot={SCREENSHOTS / name}")
        assert (SCREENSHOTS / name).stat().st_size > 10_000
