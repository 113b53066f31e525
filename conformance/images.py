"""Server images: a Debian base (pulled, or built with debootstrap), then one
image per PostgreSQL major with the extension under test installed and
preloaded.  Tags are keyed by a hash of every input, so an unchanged image is
reused and a changed extension rebuilds only the layers after its sources.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker.errors

from conformance import aptsources, engine
from conformance.aptsources import AptSource
from conformance.errors import ImageBuildError, KitError, NotPackaged
from conformance.locks import host_lock
from conformance.majors import (
    PRERELEASE,
    SUPPORTED_MAJORS,
    Prerelease,
    base_suite,
    require_source,
    suites_of,
)
from conformance.paths import fixtures_dir, reference_ext_dir

# bookworm's debootstrap has no script for suites newer than it knows.
_DEBOOTSTRAP_SCRIPT = {"forky": "sid"}
_LABEL_INPUTS = "org.bgw-conformance.inputs"
#: how long a process waits while another builds the image it needs (a cold base and server: minutes)
BUILD_WAIT_S = 1800
# not the extension's build: VCS and test output, and what the kit itself writes into an
# extension's repository (init's profile and CI files, reports, tox and venvs)
_SKIP_PARTS = {
    ".git",
    "results",
    "tmp_check",
    "log",
    "__pycache__",
    "reports",
    "bgw-conformance",
    ".github",
    ".gitlab",
    ".tox",
    ".venv",
}
_SKIP_SUFFIXES = {".o", ".so", ".bc", ".a", ".pyc"}

Progress = Callable[[str], None]


def _say(line: str) -> None:
    print(f"[images] {line}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Extension:
    """The extension under test as the server gets it: Debian packages,
    sources built with PGXS or with a recipe, or both, and what to preload."""

    name: str  # label for image tags: the profile's name
    preload: tuple[str, ...] = ()  # shared_preload_libraries entries
    source: Path | None = None  # copied to /usr/src/ext and built there
    packages: tuple[str, ...] = ()  # Debian packages; "{major}" is substituted
    recipe: str | None = None  # build and install command (default: PGXS make install)
    make_args: str = ""
    apt_sources: tuple[AptSource, ...] = ()  # extra apt sources, below the server's layer

    @classmethod
    def from_dir(
        cls, source: Path | None = None, library: str | None = None, make_args: str = ""
    ) -> Extension:
        """A PGXS source directory (default: the reference extension)."""
        src = check_source((source or reference_ext_dir()).resolve(), pgxs=True)
        controls = sorted(src.glob("*.control"))
        if len(controls) != 1:
            raise KitError(f"--extension {src}: must hold exactly one *.control file, found {len(controls)}")
        name = controls[0].stem
        return cls(name, (library or name,), src, (), None, make_args)

    @property
    def library(self) -> str:
        """The shared_preload_libraries value."""
        return ",".join(self.preload)

    def packages_for(self, major: int) -> tuple[str, ...]:
        return tuple(p.replace("{major}", str(major)) for p in self.packages)

    def _skip_parts(self) -> set[str]:
        # the reference pool's mutants are patches for mutation testing, not part of its build
        if self.source is not None and self.source == reference_ext_dir().resolve():
            return _SKIP_PARTS | {"mutants"}
        return _SKIP_PARTS

    def files(self) -> list[Path]:
        if self.source is None:
            return []
        out = []
        for p in sorted(self.source.rglob("*")):
            rel = p.relative_to(self.source)
            if p.is_file() and not (set(rel.parts) & self._skip_parts()) and p.suffix not in _SKIP_SUFFIXES:
                out.append(rel)
        return out

    def source_hash(self) -> str:
        h = hashlib.sha256()
        for rel in self.files():
            assert self.source is not None
            h.update(str(rel).encode() + b"\0" + (self.source / rel).read_bytes() + b"\0")
        return h.hexdigest()[:16]


def check_source(src: Path, pgxs: bool) -> Path:
    """A source directory that exists (and, without a recipe, is PGXS)."""
    if not src.is_dir():
        raise KitError(f"--extension {src}: no such directory")
    if pgxs and not (src / "Makefile").is_file():
        raise KitError(f"--extension {src}: not a PGXS extension directory (no Makefile); give --recipe")
    return src


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (or $BGWC_DEBIAN_MIRROR)."""
    if env := os.environ.get("BGWC_DEBIAN_MIRROR"):
        return env
    for f in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        stanzas = f.read_text().split("\n\n")
        for stanza in stanzas:
            fields = dict(
                line.split(":", 1) for line in stanza.splitlines() if ":" in line and not line.startswith("#")
            )
            if "security" not in fields.get("Suites", "") and fields.get("URIs"):
                return fields["URIs"].split()[0]
    lst = Path("/etc/apt/sources.list")
    if lst.is_file():
        for line in lst.read_text().splitlines():
            parts = line.split()
            if parts[:1] == ["deb"] and "security" not in line:
                return next(p for p in parts[1:] if "://" in p)
    raise KitError("no Debian mirror found in apt's sources; set BGWC_DEBIAN_MIRROR")


