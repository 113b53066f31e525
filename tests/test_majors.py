"""The majors the kit runs: parsing, release marks, --target all, and a major
Debian does not package an extension for ("not packaged", never a pass)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import majors, report, results, summary
from conformance.config import OPTIONS, KitConfig
from conformance.errors import KitError
from conformance.images import _unlocatable
from conformance.targets.spec import parse_majors


def _values(**over: str) -> dict[str, str]:
    return {**{k: d for k, (d, _) in OPTIONS.items()}, **over}


def test_parse_keeps_order_drops_repeats_and_names_the_supported() -> None:
    assert parse_majors("19,pg17,19") == (19, 17)
    with pytest.raises(KitError, match=r"--pg '14': supported majors are 13, 15, 17, 18, 19"):
        parse_majors("14")
    with pytest.raises(KitError, match="give majors like"):
        parse_majors("seventeen")


def test_release_notes_mark_end_of_life_and_pre_release_only() -> None:
    assert majors.release_note(13) == "end of life since 2025-11-13"
    assert majors.release_note(19, "PostgreSQL 19rc1 (Debian 19~rc1-1) on x86_64") == "pre-release (19rc1)"
    assert majors.release_note(17, "PostgreSQL 17.12") == ""
    assert majors.suites_of(19) == "forky and experimental" and majors.suites_of(17) == "trixie"


def test_target_all_is_every_supported_major_the_profile_runs_on() -> None:
    assert KitConfig.from_values(_values(target="all")).targets == tuple(
        f"pg{m}" for m in majors.SUPPORTED_MAJORS
    )
    assert KitConfig.from_values(_values(target="all", profile="pg_cron")).targets == ("pg17", "pg18", "pg19")


def test_apt_errors_name_the_packages_it_cannot_find() -> None:
    out = (
        "Reading package lists...\nE: Unable to locate package postgresql-19-cron\n"
        "E: Package 'postgresql-19-x' has no installation candidate\n"
        "E: Unable to locate package postgresql-19-cron\n"
    )
    assert _unlocatable(out) == ["postgresql-19-cron", "postgresql-19-x"]
    # as a build log shows it: apt's colour codes, and its progress line run into the error
    coloured = "Reading state information...\x1b[1;31mE: \x1b[0mUnable to locate package postgresql-17-nope\n"
    assert _unlocatable(coloured) == ["postgresql-17-nope"]
    assert _unlocatable("E: Sub-process /usr/bin/dpkg returned an error code (1)") == []


def test_not_packaged_is_its_own_verdict_in_summary_page_and_matrix(tmp_path: Path) -> None:
    kit = KitConfig.from_values(_values(target="pg19", profile="pg_cron"))
    res = results.not_packaged(kit, "pg19", 19, ["postgresql-19-cron"], "forky and experimental")
    summ = summary.summarize(res, 0, tmp_path)
    assert (summ["verdict"], summ["exit_status"]) == ("NOT PACKAGED", 0)
    assert summ["tiers"]["bgworker"]["status"] == "not packaged"
    assert "postgresql-19-cron" in summary.terminal(summ, tmp_path)
    page = report.render_run(res, summary=summ)
    assert "not packaged" in page and "CONFORMANT" not in page.replace("NON-CONFORMANT", "")
    (tmp_path / "results.json").write_text(json.dumps(res))
    matrix = report.render_matrix([(tmp_path / "results.json", res)])
    assert "<td class='cell skip'>" in matrix and ">not packaged<" in matrix
    assert "pre-release" in matrix and ">pass<" not in matrix


def test_cli_target_all_with_a_restricted_profile_names_its_majors() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "conformance.cli", "run", "--profile", "pg_background", "--target", "pg17"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "runs on PostgreSQL 18, 19 only, not pg17" in res.stderr, res.stderr
