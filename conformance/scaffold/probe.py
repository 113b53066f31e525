"""The probe step of ``bgw-conformance init``: a real server with the extension,
and what was measured on it.

It starts a server with the extension preloaded (``server``, through
``targets.make_target``, the one place servers start), finds what the packages
install (``package_files``, ``unowned_controls``), creates the extension
(``create_extensions``), waits until its background processes are stable
(``observe``, ``settle``), and probes each kind: one of its processes terminated,
every kind at once, watched together with the server logging at debug1
(``probe_exits``: does it come back, how soon, and with what exit code did it
go?), and one crash-restart of the server (``probe_crash``: is each kind back
after it?).  The server has a hot standby: ``probe_standby`` sees which kinds
run there and what each does when it is promoted.  ``measure`` does all of
that on one server (and its standby) into a ``Proposal``;
``installs_on`` builds each major's image to see where the extension installs.
The deadlines of the probes are here too.
"""

from __future__ import annotations

import re
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import psycopg

from conformance import images
from conformance.census import CRASH_RESTART, Census, title_of
from conformance.config import KitConfig
from conformance.deadlines import CRASH_RECOVERY_S, START_S
from conformance.errors import ImageBuildError, KitError, NotPackaged, TargetError
from conformance.images import Extension
from conformance.profile import PROMOTION_S
from conformance.scaffold.propose import (
    Kind,
    Options,
    Probe,
    Proposal,
    Seen,
    by_design,
    draft_profile,
    exit_lines,
    exit_probe,
    kinds_of,
)
from conformance.targets import StandbyTarget, Target
from conformance.waiting import WaitTimeout

STABLE_S = 3.0  # at rest: the extension's processes unchanged for this long ...
SETTLE_S = 60.0  # ... within this deadline after a start
#: how long a terminated process is watched for coming back: the longest bgw_restart_time
#: extensions commonly use (60 s) plus the postmaster's latency in starting it, and a margin
#: (as long as STOP-1 watches a kind declared to stay down, deadlines.STAYS_DOWN_S)
BACK_S = 65.0
CRASH_S = CRASH_RECOVERY_S  # how long a kind is watched for coming back after a crash-restart
#: core's own background workers, by the start of their title (the bgworker view keeps them)
CORE_BGWORKERS = ("logical replication ", "slotsync worker")
#: how long the kinds are watched after the standby's promotion: REPLICA-7's default
#: deadline (profile.PROMOTION_S) and as much again, so a slow start is measured, not missed
PROMOTED_S = 2 * PROMOTION_S


def say(line: str) -> None:
    print(f"[init] {line}", file=sys.stderr, flush=True)


def one_line(text: object) -> str:
    return " ".join(str(text).split()) or "(no message)"


@contextmanager
def server(
    major: int, ext: Extension, root: Path, settings: dict[str, str] | None = None
) -> Iterator[Target]:
    """A started server with ``ext`` (through make_target), always removed; with
    ``settings`` (--set) as its baseline, applied as the suite applies a profile's
    ``[server]`` (``set_baseline``), and each one checked to be known to the server."""
    from conformance.targets import make_target

    profile = draft_profile(ext.name, root, ext, server=settings)
    name = f"pg{major}+standby"  # the standby tells which kinds run there, and what a promotion does
    kit = KitConfig((name,), profile, ext, None, "pg_config", None)
    target = make_target(name, kit)
    try:
        if profile.server:
            apply_settings(target, profile.server)
        yield target
    finally:
        target.close()


#: server log lines that say why a start with new settings failed
_START_FAILED = re.compile(r"(?:FATAL|PANIC|ERROR):.*|LOG:.*(?:parameter|configuration file).*")


def apply_settings(target: Target, settings: dict[str, str]) -> None:
    """The --set settings as the server's baseline (a restart); KitError (one line) when
    the server will not start with them, or does not know one of them."""
    offset = target.log_offset()
    given = ", ".join(f"{k}={v}" for k, v in settings.items())
    try:
        target.set_baseline(**settings)
    except (TargetError, WaitTimeout) as exc:
        said = [m.group(0).strip() for m in _START_FAILED.finditer(target.log_since(offset))]
        why = "; ".join(dict.fromkeys(said)) or one_line(exc)
        raise KitError(f"--set {given}: the server did not start with it: {one_line(why)[:600]}") from None
    known = {str(n).lower() for (n,) in target.sql("SELECT name FROM pg_settings", idempotent=True)}
    unknown = [name for name in settings if name.lower() not in known]
    if unknown:
        raise KitError(
            f"--set {', '.join(unknown)}: the server knows no such setting (not in pg_settings "
            f"with {target.scalar('SHOW shared_preload_libraries')!r} preloaded)"
        )


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
            failed.append((stmt, one_line(exc)))
    return done, failed


def observe(target: Target, workers: Census) -> list[Seen]:
    """The extension's background processes: the OS's, without core's, with their SQL view."""
    procs = [
        p
        for p in workers.background_workers()
        if not title_of(p, target.cluster_name).startswith(CORE_BGWORKERS)
    ]
    rows = target.sql("SELECT pid, backend_type, datname, datid FROM pg_stat_activity", idempotent=True)
    sql = {pid: (btype, db, datid) for pid, btype, db, datid in rows}
    return sorted(
        (Seen(p.pid, title_of(p, target.cluster_name), *sql.get(p.pid, (None, None, None))) for p in procs),
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


def back_at_rest(target: Target, workers: Census) -> None:
    """Every kind as seen at rest again: waited for, or after a restart (a probe left one down)."""
    census = workers.census()
    if all(len(census[s.name]) == s.count for s in workers.profile.processes):
        try:
            workers.wait_at_rest(START_S)
            return
        except AssertionError:
            pass
    say("restarting the server to bring every kind back")
    target.restart("fast")
    try:
        workers.wait_at_rest(SETTLE_S)
    except AssertionError as exc:
        raise KitError(
            f"after a restart, the processes seen at rest did not come back as seen: {one_line(exc)[:400]}"
        ) from None


def probe_exits(target: Target, workers: Census, kinds: list[Kind]) -> None:
    """Terminate one process of every kind at once, with log_min_messages at debug1 (the
    postmaster logs an exit with code 0 only there), and watch them all together for up
    to BACK_S for a new one; then read each terminated pid's exit line from the log."""
    target.set_conf(log_min_messages="debug1")
    try:
        offset = target.log_offset()
        census = workers.census()
        victims = {k.name: min(census[k.name]) for k in kinds}
        t0 = time.monotonic()
        how = {k.name: workers.terminate(workers.profile.process(k.name), victims[k.name]) for k in kinds}
        back: dict[str, float] = {}

        def all_back() -> bool:
            now = time.monotonic() - t0
            for name, pids in workers.census().items():
                spec = workers.profile.process(name)
                if name not in back and len(pids) == spec.count and victims[name] not in pids:
                    back[name] = now
            return len(back) == len(kinds)

        try:
            target.wait_until(all_back, BACK_S, what="a new process of every kind terminated")
        except WaitTimeout:
            pass
        watched = time.monotonic() - t0
        exits = exit_lines(target.log_since(offset))
    finally:
        target.set_conf(log_min_messages=None)  # back to the server's own setting
    for k in kinds:
        pid = victims[k.name]
        alive = k.name not in back and target.pid_alive(pid)
        exited = exits.get(pid)
        k.after_exit = exit_probe(pid, how[k.name], back.get(k.name), exited, alive, min(watched, BACK_S))


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


def run_setup_sql(target: Target, given: Iterable[tuple[str, str]]) -> None:
    """The --setup-sql, in postgres, after CREATE EXTENSION, durably (as the suite's
    setup runs); KitError (one line) on the first that fails."""
    for origin, sql in given:
        try:
            with target.connect() as conn:
                conn.execute("SET synchronous_commit = on")
                conn.execute(sql)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            raise KitError(f"--setup-sql {origin}: failed in postgres: {one_line(exc)[:400]}") from None


def gating_settings(target: Target, names: Iterable[str]) -> list[str]:
    """The extension's own settings (``prefix.name`` for the prefixes its names suggest:
    the library, control and profile names, with and without ``pg_``; else every
    setting with a dot, which only a loaded library defines) with their current
    values, and max_worker_processes: what commonly gates its workers."""
    prefixes = sorted({p.lower() for n in names for p in (n, n.removeprefix("pg_")) if p})
    rows = target.sql(
        "SELECT name, setting FROM pg_settings WHERE split_part(name, '.', 1) = ANY(%s) ORDER BY 1",
        prefixes,
        idempotent=True,
    ) or target.sql(
        "SELECT name, setting FROM pg_settings WHERE strpos(name, '.') > 0 ORDER BY 1", idempotent=True
    )
    core = target.sql("SELECT name, setting FROM pg_settings WHERE name = 'max_worker_processes'")
    return [f"{name}={setting!r}" for name, setting in [*rows, *core]]


def _versions(target: Target, packages: tuple[str, ...]) -> list[str]:
    out = [f"{p} {target.run(['dpkg-query', '-W', '-f', '${Version}', p]).strip()}" for p in packages]
    rows = target.sql("SELECT extname, extversion FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1")
    return out + [f"extension {name} {version}" for name, version in rows]


def measure(target: Target, p: Proposal, opts: Options) -> None:
    """Create the extension, find its processes at rest, and probe each kind."""
    p.server_version = str(target.scalar("SHOW server_version"))
    p.setup, p.failed = create_extensions(target, p.controls)
    for stmt, error in p.failed:
        say(f"{stmt}: {error}")
    run_setup_sql(target, p.setup_sql)
    target.restart("fast")  # at rest as the suite sees it: a start with the setup done
    draft = draft_profile(p.name, opts.root, p.ext, server=p.settings)
    seen, p.settled_s = settle(target, Census(target, draft))
    names = [p.name, *p.ext.preload, *p.controls]
    p.kinds = kinds_of(seen, names)
    if not p.kinds:
        given = f" with --set {', '.join(p.settings)}" if p.settings else ""
        raise KitError(
            f"no background process of {p.name} ran at rest on pg{p.major}{given} (after a start with "
            f"its setup done, unchanged for {STABLE_S:g}s): init proposes the processes it sees. "
            f"Settings that may gate its workers, as they are: {', '.join(gating_settings(target, names))}; "
            "give what starts them with --set NAME=VALUE (repeatable)"
        )
    say("at rest: " + ", ".join(f"{k.count} x {k.bgw_name!r}" for k in p.kinds))
    p.versions = _versions(target, p.ext.packages_for(p.major))
    workers = Census(target, draft_profile(p.name, opts.root, p.ext, p.kinds, p.settings))
    back_at_rest(target, workers)
    say(f"terminating one process of each kind at once, watching up to {BACK_S:g}s")
    probe_exits(target, workers, p.kinds)
    for kind in p.kinds:
        assert kind.after_exit is not None
        say(f"{kind.name}: {kind.after_exit.detail}")
    back_at_rest(target, workers)
    say(f"crashing the server (SIGKILL of one {p.kinds[0].name!r}), watching up to {CRASH_S:g}s")
    probe_crash(target, workers, p.kinds)
    for kind in p.kinds:
        assert kind.after_exit is not None
        kind.after_exit = by_design(kind.after_exit, kind.after_crash)
    probe_standby(target, p, opts)


def probe_standby(target: Target, p: Proposal, opts: Options) -> None:
    """Which kinds run on the hot standby (after its start with the setup
    replayed, unchanged for STABLE_S), and what each does when it is
    promoted (watched PROMOTED_S): starts, stops, or keeps its processes."""
    standby = target.standby
    if not isinstance(standby, StandbyTarget):
        return
    say(f"a hot standby: which kinds run there, then its promotion, watched up to {PROMOTED_S:g}s")
    if p.settings:
        standby.set_baseline(**p.settings)
    standby.follow("init probes the standby with the setup done")
    standby.restart("fast")
    draft = draft_profile(p.name, opts.root, p.ext, p.kinds, p.settings)
    workers = Census(standby, draft, "standby")
    settle(standby, workers)
    before = workers.census()
    for kind in p.kinds:
        kind.roles = ("primary", "standby") if before[kind.name] else ("primary",)
    standby.promote()
    promoted = time.monotonic()
    seen: dict[str, float] = {}

    def settled() -> bool:
        now = workers.census()
        for kind in p.kinds:
            ok = (
                set(before[kind.name]) <= set(now[kind.name])
                if before[kind.name]
                else len(now[kind.name]) >= kind.count
            )
            if ok and kind.name not in seen:
                seen[kind.name] = round(time.monotonic() - promoted, 2)
            if not ok:
                seen.pop(kind.name, None)
        return len(seen) == len(p.kinds)

    try:
        standby.wait_until(settled, PROMOTED_S, what="every kind as it will be after the promotion")
    except WaitTimeout:
        pass
    for kind in p.kinds:
        on_standby = bool(before[kind.name])
        if kind.name in seen:
            kind.after_promotion = "keeps" if on_standby else "starts"
            kind.promotion_seen_s = seen[kind.name]
            kind.promotion_detail = (
                "ran on in the same processes"
                if on_standby
                else f"up {seen[kind.name]:g} s after pg_promote()"
            )
        else:
            kind.after_promotion = "stops" if on_standby else None
            kind.promotion_detail = (
                f"its processes on the standby gone or replaced within {PROMOTED_S:g} s of pg_promote()"
                if on_standby
                else f"not up within {PROMOTED_S:g} s of pg_promote()"
            )
        where = "on the standby too" if on_standby else "not on the standby"
        say(f"{kind.name}: {where}; {kind.promotion_detail}")


def installs_on(majors: Iterable[int], ext: Extension) -> tuple[list[int], dict[int, str]]:
    """Build each major's image; the majors where it built, and why the others did not."""
    built, left_out = [], {}
    for major in majors:
        try:
            images.build_extension(major, ext)
            built.append(major)
        except NotPackaged as exc:
            left_out[major] = f"not packaged: Debian ({exc.suite}) has no {', '.join(exc.packages)}"
            say(f"pg{major} left out: {left_out[major]}")
        except ImageBuildError as exc:
            lines = [ln.strip(" |") for ln in str(exc).splitlines() if ln.strip(" |")]
            head = lines[0].removesuffix("; last lines:")
            left_out[major] = head + (f": {lines[-1]}" if len(lines) > 1 else "")
            say(f"pg{major} left out: {left_out[major]}")
    return built, left_out