def _image_exists(ref: str) -> bool:
    try:
        engine.client().images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


def _try_pull(ref: str) -> bool:
    try:
        engine.client().images.pull(ref)
        return True
    except docker.errors.DockerException:
        return False


def _run_streaming(argv: list[str], what: str, progress: Progress, stdin: int | None = None) -> None:
    proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = [*tail, line][-30:]
        if line.startswith(("I: Retrieving", "I: Extracting", "I: Configuring", "I: Base system")):
            progress(f"{what}: {line.strip()}")
    if proc.wait() != 0:
        raise ImageBuildError.step_failed(what, "".join(tail))


def build_base(suite: str, progress: Progress = _say) -> str:
    """debootstrap a minbase root file system of ``suite`` and docker-import it."""
    ref = f"bgwc-base/debian:{suite}"
    if shutil.which("debootstrap") is None:
        raise KitError("base image missing and debootstrap not installed (apt-get install debootstrap)")
    script = _DEBOOTSTRAP_SCRIPT.get(suite)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bgwc-rootfs-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        argv = ["debootstrap", "--variant=minbase", suite, str(rootfs), debian_mirror()]
        if script:
            argv.append(f"/usr/share/debootstrap/scripts/{script}")
        progress(f"debootstrap {suite} (minbase)")
        _run_streaming(argv, f"debootstrap {suite}", progress)
        progress(f"docker import {ref}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        _run_streaming(
            ["docker", "import", "--change", 'CMD ["/bin/bash"]', "-", ref],
            "docker import",
            progress,
            stdin=tar.stdout.fileno() if tar.stdout else None,
        )
        tar.wait()
    progress(f"{ref} built in {time.monotonic() - t0:.0f}s")
    return ref


def resolve_base(
    base: str | None, major: int, progress: Progress = _say, sources: tuple[AptSource, ...] = ()
) -> str:
    """The base image for ``major``: as given, or the Debian suite shipping it;
    present, pulled, or (for a Debian suite) built locally; for a pre-release
    major, with its suite admitted for its packages only; then with the extra
    apt ``sources``, if any."""
    suite = base_suite(major)
    ref = base or f"debian:{suite}"
    if not (_image_exists(ref) or _try_pull(ref)):
        name, _, tag = ref.partition(":")
        if name != "debian" or not tag:
            raise KitError(f"base image {ref} is not present and cannot be pulled")
        ref = f"bgwc-base/debian:{tag}"
        with host_lock(ref, BUILD_WAIT_S, f"building {ref}"):
            if not _image_exists(ref):
                ref = build_base(tag, progress)
    if major in PRERELEASE:
        ref = _admit_prerelease(ref, PRERELEASE[major], progress)
    if sources:
        codename = base.partition(":")[2] if base and base.startswith("debian:") else suite
        ref = add_apt_sources(ref, sources, codename, major, progress)
    return ref


