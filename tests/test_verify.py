"""``bgw-conformance verify``: repetitions folded into one record per test, a
test that both passed and failed is ``flaky``, and flaky gates (exit 1).

The plugin's repetition is checked in a child pytest on a file of two tests
that need no server (one fails only in its second repetition); the CLI's
argument checks need no server either.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conformance import expectations as ex
from conformance import report, summary
from conformance.results import FLAKY, base_nodeid, fold_repeats

CLI = [sys.executable, "-m", "conformance.cli"]

FLIP = """
def test_flips(bgwc_repeat):
    assert bgwc_repeat != 2, "the second repetition fails"


def test_steady(bgwc_repeat):
    assert bgwc_repeat in (1, 2, 3)


def test_always_fails(bgwc_repeat):
    raise AssertionError("every time")
"""


def test_base_nodeid_drops_only_the_repetition() -> None:
    assert base_nodeid("a/t.py::f[pg17-repeat3]") == "a/t.py::f[pg17]"
    assert base_nodeid("a/t.py::f[repeat12]") == "a/t.py::f"
    assert (
        base_nodeid("a/t.py::f[pg17-worker-before-attach-repeat2]") == "a/t.py::f[pg17-worker-before-attach]"
    )
    assert base_nodeid("a/t.py::f[pg17-repeater]") == "a/t.py::f[pg17-repeater]"
    assert base_nodeid("a/t.py::f") == "a/t.py::f"


def _rec(nodeid: str, outcome: str) -> dict[str, object]:
    return {"nodeid": nodeid, "name": nodeid.split("::")[-1], "outcome": outcome, "duration": 1.0}


def test_fold_agrees_or_is_flaky() -> None:
    recs = [
        _rec("t.py::a[pg17-repeat1]", "pass"),
        _rec("t.py::a[pg17-repeat2]", "fail"),
        _rec("t.py::b[pg17-repeat1]", "pass"),
        _rec("t.py::b[pg17-repeat2]", "pass"),
        _rec("t.py::c[pg17-repeat1]", "fail"),
        _rec("t.py::c[pg17-repeat2]", "error"),
        _rec("t.py::d[pg17-repeat1]", "skip"),
        _rec("t.py::d[pg17-repeat2]", "skip"),
    ]
    folded = {r["nodeid"]: r for r in fold_repeats(recs)}
    assert {k: v["outcome"] for k, v in folded.items()} == {
        "t.py::a[pg17]": FLAKY,
        "t.py::b[pg17]": "pass",
        "t.py::c[pg17]": "error",
        "t.py::d[pg17]": "skip",
    }
    assert [r["outcome"] for r in folded["t.py::a[pg17]"]["repeats"]] == ["pass", "fail"]
    assert folded["t.py::a[pg17]"]["duration"] == 2.0
    assert folded["t.py::a[pg17]"]["summary"].startswith("flaky: 1 of 2 repetitions passed")


def test_flaky_is_never_a_pass_unless_an_entry_expects_it(tmp_path: Path) -> None:
    assert ex.judge(None, "t.py::a", "pg17", 17, FLAKY, ["LOG-2"]).unexpected
    f = tmp_path / "e.toml"
    f.write_text('[[expect]]\ntest = "t.py::a"\noutcome = "flaky"\nreason = "known"\n')
    judged = ex.judge(ex.load(f), "t.py::a", "pg17", 17, FLAKY, ["LOG-2"])
    assert judged.status == "flaky" and not judged.unexpected
    f.write_text('[[expect]]\ntest = "t.py::a"\noutcome = "fail"\nreason = "known"\n')
    assert ex.judge(ex.load(f), "t.py::a", "pg17", 17, FLAKY, ["LOG-2"]).unexpected


def _verify(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    (tmp_path / "test_flip.py").write_text(FLIP)
    out = tmp_path / "out"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(tmp_path / "test_flip.py"),
            "-p",
            "no:cacheprovider",
            f"--rootdir={tmp_path}",
            "--bgwc-target=local",
            "--bgwc-repeat=3",
            f"--bgwc-results={out}",
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    return res, json.loads((out / "results.json").read_text())


def test_repetitions_run_in_a_row_and_fold_into_flaky(tmp_path: Path) -> None:
    res, results = _verify(tmp_path, "-v")
    ran = [ln.split("::")[1].split(" ")[0] for ln in res.stdout.splitlines() if "::test_" in ln]
    assert ran[:3] == ["test_flips[repeat1]", "test_steady[repeat1]", "test_always_fails[repeat1]"], ran
    assert ran[3] == "test_flips[repeat2]", ran  # the whole selection, then again
    assert res.returncode == 1
    assert results["run"]["repeat"] == 3 and results["run"]["collected"] == 3
    by = {t["name"]: t for t in results["tests"]}
    assert {n: t["outcome"] for n, t in by.items()} == {
        "test_flips": FLAKY,
        "test_steady": "pass",
        "test_always_fails": "fail",
    }
    assert by["test_flips"]["status"] == "flaky"
    unexpected = results["run"]["unexpected"]
    assert {(u["test"], u["status"]) for u in unexpected} == {
        ("test_flip.py::test_flips", "flaky"),
        ("test_flip.py::test_always_fails", "fail"),
    }
    s = summary.summarize(results, res.returncode, tmp_path)
    assert s["exit_status"] == 1 and s["counts"] == {"flaky": 1, "pass": 1, "fail": 1}
    assert "UNEXPECTED FLAKY" in summary.terminal(s, tmp_path)
    page = report.render_run(results, summary=s)
    assert "class='flaky'" in page and "2 of 3 repetitions passed" in page


def test_a_flaky_should_clause_still_gates(tmp_path: Path) -> None:
    res, results = _verify(tmp_path, "-k", "flips")
    assert [t["outcome"] for t in results["tests"]] == [FLAKY]
    s = summary.summarize(results, res.returncode, tmp_path)
    assert s["gate"] == "fail" and s["exit_status"] == 1  # no clause (a kit check): gates; never a pass
    assert "does not gate" not in summary.terminal(s, tmp_path)


def test_verify_refuses_fewer_than_two_repetitions() -> None:
    res = subprocess.run([*CLI, "verify", "--repeat", "1"], capture_output=True, text=True)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [
        "bgw-conformance: --repeat 1: verify needs at least 2 repetitions"
    ]
