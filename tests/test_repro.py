"""``bgw-conformance repro``: a standalone script reproducing one clause of a run.

Unmarked (kit env, no server): the scripts rendered from a run's metadata and
the one-line exit-2 paths.  ``-m images`` (tox -e repro): real runs of
pg_cron, pg_wait_sampling and the reference pool on 17, then each generated
script run against a stock Debian image (the kit's local base): non-zero
while the shipped defect is there, 0 for an extension that behaves.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conformance import cli, deadlines, repro
from conformance.config import OPTIONS, KitConfig
from conformance.paths import reference_ext_dir
from conformance.profile import load_profile
from conformance.results import profile_spec, run_record

ROOT = Path(__file__).resolve().parent.parent


def _results(profile: str = "pg_cron", major: int | None = 17, target: str = "pg17") -> dict[str, Any]:
    prof = load_profile(profile)
    source = str(reference_ext_dir()) if prof.install.source else None
    return {
        "run": {
            "kit_version": "0.0",
            "targets": [target],
            "started": "2026-12-07T12:00:00Z",
            "extension": {
                "name": prof.name,
                "packages": list(prof.install.packages),
                "recipe": prof.install.recipe,
                "library": ",".join(prof.install.preload),
                "source": source,
                "make_args": prof.install.make_args,
            },
            "profile": prof.name,
            "profile_spec": profile_spec(prof),
            "servers": [{"target": target, "major": major, "version": ""}],
        },
        "tests": [
            {
                "nodeid": "bgworker/test_orphan.py::test_every_process_exits_with_the_postmaster[pg17]",
                "clauses": ["ORPHAN-1"],
                "outcome": "fail",
                "summary": "timed out after 1s",
                "properties": {},
            }
        ],
    }


def _syntax_ok(script: str, tmp_path: Path) -> None:
    path = tmp_path / "repro.sh"
    path.write_text(script)
    res = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr


def test_orphan_script_from_a_packaged_profile(tmp_path: Path) -> None:
    script = repro.render(_results(), "ORPHAN-1", "reports/x")
    _syntax_ok(script, tmp_path)
    assert script.startswith("#!/bin/sh\n")
    assert 'IMAGE="${IMAGE:-debian:trixie}"' in script
    assert "PACKAGES=postgresql-17-cron\n" in script
    assert "shared_preload_libraries = 'pg_cron'" in script
    assert "cron.use_background_workers = 'on'" in script
    assert "cluster_name = 'repro'" in script
    assert "CREATE EXTENSION IF NOT EXISTS pg_cron;" in script
    # the workload, with {database} replaced, and the kill with ORPHAN-1's deadline
    assert "'SELECT pg_sleep(30)', 'postgres');" in script
    assert 'kill -KILL "$PM"' in script
    assert f"deadline=$(( t0 + {int(deadlines.PM_DEATH_S * 1000)} ))" in script
    assert 'trap \'docker rm -f "$C"' in script and "docker run -d --init" in script
    header = " ".join(ln.removeprefix("# ") for ln in script.splitlines() if ln.startswith("# "))
    assert "ORPHAN-1: fail (bgworker/test_orphan.py" in header  # what the run said
    assert "docker cp" not in script


def test_db3_script_runs_the_scratch_setup_and_counts_its_window(tmp_path: Path) -> None:
    script = repro.render(_results("pg_wait_sampling"), "DB-3")
    _syntax_ok(script, tmp_path)
    assert (
        "-d bgwc_scratch >/dev/null <<'SQL' || exit 2\nCREATE EXTENSION IF NOT EXISTS pg_wait_sampling;"
        in script
    )
    assert "DROP DATABASE bgwc_scratch WITH (FORCE)" in script
    assert f'[ "$N" -le {deadlines.DB_RETRY_LINES} ]' in script
    cron = repro.render(_results(), "DB-3")
    assert "'SELECT pg_sleep(30)', 'bgwc_scratch');" in cron
    assert "datname = ''bgwc_scratch''" in cron or "datname = '\"'\"'bgwc_scratch'\"'\"'" in cron


def test_stop1_script_judges_the_kinds_that_restart(tmp_path: Path) -> None:
    script = repro.render(_results("pg_wait_sampling", 18, "pg18"), "STOP-1")
    _syntax_ok(script, tmp_path)
    assert 'IMAGE="${IMAGE:-debian:forky}"' in script
    assert "PACKAGES=postgresql-18-pg-wait-sampling\n" in script
    assert "pg_terminate_backend($p)" in script
    assert f"deadline=$(( t0 + {int((1 + deadlines.RESTART_SLACK_S) * 1000)} ))" in script
    # pg_cron: the launcher only (the job worker is declared to stay down, count 0)
    cron = repro.render(_results(), "STOP-1")
    assert "terminate launcher;" in cron and "job worker" not in cron.split("== STOP-1")[1]


def test_source_build_copies_the_sources_in(tmp_path: Path) -> None:
    script = repro.render(_results("bgw_pool", 13, "pg13"), "ORPHAN-1")
    _syntax_ok(script, tmp_path)
    assert 'IMAGE="${IMAGE:-debian:bullseye}"' in script
    assert f"SRC=${{SRC:-{reference_ext_dir()}}}" in script
    assert "MAKE_ARGS=COPT=-Werror\n" in script
    assert 'docker cp - "$C:/usr/src/ext"' in script
    assert '"postgresql-server-dev-$MAJOR" gcc make' in script
    assert "bgw_pool.max_workers = '4'" in script


def test_output_file_is_executable(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps(_results()))
    out = tmp_path / "orphan.sh"
    assert cli.main(["repro", str(tmp_path / "run"), "ORPHAN-1", "-o", str(out)]) == 0
    assert os.access(out, os.X_OK) and out.read_text().startswith("#!/bin/sh")


def _edit(data: dict[str, Any], **run: Any) -> dict[str, Any]:
    data["run"].update(run)
    return data


@pytest.mark.parametrize(
    ("clause", "data", "message"),
    [
        ("NOPE-1", _results(), "repro: unknown clause 'NOPE-1'"),
        ("KILL-1", _results(), "repro: no repro template for KILL-1"),
        ("ORPHAN-1", _edit(_results(), profile_spec=None), "repro: results.json records no profile_spec"),
        ("ORPHAN-1", _results(major=None, target="local"), "repro: the run has no container server"),
        ("ORPHAN-1", _results(major=19, target="pg19"), "repro: PostgreSQL 19 is a pre-release"),
        ("DB-3", {}, "(no 'run' object)"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], clause: str, data: dict[str, Any], message: str
) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    assert cli.main(["repro", str(path), clause]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and message in captured.err, captured.err


def test_stop1_without_a_restarting_kind_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _results()
    for kind in data["run"]["profile_spec"]["processes"]:
        kind["after_exit"] = "stays-down"
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    assert cli.main(["repro", str(path), "STOP-1"]) == 2
    assert "no process at rest that comes back" in capsys.readouterr().err


def test_missing_or_broken_report_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["repro", str(tmp_path), "ORPHAN-1"]) == 2
    assert capsys.readouterr().err == f"bgw-conformance: repro: no results.json at {tmp_path}\n"
    (tmp_path / "results.json").write_text("{not json")
    assert cli.main(["repro", str(tmp_path), "ORPHAN-1"]) == 2
    err = capsys.readouterr().err
    assert "not a results.json (not JSON" in err and err.count("\n") == 1


def test_run_metadata_records_what_a_script_needs(tmp_path: Path) -> None:
    """results.json's run record (as ``run`` writes it) carries the profile's
    settings, setup, kinds and workload, and the extension's sources."""
    values = {**{k: d for k, (d, _) in OPTIONS.items()}, "target": "pg15", "profile": "bgw_pool"}
    kit = KitConfig.from_values(values)
    # as written to results.json: plain data
    run = json.loads(json.dumps(run_record(kit, [{"target": "pg15", "major": 15, "version": ""}], "t", 0, 1)))
    spec = run["profile_spec"]
    assert spec["server"]["bgw_pool.max_workers"] == "4"
    assert spec["setup"] == [{"database": "postgres", "sql": ["CREATE EXTENSION IF NOT EXISTS bgw_pool"]}]
    assert [k["name"] for k in spec["processes"]] == ["launcher", "worker"]
    assert spec["workload"]["starts"] == ["worker"]
    assert run["extension"]["source"] == str(reference_ext_dir().resolve())
    assert run["extension"]["make_args"] == "COPT=-Werror"
    script = repro.render({"run": run, "tests": []}, "DB-3")
    _syntax_ok(script, tmp_path)
    assert 'IMAGE="${IMAGE:-debian:bookworm}"' in script and "ORPHAN" not in script


