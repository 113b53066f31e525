"""``bgw-conformance doctor``: can the harness run on this machine?

Each check prints one line, ``ok``, ``warn`` or ``FAIL``, then its name and
what it found; a check that is not ok prints the fix on the next line.
Exit status 0 when nothing FAILs, 2 when something does (the harness cannot
run here).  Every probe has a short timeout, so a dead engine or mirror
answers in seconds.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import docker
import docker.errors

from conformance import __version__, aptsources, images
from conformance.aptsources import AptSource
from conformance.errors import KitError
from conformance.majors import PRERELEASE, SUITE_FOR_MAJOR, SUPPORTED_MAJORS, base_suite
from conformance.targets.spec import parse_majors

Status = Literal["ok", "warn", "FAIL"]
DOCKER_TIMEOUT_S = 5  # per request to the engine
MIRROR_TIMEOUT_S = 8  # per Release file; the suites are fetched at once
DISK_FAIL_GB = 5
DISK_WARN_GB = 15
_DEBOOTSTRAP_SCRIPTS = Path("/usr/share/debootstrap/scripts")
_DEFAULT_DOCKER_ROOT = "/var/lib/docker"


@dataclass(frozen=True)
class Check:
    """One check's outcome; ``fix`` is set whenever ``status`` is not ok."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def lines(self) -> list[str]:
        out = [f"{self.status:<4}  {self.name}: {self.detail}"]
        if self.fix:
            out.append(f"      fix: {self.fix}")
        return out


@dataclass
class _Engine:
    """What the docker check learned, for the checks after it (None: no engine)."""

    client: docker.DockerClient | None = None
    info: dict[str, Any] | None = None
    to_build: set[str] = field(default_factory=set)  # suites whose base debootstrap must build


def _first_line(exc: BaseException, limit: int = 200) -> str:
    """The root cause in ``exc``'s message (requests nests it deep), else its first line."""
    text = str(exc).strip()
    if cause := re.search(r"\[Errno -?\d+\] [^'\")]+|Read timed out|timed out", text):
        return cause.group(0).strip()
    lines = text.splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]


def check_python() -> Check:
    v = sys.version_info
    found = f"Python {v.major}.{v.minor}.{v.micro} ({sys.executable})"
    if v >= (3, 11):
        return Check("python", "ok", found)
    return Check(
        "python", "FAIL", f"{found}; the kit needs 3.11+", "install python3 >= 3.11, then ./bootstrap.sh"
    )


def check_kit_data() -> Check:
    from conformance.paths import fixtures_dir, reference_ext_dir

    try:
        where = {fixtures_dir().parent, reference_ext_dir().parent}
    except FileNotFoundError as exc:
        return Check(
            "kit data", "FAIL", str(exc), "reinstall the kit: .venv/bin/pip install -e . (./bootstrap.sh)"
        )
    return Check(
        "kit data",
        "ok",
        f"bgw-conformance {__version__}, fixtures and reference_ext in {', '.join(map(str, where))}",
    )


def _engine_is_local(docker_host: str) -> bool:
    """Whether the engine runs on this machine (containers publish their port on its 127.0.0.1)."""
    url = urlsplit(docker_host)
    if url.scheme in ("", "unix", "npipe"):
        return True
    host = url.hostname or ""
    if host in ("localhost", socket.gethostname()):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_docker(engine: _Engine) -> Check:
    docker_host = os.environ.get("DOCKER_HOST", "")
    where = f"DOCKER_HOST={docker_host}" if docker_host else "DOCKER_HOST unset (local socket)"
    try:
        c = docker.from_env(timeout=DOCKER_TIMEOUT_S)
        version = c.version()
        info = c.info()
    except (docker.errors.DockerException, OSError) as exc:  # requests' errors are OSErrors
        err = _first_line(exc)
        if docker_host:
            fix = f"DOCKER_HOST={docker_host} does not answer: unset it for the local dockerd, or correct it"
        elif "ermission denied" in err:
            fix = "run as root, or add your user to the docker group (usermod -aG docker $USER)"
        elif shutil.which("dockerd") is None:
            fix = "./bootstrap.sh (installs docker.io and starts dockerd), or: apt-get install docker.io"
        else:
            fix = "./bootstrap.sh (starts dockerd if none answers)"
        return Check("docker", "FAIL", f"no engine answers within {DOCKER_TIMEOUT_S}s ({where}): {err}", fix)
    engine.client, engine.info = c, info
    found = f"Docker {version.get('Version', '?')} (API {version.get('ApiVersion', '?')}), {where}"
    if not _engine_is_local(docker_host):
        return Check(
            "docker",
            "warn",
            f"{found}; the engine is on another host, and the kit reaches its servers on 127.0.0.1",
            "use an engine on this machine (unset DOCKER_HOST, ./bootstrap.sh starts dockerd)",
        )
    return Check("docker", "ok", found)


