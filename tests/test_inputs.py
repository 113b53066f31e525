"""The extension's inputs, built for real in the kit's images: a recipe
(cmake), Debian packages, and bad input of each kind, which is exit 2 with
one line naming the input and the last lines of the build.  Marked
``images``: tox runs them once, in the ``images`` environment."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.images

DATA = Path(__file__).parent / "data"
CMAKE = DATA / "cmake_stub.toml"


def _cli(*argv: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conformance.cli", *argv], capture_output=True, text=True, timeout=timeout
    )


def _error_line(res: subprocess.CompletedProcess[str]) -> str:
    """The CLI's error line (progress lines of the build come before it)."""
    return next((ln for ln in res.stderr.splitlines() if ln.startswith("bgw-conformance: ")), "")


def test_cmake_recipe_builds_a_worker_that_passes_the_bgworker_tier(tmp_path: Path) -> None:
    res = _cli(
        "run",
        "--profile",
        str(CMAKE),
        "--target",
        "pg17",
        "--reports",
        str(tmp_path),
        "--",
        "-k",
        "START or STOP",
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    # a -k selection: the tier says how many of its MUST clauses it judged
    m = re.search(
        r"bgworker: CONFORMANT on (\d+) of (\d+) MUST clauses · pool: not claimed · faults: not claimed",
        res.stdout,
    )
    assert m and 0 < int(m[1]) < int(m[2]), res.stdout[-3000:]


def test_debian_package_is_installed_and_preloaded() -> None:
    res = _cli("images", "build", "--pg", "17", "--profile", "pg_wait_sampling")
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith("pg17\tbgwc/pg_wait_sampling-pg17:")


@pytest.mark.parametrize(
    "argv, names, detail",
    [
        (
            ["--package", "postgresql-{major}-bgwc-no-such-package"],
            "--package postgresql-17-bgwc-no-such-package",
            "Unable to locate package postgresql-17-bgwc-no-such-package",
        ),
        (["--recipe", "echo building; exit 3"], "--recipe 'echo building; exit 3'", "building"),
        (["--recipe", "echo installs nothing"], "preload 'bgwc_cmake'", "no library bgwc_cmake.so"),
    ],
)
def test_bad_input_is_exit_2_naming_the_input(argv: list[str], names: str, detail: str) -> None:
    res = _cli("run", "--profile", str(CMAKE), "--target", "pg17", *argv)
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    line = _error_line(res)
    assert line.startswith(f"bgw-conformance: HARNESS ERROR: {names}"), res.stderr
    assert "image build failed" in line, res.stderr
    assert detail in res.stderr, res.stderr
    assert "collected" not in res.stdout, "the suite started on bad input"
