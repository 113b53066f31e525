"""``bgw-conformance init``: an extension's adoption of the kit, scaffolded.

  bgw-conformance init (--package NAME [--package NAME...] | --extension DIR) [--name NAME]
                       [--library LIB] [--recipe CMD] [--make-args ARGS] [--pg 17[,18...]]
                       [--dir DIR] [--force] [--set GUC=VALUE...] [--setup-sql FILE|SQL...]

Its options are checked before anything starts (``options``); then three steps,
a module each:

1. probe (``probe.py``): start a real server with the extension preloaded (and
   the --set settings, applied as the suite applies a profile's ``[server]``),
   create the extension, run the --setup-sql, wait until its background processes
   are stable, and probe each kind: one of its processes terminated, every kind at
   once and watched up to 65 s with the server logging at debug1 (does it come back,
   how soon, or did it exit with code 0 and get unregistered?), and one
   crash-restart of the server (is each kind back after it?).
   Then build each major's image to see where the extension installs.
2. propose (``propose.py``): turn what was seen into a ``Proposal``: the library
   to preload, the profile's name, the kinds of process with their title
   regexes, and each kind's ``after_exit``, ``restart_s`` and ``after_crash``.
3. write (``write.py``): the profile, whose comments say what was measured and
   what is a guess, the expectations file (the failures a kind that exits with
   code 0 causes, with the evidence), and CI workflows for GitHub and
   GitLab from ``fixtures/ci/``; then a summary on the terminal.

``make_proposal`` runs the first two (they interleave: the name and library are
inferred from what the packages install before the extension is measured), and
``run`` is what the CLI calls.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
from dataclasses import replace
from pathlib import Path

from conformance.config import OPTIONS
from conformance.errors import KitError
from conformance.images import Extension, check_source
from conformance.scaffold import probe, propose, write
from conformance.scaffold.probe import installs_on, measure, package_files, say, server, unowned_controls
from conformance.scaffold.propose import (
    PROFILE_DIR,
    Kind,
    Options,
    Probe,
    Proposal,
    Seen,
    by_design,
    exit_lines,
    exit_probe,
    expected_failures,
    kinds_of,
    package_library,
    profile_name,
    promised_restart_s,
    source_controls,
)
from conformance.scaffold.write import (
    GITHUB,
    GITLAB,
    outputs,
    refuse_existing,
    render_ci,
    render_profile,
    summary,
)
from conformance.targets.spec import parse_majors

__all__ = [
    "GITHUB",
    "GITLAB",
    "PROFILE_DIR",
    "Kind",
    "Options",
    "Probe",
    "Proposal",
    "Seen",
    "add_parser",
    "by_design",
    "exit_lines",
    "exit_probe",
    "expected_failures",
    "installs_on",
    "kinds_of",
    "make_proposal",
    "options",
    "outputs",
    "package_library",
    "probe",
    "promised_restart_s",
    "propose",
    "render_ci",
    "render_profile",
    "run",
    "write",
]


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_DEBIAN_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")


# -- options ------------------------------------------------------------------------
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
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="GUC=VALUE",
        help="a server setting for the server init starts and the profile's [server] (repeatable)",
    )
    p.add_argument(
        "--setup-sql",
        action="append",
        default=[],
        metavar="FILE|SQL",
        help="SQL run in postgres after CREATE EXTENSION, and written into the profile's [[setup]]: "
        "a path to an existing file is read, anything else is the SQL (repeatable)",
    )


_GUC = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z_][A-Za-z0-9_$]*)*")


def _settings(given: list[str]) -> tuple[tuple[str, str], ...]:
    """--set NAME=VALUE, each checked (the server checks them again when init starts it)."""
    out: dict[str, str] = {}
    for item in given:
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not _GUC.fullmatch(name):
            raise KitError(f"--set {item!r}: give NAME=VALUE, NAME a server setting (e.g. wal_level=logical)")
        if name.lower() == "shared_preload_libraries":
            raise KitError(
                "--set shared_preload_libraries: init preloads the extension's library itself "
                "([install] preload); give --library LIB[,LIB...] to preload others with it"
            )
        if out.get(name, value) != value:
            raise KitError(f"--set {name}: given twice, as {out[name]!r} and {value!r}")
        out[name] = value
    return tuple(out.items())


def _setup_sql(given: list[str]) -> tuple[tuple[str, str], ...]:
    """--setup-sql FILE|SQL: (where it came from, the SQL)."""
    out = []
    for item in given:
        path = Path(item)
        if path.is_file():
            origin, sql = str(path), path.read_text()
        elif re.fullmatch(r"\S+\.sql", item):
            raise KitError(f"--setup-sql {item}: no such file")
        else:
            origin, sql = repr(" ".join(item.split())[:60]), item
        if not sql.strip():
            raise KitError(f"--setup-sql {origin}: no SQL in it")
        out.append((origin, sql))
    return tuple(out)


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
    root = Path(args.dir)  # created when init writes into it
    if root.exists() and not root.is_dir():
        raise KitError(f"--dir {root}: not a directory")
    settings, setup_sql = _settings(args.set or []), _setup_sql(args.setup_sql or [])
    return Options(
        packages,
        source,
        args.recipe,
        args.make_args,
        library,
        args.name,
        parse_majors(args.pg),
        root,
        args.force,
        settings,
        setup_sql,
    )


def make_proposal(opts: Options) -> Proposal:
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
    library_from = "given with --library" if opts.library else "guessed: named after the control file"
    if opts.packages and not ext.preload:
        say(f"pg{major}: installing {', '.join(ext.packages_for(major))} to find its library")
        with server(major, ext, opts.root) as probe_server:
            libraries, controls = package_files(probe_server, ext.packages_for(major))
        ext = replace(ext, preload=(package_library(libraries, controls, opts.packages),))
        library_from = (
            f"guessed: the packages install {', '.join(f'{lib}.so' for lib in libraries)} in pkglibdir"
        )
        ext = replace(ext, name=profile_name(opts, controls, ext.preload))
    at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    p = Proposal(ext.name, ext, major, at, library_from=library_from, controls=controls)
    p.settings, p.setup_sql = dict(opts.settings), list(opts.setup_sql)
    given = "".join(f", {k}={v}" for k, v in p.settings.items())
    say(f"pg{major}: starting a server with {p.ext.library} preloaded{given}")
    with server(major, ext, opts.root, p.settings) as target:
        if opts.packages and not p.controls:
            p.controls = package_files(target, ext.packages_for(major))[1]
        elif opts.source and not p.controls:
            p.controls = unowned_controls(target)
        p.name = profile_name(opts, p.controls, ext.preload)
        refuse_existing(outputs(opts.root, p.name), opts.force)
        measure(target, p, opts)
    p.ext = replace(p.ext, name=p.name)
    p.name_from = (
        "given with --name"
        if opts.name
        else "guessed: its control file's name"
        if p.name in p.controls
        else "guessed: from its package, library or source directory"
    )
    p.majors, p.left_out = installs_on(opts.majors, p.ext)
    return p


def run(args: argparse.Namespace) -> int:
    """``bgw-conformance init``: check, measure, write, and say what was written."""
    opts = options(args)
    early = opts.name or (
        profile_name(opts, source_controls(opts.source), opts.library) if opts.source else None
    )
    refuse_existing(outputs(opts.root, early), opts.force)
    proposal = make_proposal(opts)
    paths = write.write(proposal, opts)
    print(summary(proposal, paths, opts.root))
    return 0
