"""The zoo (``tests/zoo/``): the bgworker tier's mutation test.

Each member is a small bgworker extension: the good citizen, or the good
citizen with one real-world defect (``zoo.toml`` names it, its precedent and
the clauses that must flag it).  Each member is judged by the command users
run, on a real server (``BGWC_ZOO_MAJOR``, default 17), from its own profile,
which declares what its documentation would promise.  A member must be
flagged by exactly its own clauses (the tier's power) and by no other (its
fairness); the clauses its scenario could not reach past its defect are
``not-reached``, never failed.  Every run must end inside its budget (the
sum of its tests' budgets and a set-up allowance) and leave no container.
Members run ``BGWC_ZOO_JOBS`` at a time (default 2: each run mostly waits
on its server, and every clause's figure is timed against its own server).
A member whose ``zoo.toml`` entry says ``topology = "primary+standby"`` runs
on a primary with a streaming hot standby (``--target pgNN+standby``), so
that the clauses of a standby and of its promotion judge it too; the others
run on a lone server (``--target pgNN``).
Each member's row (with its topology) goes into ``reports/zoo-pgNN/zoo.json``,
which the matrix page shows as a table.  Run by ``tox -e zoo``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import tomllib
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from conformance import engine, verdicts

ZOO = Path(__file__).parent / "zoo"
MAJOR = int(os.environ.get("BGWC_ZOO_MAJOR", "17"))
REPORTS = Path(os.environ.get("BGWC_REPORTS", Path(__file__).parent.parent / "reports"))
MEMBERS: list[dict[str, Any]] = tomllib.loads((ZOO / "zoo.toml").read_text())["member"]
#: a member's topology (zoo.toml's ``topology``, "primary" when it names none): its --target suffix
TOPOLOGIES = {"primary": "", "primary+standby": "+standby"}
#: building the member's image layer (its sources, with PGXS) and starting its container
SETUP_ALLOWANCE_S = 240.0
#: the last resort against a run that hangs in spite of every budget (the test then fails)
HARD_LIMIT_S = 3600.0
CLI = [sys.executable, "-P", "-m", "conformance.cli"]
JOBS = int(os.environ.get("BGWC_ZOO_JOBS", "2"))
_FAILED = ("fail", "error", "flaky")
_runs: dict[str, Future[tuple[subprocess.CompletedProcess[str], float, str, Path]]] = {}
_lock = threading.Lock()
_pool = ThreadPoolExecutor(max_workers=JOBS, thread_name_prefix="zoo")


def _topology(member: dict[str, Any]) -> str:
    topology = member.get("topology", "primary")
    assert topology in TOPOLOGIES, (
        f"{member['name']}: topology {topology!r} is not one of {sorted(TOPOLOGIES)}"
    )
    return topology


def _run(name: str) -> tuple[subprocess.CompletedProcess[str], float, str, Path]:
    """One member through the bgworker tier, by the command users run, on its
    topology: its exit, its wall time, its run id and its reports directory."""
    member = next(m for m in MEMBERS if m["name"] == name)
    run_id = f"zoo{uuid.uuid4().hex[:8]}"
    out = REPORTS / f"zoo-pg{MAJOR}" / name
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            *CLI,
            "run",
            "--profile",
            str(ZOO / f"{name}.toml"),
            "--target",
            f"pg{MAJOR}{TOPOLOGIES[_topology(member)]}",
            "--reports",
            str(out),
        ],
        env={**os.environ, "BGWC_RUN_ID": run_id},
        capture_output=True,
        text=True,
        timeout=HARD_LIMIT_S,
    )
    return proc, time.monotonic() - t0, run_id, out


def _started(names: list[str]) -> None:
    """Every selected member's run started (JOBS at a time), in the zoo's order."""
    with _lock:
        for name in names:
            if name not in _runs:
                _runs[name] = _pool.submit(_run, name)


def _flagged(results: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The clauses a run failed, and those it never reached, as the report shows them."""
    status = verdicts.clause_status(results)
    return (
        {c for c, s in status.items() if s in _FAILED},
        {c for c, s in status.items() if s == "not-reached"},
    )


