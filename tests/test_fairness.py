"""What core itself does is never the extension's failure (CONTRACT.md, "What
core itself does"): a refusal core documents gets a reasoned not-applicable,
never a failure of the clause, on a real server."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

ZOO = Path(__file__).parent / "zoo"
CLI = [sys.executable, "-m", "conformance.cli"]


def test_a_drop_core_refuses_is_not_the_extensions_failure(tmp_path: Path) -> None:
    """The zoo's good citizen, with a prepared transaction in the scratch
    database: DROP DATABASE ... WITH (FORCE) is refused by core ("It doesn't
    terminate if prepared transactions ... are present"), so DB-1 and DB-3 are
    not applicable, with core's reason, and the run does not fail."""
    text = (ZOO / "zoo_good.toml").read_text()
    profile = tomllib.loads(text)
    assert "server" not in profile, "the good citizen sets no server setting: add to it"
    text = text.replace('source = "src"', f'source = "{ZOO / "src"}"')
    text += (
        '\n[server]\nmax_prepared_transactions = 2\n\n[[setup]]\ndatabase = "{scratch}"\n'
        'sql = ["BEGIN", "CREATE TABLE bgwc_held ()", "PREPARE TRANSACTION \'bgwc_held\'"]\n'
    )
    path = tmp_path / "zoo_good_prepared.toml"
    path.write_text(text.replace('name = "zoo_good"', 'name = "zoo_good_prepared"'))
    reports = str(tmp_path / "reports")
    res = subprocess.run(
        [*CLI, "run", "--target", "pg17", "--profile", str(path), "--clauses", "DB-1", "--reports", reports],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (results,) = Path(reports).glob("*/results.json")
    (test,) = [t for t in json.loads(results.read_text())["tests"] if "DB-1" in t["clauses"]]
    assert test["outcome"] == "not-applicable", test
    assert "core refuses DROP DATABASE ... WITH (FORCE)" in test["message"], test["message"]
    assert "prepared transactions" in test["properties"]["core_refused"], test["properties"]
