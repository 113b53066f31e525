"""The slow pass (``run --slow FACTOR``): its flips, how they gate, its bad input,
and that it really cuts a container's CPU."""

from __future__ import annotations

import copy
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conformance import slow
from conformance.summary import summarize
from conformance.verdicts import clause_status


def _run(outcomes: dict[str, str]) -> dict[str, Any]:
    """A results record of one target: one test per clause, with these outcomes."""
    tests = [
        {
            "nodeid": f"bgworker/test_x.py::test_{c.lower().replace('-', '_')}[pg17]",
            "name": f"test_{c}[pg17]",
            "family": c.split("-")[0].lower(),
            "clauses": [c],
            "outcome": o,
            "duration": 1.0,
            "target": "pg17",
            "properties": {"tier": "bgworker", "figures": []},
        }
        for c, o in outcomes.items()
    ]
    return {"run": {"targets": ["pg17"], "profile": "p", "tiers": ["bgworker"]}, "tests": tests}


def test_a_clause_passing_at_full_speed_and_failing_slow_is_its_failure() -> None:
    normal = _run({"STOP-1": "pass", "SHUT-1": "pass", "LOG-1": "fail"})
    slowed = _run({"STOP-1": "fail", "SHUT-1": "pass", "LOG-1": "fail"})
    slowed["tests"][0]["summary"] = "launcher back after 7.1s, deadline 6s"
    found = slow.flips(normal, slowed)
    assert [(f["clause"], f["slow_summary"]) for f in found] == [
        ("STOP-1", "launcher back after 7.1s, deadline 6s")
    ]
    merged = slow.apply(normal, slowed, 16.0, Path("/r/slow-x16/run"))
    assert normal["tests"][0]["outcome"] == "pass", "the normal record is not changed in place"
    stop = merged["tests"][0]
    assert stop["outcome"] == "fail" and stop["properties"]["only_when_slow"] == ["STOP-1"]
    assert stop["summary"].startswith("only when slow (CPU 1/16): STOP-1 passed at full speed")
    assert merged["run"]["slow"]["scaled_deadlines"] == ["START_S", "CRASH_RECOVERY_S"]
    status = clause_status(merged)
    assert status["STOP-1"] == "fail" and status["SHUT-1"] == "pass"
    # a clause that failed at full speed too is not a timing-window finding: it is a failure already
    assert [f["clause"] for f in merged["run"]["slow"]["flips"]] == ["STOP-1"]


def test_a_flip_fails_the_gate_and_no_flip_changes_nothing() -> None:
    normal = _run({"STOP-1": "pass", "SHUT-1": "pass"})
    same = slow.apply(normal, copy.deepcopy(normal), 4.0, Path("/r"))
    assert summarize(same, 0, Path("/r"))["exit_status"] == 0
    flipped = slow.apply(normal, _run({"STOP-1": "pass", "SHUT-1": "fail"}), 4.0, Path("/r"))
    assert summarize(flipped, 1, Path("/r"))["exit_status"] == 1


@pytest.mark.parametrize(
    "argv, said",
    [
        (["--slow", "1"], "FACTOR is a number above 1"),
        (["--slow", "fast"], "FACTOR is a number above 1"),
        (
            ["--slow", "4", "--target", "local"],
            "--slow cuts a container's CPU: it cannot run on the local target",
        ),
    ],
)
def test_bad_slow_input_is_exit_2(argv: list[str], said: str) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "conformance.cli", "run", *argv], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 2 and said in res.stderr, res.stderr


def test_the_slow_pass_cuts_the_servers_cpu() -> None:
    """The same CPU-bound statement, on a server of the slow pass (BGWC_SLOW=8)
    and on a normal one: the slow one takes several times as long."""
    script = """
import sys, time
from conformance.config import KitConfig, OPTIONS
from conformance.targets import make_target
kit = KitConfig.from_values({**{k: d for k, (d, _) in OPTIONS.items()}, "target": "pg17", "seed": ""})
t = make_target("pg17", kit)
try:
    t0 = time.monotonic()
    t.sql("SELECT count(*) FROM generate_series(1, 2000000)")
    print(time.monotonic() - t0)
finally:
    t.close()
"""

    def timed(env: dict[str, str]) -> float:
        import os

        res = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, **env},
        )
        assert res.returncode == 0, res.stderr[-2000:]
        return float(res.stdout.strip().splitlines()[-1])

    t0 = time.monotonic()
    normal, slowed = timed({"BGWC_SLOW": ""}), timed({"BGWC_SLOW": "8"})
    print(
        f"2M rows: {normal:.2f}s at full speed, {slowed:.2f}s at 1/8 of a core ({time.monotonic() - t0:.0f}s)"
    )
    assert slowed > 3 * normal, (normal, slowed)
