"""``bgw-conformance init``: an extension's adoption of the kit, scaffolded.

It starts a real server with the extension preloaded (``plugin.make_target``,
the one place servers start), creates the extension, waits until its
background processes are stable, and probes each kind: one of its processes
terminated (does it come back, how soon?), and one crash-restart of the server
(is each kind back after it?).  It writes what it measured as a profile whose comments say
what was measured and what is a guess, an empty expectations file, and CI
workflows for GitHub and GitLab from ``fixtures/ci/``.

  bgw-conformance init (--package NAME [--package NAME...] | --extension DIR) [--name NAME]
                       [--library LIB] [--recipe CMD] [--make-args ARGS] [--pg 17[,18...]]
                       [--dir DIR] [--force]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import psycopg

from conformance import __version__, expectations, images, majors
from conformance.census import CRASH_RESTART, Census, title_of
from conformance.config import OPTIONS, KitConfig
from conformance.deadlines import CRASH_RECOVERY_S, START_S
from conformance.errors import ImageBuildError, KitError, NotPackaged
from conformance.images import Extension, check_source
from conformance.paths import fixtures_dir
from conformance.profile import Install, ProcessSpec, Profile, load_profile
from conformance.targets import Target
from conformance.waiting import WaitTimeout

STABLE_S = 3.0  # at rest: the extension's processes unchanged for this long ...
SETTLE_S = 60.0  # ... within this deadline after a start
BACK_S = 20.0  # how long a terminated process is watched for coming back
CRASH_S = CRASH_RECOVERY_S  # how long a kind is watched for coming back after a crash-restart
PROFILE_DIR = "bgw-conformance"
GITHUB = Path(".github/workflows/bgw-conformance.yml")
GITLAB = Path(".gitlab/bgw-conformance.gitlab-ci.yml")
#: core's own background workers, by the start of their title (the bgworker view keeps them)
CORE_BGWORKERS = ("logical replication ", "slotsync worker")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_DEBIAN_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")


#: the postmaster starts a worker up to this long after its bgw_restart_time (its loop's wakeup)
RESTART_LATENCY_S = 0.25


def promised_restart_s(measured: float) -> int:
    """The whole-second restart interval a measured comeback suggests (1.1 s from a 1 s interval is 1)."""
    return max(1, math.ceil(measured - RESTART_LATENCY_S))


def _say(line: str) -> None:
    print(f"[init] {line}", file=sys.stderr, flush=True)


# -- options ------------------------------------------------------------------------
@dataclass(frozen=True)
class Options:
    packages: tuple[str, ...]
    source: Path | None
    recipe: str | None
    make_args: str
    library: tuple[str, ...]
    name: str | None
    majors: tuple[int, ...]
    root: Path
    force: bool


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The ``init`` subcommand and its options."""
    p = sub.add_parser(
        "init",
        help="propose a profile from a real server, with expectations and CI workflows",
        description="Start a server with the extension, watch its background processes, probe "
        "what each does after an exit and a crash, and write bgw-conformance/NAME.toml, "
        "its expectations file and CI workflows (GitHub, GitLab) into --dir.",
    )
    p.add_argument(
        "--package",
        action="append",
        default=[],
        help="a Debian package of the extension, e.g. 'postgresql-{major}-cron' (repeatable)",
    )
    p.add_argument("--extension", type=Path, default=None, help=OPTIONS["extension"][1])
    p.add_argument("--name", default=None, help="the profile's name (default: the extension's control file)")
    p.add_argument(
        "--library", default=None, help=OPTIONS["library"][1] + " (default: inferred from what it installs)"
    )
    p.add_argument("--recipe", default=None, help=OPTIONS["recipe"][1])
    p.add_argument("--make-args", default="", help=OPTIONS["make_args"][1])
    p.add_argument(
        "--pg", default="17", help="majors to scaffold for, comma-separated; the first is the one probed"
    )
    p.add_argument(
        "--dir", type=Path, default=Path("."), help="root of the extension's repository, where files go"
    )
    p.add_argument("--force", action="store_true", help="overwrite the files init writes")