def _image(client: docker.DockerClient, ref: str) -> Any | None:
    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def _cannot_build_base(suite: str) -> list[tuple[str, str]]:
    """What building ``suite``'s base with debootstrap (images.build_base) lacks: (what, fix) pairs."""
    missing = []
    if shutil.which("debootstrap") is None:
        missing.append(("debootstrap is not installed", "apt-get install debootstrap"))
    else:
        script = images._DEBOOTSTRAP_SCRIPT.get(suite, suite)
        if not (_DEBOOTSTRAP_SCRIPTS / script).is_file():
            missing.append(
                (
                    f"debootstrap has no script for {suite} ({_DEBOOTSTRAP_SCRIPTS / script})",
                    "install a newer debootstrap (e.g. from backports)",
                )
            )
    if os.geteuid() != 0:
        missing.append(("debootstrap needs root", "run as root (or sudo), at least for the first run"))
    if shutil.which("docker") is None:
        missing.append(("no docker CLI (docker import)", "apt-get install docker.io"))
    return missing


def check_base(major: int, engine: _Engine) -> Check:
    """The base image ``major`` builds on, as images.resolve_base finds it (without pulling)."""
    suite = SUITE_FOR_MAJOR[major]
    name = f"base pg{major}"
    if engine.client is None:
        return Check(
            name,
            "warn",
            f"not checked: no Docker engine (needs the {suite} base)",
            "see the docker check above",
        )
    pre = PRERELEASE.get(major)
    admitted = f", with {pre.source} admitted from {pre.suite} at build" if pre else ""
    for ref in (f"debian:{suite}", f"bgwc-base/debian:{suite}"):
        if (img := _image(engine.client, ref)) is not None:
            created = img.attrs.get("Created", "?")[:10]
            return Check(name, "ok", f"{ref} present (created {created}){admitted}")
    try:  # a registry that serves it (e.g. on a CI runner): images.resolve_base pulls it
        engine.client.api.inspect_distribution(f"debian:{suite}")
        return Check(name, "ok", f"debian:{suite} absent; the registry serves it (pulled on first use)")
    except docker.errors.DockerException:
        pass
    engine.to_build.add(suite)
    missing = _cannot_build_base(suite)
    if missing:
        return Check(
            name,
            "FAIL",
            f"bgwc-base/debian:{suite} absent and cannot be built: {'; '.join(w for w, _ in missing)}",
            "; ".join(f for _, f in missing),
        )
    return Check(
        name,
        "warn",
        f"bgwc-base/debian:{suite} absent; will be built with debootstrap on first use (~1 min)",
        f"nothing to do, or build it now: bgw-conformance images build --pg {major}",
    )


def _fetch_release(mirror: str, suite: str) -> str | None:
    """None when the mirror serves ``suite``'s Release (or InRelease) file, else the URL and error."""
    return _fetch_first(
        [f"{mirror.rstrip('/')}/dists/{suite}/{name}" for name in ("Release", "InRelease")], suite
    )


