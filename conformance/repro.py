"""``bgw-conformance repro REPORT CLAUSE [-o FILE]``: a standalone POSIX shell
script that reproduces one clause's finding of a run without the kit, for the
extension's maintainers.

The script runs a container from a stock Debian image (``IMAGE``, default
``debian:<suite of the run's major>``), installs ``postgresql-<major>`` and the
extension (its Debian packages, or its sources copied in with ``docker cp`` and
built with PGXS or the profile's recipe), initdb's a cluster with the kit's
settings and the profile's, runs the profile's setup SQL, starts the server,
waits (deadline-bounded) for the processes at rest, injects the clause's fault
and checks what the clause checks, with its deadline from
``conformance.deadlines``.  Exit 1 while the defect is there, 0 when the
extension behaves, 2 when the setup failed; the container goes on exit.

Everything comes from the run's ``results.json`` (``run.extension``,
``run.profile_spec``, ``run.servers``) and the clause's template here.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conformance import deadlines, results
from conformance.census import DATABASE, SCRATCH
from conformance.errors import KitError
from conformance.majors import PRERELEASE, SUITE_FOR_MAJOR
from conformance.paths import fixtures_dir

CONTRACT = Path(__file__).resolve().parent / "CONTRACT.md"
CLUSTER = "repro"
SCRATCH_DB = "bgwc_scratch"


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("repro", help="write a standalone shell script reproducing one clause of a run")
    p.add_argument("report", type=Path, help="a run's results.json or its directory (reports/<run>/)")
    p.add_argument("clause", help=f"the clause, e.g. ORPHAN-1 (templates: {', '.join(sorted(TEMPLATES))})")
    p.add_argument("-o", "--output", type=Path, default=None, help="write the script here (default: stdout)")


def run(args: argparse.Namespace) -> int:
    script = render(load_results(args.report), args.clause, args.report)
    if args.output is None:
        print(script, end="")
    else:
        args.output.write_text(script)
        args.output.chmod(0o755)
    return 0


def load_results(path: Path) -> dict[str, Any]:
    """The run of ``path`` (its results.json, or the directory holding it), checked by
    ``results.load`` as every command that reads runs does."""
    file = path / "results.json" if path.is_dir() else path
    if not file.is_file():
        raise KitError(f"repro: no results.json at {path}")
    return results.load(file)


def contract_clauses() -> dict[str, str]:
    """Each clause of CONTRACT.md and its text, on one line."""
    text = CONTRACT.read_text()
    found = {}
    for m in re.finditer(
        r"^- \*\*([A-Z]+-\d+) \((?:MUST|SHOULD)\)\*\*(.*?)(?=^\s*$|^- |^#|\Z)", text, re.M | re.S
    ):
        found[m.group(1)] = " ".join(m.group(2).split())
    return found


# -- what the script needs from the run ------------------------------------------------------------
def _major(run: dict[str, Any]) -> int:
    majors = [s.get("major") for s in run.get("servers") or []]
    for major in majors:
        if major in SUITE_FOR_MAJOR and major not in PRERELEASE:
            return int(major)
    if any(m in PRERELEASE for m in majors):
        raise KitError(
            "repro: PostgreSQL "
            + ", ".join(str(m) for m in majors if m in PRERELEASE)
            + " is a pre-release (packages from experimental); repro writes scripts for released majors only"
        )
    raise KitError("repro: the run has no container server of a released major (a local-only run?)")


def _spec(run: dict[str, Any]) -> dict[str, Any]:
    spec = run.get("profile_spec")
    if not isinstance(spec, dict):
        raise KitError("repro: results.json records no profile_spec (written by an older kit): run it again")
    return spec


def _outcome(data: dict[str, Any], clause: str) -> str:
    for t in data.get("tests") or []:
        if clause in (t.get("clauses") or []):
            own = (t.get("properties") or {}).get("clause_outcomes") or {}
            said = t.get("summary") or ""
            return f"{own.get(clause, t.get('outcome'))} ({t.get('nodeid')}){': ' + said if said else ''}"
    return "not in this run"


def _q(value: str) -> str:
    return shlex.quote(value)


def _conf_value(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _psql(database: str, queries: list[str] | tuple[str, ...], or_exit: int) -> str:
    """Shell: queries run by psql in ``database``; at the first error, exit ``or_exit``."""
    body = "\n".join(q.rstrip().rstrip(";") + ";" for q in queries)
    if m := re.search(r"^(SQL|EOF|CHECK|CONF)$", body, re.M):
        raise KitError(f"repro: the profile's SQL holds a line {m.group(1)!r}: the script cannot quote it")
    return (
        f"psql -X -q -v ON_ERROR_STOP=1 -d {_q(database)} >/dev/null <<'SQL' || exit {or_exit}\n{body}\nSQL"
    )


def _kinds(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec.get("processes") or [])


# -- the script's parts ------------------------------------------------------------------------
_HOST = r"""set -u
C="bgwc-repro-$$"
T0=$(date +%s)
die() { echo "repro: $*" >&2; exit 2; }
trap 'docker rm -f "$C" >/dev/null 2>&1 || true' EXIT
trap 'exit 2' HUP INT TERM
# run_in USER: the script on stdin, run by sh in the container as USER
run_in() {
  docker exec -i -u "$1" -e MAJOR="$MAJOR" -e PACKAGES="$PACKAGES" -e PRELOAD="$PRELOAD" \
    -e RECIPE="$RECIPE" -e MAKE_ARGS="$MAKE_ARGS" -e PGDATA=/var/lib/repro/data \
    -e PGHOST=/tmp -e PGUSER=postgres -e DEBIAN_FRONTEND=noninteractive -e LANG=C.UTF-8 \
    -e PATH="/usr/lib/postgresql/$MAJOR/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    "$C" sh -u -s
}
quiet() {  # quiet WHAT: run_in root, its output shown only when it fails
  out=$(run_in root 2>&1) || { printf '%s\n' "$out" | tail -25 >&2; die "$1 failed"; }
}

