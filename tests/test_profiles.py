"""Profiles: every shipped one loads, and a bad one is a one-line error
naming the file and the key, before anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conformance.config import KitConfig, extension_for
from conformance.errors import KitError
from conformance.profile import TIERS, available_profiles, load_profile

MINIMAL = """
name = "x"
tiers = ["bgworker"]
[install]
packages = ["postgresql-{major}-x"]
preload = ["x"]
[[process]]
name = "main"
title = "x main"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", available_profiles())
def test_every_shipped_profile_loads(name: str) -> None:
    profile = load_profile(name)
    assert profile.name == name
    assert set(profile.tiers) <= set(TIERS) and profile.tiers
    for spec in profile.processes:
        assert spec.after_exit == "stays-down" or spec.count == 0 or spec.restart_s >= 0


def test_submit_mode_is_transactional_unless_declared_autonomous() -> None:
    bgw_pool, pg_background = load_profile("bgw_pool").pool, load_profile("pg_background").pool
    assert bgw_pool is not None and bgw_pool.submit_mode == "transactional"
    assert pg_background is not None and pg_background.submit_mode == "autonomous"


def test_minimal_profile_and_package_substitution(tmp_path: Path) -> None:
    profile = load_profile(str(_write(tmp_path, MINIMAL)))
    ext = extension_for(profile, {})
    assert ext.packages_for(18) == ("postgresql-18-x",)
    assert ext.packages_for(17) == ("postgresql-17-x",) and ext.library == "x" and ext.source is None


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: "colour = 'red'\n" + t, "key 'colour': unknown key"),
        (lambda t: t.replace('name = "x"\n', "", 1), "missing key 'name'"),
        (lambda t: t.replace('title = "x main"', "title = 3"), "key 'process[0].title': expected str"),
        (lambda t: t.replace('["bgworker"]', '["gold"]'), "unknown tier 'gold'"),
        (lambda t: t.replace("[install]", "[install]\npakages = []"), "key 'install.pakages': unknown key"),
        (lambda t: t + "[[process]]\nname = 'main'\ntitle = 'y'\n", "process names must be unique"),
        (lambda t: t + "after_exit = 'sometimes'\n", "'sometimes' is not one of restart, stays-down"),
        (lambda t: t.replace('["bgworker"]', '["bgworker", "pool"]'), "need a [pool] table"),
        (
            lambda t: t + "[workload]\nstart = ['SELECT 1']\nstarts = ['nobody']\n",
            "no [[process]] named 'nobody'",
        ),
        (
            lambda t: t + "[pool]\nadapter = 'sql'\nworker = 'main'\n",
            "needs the submit, stop and list templates",
        ),
        (lambda t: t + "[pool]\nadapter = 'sql'\n", "key 'pool.worker': missing"),
        (
            lambda t: t + "[pool]\nadapter = 'm:C'\nworker = 'main'\nsubmit_mode = 'sometimes'\n",
            "key 'pool.submit_mode': 'sometimes' is not one of transactional, autonomous",
        ),
        (lambda t: t + "[[", "not valid TOML"),
        (
            lambda t: t + "backend_type = 'x'\nbackend_type_pattern = 'x \\\\d+'\n",
            "key 'process[0].backend_type_pattern': give backend_type or backend_type_pattern, not both",
        ),
        (
            lambda t: t + "backend_type_pattern = 'x ('\n",
            "key 'process[0].backend_type_pattern': not a regex",
        ),
    ],
)
def test_bad_profile_names_file_and_key(tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    path = _write(tmp_path, edit(MINIMAL))
    with pytest.raises(KitError) as err:
        load_profile(str(path))
    assert message in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_a_backend_type_pattern_matches_the_whole_backend_type(tmp_path: Path) -> None:
    (spec,) = load_profile(
        str(_write(tmp_path, MINIMAL + "backend_type_pattern = 'x manager \\d+'\n"))
    ).processes
    assert spec.connects and spec.backend_type is None
    assert spec.backend_type_matches("x manager 16384")
    assert not spec.backend_type_matches("x manager 16384 more")  # fullmatch, not search
    assert not spec.backend_type_matches("the x manager 16384") and not spec.backend_type_matches(None)
    (exact,) = load_profile(str(_write(tmp_path, MINIMAL + "backend_type = 'x main'\n"))).processes
    assert exact.backend_type_matches("x main") and not exact.backend_type_matches("x main 1")


def test_bad_profile_is_exit_2_before_anything_starts(tmp_path: Path) -> None:
    path = _write(tmp_path, "colour = 'red'\n" + MINIMAL)
    res = subprocess.run(
        [sys.executable, "-m", "conformance.cli", "run", "--profile", str(path), "--target", "pg17"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    assert res.stderr.strip() == f"bgw-conformance: profile {path}: key 'colour': unknown key"
    assert res.stdout == ""


def test_profile_majors_limit_the_targets(tmp_path: Path) -> None:
    path = _write(tmp_path, "majors = [17, 18]\n" + MINIMAL)
    base = {"target": "pg15", "profile": str(path), "base": "", "pg_config": "pg_config", "seed": ""}
    with pytest.raises(KitError, match="runs on PostgreSQL 17, 18 only, not pg15"):
        KitConfig.from_values(base)
    assert KitConfig.from_values({**base, "target": "pg18"}).extension.packages_for(18) == (
        "postgresql-18-x",
    )


def test_input_options_replace_the_profiles_install(tmp_path: Path) -> None:
    profile = load_profile(str(_write(tmp_path, MINIMAL)))
    ext = extension_for(profile, {"package": "a-{major},b", "library": "p,q"})
    assert ext.packages_for(13) == ("a-13", "b") and ext.library == "p,q"
    with pytest.raises(KitError, match="--recipe needs the sources"):
        extension_for(profile, {"recipe": "make install", "package": ""})
    (tmp_path / "src").mkdir()
    ext = extension_for(profile, {"extension": str(tmp_path / "src"), "recipe": "cmake . && make install"})
    assert ext.recipe and ext.source == (tmp_path / "src").resolve()


def test_readme_example_profile_is_valid(tmp_path: Path) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    text = "\n".join(line[3:] if line.startswith("   ") else line for line in block.splitlines())
    profile = load_profile(str(_write(tmp_path, text)))
    assert profile.name == "pg_cron" and profile.workload is not None
    assert extension_for(profile, {}).packages_for(17) == ("postgresql-17-cron",)


PGDG = "https://apt.postgresql.org/pub/repos/apt"


@pytest.mark.parametrize(
    "table, message",
    [
        ("suite = 'x'\ncomponents = ['main']\ntrusted = true", "missing key 'install.apt_source[0].uri'"),
        (
            f"uri = '{PGDG}'\ncomponents = ['main']\ntrusted = true",
            "missing key 'install.apt_source[0].suite'",
        ),
        (
            f"uri = '{PGDG}'\nsuite = 'x'\ncomponents = ['main']\ntrusted = true\ncolour = 1",
            "colour': unknown key",
        ),
        (f"uri = '{PGDG}'\nsuite = 'x'\ncomponents = ['main']", "give the key that signs it"),
        (f"uri = '{PGDG}'\nsuite = 'x'\ntrusted = true", "give a suite and components"),
        ("uri = 'ftp://x'\nsuite = './'\ntrusted = true", "give http://, https:// or file:DIR"),
        ("uri = 'file:nowhere'\nsuite = './'\ntrusted = true", "no directory"),
        (f"uri = '{PGDG}'\nsuite = 'x'\ncomponents = ['main']\nkey = 'k.asc'", "no key file"),
    ],
)
def test_bad_apt_source_names_file_and_key(tmp_path: Path, table: str, message: str) -> None:
    path = _write(tmp_path, MINIMAL.replace("[[process]]", f"[[install.apt_source]]\n{table}\n[[process]]"))
    with pytest.raises(KitError) as err:
        load_profile(str(path))
    assert message in str(err.value) and str(path) in str(err.value), err.value
    assert "install.apt_source[0]" in str(err.value) and "\n" not in str(err.value)


def test_apt_sources_render_for_the_image_and_key_its_hash(tmp_path: Path) -> None:
    from conformance import aptsources

    (tmp_path / "pgdg.asc").write_bytes(aptsources.ARMOR + b"\n...\n")
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "Packages").write_text("")
    path = _write(
        tmp_path,
        MINIMAL.replace(
            "[[process]]",
            f"[[install.apt_source]]\nuri = '{PGDG}'\nsuite = '{{codename}}-pgdg'\n"
            "components = ['main', '{major}']\nkey = 'pgdg.asc'\n"
            "[[install.apt_source]]\nuri = 'file:repo'\nsuite = './'\ntrusted = true\n[[process]]",
        ),
    )
    pgdg, local = load_profile(str(path)).install.apt_sources
    listing = aptsources.render((pgdg, local), "trixie", 16, tmp_path / "ctx")
    assert listing == (
        f"deb [signed-by={aptsources.IMAGE_DIR}/key-0.asc] {PGDG} trixie-pgdg main 16\n"
        f"deb [trusted=yes] file:{aptsources.IMAGE_DIR}/repo-1 ./\n"
    )
    assert (tmp_path / "ctx" / "key-0.asc").is_file() and (tmp_path / "ctx" / "repo-1" / "Packages").is_file()
    before = local.digest(), pgdg.digest()
    (tmp_path / "repo" / "Packages").write_text("Package: x\n")
    (tmp_path / "pgdg.asc").write_bytes(aptsources.ARMOR + b"\nother\n")
    assert local.digest() != before[0] and pgdg.digest() != before[1]  # a changed source rebuilds
    line = aptsources.parse_line(
        f"deb [signed-by={tmp_path / 'pgdg.asc'}] {PGDG} {{codename}}-pgdg main {{major}}", tmp_path
    )
    assert line.describe() == pgdg.describe()
    with pytest.raises(KitError, match="give \\[signed-by=KEY\\] or \\[trusted=yes\\]"):
        aptsources.parse_line(f"[arch=amd64] {PGDG} x main", tmp_path)


def test_majors_debian_never_shipped_need_an_apt_source(tmp_path: Path) -> None:
    base = {
        "target": "pg14",
        "profile": str(_write(tmp_path, MINIMAL)),
        "base": "",
        "pg_config": "",
        "seed": "",
    }
    with pytest.raises(KitError, match="Debian never shipped PostgreSQL 14; name an apt source"):
        KitConfig.from_values(base)
    (tmp_path / "k.gpg").write_bytes(b"\x99")
    source = f"[signed-by={tmp_path / 'k.gpg'}] {PGDG} x main"
    kit = KitConfig.from_values({**base, "target": "pg16", "apt_source": source})
    assert kit.targets == ("pg16",) and kit.extension.apt_sources[0].key == tmp_path / "k.gpg"
    res = subprocess.run(
        [sys.executable, "-m", "conformance.cli", "run", "--profile", base["profile"], "--target", "pg16"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and res.stdout == "", res.stdout
    assert res.stderr.strip() == (
        "bgw-conformance: target pg16: Debian never shipped PostgreSQL 16; name an apt source that provides "
        "postgresql-16 ([[install.apt_source]] in the profile, or --apt-source), e.g. apt.postgresql.org"
    )