def add_apt_sources(
    base_ref: str, sources: tuple[AptSource, ...], codename: str, major: int, progress: Progress
) -> str:
    """``base_ref`` with the extra apt sources (apt.Dockerfile); tagged by a hash of the
    recipe, the base, and each source's spelling, key and local files."""
    recipe = fixtures_dir() / "images" / "apt.Dockerfile"
    with tempfile.TemporaryDirectory(prefix="bgwc-apt-") as tmp:
        staged = Path(tmp) / "apt"
        listing = aptsources.render(sources, codename, major, staged)
        key = _key(
            recipe.read_bytes(),
            engine.client().images.get(base_ref).id,
            listing,
            *(src.digest() for src in sources),
        )
        name, _, tag = base_ref.rpartition("/")[2].partition(":")
        ref = f"bgwc-base/{name}:{tag or 'latest'}-apt-{key}"
        _build_if_missing(ref, {"Dockerfile": recipe, "apt": staged}, {"BASE": base_ref}, key, progress)
    return ref


def _admit_prerelease(base_ref: str, pre: Prerelease, progress: Progress) -> str:
    recipe = fixtures_dir() / "images" / "prerelease.Dockerfile"
    mirror = debian_mirror()
    key = _key(
        recipe.read_bytes(),
        engine.client().images.get(base_ref).id,
        mirror,
        pre.suite,
        pre.source,
        pre.extensions,
    )
    name, _, tag = base_ref.rpartition("/")[2].partition(":")
    ref = f"bgwc-base/{name}:{tag or 'latest'}-{pre.suite}-{key}"
    _build_if_missing(
        ref,
        {"Dockerfile": recipe},
        {
            "BASE": base_ref,
            "MIRROR": mirror,
            "SUITE": pre.suite,
            "SOURCE": pre.source,
            "EXTENSIONS": pre.extensions,
        },
        key,
        progress,
    )
    return ref


@dataclass(frozen=True)
class Image:
    tag: str
    major: int
    built: bool  # False when reused from the cache
    seconds: float