echo "== $C: $IMAGE, PostgreSQL $MAJOR, $PACKAGES"
docker run -d --init --name "$C" "$IMAGE" sleep infinity >/dev/null \
  || die "cannot run a container from $IMAGE (set IMAGE to a Debian $SUITE image)"
quiet "apt-get install of postgresql-$MAJOR $PACKAGES" <<'EOF'
set -e
mkdir -p /etc/postgresql-common/createcluster.d
echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/repro.conf
apt-get -o Acquire::Check-Valid-Until=false update -qq
apt-get install -y -q --no-install-recommends procps "postgresql-$MAJOR" $PACKAGES
EOF
"""

_SOURCE = r"""[ -d "$SRC" ] || die "no source directory $SRC (set SRC to the extension's sources)"
echo "== building $SRC in the container (${RECIPE:-PGXS make install})"
docker exec "$C" mkdir -p /usr/src/ext || die "mkdir /usr/src/ext failed"
tar -C "$SRC" --exclude=.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' -cf - . \
  | docker cp - "$C:/usr/src/ext" || die "docker cp of $SRC failed"
quiet "the build of $SRC" <<'EOF'
set -e
apt-get install -y -q --no-install-recommends "postgresql-server-dev-$MAJOR" gcc make libc6-dev
cd /usr/src/ext
if [ -n "$RECIPE" ]; then PG_CONFIG=$(command -v pg_config) sh -ec "$RECIPE"; else make with_llvm=no $MAKE_ARGS install; fi
EOF
"""

_SERVER = r"""echo "== initdb, settings, start"
quiet "initdb" <<'EOF'
set -e
for lib in $(echo "$PRELOAD" | tr ',' ' '); do
  [ -f "$(pg_config --pkglibdir)/$lib.so" ] || { echo "no library $lib.so installed"; exit 3; }