def test_every_template_is_a_contract_clause() -> None:
    assert set(repro.TEMPLATES) <= set(repro.contract_clauses())


# -- real runs, real scripts (-m images) ---------------------------------------------------------
def _run(tmp: Path, profile: str, select: str) -> Path:
    """A real ``bgw-conformance run`` on pg17; its run directory."""
    reports = tmp / profile
    res = subprocess.run(
        [
            *(sys.executable, "-m", "conformance.cli", "run", "--profile", profile, "--target", "pg17"),
            *("--report-only", "--reports", str(reports), "--", "-k", select),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (run_dir,) = [p for p in reports.iterdir() if (p / "results.json").is_file()]
    return run_dir


@pytest.fixture(scope="module")
def base_image() -> str:
    from conformance import images

    return images.resolve_base(None, 17)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("repro-runs")
    return {
        "pg_cron": _run(
            tmp,
            "pg_cron",
            "test_every_process_exits_with_the_postmaster or test_drop_database_force"
            " or test_terminated_workers",
        ),
        "pg_wait_sampling": _run(tmp, "pg_wait_sampling", "test_terminated_workers"),
        "bgw_pool": _run(
            tmp, "bgw_pool", "test_every_process_exits_with_the_postmaster or test_drop_database_force"
        ),
    }


def _script(run_dir: Path, clause: str, base: str, tmp_path: Path) -> tuple[int, str, float]:
    out = tmp_path / f"{clause}.sh"
    assert cli.main(["repro", str(run_dir), clause, "-o", str(out)]) == 0
    t0 = time.monotonic()
    res = subprocess.run(
        ["sh", str(out)], env={**os.environ, "IMAGE": base}, capture_output=True, text=True, timeout=900
    )
    took = time.monotonic() - t0
    said = res.stdout + res.stderr
    print(f"\n{run_dir.parent.name} {clause}: exit {res.returncode} in {took:.0f}s\n{said[-2500:]}")
    name = re.search(r"== (bgwc-repro-\d+):", said)
    assert name, said
    left = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"name=^{name.group(1)}$"], capture_output=True, text=True
    )
    assert left.stdout.strip() == "", f"container {name.group(1)} left behind"
    return res.returncode, said, took