def _write_row(row: dict[str, Any]) -> None:
    out = REPORTS / f"zoo-pg{MAJOR}" / "zoo.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    table = json.loads(out.read_text()) if out.is_file() else {"major": MAJOR, "members": []}
    table["members"] = [m for m in table["members"] if m["name"] != row["name"]] + [row]
    order = [m["name"] for m in MEMBERS]
    table["members"].sort(key=lambda m: order.index(m["name"]) if m["name"] in order else len(order))
    out.write_text(json.dumps(table, indent=1))


@pytest.mark.zoo
@pytest.mark.parametrize("member", MEMBERS, ids=[m["name"] for m in MEMBERS])
def test_member_is_flagged_by_its_own_clauses_only(
    member: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    name = member["name"]
    known = {m["name"] for m in MEMBERS}
    items = [i for i in request.session.items if hasattr(i, "callspec") and "member" in i.callspec.params]
    _started([n for i in items if (n := i.callspec.params["member"]["name"]) in known])
    proc, wall, run_id, out = _runs[name].result()
    said = proc.stdout[-3000:] + proc.stderr[-3000:]
    found = sorted(out.glob(f"*-{run_id}/results.json"))
    assert found, f"{name}: the run wrote no results (exit {proc.returncode}):\n{said}"
    results = json.loads(found[-1].read_text())
    flagged, unreached = _flagged(results)
    budget = sum(float((t.get("properties") or {}).get("budget_s") or 0) for t in results["tests"])
    budget += SETUP_ALLOWANCE_S
    left = engine.client().containers.list(all=True, filters={"label": f"{engine.LABEL_RUN}={run_id}"})
    broken = [f"{t['name']}: {t['harness_error'][:300]}" for t in results["tests"] if t.get("harness_error")]
    expected = set(member["flagged_by"])
    row = {
        "name": name,
        "topology": _topology(member),
        "defect": member["defect"],
        "precedent": member["precedent"],
        "expected": sorted(expected),
        "flagged": sorted(flagged),
        "not_reached": sorted(unreached),
        "as_expected": flagged == expected and not broken,
        "wall_s": round(wall, 1),
        "budget_s": round(budget, 1),
        "exit_status": proc.returncode,
        "containers_left": len(left),
        "harness_errors": broken,
        "escalations": sum(len(t.get("escalations") or []) for t in results["tests"]),
        "run": str(found[-1].parent.relative_to(REPORTS)),
    }
    _write_row(row)
    for c in left:
        c.remove(force=True)
    assert not broken, f"{name}: the harness broke:\n" + "\n".join(broken)
    assert flagged == expected, (
        f"{name}: flagged by {sorted(flagged)}, must be flagged by exactly {sorted(expected)}"
        f" (missed: {sorted(expected - flagged)}, unfair: {sorted(flagged - expected)}); "
        f"not reached: {sorted(unreached)}\n{said}"
    )
    assert not unreached - set(member.get("not_reached", [])), (
        f"{name}: clauses not reached that its defect does not explain: {sorted(unreached)}"
    )
    # a product failure gates as 1; a clause never evaluated, with no failure, as the harness's 2
    assert proc.returncode == (1 if flagged else 2 if unreached else 0), (
        f"{name}: exit {proc.returncode} with flagged {sorted(flagged)}, not reached {sorted(unreached)}"
    )
    for clause, kinds in member.get("kinds_failed", {}).items():
        judged = next(t for t in results["tests"] if clause in t["clauses"])["properties"]["kinds"]
        failed = {k for k, v in judged.items() if v["outcome"] == "fail"}
        assert failed == set(kinds) and len(judged) > len(failed), (
            f"{name}: {clause} must fail exactly {kinds} and pass the other kinds: {judged}"
        )
    assert wall <= budget, f"{name}: the run took {wall:.0f}s, beyond its budget of {budget:.0f}s"
    assert not left, f"{name}: the run left {len(left)} container(s) behind"
