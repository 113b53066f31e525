"""The extension's inputs, built for real in the kit's images: a recipe
(cmake), Debian packages, and bad input of each kind, which is exit 2 with
one line naming the input and the last lines of the build.  Marked
``images``: tox runs them once, in the ``images`` environment."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import AptSigner

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


# -- extra apt sources: a local repository, signed with a throwaway key --------------------------
RENAMED = "postgresql-{major}-bgwc-apt-cron"  # a name no Debian suite has


def _local_repository(tmp: Path, signer: AptSigner) -> Path:
    """A flat apt repository (``repo/``, ``./``) holding Debian's postgresql-17-cron renamed to
    RENAMED, indexed and signed (InRelease) with a throwaway key."""
    from conformance import engine, images

    server = images.build_server(17, progress=lambda _: None)  # cached: every image test needs it
    dl = tmp / "download"
    dl.mkdir()
    engine.client().containers.run(
        server.tag,
        ["sh", "-ec", "apt-get update -qq && cd /out && apt-get download -qq postgresql-17-cron"],
        remove=True,
        labels=engine.run_labels(),
        volumes={str(dl): {"bind": "/out", "mode": "rw"}},
        user="root",
    )
    (deb,) = dl.glob("postgresql-17-cron_*.deb")
    unpacked = tmp / "unpacked"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(unpacked)], check=True)
    control = unpacked / "DEBIAN" / "control"
    text = control.read_text()
    assert "Package: postgresql-17-cron\n" in text, text
    control.write_text(
        text.replace("Package: postgresql-17-cron\n", f"Package: {RENAMED.format(major=17)}\n")
    )
    repo = tmp / "repo"
    repo.mkdir()
    subprocess.run(
        ["dpkg-deb", "-b", str(unpacked), str(repo / "renamed.deb")], check=True, capture_output=True
    )
    signer.sign_flat(repo)
    return repo


def _remove_images_on(base: str) -> None:
    """Remove ``base`` and the kit's pg17 images built on it (whichever builds got that far)."""
    from conformance import engine

    client = engine.client()
    base_id = client.images.get(base).id
    for repo in ("bgwc/pg_cron_apt-pg17", "bgwc/pg17"):  # the extension's layer, then the server's
        for img in client.images.list(name=repo):
            if any(layer["Id"] == base_id for layer in img.history()):
                for tag in img.tags:
                    client.images.remove(tag)
    client.images.remove(base)


def _apt_profile(tmp: Path, source: bool) -> Path:
    """pg_cron's profile, with the renamed package, on 16 and 17, with (or without) the local source."""
    from conformance.paths import fixtures_dir

    text = (fixtures_dir() / "profiles" / "pg_cron.toml").read_text()
    text = text.replace('name = "pg_cron"', 'name = "pg_cron_apt"').replace(
        "majors = [17, 18, 19]", "majors = [16, 17]"
    )
    text = text.replace('packages = ["postgresql-{major}-cron"]', f'packages = ["{RENAMED}"]')
    if source:
        text = text.replace(
            "[server]", '[[install.apt_source]]\nuri = "file:repo"\nsuite = "./"\nkey = "key.asc"\n\n[server]'
        )
    path = tmp / ("pg_cron_apt.toml" if source else "pg_cron_no_source.toml")
    path.write_text(text)
    return path


def test_a_local_apt_source_provides_a_package_debian_does_not_have(
    tmp_path: Path, apt_signer: AptSigner
) -> None:
    """A signed local repository with Debian's pg_cron renamed: without the source the package is
    not packaged; with it the image builds, the package comes from there, and START-1 passes."""
    from conformance import engine, images
    from conformance.config import extension_for
    from conformance.profile import load_profile

    t0 = time.monotonic()
    repo, key = _local_repository(tmp_path, apt_signer), apt_signer.key
    res = _cli(
        "run",
        "--report-only",
        "--profile",
        str(_apt_profile(tmp_path, False)),
        "--target",
        "pg17",
        "--reports",
        str(tmp_path / "no-source"),
    )
    assert res.returncode == 0 and "NOT PACKAGED" in res.stdout, res.stdout[-2000:] + res.stderr[-2000:]
    (results,) = (tmp_path / "no-source").glob("*/results.json")
    assert json.loads(results.read_text())["run"]["not_packaged"]["packages"] == [
        "postgresql-17-bgwc-apt-cron"
    ]

    profile = _apt_profile(tmp_path, True)
    ext = extension_for(load_profile(str(profile)), {})
    assert [s.describe() for s in ext.apt_sources] == [f"[signed-by={key}] file:{repo} ./"]
    try:
        # a major Debian never shipped, from a source that does not provide it: one line saying so
        res = _cli("images", "build", "--pg", "16", "--profile", str(profile))
        assert res.returncode == 2 and _error_line(res) == (
            "bgw-conformance: target pg16: no apt source provides postgresql-16 "
            f"([signed-by={key}] file:{repo} ./)"
        ), res.stderr[-3000:]
        res = _cli("images", "build", "--pg", "17", "--profile", str(profile))
        assert res.returncode == 0 and res.stdout.startswith("pg17\tbgwc/pg_cron_apt-pg17:"), res.stderr[
            -3000:
        ]
        listed = (
            engine.client()
            .containers.run(
                res.stdout.split("\t")[1],
                [
                    "sh",
                    "-c",
                    "cat /etc/apt/sources.list.d/bgwc.list; "
                    "dpkg-query -W -f '${Package}\\n' 'postgresql-17-*cron'",
                ],
                remove=True,
                labels=engine.run_labels(),
            )
            .decode()
        )
        assert "deb [signed-by=/usr/share/bgwc-apt/key-0.asc] file:/usr/share/bgwc-apt/repo-0 ./" in listed, (
            listed
        )
        assert listed.split()[-1] == "postgresql-17-bgwc-apt-cron", listed
        res = _cli(
            "run",
            "--report-only",
            "--profile",
            str(profile),
            "--target",
            "pg17",
            "--reports",
            str(tmp_path / "reports"),
            "--",
            "-k",
            "start",
        )
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
        (results,) = (tmp_path / "reports").glob("*/results.json")
        run = json.loads(results.read_text())
        start = [t for t in run["tests"] if "START-1" in t["clauses"]]
        assert start and all(t["status"] == "pass" for t in start), [
            (t["name"], t["status"]) for t in run["tests"]
        ]
        assert run["run"]["extension"]["apt_sources"] == [f"[signed-by={key}] file:{repo} ./"]
    finally:  # unique to this test (a fresh key and repository each time), and large
        _remove_images_on(images.resolve_base(None, 17, lambda _: None, ext.apt_sources))
    print(f"apt source test: {time.monotonic() - t0:.0f}s")


def test_an_apt_source_signed_by_another_key_is_refused(tmp_path: Path, apt_signer: AptSigner) -> None:
    """signed-by is checked: a repository whose InRelease another key signed fails the image
    build at apt's update (exit 2, HARNESS ERROR), before any package is installed."""
    from conformance import images
    from conformance.config import extension_for
    from conformance.profile import load_profile

    repo = tmp_path / "repo"
    repo.mkdir()
    (tmp_path / "other").mkdir()
    other = type(apt_signer)(tmp_path / "other")  # a second throwaway key
    try:
        other.sign_flat(repo)  # an empty index, signed by a key the profile does not name
    finally:
        other.close()
    profile = _apt_profile(tmp_path, True)
    ext = extension_for(load_profile(str(profile)), {})
    try:
        res = _cli("images", "build", "--pg", "17", "--profile", str(profile))
        assert res.returncode == 2, res.stdout + res.stderr[-3000:]
        line = _error_line(res)
        named = f"apt source [signed-by={apt_signer.key}] file:{repo} ./"
        assert line.startswith(
            f"bgw-conformance: HARNESS ERROR: {named}: its signature does not verify with its key: "
            "image build failed at bgwc/pg17:"
        ), res.stderr
        assert "is not signed" in res.stderr, res.stderr[-3000:]
    finally:
        _remove_images_on(images.resolve_base(None, 17, lambda _: None, ext.apt_sources))
