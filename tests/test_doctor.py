"""``bgw-conformance doctor`` against this machine's real engine and mirror,
then with each pointed at a port where nothing listens."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from functools import cache
from pathlib import Path

import pytest

from conformance import __version__, doctor, images

DEADLINE_S = 30  # the whole doctor, healthy or not (its probes time out after 5-8 s)
DEAD = "127.0.0.1:9"  # discard port: nothing listens there
LINE = re.compile(r"^(?P<status>ok|warn|FAIL) +(?P<name>[a-z0-9][a-z0-9 ]*): (?P<detail>.+)$")
NAMES = [
    "python",
    "kit data",
    "docker",
    *(f"base pg{m}" for m in images.SUPPORTED_MAJORS),
    "debian mirror",
    "disk",
    "local target",
    "tools",
]


def _cli() -> list[str]:
    """The installed console script beside this interpreter (as users run it), else the module."""
    script = Path(sys.executable).with_name("bgw-conformance")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "conformance.cli"]


@cache
def _doctor(*argv: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    cmd = [*_cli(), "doctor"]
    t0 = time.monotonic()
    res = subprocess.run(
        [*cmd, *argv], capture_output=True, text=True, timeout=DEADLINE_S, env={**os.environ, **env}
    )
    return res, time.monotonic() - t0


def _checks(stdout: str) -> dict[str, tuple[str, str, str]]:
    """name -> (status, detail, fix) from doctor's output; every non-ok line must carry a fix."""
    out: dict[str, tuple[str, str, str]] = {}
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        if m := LINE.match(line):
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            fix = nxt.strip().removeprefix("fix: ") if nxt.startswith("      fix: ") else ""
            out[m["name"]] = (m["status"], m["detail"], fix)
            assert (m["status"] == "ok") == (fix == ""), f"fix line wrong for: {line}\n{stdout}"
    return out


def test_doctor_passes_on_this_machine() -> None:
    res, took = _doctor()
    checks = _checks(res.stdout)
    assert res.returncode == 0, res.stdout + res.stderr
    assert list(checks) == NAMES, res.stdout
    assert all(status in ("ok", "warn") for status, _, _ in checks.values()), res.stdout
    assert res.stdout.rstrip().splitlines()[-1].startswith("doctor: 0 FAIL"), res.stdout
    assert took < DEADLINE_S


def test_dead_docker_host_fails_the_docker_check_quickly() -> None:
    res, took = _doctor(DOCKER_HOST=f"tcp://{DEAD}")
    checks = _checks(res.stdout)
    assert res.returncode == 2, res.stdout + res.stderr
    status, detail, fix = checks["docker"]
    assert status == "FAIL" and DEAD in detail and "Connection refused" in detail, res.stdout
    assert "DOCKER_HOST" in fix, res.stdout
    assert checks["base pg17"][0] == "warn", res.stdout  # not checked without an engine, not a second FAIL
    assert took < DEADLINE_S


def test_dead_mirror_is_reported_and_fails_only_when_a_base_must_be_built() -> None:
    """The mirror only feeds debootstrap: with every base present (as here) a dead one is a warning
    with its fix; with a base to build it is a FAIL (the docker check down counts as that)."""
    res, took = _doctor("--pg", "17", BGWC_DEBIAN_MIRROR=f"http://{DEAD}/debian")
    checks = _checks(res.stdout)
    status, detail, fix = checks["debian mirror"]
    assert f"http://{DEAD}/debian/dists/trixie/Release" in detail and "BGWC_DEBIAN_MIRROR" in fix, res.stdout
    assert checks["base pg17"][0] == "ok", res.stdout  # every image this suite built starts from it
    assert (status, res.returncode) == ("warn", 0) and "not needed now" in detail, res.stdout
    assert took < DEADLINE_S
    res, _ = _doctor("--pg", "17", BGWC_DEBIAN_MIRROR=f"http://{DEAD}/debian", DOCKER_HOST=f"tcp://{DEAD}")
    assert _checks(res.stdout)["debian mirror"][0] == "FAIL" and res.returncode == 2, res.stdout


def test_version() -> None:
    res = subprocess.run([*_cli(), "--version"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"bgw-conformance {__version__}"


def test_pg_option() -> None:
    parser = argparse.ArgumentParser()
    doctor.add_parser(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["doctor"]).pg == list(images.SUPPORTED_MAJORS)
    assert parser.parse_args(["doctor", "--pg", "17,pg18"]).pg == [17, 18]
    with pytest.raises(SystemExit):
        parser.parse_args(["doctor", "--pg", "14"])


def _profile_with_source(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(
        'name = "x"\ntiers = ["bgworker"]\n[install]\npackages = ["x"]\n'
        f"[[install.apt_source]]\n{source}\n[[process]]\nname = 'm'\ntitle = 'm'\n"
    )
    return path


def test_apt_sources_are_checked_with_their_keys(tmp_path: Path, apt_signer) -> None:  # type: ignore[no-untyped-def]
    """A signed local repository and its key pass; an unindexed directory, a dead http source
    and a key that is no key each FAIL with their fix."""
    repo, empty = tmp_path / "repo", tmp_path / "empty"
    repo.mkdir()
    empty.mkdir()
    apt_signer.sign_flat(repo)
    (tmp_path / "junk.asc").write_text("not a key\n")
    good = _profile_with_source(tmp_path, f'uri = "file:repo"\nsuite = "./"\nkey = "{apt_signer.key.name}"')
    res, took = _doctor("--pg", "17", "--profile", str(good))
    status, detail, _ = _checks(res.stdout)["apt source 1"]
    assert (status, res.returncode) == ("ok", 0) and "key parses" in detail, res.stdout + res.stderr
    assert took < DEADLINE_S
    key = apt_signer.key
    res, took = _doctor(
        "--pg",
        "17",
        "--apt-source",
        f"[signed-by={key}] file:{empty} ./",
        "--apt-source",
        f"[signed-by={key}] http://{DEAD}/apt {{codename}}-pgdg main",
        "--apt-source",
        f"[signed-by={tmp_path / 'junk.asc'}] file:{repo} ./",
    )
    checks = _checks(res.stdout)
    assert res.returncode == 2 and took < DEADLINE_S, res.stdout + res.stderr
    status, detail, fix = checks["apt source 1"]
    assert status == "FAIL" and f"no Packages or Release file in {empty}" in detail, res.stdout
    assert "dpkg-scanpackages" in fix, res.stdout
    status, detail, fix = checks["apt source 2"]
    assert status == "FAIL" and f"http://{DEAD}/apt/dists/trixie-pgdg/" in detail, res.stdout
    assert "Connection refused" in detail and "URI and suite" in fix, res.stdout
    status, detail, fix = checks["apt source 3"]
    assert status == "FAIL" and "not an OpenPGP public key" in detail and "gpg --export" in fix, res.stdout


def test_a_missing_key_is_one_line_naming_it(tmp_path: Path) -> None:
    bad = _profile_with_source(
        tmp_path,
        'uri = "https://apt.postgresql.org/pub/repos/apt"\nsuite = "x"\n'
        'components = ["main"]\nkey = "gone.asc"',
    )
    res, _ = _doctor("--profile", str(bad))
    assert res.returncode == 2 and res.stdout == "", res.stdout
    assert res.stderr.strip() == (
        f"bgw-conformance: profile {bad}: key 'install.apt_source[0]': no key file {tmp_path / 'gone.asc'}"
    )