def _key(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update((part.encode() if isinstance(part, str) else part) + b"\0")
    return h.hexdigest()[:12]


def _build_if_missing(
    tag: str,
    files: dict[str, Path],
    args: dict[str, str],
    key: str,
    progress: Progress,
    ext: Extension | None = None,
) -> bool:
    # one build of an image at a time on this host: a parallel run waits, then finds it
    with (
        host_lock(tag, BUILD_WAIT_S, f"building {tag}"),
        tempfile.TemporaryDirectory(prefix="bgwc-ctx-") as tmp,
    ):
        if _image_exists(tag):
            return False
        progress(f"building {tag}")
        ctx = Path(tmp)
        for name, src in files.items():
            if src.is_dir():
                shutil.copytree(src, ctx / name)
            else:
                shutil.copy(src, ctx / name)
        if ext is not None:
            (ctx / "ext").mkdir()
            for rel in ext.files():
                assert ext.source is not None
                (ctx / "ext" / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ext.source / rel, ctx / "ext" / rel)
        _docker_build(ctx, tag, args, {_LABEL_INPUTS: key}, progress)
    return True


def build_server(
    major: int, base: str | None = None, progress: Progress = _say, sources: tuple[AptSource, ...] = ()
) -> Image:
    """The server image of ``major``: PostgreSQL, headers, compiler, a cluster
    (from Debian, or from the extra apt ``sources`` when they carry a newer one)."""
    try:
        base_suite(major)
    except KeyError:
        majors = list(SUPPORTED_MAJORS)
        raise KitError(f"unsupported PostgreSQL major {major}; choose from {majors}") from None
    require_source(major, bool(sources))
    t0 = time.monotonic()
    base_ref = resolve_base(base, major, progress, sources)
    recipe = fixtures_dir() / "images" / "server.Dockerfile"
    conf = fixtures_dir() / "conf" / "server.conf"
    key = _key(recipe.read_bytes(), conf.read_bytes(), engine.client().images.get(base_ref).id, str(major))
    tag = f"bgwc/pg{major}:{key}"
    try:
        built = _build_if_missing(
            tag,
            {"Dockerfile": recipe, "server.conf": conf},
            {"BASE": base_ref, "PG_MAJOR": str(major)},
            key,
            progress,
        )
    except ImageBuildError as exc:
        named = "; ".join(s.describe() for s in sources)
        if sources and f"postgresql-{major}" in _unlocatable(exc.tail):
            raise KitError(f"target pg{major}: no apt source provides postgresql-{major} ({named})") from None
        if sources and re.search(r"signature verification failed|NO_PUBKEY|is not signed", exc.tail):
            raise ImageBuildError(
                f"apt source {named}: its signature does not verify with its key: {exc}"
            ) from None
        raise
    return Image(tag, major, built, time.monotonic() - t0)


def build_extension(major: int, ext: Extension, base: str | None = None, progress: Progress = _say) -> Image:
    """The image a container target runs: the server image, then the
    extension's packages, its sources built (recipe or PGXS), and its
    libraries checked and preloaded."""
    t0 = time.monotonic()
    server = build_server(major, base, progress, ext.apt_sources)
    recipe = fixtures_dir() / "images" / "extension.Dockerfile"
    packages = " ".join(ext.packages_for(major))
    key = _key(
        server.tag,
        recipe.read_bytes(),
        ext.source_hash(),
        ext.library,
        ext.make_args,
        packages,
        ext.recipe or "",
    )
    tag = f"bgwc/{ext.name.lower()}-pg{major}:{key}"
    try:
        built = _build_if_missing(
            tag,
            {"Dockerfile": recipe},
            {
                "SERVER": server.tag,
                "PACKAGES": packages,
                "PRELOAD": ext.library,
                "MAKE_ARGS": ext.make_args,
                "RECIPE": ext.recipe or "",
            },
            key,
            progress,
            ext,
        )
    except ImageBuildError as exc:
        missing = [pkg for pkg in _unlocatable(exc.tail) if pkg in packages.split()]
        if missing:
            suite = suites_of(major) + (" and the apt sources" if ext.apt_sources else "")
            raise NotPackaged(
                f"--package {packages}: {exc}\n(Debian ({suite}) has no {', '.join(missing)}: "
                f"not packaged for PostgreSQL {major})",
                major,
                missing,
                suite,
            ) from None
        raise ImageBuildError(f"{_input_at_fault(exc.step, ext, packages)}: {exc}") from None
    took = time.monotonic() - t0
    if built or server.built:
        progress(f"{tag} ready in {took:.0f}s")
    return Image(tag, major, built or server.built, took)


def _unlocatable(apt_output: str) -> list[str]:
    """The packages apt said it cannot find or install at all (its colours and
    progress lines, which share a line with the error, ignored)."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", apt_output)
    found = re.findall(r"(?:E|Error): Unable to locate package (\S+)", plain)
    found += re.findall(r"(?:E|Error): Package '([^']+)' has no installation candidate", plain)
    return list(dict.fromkeys(found))


def _input_at_fault(step: str, ext: Extension, packages: str) -> str:
    """The input that a failed step of extension.Dockerfile was installing."""
    if "PACKAGES" in step:
        return f"--package {packages}"
    if "PRELOAD" in step:
        return f"preload {ext.library!r} (the recipe or packages installed no such library)"
    if ext.recipe:
        return f"--recipe {ext.recipe!r}"
    return f"--extension {ext.source}"


def _docker_build(
    ctx: Path, tag: str, args: dict[str, str], labels: dict[str, str], progress: Progress
) -> None:
    api = engine.client().api
    tail: list[str] = []
    step = ""
    for chunk in api.build(
        path=str(ctx), tag=tag, buildargs=args, labels=labels, rm=True, forcerm=True, decode=True
    ):
        if "error" in chunk:
            raise ImageBuildError.step_failed(tag, "".join(tail) + chunk["error"], step)
        line = chunk.get("stream", "")
        if line.strip():
            tail = [*tail, line][-40:]
            if line.startswith("Step "):
                step = line.strip()
                progress(f"{tag}: {step[:120]}")