def _fetch_first(urls: list[str], suite: str | None) -> str | None:
    """None when one of ``urls`` answers (the next is tried on a 404) with a Release file
    (of ``suite``, unless None), else the last URL and its error."""
    url = ""
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=MIRROR_TIMEOUT_S) as resp:
                head = resp.read(4096).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                continue
            return f"{url}: HTTP {exc.code} {exc.reason}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return f"{url}: {getattr(exc, 'reason', None) or _first_line(exc)}"
        if suite is not None and f"Codename: {suite}" not in head and f"Suite: {suite}" not in head:
            return f"{url}: not a Release file of {suite}"
        return None
    return f"{url}: HTTP 404 (and no {'InRelease' if url.endswith('/Release') else 'Release'} file either)"


def _source_index(src: AptSource, suite: str) -> str | None:
    """None when ``src`` serves ``suite``'s index, else where it does not and why."""
    if (d := src.directory) is not None:
        where = d / suite if src.flat else d / "dists" / suite
        found = [n for n in ("InRelease", "Release", "Packages") if (where / n).is_file()]
        if not d.is_dir():
            return f"no directory {d}"
        if not (set(found) & {"InRelease", "Release"} or (src.flat and found)):
            return f"no {'Packages or ' if src.flat else ''}Release file in {where}"
        return None
    dists = f"{src.uri}/{suite}" if src.flat else f"{src.uri}/dists/{suite}/"
    return _fetch_first([f"{dists}{name}" for name in ("InRelease", "Release")], None)


def _key_problem(key: Path) -> tuple[str, str] | None:
    """(what, fix) when ``key`` is missing or does not parse as an OpenPGP key; None when it does."""
    if not key.is_file():
        return (
            f"no key file {key}",
            "give the path of the key that signs the source (relative to the profile)",
        )
    if shutil.which("gpg") is None:
        return f"key {key} not parsed: no gpg", "apt-get install gnupg (or ./bootstrap.sh)"
    with tempfile.TemporaryDirectory(prefix="bgwc-gpg-") as home:
        res = subprocess.run(
            ["gpg", "--homedir", home, "--batch", "--with-colons", "--show-keys", str(key)],
            capture_output=True,
            text=True,
            timeout=MIRROR_TIMEOUT_S,
            check=False,
        )
    if res.returncode != 0 or not any(ln.startswith("pub:") for ln in res.stdout.splitlines()):
        err = (res.stderr.strip().splitlines() or ["no public key in it"])[-1]
        return (
            f"key {key} is not an OpenPGP public key ({err})",
            "export the repository's key again (gpg --export --armor KEYID > key.asc), or fetch its key file",
        )
    return None


def check_apt_source(number: int, src: AptSource, majors: list[int]) -> Check:
    """An extra apt source: its index answers for each suite the images use, its key parses."""
    name = f"apt source {number}"
    suites = sorted({src.suite_for(base_suite(m), m) for m in majors})
    with ThreadPoolExecutor(len(suites)) as pool:
        errors = [e for e in pool.map(lambda s: _source_index(src, s), suites) if e]
    if errors:
        more = f" (and {len(errors) - 1} more suite(s))" if len(errors) > 1 else ""
        fix = (
            "index the directory: dpkg-scanpackages . > Packages (flat), or apt-ftparchive; "
            "sign its Release (gpg --clearsign -o InRelease Release)"
            if src.directory is not None
            else "check the URI and suite (apt reads URI/dists/SUITE/InRelease), the network or proxy"
        )
        return Check(name, "FAIL", f"{src.describe()}: {errors[0]}{more}", fix)
    if src.key is not None and (problem := _key_problem(src.key)):
        status: Status = "warn" if "no gpg" in problem[0] else "FAIL"
        return Check(name, status, f"{src.describe()}: {problem[0]}", problem[1])
    signed = "unsigned (trusted=yes)" if src.trusted else "key parses"
    return Check(name, "ok", f"{src.describe()}: serves {', '.join(suites)}; {signed}")