done
install -d -o postgres -g postgres /var/lib/repro
su postgres -s /bin/sh -c "initdb -D $PGDATA --auth=trust --username=postgres -E UTF8 --locale=C.UTF-8 >/dev/null"
EOF
run_in postgres <<'EOF' || die "writing postgresql.conf failed"
cat >> "$PGDATA/postgresql.conf" <<'CONF'
@CONF@
CONF
EOF
run_in postgres <<'EOF' || die "the server did not start; its log is above"
pg_ctl -D "$PGDATA" -l /var/lib/repro/server.log -w -t 60 start >/dev/null || { tail -20 /var/lib/repro/server.log; exit 1; }
@SETUP@
EOF
"""

#: shell functions of the checks, run in the container
_LIB = r"""LOG=/var/lib/repro/server.log
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# pids_of ERE: the server processes whose title, after "postgres: @CLUSTER@: ", starts with ERE
pids_of() {
  ps -eo pid=,args= | while read -r pid args; do
    t=${args#"postgres: @CLUSTER@: "}
    if [ "$t" != "$args" ] && printf '%s\n' "$t" | grep -Eq "^($1)"; then echo "$pid"; fi
  done
  return 0
}
count_of() { pids_of "$1" | wc -l; }
show() { echo "   processes:"; ps -eo pid,ppid,stat,args | grep -E 'postgres|PID' | grep -v grep | sed 's/^/     /'; }
log_size() { wc -c < "$LOG"; }
log_since() { tail -c +$(( $1 + 1 )) "$LOG"; }
# at_rest MS: every kind of the profile promised at rest runs its count, within MS
at_rest() {
  deadline=$(( $(now_ms) + $1 ))
  while :; do
    ok=1
@AT_REST@
    [ "$ok" = 1 ] && return 0
    if [ "$(now_ms)" -ge "$deadline" ]; then
      echo "repro: the extension's processes were not at rest after $(( $1 / 1000 )) s"; show; tail -20 "$LOG"; exit 2
    fi
    sleep 0.1
  done
}
"""


def _at_rest(kinds: list[dict[str, Any]]) -> str:
    lines = [
        f'    [ "$(count_of {_q(k["title"])})" -eq {int(k["count"])} ] || ok=0  # {k["name"]}'
        for k in kinds
        if int(k.get("count") or 0) > 0
    ]
    return "\n".join(lines) or "    :"


def _wait_started(kinds: list[dict[str, Any]], database: str | None) -> str:
    """Shell: wait (START_S) until each workload kind has a process that
    attached (in pg_stat_activity, in ``database`` when given), as the kit's
    ``Census.wait_started``."""
    conds = []
    for k in kinds:
        conds.append(f'[ "$(count_of {_q(k["title"])})" -gt 0 ]')
        if k.get("backend_type"):
            where = f"backend_type = {_sql_literal(k['backend_type'])}"
            if database:
                where += f" AND datname = {_sql_literal(database)}"
            query = f"SELECT count(*) FROM pg_stat_activity WHERE {where}"
            conds.append(f'[ "$(psql -X -At -d postgres -c {_q(query)})" -gt 0 ]')
    names = ", ".join(k["name"] for k in kinds)
    ms = int(deadlines.START_S * 1000)
    return f"""deadline=$(( $(now_ms) + {ms} ))
until {" && ".join(conds) or "true"}; do
  if [ "$(now_ms)" -ge "$deadline" ]; then
    echo "repro: the workload's workers ({names}) did not start within {deadlines.START_S:g} s"; show; tail -20 "$LOG"; exit 2
  fi
  sleep 0.1
done"""


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _workload_sql(spec: dict[str, Any], key: str, database: str | None) -> str:
    """Shell: the workload's start (or stop) SQL, as ``Census._workload_sql`` runs it."""
    w = spec["workload"]
    home = "postgres" if w["database"] == DATABASE else w["database"]
    workers_db = database or home
    conn = workers_db if w["database"] == DATABASE else home
    return _psql(conn, [q.replace(DATABASE, workers_db) for q in w[key]], 2)


def _workload_kinds(spec: dict[str, Any]) -> list[dict[str, Any]]:
    w = spec.get("workload") or {}
    by_name = {k["name"]: k for k in _kinds(spec)}
    return [by_name[n] for n in w.get("starts") or [] if n in by_name]


# -- the clauses' checks ------------------------------------------------------------------------
def _orphan_1(spec: dict[str, Any]) -> str:
    kinds = _kinds(spec)
    titles = "|".join(f"({k['title']})" for k in kinds)
    ms = int(deadlines.PM_DEATH_S * 1000)
    start = ""
    if spec.get("workload"):
        start = _workload_sql(spec, "start", None) + "\n" + _wait_started(_workload_kinds(spec), None)
    return f"""echo "== ORPHAN-1: the workload running, SIGKILL of the postmaster; every process of the extension gone within {deadlines.PM_DEATH_S:g} s"
{start}
PIDS=$(pids_of {_q(titles)})
[ -n "$PIDS" ] || {{ echo "repro: no process of the extension runs to outlive the postmaster (not applicable)"; exit 2; }}
echo "   before the kill:"; show
PM=$(head -1 "$PGDATA/postmaster.pid")
kill -KILL "$PM"; t0=$(now_ms)
echo "   kill -KILL $PM (the postmaster)"
deadline=$(( t0 + {ms} ))
while :; do
  LEFT=""; for p in $PIDS; do kill -0 "$p" 2>/dev/null && LEFT="$LEFT $p"; done
  [ -z "$LEFT" ] && break
  [ "$(now_ms)" -ge "$deadline" ] && break
  sleep 0.05
done
if [ -z "$LEFT" ]; then
  echo "ORPHAN-1 PASS: every process of the extension gone $(( $(now_ms) - t0 )) ms after the postmaster's SIGKILL"
  exit 0
fi
echo "ORPHAN-1 FAIL: {deadlines.PM_DEATH_S:g} s after the postmaster's SIGKILL, still alive:$LEFT"
show
exit 1"""


def _db_3(spec: dict[str, Any]) -> str:
    scratch_setup = [s for s in spec.get("setup") or [] if s["database"] == SCRATCH]
    setup = "\n".join(_psql(SCRATCH_DB, s["sql"], 2) for s in scratch_setup)
    start = ""
    if spec.get("workload"):
        start = (
            _workload_sql(spec, "start", SCRATCH_DB) + "\n" + _wait_started(_workload_kinds(spec), SCRATCH_DB)
        )
    grace, window, most = deadlines.DB_RETRY_GRACE_S, deadlines.OBSERVE_S, deadlines.DB_RETRY_LINES
    drop_ms = int(deadlines.DB_COMMAND_S * 1000)
    return f"""echo "== DB-3: the workload in database {SCRATCH_DB}, DROP DATABASE WITH (FORCE); from {grace:g} s after, over {window:g} s, at most {most} log lines name it"
psql -X -q -d postgres -c 'CREATE DATABASE {SCRATCH_DB}' || exit 2
{setup}
{start}
echo "   running:"; show
OFF=$(log_size)
if ! PGOPTIONS='-c statement_timeout={drop_ms}' psql -X -q -d postgres -c 'DROP DATABASE {SCRATCH_DB} WITH (FORCE)'; then
  echo "DB-3 not reached: DROP DATABASE {SCRATCH_DB} WITH (FORCE) failed within {deadlines.DB_COMMAND_S:g} s (DB-1)"; log_since "$OFF" | tail -20; exit 1
fi
echo "   dropped; {grace:g} s to give up on it, then {window:g} s watched"
end=$(( $(now_ms) + {int(grace * 1000)} ))
while [ "$(now_ms)" -lt "$end" ]; do sleep 0.2; done  # the grace period: an observation window
AFTER=$(log_size)
end=$(( $(now_ms) + {int(window * 1000)} ))
while [ "$(now_ms)" -lt "$end" ]; do sleep 0.2; done  # the counted window
N=$(log_since "$AFTER" | grep -cw {SCRATCH_DB})
F=$(log_since "$AFTER" | grep -w {SCRATCH_DB} | grep -c FATAL)
if [ "$N" -le {most} ]; then
  echo "DB-3 PASS: $N log line(s) named the dropped database in the {window:g} s from {grace:g} s after the drop (at most {most})"
  exit 0
fi
echo "DB-3 FAIL: $N log lines ($F FATAL) named the dropped database in {window:g} s, from {grace:g} s after the drop (at most {most}); the last ones:"
log_since "$AFTER" | grep -w {SCRATCH_DB} | tail -12 | sed 's/^/   /'
show
exit 1"""


def _stop_1(spec: dict[str, Any]) -> str:
    kinds = [k for k in _kinds(spec) if k.get("after_exit") == "restart" and int(k.get("count") or 0) > 0]
    if not kinds:
        raise KitError("repro: STOP-1: the profile promises no process at rest that comes back after an exit")
    parts = []
    for k in kinds:
        title, count = _q(k["title"]), int(k["count"])
        deadline = float(k.get("restart_s") or 0) + deadlines.RESTART_SLACK_S
        watch = min(float(k.get("restart_s") or 0) + 1.0, deadlines.DUPLICATE_WATCH_S)
        if k.get("backend_type"):
            how = 'psql -X -At -d postgres -c "SELECT pg_terminate_backend($p)" >/dev/null; HOW=pg_terminate_backend'
        else:
            how = "kill -TERM $p; HOW=SIGTERM"
        parts.append(f"""OLD=$(pids_of {title}); OFF=$(log_size)
for p in $OLD; do {how}; done; t0=$(now_ms)
echo "   {k["name"]}: $HOW of $(echo $OLD)"
deadline=$(( t0 + {int(deadline * 1000)} )); BACK=""; MOST=0
while :; do
  NOW=$(pids_of {title}); n=$(echo $NOW | wc -w); [ "$n" -gt "$MOST" ] && MOST=$n
  NEW=""; for p in $NOW; do case " $(echo $OLD) " in *" $p "*) ;; *) NEW="$NEW $p";; esac; done
  if [ "$n" -eq {count} ] && [ "$(echo $NEW | wc -w)" -eq {count} ]; then BACK=$(( $(now_ms) - t0 )); break; fi
  [ "$(now_ms)" -ge "$deadline" ] && break
  sleep 0.1
done
if [ -z "$BACK" ]; then
  echo "STOP-1 FAIL: {k["name"]} not back {deadline:g} s after $HOW (restart_s {k.get("restart_s")} + {deadlines.RESTART_SLACK_S:g} s); the server log since:"
  log_since "$OFF" | tail -15 | sed 's/^/   /'; show; FAILED=1
else
  end=$(( $(now_ms) + {int(watch * 1000)} ))
  while [ "$(now_ms)" -lt "$end" ]; do n=$(count_of {title}); [ "$n" -gt "$MOST" ] && MOST=$n; sleep 0.1; done
  if [ "$MOST" -gt {count} ]; then
    echo "STOP-1 FAIL: {k["name"]}: $MOST at once after the termination, promised {count}"; show; FAILED=1
  else
    echo "   {k["name"]}: back in $BACK ms (deadline {deadline:g} s) as pid$NEW, no duplicate in {watch:g} s"
  fi
fi""")
    names = ", ".join(k["name"] for k in kinds)
    return (
        f'echo "== STOP-1: terminate {names}; each back within its restart_s + {deadlines.RESTART_SLACK_S:g} s, once"\n'
        "FAILED=0\n"
        + "\n".join(parts)
        + f'\n[ "$FAILED" = 0 ] || exit 1\necho "STOP-1 PASS: {names} came back"\nexit 0'
    )


TEMPLATES: dict[str, Callable[[dict[str, Any]], str]] = {
    "ORPHAN-1": _orphan_1,
    "DB-3": _db_3,
    "STOP-1": _stop_1,
}
_NOT_COVERED = {
    "STOP-1": "kinds declared to stay down (watched 65 s by the kit) are not part of this script",
}


def _conf(run: dict[str, Any], spec: dict[str, Any]) -> str:
    kit = [
        ln
        for ln in (fixtures_dir() / "conf" / "server.conf").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    lines = ["# the kit's settings", *kit, f"cluster_name = '{CLUSTER}'"]
    library = (run.get("extension") or {}).get("library") or ""
    if library:
        lines.append(f"shared_preload_libraries = {_conf_value(library)}")
    lines.append("# the profile's [server]")
    lines += [f"{name} = {_conf_value(str(value))}" for name, value in (spec.get("server") or {}).items()]
    return "\n".join(lines)


def _setup(spec: dict[str, Any]) -> str:
    steps = [s for s in spec.get("setup") or [] if s["database"] != SCRATCH]
    return "\n".join(_psql(s["database"], s["sql"], 1) for s in steps)


def render(data: dict[str, Any], clause: str, report: Path | str = "") -> str:
    """The script reproducing ``clause`` of the run in ``data`` (results.json)."""
    clauses = contract_clauses()
    if clause not in clauses:
        raise KitError(f"repro: unknown clause {clause!r} (see conformance/CONTRACT.md)")
    if clause not in TEMPLATES:
        raise KitError(f"repro: no repro template for {clause} (templates: {', '.join(sorted(TEMPLATES))})")
    run = data["run"]
    spec = _spec(run)
    major = _major(run)
    suite = SUITE_FOR_MAJOR[major]
    ext = run.get("extension") or {}
    packages = [p.replace("{major}", str(major)) for p in ext.get("packages") or []]
    check = TEMPLATES[clause](spec)
    lib = _LIB.replace("@CLUSTER@", CLUSTER).replace("@AT_REST@", _at_rest(_kinds(spec)))
    source = ext.get("source")
    wrapped = "\n".join(
        "#   " + ln
        for ln in _wrap(clauses[clause] + (f" ({_NOT_COVERED[clause]})" if clause in _NOT_COVERED else ""))
    )
    there = "\n".join(
        "# " + ln
        for ln in _wrap(
            f"Generated by `bgw-conformance repro` from {report or 'a run'} (kit {run.get('kit_version')},"
            f" commit {run.get('kit_commit')}, {run.get('started')}); there, {clause}:"
            f" {_outcome(data, clause)[:400]}"
        )
    )
    head = f"""#!/bin/sh
# Reproduces {clause} of bgw-conformance for {ext.get("name") or run.get("profile")} on PostgreSQL {major} (Debian {suite}),
# standalone: needs only docker and a Debian {suite} image (IMAGE) whose apt reaches a mirror.
# {clause}:
{wrapped}
{there}
# Exit: 1 while the defect is there, 0 when the extension behaves, 2 when the setup failed.
IMAGE="${{IMAGE:-debian:{suite}}}"
SUITE={suite}
MAJOR={major}
PACKAGES={_q(" ".join(packages))}
PRELOAD={_q(ext.get("library") or "")}
"""
    if source:
        head += f"SRC=${{SRC:-{_q(source)}}}   # the extension's sources, built by RECIPE (empty: PGXS)\n"
    head += f"RECIPE={_q(ext.get('recipe') or '')}\nMAKE_ARGS={_q(ext.get('make_args') or '')}\n"
    server = _SERVER.replace("@CONF@", _conf(run, spec)).replace("@SETUP@", _setup(spec))
    body = head + _HOST + (_SOURCE if source else "") + server
    body += (
        "echo \"== the check (in the container)\"\nrun_in postgres <<'CHECK'\n"
        + lib
        + f"at_rest {int(deadlines.START_S * 1000)}\n"
        + check
        + "\nCHECK\nRC=$?\n"
        + 'echo "== exit $RC after $(( $(date +%s) - T0 )) s"\nexit "$RC"\n'
    )
    return body


def _wrap(text: str, width: int = 96) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines
