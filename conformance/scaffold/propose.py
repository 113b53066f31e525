"""The propose step of ``bgw-conformance init``: what a proposal is, and the rules
that turn what the probe saw into a profile's keys.

The data model: ``Options`` (what init was asked for), ``Seen`` (one background
process as observed), ``Probe`` (the outcome of one probe), ``Kind`` (one kind of
process, as seen at rest and as probed: a ``[[process]]`` entry to be) and
``Proposal`` (everything init will write).  The rules: which library to preload
(``package_library``), the profile's name (``profile_name``), the kinds and their
title regexes (``kinds_of``), the whole-second ``restart_s`` a measured comeback
suggests (``promised_restart_s``), what a termination showed (``exit_lines``, ``exit_probe``),
the expected failures a kind that exits with code 0 causes (``expected_failures``), and
the draft profile the probes' census uses (``draft_profile``).  Nothing here starts a
server.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from conformance.errors import KitError
from conformance.expectations import Expectation
from conformance.images import Extension
from conformance.profile import Install, ProcessSpec, Profile

PROFILE_DIR = "bgw-conformance"  # where the profile goes, under the extension's repository

#: the postmaster starts a worker up to this long after its bgw_restart_time (its loop's wakeup)
RESTART_LATENCY_S = 0.25


def promised_restart_s(measured: float) -> int:
    """The whole-second restart interval a measured comeback suggests (1.1 s from a 1 s interval is 1)."""
    return max(1, math.ceil(measured - RESTART_LATENCY_S))


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
    settings: tuple[tuple[str, str], ...] = ()  # --set NAME=VALUE, in order
    setup_sql: tuple[tuple[str, str], ...] = ()  # --setup-sql: (where it came from, the SQL)


@dataclass(frozen=True)
class Seen:
    """One background process of the extension: OS title, and its pg_stat_activity row."""

    pid: int
    bgw_name: str
    backend_type: str | None
    database: str | None
    datid: int | None = None  # the OID of its database


@dataclass(frozen=True)
class Probe:
    #: "restart", "stays-down", "unregistered" (exited with code 0 after a termination: the
    #: postmaster forgot it), "not back" (within the watch: unknown why), or "unknown" (not measured)
    outcome: str
    seconds: float | None  # back after this long (restart)
    detail: str  # what was done and seen
    evidence: str = ""  # the server's log lines about the terminated process


#: core's postmaster on a background worker's exit (postmaster.c, LogChildExit): at LOG, but
#: for exit code 0 only at DEBUG1, like bgworker.c's "unregistering background worker" that follows
EXITED = re.compile(r'background worker "[^"]*" \(PID (?P<pid>\d+)\) exited with exit code (?P<code>\d+)')
UNREGISTERED = re.compile(r'unregistering background worker "[^"]*"')
#: the bug of a worker that exits with code 0 when terminated
EXIT0_BUG = "https://github.com/citusdata/pg_cron/issues/99"
#: core's documentation of it: "if it exits with an exit code of 0 ... it will be automatically
#: unregistered by the postmaster on exit" (doc/src/sgml/bgworker.sgml)
EXIT0_DOCS = "https://www.postgresql.org/docs/current/bgworker.html"
#: the tests that fail when a kind promised to restart stays down after a termination: STOP-1
#: waits for it back within restart_s; CYCLE-1 terminates it in every cycle and waits for it back
NOT_BACK_FAILS = (
    "bgworker/test_stop.py::test_terminated_workers_come_back_once",
    "bgworker/test_cycles.py::test_nothing_accumulates_over_cycles",
)


def exit_lines(log: str) -> dict[int, tuple[int, str]]:
    """Each exited background worker's pid: its exit code and the log's evidence (the
    exit line and, for code 0, the unregistering line beside it: before it on 17, as
    ReportBackgroundWorkerExit forgets the worker before LogChildExit)."""
    lines = log.splitlines()
    out: dict[int, tuple[int, str]] = {}
    for i, text in enumerate(lines):
        m = EXITED.search(text)
        if m is None:
            continue
        code, evidence = int(m.group("code")), [m.group(0)]
        if code == 0:
            beside = (lines[j] for j in (i - 1, i + 1) if 0 <= j < len(lines))
            evidence += [u.group(0) for u in map(UNREGISTERED.search, beside) if u][:1]
        out[int(m.group("pid"))] = (code, "; ".join(evidence))
    return out


def exit_probe(
    pid: int, how: str, back_s: float | None, exited: tuple[int, str] | None, alive: bool, watched_s: float
) -> Probe:
    """What one termination of a kind showed: back (restart, after ``back_s``); gone with exit
    code 0 (unregistered: the postmaster never restarts it); or, not back within ``watched_s``,
    unknown (a longer bgw_restart_time, or staying down by design, look the same)."""
    code, line = exited if exited else (None, "")
    if back_s is not None:
        return Probe("restart", back_s, f"after {how} of pid {pid}, a new one ran {back_s:.2f} s later", line)
    if alive:
        return Probe("unknown", None, f"pid {pid} still ran {watched_s:g} s after {how}", line)
    if code == 0:
        return Probe(
            "unregistered",
            None,
            f"after {how} of pid {pid}, it exited with code 0 and none came back within {watched_s:g} s",
            line,
        )
    code_said = f"it exited with code {code}" if code is not None else "no exit line in the log"
    detail = f"after {how} of pid {pid} ({code_said}), none came back within {watched_s:g} s"
    return Probe("not back", None, detail, line)


def by_design(after_exit: Probe, after_crash: Probe | None) -> Probe:
    """A kind gone after its termination (exit code 0 or not) that is not back after a
    crash-restart either is registered never to restart: BGW_NEVER_RESTART, which the
    postmaster forgets at a crash-restart too (bgworker.sgml: "BGW_NEVER_RESTART,
    indicating not to restart the process in case of a crash"), so staying down is its
    design, measured; a kind that is back after a crash-restart keeps ``after_exit``."""
    if after_exit.outcome not in ("unregistered", "not back"):
        return after_exit
    if after_crash is None or after_crash.outcome != "stays-down":
        return after_exit
    why = "not back after a crash-restart either: registered never to restart (BGW_NEVER_RESTART)"
    return Probe("stays-down", None, f"{after_exit.detail}; {why}", after_exit.evidence)


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
    backend_type_pattern: str | None = None  # instead of backend_type: its digits vary or are ids
    #: what the title and backend_type patterns stand for (numbers that vary or look like ids)
    generalized: tuple[str, ...] = ()
    #: where it ran, as seen on a primary and its hot standby (None: not probed)
    roles: tuple[str, ...] | None = None
    #: what it did when the standby was promoted: starts, stops or keeps, and after how long
    after_promotion: str | None = None
    promotion_seen_s: float | None = None
    promotion_detail: str = ""

    def spec(self) -> ProcessSpec:
        return ProcessSpec(
            self.name,
            self.title,
            self.backend_type,
            self.database,
            self.count,
            backend_type_pattern=self.backend_type_pattern,
            roles=self.roles or ("primary",),
        )


@dataclass
class Proposal:
    name: str
    ext: Extension
    major: int
    at: str
    server_version: str = ""
    versions: list[str] = field(default_factory=list)
    library_from: str = ""  # where the library to preload came from: given, or guessed and how
    controls: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    kinds: list[Kind] = field(default_factory=list)
    settled_s: float = 0.0
    majors: list[int] = field(default_factory=list)
    left_out: dict[int, str] = field(default_factory=dict)
    name_from: str = "guessed: named after the extension"
    settings: dict[str, str] = field(default_factory=dict)  # given with --set
    setup_sql: list[tuple[str, str]] = field(default_factory=list)  # given with --setup-sql


def draft_profile(
    name: str, root: Path, ext: Extension, kinds: Iterable[Kind] = (), server: dict[str, str] | None = None
) -> Profile:
    """The profile as known so far (for KitConfig and Census): its ``[server]`` is what
    was given with --set, applied as the suite applies a profile's."""
    install = Install(ext.packages, ext.source, ext.recipe, ext.make_args, ext.preload)
    return Profile(
        name=name,
        path=root / PROFILE_DIR / f"{name}.toml",
        tiers=("bgworker",),
        install=install,
        server=dict(server or {}),
        processes=tuple(k.spec() for k in kinds),
    )


def source_controls(source: Path) -> list[str]:
    return sorted(p.stem for p in source.glob("*.control"))


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


def _common_start(names: list[str]) -> str:
    """The longest string every one of ``names`` starts with."""
    first, last = min(names), max(names)
    n = next((i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), len(first))
    return first[:n]


#: the first OID of objects created after initdb: a number this large in a name is likely an OID
FIRST_NORMAL_OID = 16384
_DIGITS = re.compile(r"\d+")


def _looks_like_an_id(number: str, s: Seen) -> bool:
    """A number in a name that is likely an OID or a pid: as large as the first normal
    OID, or the process's own pid or database OID."""
    n = int(number)
    return n >= FIRST_NORMAL_OID or n == s.pid or n == s.datid


def _pattern(text: str, volatile: set[str]) -> str:
    """``text`` as a regex: each digit run in ``volatile`` as ``\\d+``, the rest escaped."""
    out, at = [], 0
    for m in _DIGITS.finditer(text):
        out.append(re.escape(text[at : m.start()]))
        out.append(r"\d+" if m.group() in volatile else re.escape(m.group()))
        at = m.end()
    return "".join(out) + re.escape(text[at:])


def _volatile(members: list[Seen], texts: list[str]) -> set[str]:
    """The digit runs of ``texts`` (one per member) that vary across them, at the same
    place, or look like an OID or a pid."""
    runs = [_DIGITS.findall(t) for t in texts]
    out = {n for s, rs in zip(members, runs, strict=True) for n in rs if _looks_like_an_id(n, s)}
    if len({len(rs) for rs in runs}) == 1:
        for column in zip(*runs, strict=True):
            if len(set(column)) > 1:
                out |= set(column)
    return out


def _common_title(members: list[Seen]) -> tuple[str, set[str]]:
    """A title regex matching all the members' titles at their start, with the numbers
    it generalizes: the common start, cut back to before a digit run it would split,
    with the digit runs that look like ids as ``\\d+``."""
    names = [m.bgw_name for m in members]
    prefix = _common_start(names)
    if prefix[-1:].isdigit() and any(n[len(prefix) : len(prefix) + 1].isdigit() for n in names):
        prefix = prefix.rstrip("0123456789")
    if prefix.strip():
        volatile = {n for s in members for n in _DIGITS.findall(prefix) if _looks_like_an_id(n, s)}
        return _pattern(prefix, volatile), volatile
    return "(?:" + "|".join(re.escape(n) for n in sorted(set(names))) + ")", set()


def _backend_type(members: list[Seen]) -> tuple[str | None, str | None, set[str]]:
    """The kind's backend_type, or its backend_type_pattern where its digits vary or look
    like ids (a fullmatch regex), and the numbers generalized."""
    types = [m.backend_type for m in members]
    if types[0] is None:
        return None, None, set()
    assert all(t is not None for t in types)
    volatile = _volatile(members, [t or "" for t in types])
    if not volatile:
        return types[0], None, set()
    return None, _pattern(types[0], volatile), volatile


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
    else by title (digits aside in both).  A number in a title or a backend_type that
    varies across a kind, or looks like an OID or a pid (``_looks_like_an_id``), is
    proposed as ``\\d+``: in the title (a regex already), and as a backend_type_pattern
    instead of a backend_type.  A title that would also match another kind's
    processes is anchored at its end too."""
    groups: dict[tuple[str, str], list[Seen]] = {}
    for s in seen:
        key = ("sql", s.backend_type) if s.backend_type else ("os", s.bgw_name)
        groups.setdefault((key[0], _DIGITS.sub("#", key[1])), []).append(s)
    kinds: list[Kind] = []
    known = list(known_names)
    for members in groups.values():
        names = [m.bgw_name for m in members]
        dbs = sorted({m.database for m in members if m.database is not None})
        start = _common_start(names)
        short = _short_name(start.strip() or names[0], known)
        taken = {k.name for k in kinds}
        title, in_title = _common_title(members)
        if any(re.match(title, s.bgw_name) for s in seen if s not in members):
            title += "$"
        backend_type, pattern, in_type = _backend_type(members)
        kinds.append(
            Kind(
                name=short if short not in taken else f"{short} {len(kinds) + 1}",
                title=title,
                bgw_name=start,
                backend_type=backend_type,
                database=dbs[0] if len(dbs) == 1 and all(m.database for m in members) else None,
                count=len(members),
                databases=tuple(dbs) if len(dbs) > 1 else (),
                backend_type_pattern=pattern,
                generalized=tuple(sorted(in_title | in_type, key=int)),
            )
        )
    return kinds


def expected_failures(p: Proposal) -> list[Expectation]:
    """The tests a kind that exits with code 0 on termination fails on the probed target,
    once the profile promises its restart, each with the evidence."""
    probes = [(k.name, k.after_exit) for k in p.kinds if k.after_exit is not None]
    gone = [(name, probe) for name, probe in probes if probe.outcome == "unregistered"]
    if not gone:
        return []
    evidence = "; ".join(f"{name}: {probe.detail} (server log: {probe.evidence})" for name, probe in gone)
    reason = (
        f"measured by bgw-conformance init on pg{p.major} at {p.at}: {evidence}. A worker that exits "
        f"with code 0 is unregistered by the postmaster and never restarted ({EXIT0_DOCS}), so a kind "
        "promised to restart stays down"
    )
    target = (f"pg{p.major}",)
    return [Expectation("fail", reason, test=t, targets=target, link=EXIT0_BUG) for t in NOT_BACK_FAILS]
