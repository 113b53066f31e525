"""The write step of ``bgw-conformance init``: a proposal rendered as files.

The files init writes (``outputs``, refused if they exist unless ``--force``),
the profile's TOML (``render_profile``: every value with a comment saying whether
it was measured, is a guess or was given), the expectations file (the failures a
measured defect causes, with their evidence; else empty), the CI workflows for
GitHub and GitLab from ``fixtures/ci/`` (``render_ci``), and the summary printed
on the terminal (``summary``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

from conformance import __version__, expectations
from conformance.errors import KitError
from conformance.paths import fixtures_dir
from conformance.profile import PROMOTION_S, load_profile
from conformance.scaffold.probe import BACK_S, CRASH_S, PROMOTED_S, STABLE_S, one_line
from conformance.scaffold.propose import (
    EXIT0_BUG,
    EXIT0_DOCS,
    PROFILE_DIR,
    Kind,
    Options,
    Probe,
    Proposal,
    expected_failures,
    promised_restart_s,
)

GITHUB = Path(".github/workflows/bgw-conformance.yml")
GITLAB = Path(".gitlab/bgw-conformance.gitlab-ci.yml")


def outputs(root: Path, name: str | None) -> list[Path]:
    """The files init writes (the profile and expectations once the name is known)."""
    ci = [root / GITHUB, root / GITLAB]
    if name is None:
        return ci
    profile = root / PROFILE_DIR / f"{name}.toml"
    return [profile, expectations.default_path(profile), *ci]


def refuse_existing(paths: Iterable[Path], force: bool) -> None:
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
        f"{p.settled_s:.1f} s after a start with the setup done), one termination of each kind,\n"
        f"all at once (watched up to {BACK_S:g} s, the server logging at debug1 to show each exit\n"
        f"code), one crash-restart (SIGKILL, watched {CRASH_S:g} s), and on a hot standby which\n"
        f"kinds run there and what each does at its promotion (watched {PROMOTED_S:g} s).\n"
        "Not measured: workers that only a workload starts, the other majors' behaviour, and\n"
        "whether the measured restart intervals are what the extension promises.\n"
        "Review each value's comment, then make the promises yours."
    )


def _install(p: Proposal, profile_dir: Path) -> list[str]:
    out = ["[install]"]
    if p.ext.packages:
        out.append(f"packages = {_strs(p.ext.packages)}   # given with --package")
    if p.ext.source is not None:
        source = _str(os.path.relpath(p.ext.source, profile_dir))
        out.append(f"source = {source}   # given with --extension, relative to this file")
    if p.ext.recipe:
        out.append(f"recipe = {_str(p.ext.recipe)}   # given with --recipe")
    if p.ext.make_args:
        out.append(f"make_args = {_str(p.ext.make_args)}   # given with --make-args")
    out.append(f"preload = {_strs(p.ext.preload)}   # {p.library_from or 'guessed'}")
    return out


def _server(p: Proposal) -> list[str]:
    if not p.settings:
        return ["[server]", "# settings the suite keeps as its baseline: none were given with --set"]
    out = ["[server]", "# settings the suite keeps as its baseline; init's server ran with them"]
    return out + [f"{_str(name)} = {_str(value)}   # given with --set" for name, value in p.settings.items()]


def _setup(p: Proposal) -> list[str]:
    out: list[str] = []
    if not p.controls:
        out.append("# no control file found (none in the sources or installed): no CREATE EXTENSION")
    if p.setup:
        out += ["[[setup]]", f"# created on pg{p.major} by init (measured)", 'database = "postgres"']
        out.append(f"sql = {_strs(p.setup)}")
    out += [f"# failed on pg{p.major}, left out: {stmt}: {error}" for stmt, error in p.failed]
    for origin, sql in p.setup_sql:
        out += ["[[setup]]", f"# given with --setup-sql {origin}; run on pg{p.major} by init after the above"]
        out += ['database = "postgres"', f"sql = [{_str(sql)}]"]
    return out


def _probe_lines(key: str, probe: Probe | None) -> list[str]:
    if probe is None or probe.outcome == "unknown":
        why = probe.detail if probe else "not probed"
        return [f"# a guess, not measured ({one_line(why)}): check it", f'{key} = "restart"']
    if probe.outcome == "restart":
        return [f"# measured: {probe.detail}", f'{key} = "restart"']
    return [f"# measured: {probe.detail}", f'{key} = "stays-down"']


def _exit_lines(probe: Probe | None) -> list[str]:
    """after_exit (and restart_s): measured where the kind came back, or where it exited with
    code 0 (a defect: the promise is a restart, its failures expected); else a guess."""
    if probe is None or probe.outcome not in ("restart", "unregistered", "not back"):
        return _probe_lines("after_exit", probe)
    if probe.outcome == "restart":
        assert probe.seconds is not None
        return [
            f"# measured: {probe.detail}",
            'after_exit = "restart"',
            f"restart_s = {promised_restart_s(probe.seconds)}   # measured: the interval, rounded",
        ]
    if probe.outcome == "unregistered":
        return [
            f"# measured: {probe.detail}; the server logged (at debug1):",
            f"#   {probe.evidence}",
            "# A worker that exits with code 0 is unregistered by the postmaster and never restarted",
            f"# ({EXIT0_DOCS}), the bug of {EXIT0_BUG}:",
            "# a defect, not a design. The promise below is what it should do; the expectations file",
            "# lists the failures the measured behaviour causes, with this evidence. If staying down",
            '# is its design, write "stays-down".',
            'after_exit = "restart"',
            "restart_s = 1   # a guess: no restart to measure; use the worker's bgw_restart_time",
        ]
    return [
        f"# unknown: not back within {BACK_S:g} s; check the extension's docs ({probe.detail})",
        f'# a guess, not measured: "stays-down" is what {BACK_S:g} s showed (STOP-1 watches as long);',
        '# a restart after a longer bgw_restart_time looks the same: then write "restart" and restart_s',
        'after_exit = "stays-down"',
    ]


def _process(p: Proposal, kind: Kind) -> list[str]:
    btype = kind.backend_type or (kind.backend_type_pattern and f"/{kind.backend_type_pattern}/")
    where = f"in pg_stat_activity as {btype!r}" if btype else "not in pg_stat_activity"
    if kind.database:
        where += f", connected to {kind.database}"
    out = ["[[process]]", f"# seen at rest on pg{p.major}: {kind.count} x title {kind.bgw_name!r}, {where}"]
    ids = (
        f"; {', '.join(kind.generalized)} (varying, or like an OID or a pid) as \\d+"
        if kind.generalized
        else ""
    )
    out.append(f"name = {_str(kind.name)}   # guessed: from its title")
    title_ids = ids if "\\d" in kind.title else ""
    out.append(f"title = {_str(kind.title)}   # measured: the start its titles share{title_ids}")
    if kind.backend_type:
        out.append(f"backend_type = {_str(kind.backend_type)}   # measured")
    if kind.backend_type_pattern:
        out.append(f"backend_type_pattern = {_str(kind.backend_type_pattern)}   # measured{ids}")
    if kind.database:
        out.append(f"database = {_str(kind.database)}   # measured")
    elif kind.databases:
        out.append(f"# connected to several databases ({', '.join(kind.databases)}): no database")
    elif kind.backend_type or kind.backend_type_pattern:
        out.append("# no database: connected to none")
    out.append(f"count = {kind.count}   # measured at rest")
    out += _exit_lines(kind.after_exit)
    out += _probe_lines("after_crash", kind.after_crash)
    out += _role_lines(kind)
    return out


def _role_lines(kind: Kind) -> list[str]:
    """roles and after_promotion, as a hot standby and its promotion showed them."""
    if kind.roles is None:
        return ["# not probed on a hot standby: roles default to the primary only"]
    out = [f"roles = {_strs(kind.roles)}   # measured: where it ran, primary and hot standby"]
    if kind.after_promotion is None:
        out += [
            f"# measured: {kind.promotion_detail}; the promise below is the default for a kind of",
            "# the primary (REPLICA-7 fails unless the extension documents otherwise)",
            'after_promotion = "starts"',
        ]
        return out
    out.append(f"after_promotion = {_str(kind.after_promotion)}   # measured: {kind.promotion_detail}")
    if kind.after_promotion == "starts" and (kind.promotion_seen_s or 0) > PROMOTION_S / 2:
        out.append(f"promotion_s = {math.ceil(2 * (kind.promotion_seen_s or 0))}   # measured, doubled")
    return out


def render_profile(p: Proposal, profile_dir: Path) -> str:
    """The profile's text: what was measured, and comments saying so."""
    out = [
        f"# {p.name}: a bgw-conformance profile proposed by `bgw-conformance init` on pg{p.major} at {p.at}.",
        "# Each value's comment says whether it was measured on that server, is a guess, or was",
        "# given (an option of init: --package, --set, --setup-sql, ...).",
        f"name = {_str(p.name)}   # {p.name_from}",
        f"description = {_str(f'{p.name}: background workers, proposed by bgw-conformance init')}  # guessed",
        'tiers = ["bgworker"]   # guessed: init proposes the bgworker tier only',
        f"majors = [{', '.join(map(str, p.majors))}]   # measured: the majors its image built on",
        *(f"# pg{m} left out: {one_line(why)}" for m, why in p.left_out.items()),
        "# measured: where, with what and how init measured",
        f"notes = {_multiline(_notes(p) + chr(10))}",
        "",
        *_install(p, profile_dir),
        "",
        *_server(p),
        "",
        *_setup(p),
    ]
    for kind in p.kinds:
        out += ["", *_process(p, kind)]
    out += [
        "",
        "# [workload]: not proposed. Workers that only a workload starts (count = 0), and the SQL",
        "# that starts and stops them, are yours to add (see the README's pg_cron example).",
        "# [progress], [reload]: not proposed. What your documentation promises about the work",
        "# (SQL returning a number that grows) and a reloadable setting (SQL showing its effect) are",
        "# yours to add; without them PROGRESS-1 and RELOAD-1 are not applicable (README's example).",
    ]
    return "\n".join(out) + "\n"


def write(p: Proposal, opts: Options) -> list[Path]:
    """Write the profile (then load it: it must), the expectations and the CI files."""
    paths = outputs(opts.root, p.name)
    refuse_existing(paths, opts.force)
    profile, expected, github, gitlab = paths
    profile.parent.mkdir(parents=True, exist_ok=True)
    profile.write_text(render_profile(p, profile.parent))
    try:
        load_profile(str(profile))
    except KitError as exc:
        profile.unlink()
        raise KitError(f"init proposed a profile that does not load (a bug in init): {exc}") from None
    expected.write_text(expectations.render(p.name, expected_failures(p)))
    for path, template in ((github, "github.yml"), (gitlab, "gitlab-ci.yml")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_ci(template, p.name, p.majors))
    return paths


def summary(p: Proposal, paths: list[Path], root: Path) -> str:
    lines = [f"wrote {path}" for path in paths]
    lines.append(f"proposed processes (measured on pg{p.major}):")
    for k in p.kinds:
        exit_ = k.after_exit.outcome if k.after_exit else "unknown"
        if exit_ == "unregistered":
            exit_ = "restart promised (measured: exited with code 0, unregistered; failures expected)"
        elif exit_ == "not back":
            exit_ = f"unknown (not back within {BACK_S:g}s; stays-down proposed as a guess)"
        if k.after_exit and k.after_exit.seconds is not None:
            secs = k.after_exit.seconds
            exit_ += f" (back in {secs:.2f}s, restart_s {promised_restart_s(secs)})"
        crash = k.after_crash.outcome if k.after_crash else "unknown"
        lines.append(
            f"  {k.name}: title /{k.title}/, backend_type "
            f"{k.backend_type or (f'/{k.backend_type_pattern}/' if k.backend_type_pattern else '-')}, "
            f"database {k.database or '-'}, count {k.count}, after_exit {exit_}, after_crash {crash}"
        )
    lines.append(f"majors: {', '.join(map(str, p.majors))}")
    lines += [f"  pg{m} left out: {why}" for m, why in p.left_out.items()]
    profile = f"{PROFILE_DIR}/{p.name}.toml"
    lines.append(f"next, in {root}: bgw-conformance run --profile {profile} --target pg{p.major}")
    lines.append(f"then: bgw-conformance expectations update --profile {profile} reports")
    return "\n".join(lines)