def check_mirror(majors: list[int], engine: _Engine) -> Check:
    """The mirror debootstrap builds bases from, and pre-release majors' packages come
    from: a FAIL only when a base must be built."""
    suites = sorted({SUITE_FOR_MAJOR[m] for m in majors}, key=list(SUITE_FOR_MAJOR.values()).index)
    suites += sorted({PRERELEASE[m].suite for m in majors if m in PRERELEASE})
    bad = "FAIL" if engine.to_build or engine.client is None else "warn"
    later = "" if bad == "FAIL" else "; not needed now: every base is present or pullable"
    fix = "set BGWC_DEBIAN_MIRROR to a reachable Debian mirror, e.g. http://deb.debian.org/debian"
    try:
        mirror = images.debian_mirror()
    except KitError as exc:
        return Check("debian mirror", bad, f"{exc}{later}", fix)
    t0 = time.monotonic()
    with ThreadPoolExecutor(len(suites)) as pool:
        errors = [e for e in pool.map(lambda s: _fetch_release(mirror, s), suites) if e]
    if errors:
        more = f" (and {len(errors) - 1} more suite(s))" if len(errors) > 1 else ""
        return Check("debian mirror", bad, f"{mirror} does not serve {errors[0]}{more}{later}", fix)
    took = time.monotonic() - t0
    return Check("debian mirror", "ok", f"{mirror} serves {', '.join(suites)} ({took:.1f}s)")


def _statable(path: Path) -> Path:
    """``path``, or its nearest ancestor that exists and can be statted (e.g. /var/lib/docker as non-root)."""
    for p in (path, *path.parents):
        try:
            os.statvfs(p)
            return p
        except OSError:
            continue
    return Path("/")


def check_disk(engine: _Engine) -> Check:
    root = (engine.info or {}).get("DockerRootDir") or _DEFAULT_DOCKER_ROOT
    paths = [Path(root), Path(tempfile.gettempdir()), Path("/var/tmp")]  # /var/tmp: debootstrap's root fs
    by_fs: dict[int, list[str]] = {}
    free: dict[int, float] = {}
    for p in paths:
        seen = _statable(p)
        dev = seen.stat().st_dev
        by_fs.setdefault(dev, []).append(str(p) if seen == p else f"{p} (as {seen})")
        free[dev] = shutil.disk_usage(seen).free / 1e9
    parts = [f"{free[dev]:.0f} GB free for {', '.join(ps)}" for dev, ps in by_fs.items()]
    images_note = ""
    if engine.client is not None:
        listed = engine.client.api.images(filters={"reference": "bgwc/*"})  # no inspect per image
        tags = [t for img in listed for t in img.get("RepoTags") or () if t.startswith("bgwc/")]
        images_note = f"; {len(tags)} bgwc/* image tag(s)"
    detail = "; ".join(parts) + images_note
    low = min(free.values())
    fix = (
        "bgw-conformance clean; docker image prune -f; remove old kit images "
        "(docker images 'bgwc/*', docker rmi <old tags>; they are rebuilt when needed)"
    )
    if low < DISK_FAIL_GB:
        return Check("disk", "FAIL", f"{detail}; a run needs {DISK_FAIL_GB} GB at least", fix)
    if low < DISK_WARN_GB:
        return Check("disk", "warn", f"{detail}; below {DISK_WARN_GB} GB, image builds may run out", fix)
    return Check("disk", "ok", detail)


def _traversable_by_others(path: Path) -> bool:
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in (path, *path.parents))