def _csv(text: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (text or "").split(",") if p.strip())


def options(args: argparse.Namespace) -> Options:
    """Every option checked before anything starts."""
    packages = tuple(args.package or ())
    if packages and args.extension is not None:
        raise KitError("give --package or --extension, not both")
    if not packages and args.extension is None:
        raise KitError("give what to install: --package NAME (repeatable) or --extension DIR")
    for pkg in packages:
        if not _DEBIAN_PACKAGE.fullmatch(pkg.replace("{major}", "17")):
            raise KitError(f"--package {pkg!r}: not a Debian package name ({{major}} is the server's major)")
    if args.extension is None and (args.recipe or args.make_args):
        raise KitError("--recipe and --make-args build sources: give --extension DIR")
    source = check_source(args.extension.resolve(), pgxs=not args.recipe) if args.extension else None
    if args.name is not None and not _NAME.fullmatch(args.name):
        raise KitError(f"--name {args.name!r}: use letters, digits, '_', '.' and '-'")
    library = _csv(args.library)
    if source is not None and not library and not source_controls(source):
        raise KitError(f"--extension {source}: no *.control file to name its library after; give --library")
    root = Path(args.dir)
    if not root.is_dir():
        raise KitError(f"--dir {root}: no such directory")
    return Options(
        packages,
        source,
        args.recipe,
        args.make_args,
        library,
        args.name,
        majors.parse(args.pg),
        root,
        args.force,
    )


# -- what init writes ---------------------------------------------------------------
def outputs(root: Path, name: str | None) -> list[Path]:
    """The files init writes (the profile and expectations once the name is known)."""
    ci = [root / GITHUB, root / GITLAB]
    if name is None:
        return ci
    profile = root / PROFILE_DIR / f"{name}.toml"
    return [profile, expectations.default_path(profile), *ci]


def _refuse_existing(paths: Iterable[Path], force: bool) -> None:
    for path in paths:
        if path.exists() and not force:
            raise KitError(f"{path} exists; give --force to overwrite it")


def render_ci(template: str, name: str, majors: Iterable[int]) -> str:
    """A CI file from ``fixtures/ci/<template>`` for profile ``name`` on ``majors``."""
    text = (fixtures_dir() / "ci" / template).read_text()
    for key, value in {
        "@NAME@": name,
        "@VERSION@": __version__,
        "@MAJORS@": json.dumps([str(m) for m in majors]),
    }.items():
        text = text.replace(key, value)
    return text


# -- what init measures -------------------------------------------------------------
@dataclass(frozen=True)
class Seen:
    """One background process of the extension: OS title, and its pg_stat_activity row."""

    pid: int
    bgw_name: str
    backend_type: str | None
    database: str | None


@dataclass(frozen=True)
class Probe:
    outcome: str  # "restart", "stays-down", or "unknown" (not measured)
    seconds: float | None  # back after this long (restart)
    detail: str  # what was done and seen


@dataclass
class Kind:
    """One kind of background process: as seen at rest, and as probed."""

    name: str
    title: str  # a regex matched at the start of the bgw_name
    bgw_name: str  # as seen (the common start of the kind's titles)
    backend_type: str | None
    database: str | None
    count: int
    databases: tuple[str, ...] = ()  # when its processes are in several databases
    after_exit: Probe | None = None
    after_crash: Probe | None = None

    def spec(self) -> ProcessSpec:
        return ProcessSpec(self.name, self.title, self.backend_type, self.database, self.count)


@dataclass
class Proposal:
    name: str
    ext: Extension
    major: int
    at: str
    server_version: str = ""
    versions: list[str] = field(default_factory=list)
    library_from: str = ""
    controls: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    kinds: list[Kind] = field(default_factory=list)
    settled_s: float = 0.0
    majors: list[int] = field(default_factory=list)
    left_out: dict[int, str] = field(default_factory=dict)