#: (profile, clause, exit status, what it prints): the shipped findings, then extensions that behave
CASES = [
    ("pg_cron", "ORPHAN-1", 1, r"ORPHAN-1 FAIL: 1 s after the postmaster's SIGKILL, still alive: \d+"),
    (
        "pg_cron",
        "DB-3",
        1,
        r"(?s)DB-3 FAIL: \d+ log lines \(\d+ FATAL\).*FATAL: +database \"bgwc_scratch\" does not exist",
    ),
    ("pg_wait_sampling", "STOP-1", 1, r"STOP-1 FAIL: collector not back 6 s after pg_terminate_backend"),
    ("bgw_pool", "ORPHAN-1", 0, r"ORPHAN-1 PASS: every process of the extension gone \d+ ms"),
    ("bgw_pool", "DB-3", 0, r"DB-3 PASS: [0-2] log line"),
    ("pg_cron", "STOP-1", 0, r"launcher: back in \d+ ms \(deadline 6 s\)"),
]


@pytest.mark.images
@pytest.mark.parametrize(
    ("profile", "clause", "rc", "saw"), [pytest.param(*c, id=f"{c[0]}-{c[1]}") for c in CASES]
)
def test_script_reproduces_the_finding_without_the_kit(
    runs: dict[str, Path], base_image: str, tmp_path: Path, profile: str, clause: str, rc: int, saw: str
) -> None:
    code, said, _ = _script(runs[profile], clause, base_image, tmp_path)
    assert code == rc, said[-3000:]
    assert re.search(saw, said), said[-3000:]
    if profile == "pg_cron" and clause == "ORPHAN-1":
        # the orphan is the launcher, its parent now the container's init
        assert re.search(r"\d+ +1 \S+ +postgres: repro: pg_cron launcher", said.split("ORPHAN-1 FAIL")[1])


@pytest.mark.images
def test_a_setup_that_fails_is_exit_2_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps(_results()))
    out = tmp_path / "orphan.sh"
    assert cli.main(["repro", str(tmp_path), "ORPHAN-1", "-o", str(out)]) == 0
    image = "bgwc-repro-test/no-such-image:none"
    res = subprocess.run(
        ["sh", str(out)], env={**os.environ, "IMAGE": image}, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert f"repro: cannot run a container from {image}" in res.stderr
    name = re.search(r"== (bgwc-repro-\d+):", res.stdout)
    assert name, res.stdout
    left = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"name=^{name.group(1)}$"], capture_output=True, text=True
    )
    assert left.stdout.strip() == ""