def check_local_target() -> Check:
    """The host's server for ``--target local`` (only that target needs it: warn, never FAIL)."""
    problems: list[str] = []
    fixes: list[str] = []
    pg_config = shutil.which("pg_config")
    version = ""
    if pg_config is None:
        problems.append("no pg_config")
    else:
        try:
            out = subprocess.run(
                [pg_config, "--version", "--includedir-server"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.splitlines()
            version = out[0]
            if not (Path(out[1]) / "postgres.h").is_file():
                problems.append(f"no server headers in {out[1]}")
        except (OSError, subprocess.SubprocessError, IndexError) as exc:
            problems.append(f"{pg_config} failed: {_first_line(exc)}")
    if problems:
        fixes.append("apt-get install postgresql postgresql-server-dev-all")
    tools = [t for t in ("make", "gcc") if shutil.which(t) is None]
    if tools:
        problems.append(f"no {' '.join(tools)}")
        fixes.append(f"apt-get install {' '.join(tools)}")
    if os.geteuid() == 0:  # the server runs as BGWC_LOCAL_USER through runuser (targets/local.py)
        user = os.environ.get("BGWC_LOCAL_USER", "postgres")
        try:
            pwd.getpwnam(user)
        except KeyError:
            problems.append(f"no user {user!r} to run the server as")
            fixes.append("apt-get install postgresql (creates the postgres user), or set BGWC_LOCAL_USER")
        if shutil.which("runuser") is None:
            problems.append("no runuser")
            fixes.append("apt-get install util-linux")
        tmp = Path(tempfile.gettempdir())
        if not _traversable_by_others(tmp):
            problems.append(f"{user} cannot reach the temp dir {tmp}")
            fixes.append("set TMPDIR to a directory others can traverse, e.g. /tmp")
    if problems:
        return Check(
            "local target", "warn", f"--target local cannot run: {'; '.join(problems)}", "; ".join(fixes)
        )
    return Check("local target", "ok", f"{version} ({pg_config})")


def check_tools() -> Check:
    """Tools that only some commands need: warn, never FAIL."""
    wanted = {"patch": "bgw-conformance mutants", "chromium": "tests/test_report.py"}
    missing = {t: why for t, why in wanted.items() if shutil.which(t) is None}
    if missing:
        return Check(
            "tools",
            "warn",
            "; ".join(f"no {t}, needed by {why}" for t, why in missing.items()),
            f"apt-get install {' '.join(missing)} (or ./bootstrap.sh)",
        )
    return Check("tools", "ok", ", ".join(f"{t} (for {why})" for t, why in wanted.items()))


def checks(majors: list[int], sources: tuple[AptSource, ...] = ()) -> Iterator[Check]:
    """Every check, in order (the engine's answer feeds the base and disk checks)."""
    engine = _Engine()
    steps: list[Callable[[], Check]] = [
        check_python,
        check_kit_data,
        lambda: check_docker(engine),
        *(lambda m=m: check_base(m, engine) for m in majors),
        lambda: check_mirror(majors, engine),
        *(lambda i=i, s=s: check_apt_source(i, s, majors) for i, s in enumerate(sources, 1)),
        lambda: check_disk(engine),
        check_local_target,
        check_tools,
    ]
    for step in steps:
        yield step()


def _majors(text: str) -> list[int]:
    try:
        return list(parse_majors(text, option="doctor --pg"))
    except KitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check that this machine can run the harness (exit 2 if not)")
    p.add_argument(
        "--pg",
        type=_majors,
        default=list(SUPPORTED_MAJORS),
        help="majors whose base images and Debian suites to check, comma-separated (default: all)",
    )
    p.add_argument("--profile", default=None, help="also check the extra apt sources this profile names")
    p.add_argument(
        "--apt-source",
        action="append",
        default=[],
        help="also check this extra apt source (as run takes it; repeatable; replaces the profile's)",
    )


def _sources(args: argparse.Namespace) -> tuple[AptSource, ...]:
    """The extra apt sources to check: --apt-source's, else the profile's."""
    if getattr(args, "apt_source", None):
        return aptsources.parse_lines(";".join(args.apt_source), Path.cwd())
    if getattr(args, "profile", None):
        from conformance.profile import load_profile

        return load_profile(args.profile).install.apt_sources
    return ()


def run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    counts = {"ok": 0, "warn": 0, "FAIL": 0}
    for check in checks(args.pg, _sources(args)):
        counts[check.status] += 1
        print("\n".join(check.lines()), flush=True)
    verdict = "the harness cannot run here" if counts["FAIL"] else "the harness can run here"
    print(f"doctor: {counts['FAIL']} FAIL, {counts['warn']} warn in {time.monotonic() - t0:.1f}s: {verdict}")
    return 2 if counts["FAIL"] else 0
