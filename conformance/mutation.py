"""Mutation testing: the suite must fail on every mutant of the reference pool.

Each mutant is a patch (``reference_ext/mutants/<name>.patch``) applied to a
copy of the sources at build time: one real bug, and the clauses that must
kill it (``mutants.toml``).  A mutant is run in two phases against a
container of one major:

1. the tests of its named clauses: a failure there is a kill, confirmed by
   running the failing tests once more (a failure that does not repeat is
   ``flaky``, never a kill);
2. only if it survived 1: the pool and faults tiers.  A failure there is
   ``killed-other``: killed for another reason than its own, which is a
   finding about the suite (its clause missed the bug).

The control ``none`` has no patch and no clause: it runs phase 2 and must
survive; a failing test of the control is run again, and reported ``flaky``
when it then passes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from conformance import images, verdicts
from conformance.errors import KitError
from conformance.paths import reference_ext_dir, suite_dir

CONTROL = "none"
#: stop phase 2 after this many failures: enough to name the clauses
MAX_FAILURES = 5
VERDICTS = ("killed", "killed-other", "survived", "flaky", "broken")


def mutants_dir() -> Path:
    return reference_ext_dir() / "mutants"


@dataclass(frozen=True)
class Mutant:
    name: str
    bug: str
    precedent: str
    kill: tuple[str, ...]
    #: the majors where its clauses judge it (empty: all); on the others it is not run
    majors: tuple[int, ...] = ()
    #: the topology its clauses need: "primary", or "primary+standby" (run on pgNN+standby)
    topology: str = "primary"

    def applies_to(self, major: int) -> bool:
        return not self.majors or major in self.majors

    def target(self, major: int) -> str:
        return f"pg{major}" + ("+standby" if self.topology == "primary+standby" else "")

    @property
    def patch(self) -> Path | None:
        return None if self.name == CONTROL else mutants_dir() / f"{self.name}.patch"


@dataclass
class MutantResult:
    mutant: Mutant
    major: int
    verdict: str = "survived"  # one of VERDICTS
    killed_by: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    detail: str = ""

    @property
    def as_expected(self) -> bool:
        return self.verdict == ("survived" if self.mutant.name == CONTROL else "killed")


def load_mutants(only: list[str] | None = None) -> list[Mutant]:
    data = tomllib.loads((mutants_dir() / "mutants.toml").read_text())
    mutants = [
        Mutant(
            m["name"],
            m["bug"],
            m["precedent"],
            tuple(m["kill"]),
            tuple(m.get("majors", ())),
            m.get("topology", "primary"),
        )
        for m in data["mutant"]
    ]
    if only:
        unknown = set(only) - {m.name for m in mutants}
        if unknown:
            raise KitError(
                f"unknown mutant(s) {', '.join(sorted(unknown))}; see reference_ext/mutants/mutants.toml"
            )
        mutants = [m for m in mutants if m.name in only]
    return mutants


def mutant_source(mutant: Mutant, into: Path) -> Path:
    """A copy of the reference sources with the mutant's patch applied."""
    src = into / "bgw_pool"
    shutil.copytree(
        reference_ext_dir(), src, ignore=shutil.ignore_patterns("mutants", "results", "*.o", "*.so")
    )
    if mutant.patch is not None:
        proc = subprocess.run(
            ["patch", "-p1", "-F0", "-s", "--no-backup-if-mismatch", "-d", str(src), "-i", str(mutant.patch)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise KitError(
                f"mutant {mutant.name}: {mutant.patch.name} does not apply: {proc.stdout}{proc.stderr}"
            )
    return src


def failed_clauses(test: dict[str, Any]) -> set[str]:
    """The clauses a failing test failed, as it recorded them (``clause_outcomes``):
    those of its scenario that failed, and INV-1/INV-2 (INV-3) when the pool's
    after-test check (capacity witness) failed; its own clauses when it recorded
    no failing clause."""
    own = verdicts.clause_outcomes(test)
    return {c for c, o in own.items() if o in ("fail", "error")} or set(test["clauses"])


class _Broken(Exception):
    """A child run that wrote no results: the mutant is ``broken``."""


def _child(
    source: Path, target: str, run_dir: Path, tests: list[str], extra: list[str]
) -> list[dict[str, Any]]:
    """Run the suite (``tests``: paths or node ids) in a child pytest and
    return its failing test records; _Broken when the run itself broke."""
    argv = [
        sys.executable,
        "-P",  # import the kit as installed, not from the working directory
        "-m",
        "pytest",
        *tests,
        "-q",
        "-p",
        "no:cacheprovider",
        f"--rootdir={suite_dir()}",
        f"--bgwc-target={target}",
        f"--bgwc-extension={source}",
        f"--bgwc-results={run_dir}",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        *extra,
    ]
    proc = subprocess.run(
        argv, capture_output=True, text=True, cwd=suite_dir(), env={**os.environ, "BGWC_RUN_ID": ""}
    )
    results = run_dir / "results.json"
    if not results.is_file() or proc.returncode not in (0, 1):
        raise _Broken(proc.stdout[-2000:] + proc.stderr[-2000:])
    return [t for t in json.loads(results.read_text())["tests"] if t["outcome"] in ("fail", "error")]


def _record(failed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "test": t["name"],
            "nodeid": t["nodeid"],
            "clauses": sorted(failed_clauses(t)),
            "outcome": t["outcome"],
        }
        for t in failed
    ]


def run_mutant(mutant: Mutant, major: int, out_dir: Path) -> MutantResult:
    result = MutantResult(mutant, major)
    t0 = time.monotonic()
    run_dir = out_dir / mutant.name
    try:
        with tempfile.TemporaryDirectory(prefix=f"bgwc-mutant-{mutant.name}-") as tmp:
            source = mutant_source(mutant, Path(tmp))
            try:
                images.build_extension(major, images.Extension.from_dir(source), progress=lambda _: None)
            except Exception as exc:  # noqa: BLE001 - recorded as a broken mutant
                result.verdict, result.detail = "broken", f"image build failed: {exc}"
                return result
            _judge(result, source, run_dir)
    finally:
        result.seconds = round(time.monotonic() - t0, 1)
    return result


def _repeated(source: Path, target: str, run_dir: Path, failed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The failures that fail again when their tests run once more."""
    again = {t["nodeid"] for t in _child(source, target, run_dir, [t["nodeid"] for t in failed], [])}
    return [t for t in failed if t["nodeid"] in again]


def _judge(result: MutantResult, source: Path, run_dir: Path) -> None:
    mutant, target = result.mutant, result.mutant.target(result.major)
    try:
        if mutant.kill:
            clauses = [f"--bgwc-clauses={','.join(mutant.kill)}"]
            failed = _child(source, target, run_dir / "own", [str(suite_dir())], clauses)
            own = [t for t in failed if failed_clauses(t) & set(mutant.kill)]
            if own:
                result.killed_by = _record(_repeated(source, target, run_dir / "again", own))
                result.verdict = "killed" if result.killed_by else "flaky"
                if not result.killed_by:
                    result.detail = "its clause failed once and passed when run again"
                return
        tiers = [str(suite_dir() / "pool"), str(suite_dir() / "faults")]
        failed = _child(source, target, run_dir / "suite", tiers, [f"--maxfail={MAX_FAILURES}"])
        if not failed:
            return
        result.killed_by = _record(_repeated(source, target, run_dir / "again", failed))
    except _Broken as exc:
        result.verdict, result.detail = "broken", str(exc)
        return
    if not result.killed_by:
        result.verdict = "flaky"
        result.detail = "failed once and passed when run again: " + ", ".join(t["name"] for t in failed)
    else:
        result.verdict = "killed-other"
        if mutant.name != CONTROL:
            result.detail = f"its clauses ({', '.join(mutant.kill)}) did not fail"


def run_all(mutants: list[Mutant], major: int, out_dir: Path, parallel: int = 2) -> list[MutantResult]:
    out_dir.mkdir(parents=True, exist_ok=True)
    elsewhere = [m for m in mutants if not m.applies_to(major)]
    mutants = [m for m in mutants if m.applies_to(major)]
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        results = list(pool.map(lambda m: run_mutant(m, major, out_dir), mutants))
    summary = {
        "major": major,
        "not_applicable": [{"name": m.name, "majors": list(m.majors)} for m in elsewhere],
        "kill_ratio": kill_ratio(results),
        "mutants": [
            {
                **asdict(r.mutant),
                "verdict": r.verdict,
                "as_expected": r.as_expected,
                "killed_by": r.killed_by,
                "seconds": r.seconds,
                "detail": r.detail,
            }
            for r in results
        ],
    }
    (out_dir / "mutants.json").write_text(json.dumps(summary, indent=1))
    return results


def kill_ratio(results: list[MutantResult]) -> float:
    """Killed by their own clauses, among the real mutants."""
    real = [r for r in results if r.mutant.name != CONTROL]
    return round(sum(r.verdict == "killed" for r in real) / len(real), 3) if real else 1.0
