"""Mutation testing: the suite must fail on every mutant of the reference pool.

Each mutant (``reference_ext/mutants.toml``) is the reference extension built
with ``BGW_POOL_MUTANT=<name>``: one real bug.  For each, the suite runs in a
child pytest against a container of one major; a mutant is "killed" when at
least one test fails (the failing tests and their clauses are recorded), or
"survived".  The control mutant ``none`` changes nothing and must survive.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from conformance import images
from conformance.paths import reference_ext_dir, suite_dir

CONTROL = "none"
#: stop a mutant's run after this many failures: enough to name the clauses
MAX_FAILURES = 5


@dataclass(frozen=True)
class Mutant:
    name: str
    bug: str
    precedent: str


@dataclass
class MutantResult:
    mutant: Mutant
    major: int
    verdict: str = "survived"  # killed, survived, broken (the run itself failed)
    killed_by: list[dict[str, object]] = field(default_factory=list)
    seconds: float = 0.0
    detail: str = ""

    @property
    def as_expected(self) -> bool:
        return self.verdict == ("survived" if self.mutant.name == CONTROL else "killed")


def load_mutants(only: list[str] | None = None) -> list[Mutant]:
    data = tomllib.loads((reference_ext_dir() / "mutants.toml").read_text())
    mutants = [Mutant(m["name"], m["bug"], m["precedent"]) for m in data["mutant"]]
    if only:
        unknown = set(only) - {m.name for m in mutants}
        if unknown:
            from conformance.errors import KitError

            raise KitError(f"unknown mutant(s) {', '.join(sorted(unknown))}; see reference_ext/mutants.toml")
        mutants = [m for m in mutants if m.name in only]
    return mutants


def run_mutant(mutant: Mutant, major: int, out_dir: Path) -> MutantResult:
    """Build the mutant's image (cached layers) and run the suite against it."""
    result = MutantResult(mutant, major)
    t0 = time.monotonic()
    make_args = f"BGW_POOL_MUTANT={mutant.name}"
    try:
        images.build_extension(
            major, images.Extension.from_dir(None, None, make_args), progress=lambda _: None
        )
    except Exception as exc:  # noqa: BLE001 - recorded as a broken mutant
        result.verdict, result.detail = "broken", f"image build failed: {exc}"
        return result
    run_dir = out_dir / mutant.name
    argv = [
        sys.executable,
        "-P",  # import the kit as installed, not from the working directory
        "-m",
        "pytest",
        # the mutants are bugs of a pool: the pool and faults tiers judge them
        # (the bgworker tier runs on the reference pool in every other run)
        str(suite_dir() / "pool"),
        str(suite_dir() / "faults"),
        "-q",
        "-p",
        "no:cacheprovider",
        f"--rootdir={suite_dir()}",
        f"--bgwc-target=pg{major}",
        f"--bgwc-make-args={make_args}",
        f"--bgwc-results={run_dir}",
        f"--maxfail={MAX_FAILURES}",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "BGWC_RUN_ID": ""})
    result.seconds = round(time.monotonic() - t0, 1)
    results = run_dir / "results.json"
    if not results.is_file():
        result.verdict, result.detail = "broken", proc.stdout[-2000:] + proc.stderr[-2000:]
        return result
    tests = json.loads(results.read_text())["tests"]
    failed = [t for t in tests if t["outcome"] in ("fail", "error")]
    if failed:
        result.verdict = "killed"
        result.killed_by = [
            {"test": t["name"], "clauses": t["clauses"], "outcome": t["outcome"]} for t in failed
        ]
    elif proc.returncode not in (0, 1):
        result.verdict, result.detail = "broken", proc.stdout[-2000:] + proc.stderr[-2000:]
    return result


def run_all(mutants: list[Mutant], major: int, out_dir: Path, parallel: int = 2) -> list[MutantResult]:
    out_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        results = list(pool.map(lambda m: run_mutant(m, major, out_dir), mutants))
    summary = {
        "major": major,
        "kill_ratio": kill_ratio(results),
        "mutants": [
            {
                **asdict(r.mutant),
                "verdict": r.verdict,
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
    real = [r for r in results if r.mutant.name != CONTROL]
    return round(sum(r.verdict == "killed" for r in real) / len(real), 3) if real else 1.0