def _one_line(text: object) -> str:
    return " ".join(str(text).split()) or "(no message)"


def _draft(name: str, root: Path, ext: Extension, kinds: Iterable[Kind] = ()) -> Profile:
    """The profile as known so far (for KitConfig and Census)."""
    install = Install(ext.packages, ext.source, ext.recipe, ext.make_args, ext.preload)
    return Profile(
        name=name,
        path=root / PROFILE_DIR / f"{name}.toml",
        tiers=("bgworker",),
        install=install,
        processes=tuple(k.spec() for k in kinds),
    )


@contextmanager
def _server(major: int, ext: Extension, root: Path) -> Iterator[Target]:
    """A started server with ``ext`` (through make_target), always removed."""
    from conformance.plugin import make_target

    kit = KitConfig((f"pg{major}",), _draft(ext.name, root, ext), ext, None, "pg_config", None)
    target = make_target(f"pg{major}", kit)
    try:
        yield target
    finally:
        target.close()


def source_controls(source: Path) -> list[str]:
    return sorted(p.stem for p in source.glob("*.control"))


def package_files(target: Target, packages: Iterable[str]) -> tuple[list[str], list[str]]:
    """The libraries (in pkglibdir) and control files the packages installed, by ``dpkg -L``."""
    pkglibdir = PurePosixPath(target.run([target.pg_config, "--pkglibdir"]).strip())
    extdir = PurePosixPath(target.run([target.pg_config, "--sharedir"]).strip()) / "extension"
    files = [
        PurePosixPath(f.strip()) for pkg in packages for f in target.run(["dpkg", "-L", pkg]).splitlines()
    ]
    libraries = sorted({f.stem for f in files if f.parent == pkglibdir and f.suffix == ".so"})
    controls = sorted({f.stem for f in files if f.parent == extdir and f.suffix == ".control"})
    return libraries, controls


def unowned_controls(target: Target) -> list[str]:
    """Control files in the server's extension directory that no Debian package owns."""
    script = (
        f'for f in "$({target.pg_config} --sharedir)"/extension/*.control; do '
        'dpkg -S "$f" >/dev/null 2>&1 || basename "$f" .control; done'
    )
    return sorted(line.strip() for line in target.run(["sh", "-c", script]).splitlines() if line.strip())


def package_library(libraries: list[str], controls: list[str], packages: tuple[str, ...]) -> str:
    """The library to preload: the one the packages install, or the one named as a control file."""
    if len(libraries) == 1:
        return libraries[0]
    named = [lib for lib in libraries if lib in controls]
    if len(named) == 1:
        return named[0]
    what = ", ".join(packages)
    if not libraries:
        raise KitError(f"{what} install no library in pkglibdir: nothing to preload; give --library")
    raise KitError(f"{what} install several libraries ({', '.join(libraries)}): give --library")


def profile_name(opts: Options, controls: list[str], preload: tuple[str, ...]) -> str:
    """--name; else the control file (the one named as the library, if several); else the
    package without ``postgresql-{major}-``; else the library, or the source directory."""
    if opts.name:
        return opts.name
    if controls:
        return next((c for c in controls if c in preload), controls[0])
    if opts.packages:
        name = opts.packages[0].removeprefix("postgresql-{major}-").replace("{major}", "")
        return re.sub(r"-+", "-", name).strip("-") or "extension"
    assert opts.source is not None
    return preload[0] if preload else opts.source.name


def _ident(name: str) -> str:
    return name if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else '"' + name.replace('"', '""') + '"'


def create_extensions(target: Target, controls: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """CREATE EXTENSION ... CASCADE for each control file, in postgres, durably: the
    statements that succeeded, and those that failed with their errors."""
    done, failed = [], []
    for control in controls:
        stmt = f"CREATE EXTENSION IF NOT EXISTS {_ident(control)} CASCADE"
        try:
            with target.connect() as conn:
                conn.execute("SET synchronous_commit = on")
                conn.execute(stmt)  # type: ignore[arg-type]
            done.append(stmt)
        except psycopg.Error as exc:
            failed.append((stmt, _one_line(exc)))
    return done, failed


def observe(target: Target, workers: Census) -> list[Seen]:
    """The extension's background processes: the OS's, without core's, with their SQL view."""
    procs = [
        p
        for p in workers.background_workers()
        if not title_of(p, target.cluster_name).startswith(CORE_BGWORKERS)
    ]
    rows = target.sql("SELECT pid, backend_type, datname FROM pg_stat_activity", idempotent=True)
    sql = {pid: (btype, db) for pid, btype, db in rows}
    return sorted(
        (Seen(p.pid, title_of(p, target.cluster_name), *sql.get(p.pid, (None, None))) for p in procs),
        key=lambda s: s.pid,
    )


def settle(target: Target, workers: Census) -> tuple[list[Seen], float]:
    """Wait until the extension's processes are unchanged for STABLE_S (within SETTLE_S);
    return them and how long after the call that began."""
    t0 = time.monotonic()
    last: list[Seen] | None = None
    since = t0

    def stable() -> bool:
        nonlocal last, since
        seen = observe(target, workers)
        if seen != last:
            last, since = seen, time.monotonic()
        return time.monotonic() - since >= STABLE_S

    try:
        target.wait_until(stable, SETTLE_S, what=f"the extension's processes unchanged for {STABLE_S:g}s")
    except WaitTimeout:
        names = sorted(s.bgw_name for s in last or [])
        raise KitError(
            f"the extension's background processes did not settle within {SETTLE_S:g}s "
            f"(none unchanged for {STABLE_S:g}s); last seen: {names}"
        ) from None
    assert last is not None
    return last, since - t0


def _common_start(names: list[str]) -> str:
    """The longest string every one of ``names`` starts with."""
    first, last = min(names), max(names)
    n = next((i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), len(first))
    return first[:n]


def _common_title(names: list[str]) -> str:
    """A title regex matching all of ``names`` at their start."""
    prefix = _common_start(names)
    if prefix.strip():
        return re.escape(prefix)
    return "(?:" + "|".join(re.escape(n) for n in sorted(set(names))) + ")"


def _short_name(bgw_name: str, known: Iterable[str]) -> str:
    """``pg_cron launcher`` -> ``launcher``: the title without the extension's name."""
    for prefix in sorted(set(known), key=len, reverse=True):
        if prefix and bgw_name.lower().startswith(prefix.lower()):
            rest = bgw_name[len(prefix) :].strip(" _-:")
            if rest:
                return rest
    return bgw_name.strip()


def kinds_of(seen: list[Seen], known_names: Iterable[str]) -> list[Kind]:
    """Group processes into kinds: by backend_type where pg_stat_activity shows them,
    else by title (digits aside).  A title that would also match another kind's
    processes is anchored at its end too."""
    groups: dict[tuple[str, str], list[Seen]] = {}
    for s in seen:
        key = ("sql", s.backend_type) if s.backend_type else ("os", re.sub(r"\d+", "#", s.bgw_name))
        groups.setdefault(key, []).append(s)
    kinds: list[Kind] = []
    known = list(known_names)
    for members in groups.values():
        names = [m.bgw_name for m in members]
        dbs = sorted({m.database for m in members if m.database is not None})
        start = _common_start(names)
        short = _short_name(start.strip() or names[0], known)
        taken = {k.name for k in kinds}
        title = _common_title(names)
        if any(re.match(title, s.bgw_name) for s in seen if s not in members):
            title += "$"
        kinds.append(
            Kind(
                name=short if short not in taken else f"{short} {len(kinds) + 1}",
                title=title,
                bgw_name=start,
                backend_type=members[0].backend_type,
                database=dbs[0] if len(dbs) == 1 and all(m.database for m in members) else None,
                count=len(members),
                databases=tuple(dbs) if len(dbs) > 1 else (),
            )
        )
    return kinds


def back_at_rest(target: Target, workers: Census) -> None:
    """Every kind as seen at rest again: waited for, or after a restart (a probe left one down)."""
    census = workers.census()
    if all(len(census[s.name]) == s.count for s in workers.profile.processes):
        try:
            workers.wait_at_rest(START_S)
            return
        except AssertionError:
            pass
    _say("restarting the server to bring every kind back")
    target.restart("fast")
    try:
        workers.wait_at_rest(SETTLE_S)
    except AssertionError as exc:
        raise KitError(
            f"after a restart, the processes seen at rest did not come back as seen: {_one_line(exc)[:400]}"
        ) from None


def probe_exit(target: Target, workers: Census, kind: Kind) -> Probe:
    """Terminate one process of ``kind``; watch BACK_S for a new one."""
    spec = workers.profile.process(kind.name)
    pid = min(workers.census()[kind.name])
    t0 = time.monotonic()
    how = workers.terminate(spec, pid)
    try:
        workers.wait_back(spec, {pid}, BACK_S)
    except WaitTimeout:
        if target.pid_alive(pid):
            return Probe("unknown", None, f"pid {pid} still ran {BACK_S:g} s after {how}")
        return Probe("stays-down", None, f"after {how} of pid {pid}, none came back within {BACK_S:g} s")
    took = time.monotonic() - t0
    return Probe("restart", took, f"after {how} of pid {pid}, a new one ran {took:.2f} s later")


def probe_crash(target: Target, workers: Census, kinds: list[Kind]) -> None:
    """SIGKILL one process (a crash-restart of the server); watch CRASH_S for each kind."""
    census = workers.census()
    victim = min(census[kinds[0].name])
    offset = target.log_offset()
    t0 = time.monotonic()
    target.kill(victim, signal.SIGKILL)
    what = f"SIGKILL of {kinds[0].name} pid {victim}"
    try:
        target.wait_for_log(CRASH_RESTART.pattern, offset, timeout=CRASH_S)
    except WaitTimeout:
        for kind in kinds:
            kind.after_crash = Probe("unknown", None, f"{what} caused no crash-restart within {CRASH_S:g} s")
        return
    for kind in kinds:
        left = max(0.5, CRASH_S - (time.monotonic() - t0))
        try:
            workers.wait_back(workers.profile.process(kind.name), set(census[kind.name]), left)
        except WaitTimeout:
            kind.after_crash = Probe(
                "stays-down", None, f"after {what} (a crash-restart), not back within {CRASH_S:g} s"
            )
            continue
        took = time.monotonic() - t0
        kind.after_crash = Probe("restart", took, f"after {what} (a crash-restart), back {took:.2f} s later")


def _versions(target: Target, packages: tuple[str, ...]) -> list[str]:
    out = [f"{p} {target.run(['dpkg-query', '-W', '-f', '${Version}', p]).strip()}" for p in packages]
    rows = target.sql("SELECT extname, extversion FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1")
    return out + [f"extension {name} {version}" for name, version in rows]


def _measure(target: Target, p: Proposal, opts: Options) -> None:
    """Create the extension, find its processes at rest, and probe each kind."""
    p.server_version = str(target.scalar("SHOW server_version"))
    p.setup, p.failed = create_extensions(target, p.controls)
    for stmt, error in p.failed:
        _say(f"{stmt}: {error}")
    target.restart("fast")  # at rest as the suite sees it: a start with the setup done
    draft = _draft(p.name, opts.root, p.ext)
    seen, p.settled_s = settle(target, Census(target, draft))
    p.kinds = kinds_of(seen, [p.name, *p.ext.preload, *p.controls])
    if not p.kinds:
        raise KitError(
            f"no background process of {p.name} ran at rest on pg{p.major} (after a start with its "
            f"setup done, unchanged for {STABLE_S:g}s): init proposes the processes it sees"
        )
    _say("at rest: " + ", ".join(f"{k.count} x {k.bgw_name!r}" for k in p.kinds))
    p.versions = _versions(target, p.ext.packages_for(p.major))
    workers = Census(target, _draft(p.name, opts.root, p.ext, p.kinds))
    for kind in p.kinds:
        back_at_rest(target, workers)
        _say(f"terminating one {kind.name!r}, watching up to {BACK_S:g}s")
        kind.after_exit = probe_exit(target, workers, kind)
        _say(f"{kind.name}: {kind.after_exit.detail}")
    back_at_rest(target, workers)
    _say(f"crashing the server (SIGKILL of one {p.kinds[0].name!r}), watching up to {CRASH_S:g}s")
    probe_crash(target, workers, p.kinds)


def installs_on(majors: Iterable[int], ext: Extension) -> tuple[list[int], dict[int, str]]:
    """Build each major's image; the majors where it built, and why the others did not."""
    built, left_out = [], {}
    for major in majors:
        try:
            images.build_extension(major, ext)
            built.append(major)
        except NotPackaged as exc:
            left_out[major] = f"not packaged: Debian ({exc.suite}) has no {', '.join(exc.packages)}"
            _say(f"pg{major} left out: {left_out[major]}")
        except ImageBuildError as exc:
            lines = [ln.strip(" |") for ln in str(exc).splitlines() if ln.strip(" |")]
            head = lines[0].removesuffix("; last lines:")
            left_out[major] = head + (f": {lines[-1]}" if len(lines) > 1 else "")
            _say(f"pg{major} left out: {left_out[major]}")
    return built, left_out


def propose(opts: Options) -> Proposal:
    """Measure the extension on the first major, then build each major's image (the
    first's is cached by then) to see where it installs."""
    major = opts.majors[0]
    controls = source_controls(opts.source) if opts.source else []
    preload = opts.library or ((controls[0],) if opts.source and len(controls) == 1 else ())
    if opts.source and not preload:
        raise KitError(
            f"--extension {opts.source}: several control files ({', '.join(controls)}); give --library"
        )
    ext = Extension(
        profile_name(opts, controls, preload),
        preload,
        opts.source,
        opts.packages,
        opts.recipe,
        opts.make_args,
    )
    library_from = "from --library" if opts.library else "named after the control file"
    if opts.packages and not ext.preload:
        _say(f"pg{major}: installing {', '.join(ext.packages_for(major))} to find its library")
        with _server(major, ext, opts.root) as probe:
            libraries, controls = package_files(probe, ext.packages_for(major))
        ext = replace(ext, preload=(package_library(libraries, controls, opts.packages),))
        library_from = (
            f"inferred: the packages install {', '.join(f'{lib}.so' for lib in libraries)} in pkglibdir"
        )
        ext = replace(ext, name=profile_name(opts, controls, ext.preload))
    at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    p = Proposal(ext.name, ext, major, at, library_from=library_from, controls=controls)
    _say(f"pg{major}: starting a server with {p.ext.library} preloaded")
    with _server(major, ext, opts.root) as target:
        if opts.packages and not p.controls:
            p.controls = package_files(target, ext.packages_for(major))[1]
        elif opts.source and not p.controls:
            p.controls = unowned_controls(target)
        p.name = profile_name(opts, p.controls, ext.preload)
        _refuse_existing(outputs(opts.root, p.name), opts.force)
        _measure(target, p, opts)
    p.ext = replace(p.ext, name=p.name)
    p.majors, p.left_out = installs_on(opts.majors, p.ext)
    return p


# -- the profile ----------------------------------------------------------------------
def _str(value: str) -> str:
    """A TOML string: multi-line for several lines, literal where it holds backslashes (a
    regex reads better), else basic."""
    if "\n" in value:
        return _multiline(value)
    if "\\" in value and "'" not in value and not any(ord(c) < 32 for c in value):
        return f"'{value}'"
    return json.dumps(value, ensure_ascii=False)


def _strs(values: Iterable[str]) -> str:
    return "[" + ", ".join(_str(v) for v in values) + "]"


def _multiline(text: str) -> str:
    """A multi-line basic string holding exactly ``text``."""
    return '"""\n' + text.replace("\\", "\\\\").replace('"', '\\"') + '"""'


def _inputs(p: Proposal) -> str:
    if p.ext.packages:
        return "Debian packages " + ", ".join(p.ext.packages)
    return f"sources in {p.ext.source}" + (" built by a recipe" if p.ext.recipe else " (PGXS)")


def _notes(p: Proposal) -> str:
    versions = ": " + "; ".join(p.versions) if p.versions else ""
    return (
        f"Proposed by bgw-conformance init on pg{p.major} at {p.at}: PostgreSQL {p.server_version},\n"
        f"{_inputs(p)}{versions}.\n"
        f"Measured there: the background processes at rest (unchanged for {STABLE_S:g} s from\n"
        f"{p.settled_s:.1f} s after a start with the setup done), one termination of each kind\n"
        f"(watched {BACK_S:g} s) and one crash-restart (SIGKILL, watched {CRASH_S:g} s).\n"
        "Not measured: workers that only a workload starts, the other majors' behaviour, and\n"
        "whether the measured restart intervals are what the extension promises.\n"
        "Review each value's comment, then make the promises yours."
    )


def _install(p: Proposal, profile_dir: Path) -> list[str]:
    out = ["[install]"]
    if p.ext.packages:
        out.append(f"packages = {_strs(p.ext.packages)}")
    if p.ext.source is not None:
        out.append(f"source = {_str(os.path.relpath(p.ext.source, profile_dir))}   # relative to this file")
    if p.ext.recipe:
        out.append(f"recipe = {_str(p.ext.recipe)}")
    if p.ext.make_args:
        out.append(f"make_args = {_str(p.ext.make_args)}")
    out.append(f"preload = {_strs(p.ext.preload)}   # {p.library_from}")
    return out


def _setup(p: Proposal) -> list[str]:
    out: list[str] = []
    if not p.controls:
        out.append("# no control file found (none in the sources or installed): no CREATE EXTENSION")
    if p.setup:
        out += ["[[setup]]", f"# created on pg{p.major} by init (measured)", 'database = "postgres"']
        out.append(f"sql = {_strs(p.setup)}")
    out += [f"# failed on pg{p.major}, left out: {stmt}: {error}" for stmt, error in p.failed]
    return out


def _probe_lines(key: str, probe: Probe | None) -> list[str]:
    if probe is None or probe.outcome == "unknown":
        why = probe.detail if probe else "not probed"
        return [f"# a guess, not measured ({_one_line(why)}): check it", f'{key} = "restart"']
    if probe.outcome == "restart":
        return [f"# measured: {probe.detail}", f'{key} = "restart"']
    return [f"# measured: {probe.detail}", f'{key} = "stays-down"']


def _process(p: Proposal, kind: Kind) -> list[str]:
    where = (
        f"in pg_stat_activity as {kind.backend_type!r}" if kind.backend_type else "not in pg_stat_activity"
    )
    if kind.database:
        where += f", connected to {kind.database}"
    out = ["[[process]]", f"# seen at rest on pg{p.major}: {kind.count} x title {kind.bgw_name!r}, {where}"]
    out += [f"name = {_str(kind.name)}", f"title = {_str(kind.title)}"]
    if kind.backend_type:
        out.append(f"backend_type = {_str(kind.backend_type)}")
    if kind.database:
        out.append(f"database = {_str(kind.database)}")
    elif kind.databases:
        out.append(f"# connected to several databases ({', '.join(kind.databases)}): no database")
    elif kind.backend_type:
        out.append("# no database: connected to none")
    out.append(f"count = {kind.count}")
    out += _probe_lines("after_exit", kind.after_exit)
    if kind.after_exit and kind.after_exit.outcome == "restart" and kind.after_exit.seconds is not None:
        out.append(
            f"restart_s = {promised_restart_s(kind.after_exit.seconds)}   # the measured interval, rounded"
        )
    out += _probe_lines("after_crash", kind.after_crash)
    return out


def render_profile(p: Proposal, profile_dir: Path) -> str:
    """The profile's text: what was measured, and comments saying so."""
    out = [
        f"# {p.name}: a bgw-conformance profile proposed by `bgw-conformance init` on pg{p.major} at {p.at}.",
        "# Each comment says whether the value under it was measured on that server or is a guess.",
        f"name = {_str(p.name)}",
        f"description = {_str(f'{p.name}: background workers (proposed by bgw-conformance init)')}",
        'tiers = ["bgworker"]',
        f"majors = [{', '.join(map(str, p.majors))}]",
        *(f"# pg{m} left out: {_one_line(why)}" for m, why in p.left_out.items()),
        f"notes = {_multiline(_notes(p) + chr(10))}",
        "",
        *_install(p, profile_dir),
        "",
        "[server]",
        "# settings the suite keeps as its baseline: none were needed for init's server",
        "",
        *_setup(p),
    ]
    for kind in p.kinds:
        out += ["", *_process(p, kind)]
    out += [
        "",
        "# [workload]: not proposed. Workers that only a workload starts (count = 0), and the SQL",
        "# that starts and stops them, are yours to add (see the README's pg_cron example).",
    ]
    return "\n".join(out) + "\n"


def write(p: Proposal, opts: Options) -> list[Path]:
    """Write the profile (then load it: it must), the expectations and the CI files."""
    paths = outputs(opts.root, p.name)
    _refuse_existing(paths, opts.force)
    profile, expected, github, gitlab = paths
    profile.parent.mkdir(parents=True, exist_ok=True)
    profile.write_text(render_profile(p, profile.parent))
    try:
        load_profile(str(profile))
    except KitError as exc:
        profile.unlink()
        raise KitError(f"init proposed a profile that does not load (a bug in init): {exc}") from None
    expected.write_text(expectations.render(p.name, []))
    for path, template in ((github, "github.yml"), (gitlab, "gitlab-ci.yml")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_ci(template, p.name, p.majors))
    return paths


def _summary(p: Proposal, paths: list[Path], root: Path) -> str:
    lines = [f"wrote {path}" for path in paths]
    lines.append(f"proposed processes (measured on pg{p.major}):")
    for k in p.kinds:
        exit_ = k.after_exit.outcome if k.after_exit else "unknown"
        if k.after_exit and k.after_exit.seconds is not None:
            secs = k.after_exit.seconds
            exit_ += f" (back in {secs:.2f}s, restart_s {promised_restart_s(secs)})"
        crash = k.after_crash.outcome if k.after_crash else "unknown"
        lines.append(
            f"  {k.name}: title /{k.title}/, backend_type {k.backend_type or '-'}, "
            f"database {k.database or '-'}, count {k.count}, after_exit {exit_}, after_crash {crash}"
        )
    lines.append(f"majors: {', '.join(map(str, p.majors))}")
    lines += [f"  pg{m} left out: {why}" for m, why in p.left_out.items()]
    profile = f"{PROFILE_DIR}/{p.name}.toml"
    lines.append(f"next, in {root}: bgw-conformance run --profile {profile} --target pg{p.major}")
    lines.append(f"then: bgw-conformance expectations update --profile {profile} reports")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """``bgw-conformance init``: check, measure, write, and say what was written."""
    opts = options(args)
    early = opts.name or (
        profile_name(opts, source_controls(opts.source), opts.library) if opts.source else None
    )
    _refuse_existing(outputs(opts.root, early), opts.force)
    proposal = propose(opts)
    paths = write(proposal, opts)
    print(_summary(proposal, paths, opts.root))
    return 0
