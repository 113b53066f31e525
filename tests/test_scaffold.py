"""``bgw-conformance init``: the CI files it writes (every command in them is a real
command of the kit, and the matrix job merges every major's run as the per-major jobs
leave them), bad input, the rules that turn a termination into a proposal, and
(marked ``images``) proposals measured on real servers, which must agree with the
shipped profiles of pg_cron, pg_partman_bgw and pg_wait_sampling, the suite giving the
same verdicts on them apart from documented differences; pg_background, which has no
worker at rest, is refused in one line; and a worker restarted after 60 s is seen."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from conformance import __version__, cli, engine, expectations, report, scaffold
from conformance.census import Census
from conformance.config import KitConfig
from conformance.errors import KitError
from conformance.images import Extension
from conformance.profile import Profile, load_profile
from conformance.targets import Target

HERE = Path(__file__).parent
MAJORS = (17, 18)
TEMPLATES = {"github": "github.yml", "gitlab": "gitlab-ci.yml"}
#: placeholders of a major in the templates' commands
MATRIX_VARS = ("${{ matrix.pg }}", "$PG")


def _init(*argv: str, run_id: str | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """``bgw-conformance init ARGV`` as a subprocess."""
    head = ["-m", "conformance.cli"]
    env = {**os.environ, "BGWC_RUN_ID": run_id} if run_id else None
    return subprocess.run(
        [sys.executable, *head, "init", *argv], capture_output=True, text=True, timeout=timeout, env=env
    )


def _ours(run_id: str) -> list[str]:
    """Containers of a run, by the engine's labels."""
    found = engine.client().containers.list(all=True, filters={"label": f"{engine.LABEL_RUN}={run_id}"})
    return [c.name for c in found]


# -- the CI files ---------------------------------------------------------------------
def _ci(kind: str, majors: tuple[int, ...] = MAJORS) -> dict[str, Any]:
    return yaml.safe_load(scaffold.render_ci(TEMPLATES[kind], "bgwc_fake", majors))


def _commands(doc: dict[str, Any]) -> list[str]:
    """Every command line in a workflow that runs the kit."""
    lines: list[str] = []
    for job in (doc.get("jobs") or doc).values():  # GitHub's jobs, or GitLab's top-level jobs
        if not isinstance(job, dict):
            continue
        lines += [ln for step in job.get("steps", []) for ln in str(step.get("run", "")).splitlines()]
        lines += [ln for key in ("before_script", "script") for ln in job.get(key, [])]
    return [ln.strip() for ln in lines if ln.strip().startswith("bgw-conformance")]


def _parse(line: str, major: int) -> Any:
    """A template's command line for one major, parsed by the kit's own CLI parser."""
    for var in MATRIX_VARS:
        line = line.replace(var, str(major))
    argv = shlex.split(line)
    assert argv[0] == "bgw-conformance"
    try:
        return cli.build_parser().parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"not a command of the kit: {line!r}")


def test_github_workflow_is_a_job_per_major_then_the_matrix() -> None:
    doc = _ci("github")
    job = doc["jobs"]["conformance"]
    assert job["strategy"]["fail-fast"] is False and job["strategy"]["matrix"]["pg"] == ["17", "18"]
    uses = [s.get("uses", "") for s in job["steps"]]
    assert [u.split("@")[0] for u in uses[:2]] == ["actions/checkout", "actions/setup-python"]
    assert job["steps"][1]["with"]["python-version"] == "3.12"
    assert {"run": f'pip install "bgw-conformance=={__version__}"'} in job["steps"]
    upload = job["steps"][-1]
    assert upload["uses"].startswith("actions/upload-artifact@") and upload["if"] == "always()"
    assert upload["with"] == {"name": "reports-pg${{ matrix.pg }}", "path": "reports/"}
    merge = doc["jobs"]["matrix"]
    assert merge["needs"] == "conformance" and merge["if"] == "always()"
    download = next(s for s in merge["steps"] if s.get("uses", "").startswith("actions/download-artifact@"))
    assert download["with"] == {"pattern": "reports-*", "path": "reports"}
    assert merge["steps"][-1]["with"]["path"] == "reports/matrix.html"


#: each action the GitHub workflow uses, and the major release its pin must be a tag of
ACTIONS = {
    "actions/checkout": "v4",
    "actions/setup-python": "v5",
    "actions/upload-artifact": "v4",
    "actions/download-artifact": "v4",
}
_USES = re.compile(r"^\s*(?:- )?uses: (?P<action>[^@\s]+)@(?P<ref>\S+)(?P<comment>.*)$", re.M)


def test_github_actions_are_pinned_by_commit_sha_with_their_tag() -> None:
    """Every ``uses:`` names a full commit SHA, and a comment says which release tag it is
    (``# v4.4.0``): what Dependabot reads and updates."""
    text = scaffold.render_ci(TEMPLATES["github"], "bgwc_fake", MAJORS)
    pins = [m.groupdict() for m in _USES.finditer(text)]
    assert {p["action"] for p in pins} == set(ACTIONS), pins
    for p in pins:
        assert re.fullmatch(r"[0-9a-f]{40}", p["ref"]), p
        tag = re.fullmatch(r"\s+# (v\d+\.\d+\.\d+)", p["comment"])
        assert tag and tag.group(1).startswith(ACTIONS[p["action"]] + "."), p
    # one action, one pin, in every job
    assert len({(p["action"], p["ref"], p["comment"]) for p in pins}) == len(ACTIONS)
    steps = [s for job in _ci("github")["jobs"].values() for s in job["steps"]]
    assert {s["uses"] for s in steps if "uses" in s} == {f"{p['action']}@{p['ref']}" for p in pins}


def test_github_workflow_runs_weekly_cancels_superseded_runs_and_summarizes() -> None:
    text = scaffold.render_ci(TEMPLATES["github"], "bgwc_fake", MAJORS)
    doc = _ci("github")
    on = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare ``on`` as true
    assert set(on) == {"push", "pull_request", "workflow_dispatch", "schedule"}
    (cron,) = [entry["cron"] for entry in on["schedule"]]
    minute, hour, dom, month, dow = cron.split()
    assert (dom, month) == ("*", "*") and dow.isdigit() and minute.isdigit() and hour.isdigit()  # weekly
    before = text[: text.index(f'- cron: "{cron}"')].splitlines()
    assert any("weekly" in line for line in before[-4:] if line.strip().startswith("#")), before[-4:]
    assert doc["concurrency"] == {
        "group": "${{ github.workflow }}-${{ github.ref }}",
        "cancel-in-progress": True,
    }
    (line,) = [ln for ln in _commands(doc) if ln.startswith("bgw-conformance run")]
    assert _parse(line, 17).github is True  # the step summary and annotations, whatever the env says


def test_gitlab_pipeline_is_a_job_per_major_in_dind_then_the_matrix() -> None:
    doc = _ci("gitlab", (17,))
    job = doc["bgw-conformance"]
    assert job["parallel"]["matrix"] == [{"PG": ["17"]}]
    assert job["services"][0]["name"] == "docker:dind" and job["variables"]["DOCKER_HOST"]
    assert job["artifacts"] == {
        "when": "always",
        "paths": ["reports/"],
        "reports": {"junit": "reports/*/*/junit.xml"},
    }
    merge = doc["bgw-conformance-matrix"]
    assert merge["needs"] == [{"job": "bgw-conformance", "artifacts": True}] and merge["when"] == "always"
    assert f'pip install "bgw-conformance=={__version__}"' in doc[".bgw-conformance"]["before_script"]
    assert doc[".bgw-conformance"]["interruptible"] is True  # a newer pipeline cancels these jobs
    text = scaffold.render_ci(TEMPLATES["gitlab"], "bgwc_fake", (17,))
    assert "Pipeline schedules" in text  # set in GitLab's UI, which the file says


def test_gitlab_junit_report_is_where_each_run_writes_its_junit_xml(tmp_path: Path) -> None:
    """``artifacts:reports:junit`` matches ``reports/<major>/<run>/junit.xml`` as the job's run
    command leaves it (the runner's globs: one directory per ``*``, no ``**``)."""
    job = _ci("gitlab")["bgw-conformance"]
    junit = job["artifacts"]["reports"]["junit"]
    assert "**" not in junit and job["artifacts"]["paths"] == ["reports/"]
    (line,) = [ln for ln in _commands(_ci("gitlab")) if ln.startswith("bgw-conformance run")]
    written = tmp_path / _parse(line, 17).reports / "20260101-000000-0123456789ab" / "junit.xml"
    written.parent.mkdir(parents=True)
    written.write_text("<testsuites/>")
    assert list(tmp_path.glob(junit)) == [written]


@pytest.mark.parametrize("kind", TEMPLATES)
def test_every_command_in_the_ci_files_is_a_command_of_the_kit(kind: str) -> None:
    lines = _commands(_ci(kind))
    assert {shlex.split(ln)[1] for ln in lines} == {"doctor", "run", "report"}, lines
    for major in MAJORS:
        for line in lines:
            args = _parse(line, major)
            if args.command == "run":
                assert args.target == f"pg{major}" and args.profile == "bgw-conformance/bgwc_fake.toml"


FAKE_TEST = """
import pytest

@pytest.mark.clause("START-1")
def test_promised_processes_run_after_start():
    pass
"""


def _fake_profile(root: Path) -> Path:
    """A profile rendered by init from a proposal made by hand (no server)."""
    ext = Extension("bgwc_fake", ("bgwc_fake",), None, ("postgresql-{major}-bgwc-fake",))
    kind = scaffold.Kind("worker", re.escape("bgwc_fake worker"), "bgwc_fake worker", "bgwc_fake", None, 1)
    kind.after_exit = scaffold.Probe("restart", 1.2, "after SIGTERM of pid 7, a new one ran 1.20 s later")
    kind.after_crash = None  # not probed: rendered as a guess
    p = scaffold.Proposal("bgwc_fake", ext, 17, "2026-01-01T00:00:00Z", kinds=[kind], majors=list(MAJORS))
    p.setup = ["CREATE EXTENSION IF NOT EXISTS bgwc_fake CASCADE"]
    p.left_out = {15: "--package postgresql-15-bgwc-fake: image build failed"}
    path = root / "bgw-conformance" / "bgwc_fake.toml"
    path.parent.mkdir(parents=True)
    path.write_text(scaffold.render_profile(p, path.parent))
    return path


def test_a_rendered_profile_loads_and_says_what_is_a_guess(tmp_path: Path) -> None:
    path = _fake_profile(tmp_path)
    profile = load_profile(str(path))
    (worker,) = profile.processes
    assert (worker.title, worker.backend_type, worker.count) == (r"bgwc_fake\ worker", "bgwc_fake", 1)
    assert (worker.after_exit, worker.restart_s, worker.after_crash) == ("restart", 1.0, "restart")
    assert profile.majors == MAJORS and profile.setup[0].sql[0].startswith("CREATE EXTENSION")
    text = path.read_text()
    assert "# a guess, not measured (not probed): check it\nafter_crash" in text
    assert "# pg15 left out: --package postgresql-15-bgwc-fake" in text


def test_a_rendered_recipe_is_the_one_given_to_the_byte(tmp_path: Path) -> None:
    """The recipe is part of the image's key: a changed byte would rebuild the image."""
    recipe = 'cmake -S . -B "build dir"\nprintf "%s\\n" done\n'
    ext = Extension("bgwc_src", ("bgwc_src",), HERE / "cmake_ext", (), recipe)
    kind = scaffold.Kind("worker", "w", "w", None, None, 1)
    p = scaffold.Proposal("bgwc_src", ext, 17, "2026-01-01T00:00:00Z", kinds=[kind], majors=[17])
    path = tmp_path / "bgw-conformance" / "bgwc_src.toml"
    path.parent.mkdir()
    path.write_text(scaffold.render_profile(p, path.parent))
    install = load_profile(str(path)).install
    assert (install.recipe, install.source) == (recipe, (HERE / "cmake_ext").resolve())


@pytest.fixture(scope="module")
def fake_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """A real results.json per major, each written by a small run of the kit's pytest plugin."""
    root = tmp_path_factory.mktemp("fake-runs")
    profile = _fake_profile(root)
    (root / "test_fake.py").write_text(FAKE_TEST)
    runs = {}
    for major in MAJORS:
        out = root / "runs" / f"20260101-00000{major % 10}-{uuid.uuid4().hex[:12]}"
        argv = [str(root / "test_fake.py"), "-q", "-p", "no:cacheprovider", f"--rootdir={root}"]
        argv += [f"--bgwc-target=pg{major}", f"--bgwc-profile={profile}", f"--bgwc-results={out}"]
        res = subprocess.run(
            [sys.executable, "-m", "pytest", *argv], capture_output=True, text=True, timeout=120
        )
        assert res.returncode == 0 and (out / "results.json").is_file(), res.stdout[-2000:] + res.stderr
        runs[major] = out
    return runs


def _as_ci_leaves_them(kind: str, runs: dict[int, Path], merge_dir: Path) -> None:
    """Each major's job writes its run where the template's run command says; its
    artifact then reaches the merge job: GitHub's download-artifact extracts each
    artifact (the job's reports/) into reports/<artifact name>/; GitLab restores every
    needed job's reports/ at the same paths, in one tree."""
    (line,) = [ln for ln in _commands(_ci(kind)) if ln.startswith("bgw-conformance run")]
    for major, run in runs.items():
        job = merge_dir.parent / f"job-{kind}-pg{major}"
        shutil.copytree(run, job / _parse(line, major).reports / run.name)
        dest = merge_dir / "reports" / (f"reports-pg{major}" if kind == "github" else "")
        shutil.copytree(job / "reports", dest, dirs_exist_ok=True)


@pytest.mark.parametrize("kind", TEMPLATES)
def test_the_matrix_job_merges_every_major_s_run(
    kind: str, fake_runs: dict[int, Path], tmp_path: Path
) -> None:
    merge_dir = tmp_path / "merge"
    _as_ci_leaves_them(kind, fake_runs, merge_dir)
    found = report.find_results([merge_dir / "reports"])
    assert sorted(f.parent.name for f in found) == sorted(r.name for r in fake_runs.values())
    (line,) = [ln for ln in _commands(_ci(kind)) if ln.startswith("bgw-conformance report merge")]
    argv = [sys.executable, "-m", "conformance.cli", *shlex.split(line)[1:]]
    res = subprocess.run(argv, cwd=merge_dir, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"{len(fake_runs)} run(s)" in res.stdout
    page = (merge_dir / "reports" / "matrix.html").read_text()
    for major, run in fake_runs.items():
        index = next(f.parent for f in found if f.parent.name == run.name) / "index.html"
        assert f"{index.relative_to(merge_dir / 'reports')}#" in page, f"pg{major}'s run is not in the matrix"
        assert f"bgwc_fake · pg{major} @" in page


# -- bad input ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, message",
    [
        (["--package", "postgresql-{major}-cron", "--extension", str(HERE / "stub_ext")], "not both"),
        ([], "give what to install: --package NAME (repeatable) or --extension DIR"),
        (
            ["--package", "postgresql-{major}-cron", "--pg", "12"],
            "--pg '12': supported majors are 13, 15, 17, 18, 19",
        ),
        (["--extension", "/nonexistent/ext"], "--extension /nonexistent/ext: no such directory"),
        (["--package", "postgresql-{major}-cron", "--dir", __file__], f"--dir {__file__}: not a directory"),
        (["--package", "postgresql-{major}-cron", "--name", "a b"], "--name 'a b': use letters"),
        (
            ["--package", "postgresql-{major}-cron", "--set", "wal_level"],
            "--set 'wal_level': give NAME=VALUE",
        ),
        (["--package", "postgresql-{major}-cron", "--set", "a b=1"], "--set 'a b=1': give NAME=VALUE"),
        (
            ["--package", "postgresql-{major}-cron", "--set", "shared_preload_libraries=x"],
            "--set shared_preload_libraries: init preloads the extension's library itself",
        ),
        (
            ["--package", "postgresql-{major}-cron", "--set", "work_mem=1MB", "--set", "work_mem=2MB"],
            "--set work_mem: given twice, as '1MB' and '2MB'",
        ),
        (["--package", "postgresql-{major}-cron", "--setup-sql", " "], "--setup-sql '': no SQL in it"),
        (
            ["--package", "postgresql-{major}-cron", "--setup-sql", "nope.sql"],
            "--setup-sql nope.sql: no such file",
        ),
    ],
)
def test_bad_input_is_exit_2_with_one_line(argv: list[str], message: str, tmp_path: Path) -> None:
    res = _init(*argv, *([] if "--dir" in argv else ["--dir", str(tmp_path)]), timeout=60)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith("bgw-conformance: ") and message in res.stderr, res.stderr
    assert len(res.stderr.splitlines()) == 1, res.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "existing", [scaffold.GITHUB, scaffold.GITLAB, Path("bgw-conformance/bgwc_stub.expectations.toml")]
)
def test_an_existing_file_is_kept_without_force(existing: Path, tmp_path: Path) -> None:
    (tmp_path / existing).parent.mkdir(parents=True)
    (tmp_path / existing).write_text("mine\n")
    res = _init("--extension", str(HERE / "stub_ext"), "--dir", str(tmp_path), timeout=60)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == f"bgw-conformance: {tmp_path / existing} exists; give --force to overwrite it\n"
    assert (tmp_path / existing).read_text() == "mine\n"


# -- grouping what was seen (no server) -----------------------------------------------
def test_kinds_group_by_backend_type_else_title_and_anchor_titles_that_collide() -> None:
    seen = [
        scaffold.Seen(10, "ext launcher", "ext launcher", "postgres"),
        scaffold.Seen(11, "ext worker 1", "ext worker", "db1"),
        scaffold.Seen(12, "ext worker 2", "ext worker", "db2"),
        scaffold.Seen(13, "ext", None, None),
    ]
    launcher, worker, bare = scaffold.kinds_of(seen, ["ext"])
    assert (launcher.name, launcher.title, launcher.database, launcher.count) == (
        "launcher",
        r"ext\ launcher",
        "postgres",
        1,
    )
    assert (worker.title, worker.database, worker.databases, worker.count) == (
        r"ext\ worker\ ",
        None,
        ("db1", "db2"),
        2,
    )
    assert bare.backend_type is None and bare.title == "ext$"  # 'ext' alone would match the others


def test_numbers_that_vary_or_look_like_oids_or_pids_are_proposed_as_digits() -> None:
    seen = [
        # a manager per database, named after its OID, in its backend_type and title
        scaffold.Seen(40, "ext manager 16384", "ext manager 16384", "db1", 16384),
        scaffold.Seen(41, "ext manager 16390", "ext manager 16390", "db2", 16390),
        # a worker named after its own pid; one named after its database's OID (postgres: 5)
        scaffold.Seen(1234, "ext worker pid 1234", "ext worker", "postgres", 5),
        scaffold.Seen(50, "ext janitor 5", "ext janitor 5", "postgres", 5),
        # small numbers that are neither: kept as they are
        scaffold.Seen(60, "ext v2 launcher", "ext v2 launcher", "postgres", 5),
    ]
    manager, worker, janitor, launcher = scaffold.kinds_of(seen, ["ext"])
    assert (manager.backend_type, manager.backend_type_pattern) == (None, r"ext\ manager\ \d+")
    assert (manager.title, manager.count, manager.generalized) == (r"ext\ manager\ ", 2, ("16384", "16390"))
    assert (worker.backend_type, worker.backend_type_pattern) == ("ext worker", None)
    assert worker.title == r"ext\ worker\ pid\ \d+" and worker.generalized == ("1234",)
    assert (janitor.backend_type_pattern, janitor.title) == (r"ext\ janitor\ \d+", r"ext\ janitor\ \d+")
    assert (launcher.backend_type, launcher.backend_type_pattern) == ("ext v2 launcher", None)
    assert launcher.title == r"ext\ v2\ launcher" and launcher.generalized == ()
    for kind, members in ((manager, seen[:2]), (worker, seen[2:3]), (janitor, seen[3:4])):
        spec = kind.spec()  # what the profile will say matches what was seen, and only that
        assert all(
            re.match(spec.title, s.bgw_name) and spec.backend_type_matches(s.backend_type) for s in members
        )
        assert spec.backend_type_matches(
            str(members[0].backend_type).replace("16384", "24601").replace("5", "7")
        )
        others = [s for s in seen if s not in members]
        assert not any(spec.backend_type_matches(s.backend_type) for s in others), kind


def test_a_profile_says_what_was_given_measured_and_guessed(tmp_path: Path) -> None:
    ext = Extension("bgwc_fake", ("bgwc_fake",), None, ("postgresql-{major}-bgwc-fake",))
    kind = scaffold.Kind("manager", r"bgwc_fake\ manager\ \d+", "bgwc_fake manager 16384", None, "db1", 1)
    kind.backend_type_pattern, kind.generalized = r"bgwc_fake\ manager\ \d+", ("16384",)
    p = scaffold.Proposal("bgwc_fake", ext, 17, "2026-01-01T00:00:00Z", kinds=[kind], majors=[17])
    p.setup = ["CREATE EXTENSION IF NOT EXISTS bgwc_fake CASCADE"]
    p.settings = {"wal_level": "logical", "bgwc_fake.databases": "db1 'db 2'"}
    p.setup_sql = [
        ("setup.sql", "CREATE TABLE t (a int);\nINSERT INTO t VALUES (1);\n"),
        ("'SELECT 1'", "SELECT 1"),
    ]
    path = tmp_path / "bgw-conformance" / "bgwc_fake.toml"
    path.parent.mkdir(parents=True)
    path.write_text(scaffold.render_profile(p, path.parent))
    profile = load_profile(str(path))
    assert profile.server == p.settings
    assert [s.sql for s in profile.setup] == [tuple(p.setup), (p.setup_sql[0][1],), ("SELECT 1",)]
    assert all(s.database == "postgres" for s in profile.setup)
    (spec,) = profile.processes
    assert (spec.backend_type, spec.backend_type_pattern) == (None, kind.backend_type_pattern)
    text = path.read_text()
    assert '"wal_level" = "logical"   # given with --set' in text
    assert "# given with --setup-sql setup.sql" in text and "# given with --setup-sql 'SELECT 1'" in text
    assert "# measured; 16384 (varying, or like an OID or a pid) as \\d+" in text
    values = [ln for ln in text.splitlines() if re.match(r'(?:"[^"]*"|[\w.]+) = ', ln)]
    unsaid = [ln for ln in values if not re.search(r"# (measured|guessed|given)", ln)]
    # the others are under a comment line that says it for them
    assert all(ln.startswith(("notes = ", "database = ", "sql = ", "after_")) for ln in unsaid), unsaid


def test_roles_and_promotion_are_proposed_as_the_standby_showed_them(tmp_path: Path) -> None:
    ext = Extension("bgwc_fake", ("bgwc_fake",), None, ("postgresql-{major}-bgwc-fake",))
    both = scaffold.Kind("collector", "c", "c", None, None, 1, roles=("primary", "standby"))
    both.after_promotion, both.promotion_detail = "keeps", "ran on in the same processes"
    slow = scaffold.Kind("launcher", "l", "l", None, None, 1, roles=("primary",))
    slow.after_promotion, slow.promotion_seen_s, slow.promotion_detail = "starts", 7.2, "up 7.2 s after"
    never = scaffold.Kind("keeper", "k", "k", None, None, 1, roles=("primary",))
    never.promotion_detail = "not up within 20 s of pg_promote()"
    p = scaffold.Proposal(
        "bgwc_fake", ext, 17, "2026-01-01T00:00:00Z", kinds=[both, slow, never], majors=[17]
    )
    path = tmp_path / "bgwc_fake.toml"
    path.write_text(scaffold.render_profile(p, tmp_path))
    got = {s.name: (s.roles, s.after_promotion, s.promotion_s) for s in load_profile(str(path)).processes}
    assert got == {
        "collector": (("primary", "standby"), "keeps", 10.0),
        "launcher": (("primary",), "starts", 15.0),  # measured 7.2 s, doubled
        "keeper": (("primary",), "starts", 10.0),  # the promise of a primary's kind, said to fail
    }
    assert "# measured: not up within 20 s of pg_promote(); the promise below" in path.read_text()


def test_the_library_to_preload_is_the_one_installed_or_the_one_named_as_the_control() -> None:
    assert scaffold.package_library(["pg_cron"], ["pg_cron"], ("p",)) == "pg_cron"
    assert scaffold.package_library(["a", "b"], ["b"], ("p",)) == "b"
    with pytest.raises(KitError, match="several libraries"):
        scaffold.package_library(["a", "b"], [], ("p",))
    with pytest.raises(KitError, match="no library"):
        scaffold.package_library([], ["c"], ("p",))


# -- what a termination showed, and what init proposes from it (no server) -------------
#: what core's postmaster logs at debug1 when a worker exits with code 0 after SIGTERM
#: (postmaster.c, LogChildExit; bgworker.c, ForgetBackgroundWorker), as pg_wait_sampling's does
EXIT0_LOG = (
    '2026-01-01 00:00:00.000 UTC [1] DEBUG:  unregistering background worker "pg_wait_sampling collector"\n'
    '2026-01-01 00:00:00.000 UTC [1] DEBUG:  background worker "pg_wait_sampling collector" '
    "(PID 4242) exited with exit code 0\n"
    '2026-01-01 00:00:00.100 UTC [1] LOG:  background worker "zoo launcher" (PID 77) '
    "exited with exit code 1\n"
)


def test_the_log_gives_each_terminated_pid_its_exit_code_and_the_unregistering() -> None:
    exits = scaffold.exit_lines(EXIT0_LOG)
    assert set(exits) == {4242, 77}
    code, line = exits[4242]
    assert code == 0 and line == (
        'background worker "pg_wait_sampling collector" (PID 4242) exited with exit code 0; '
        'unregistering background worker "pg_wait_sampling collector"'
    )
    assert exits[77] == (1, 'background worker "zoo launcher" (PID 77) exited with exit code 1')


def test_a_termination_is_back_unregistered_not_back_or_unknown() -> None:
    exit0 = scaffold.exit_lines(EXIT0_LOG)[4242]
    back = scaffold.exit_probe(77, "SIGTERM", 61.3, (1, "line"), False, 65)
    assert (back.outcome, back.seconds) == ("restart", 61.3)
    gone = scaffold.exit_probe(4242, "pg_terminate_backend", None, exit0, False, 65)
    assert gone.outcome == "unregistered" and gone.evidence == exit0[1]
    assert "pid 4242" in gone.detail and "within 65 s" in gone.detail
    # exit code 0 but seen back (a launcher registered a new one): back wins, it was measured
    assert scaffold.exit_probe(4242, "SIGTERM", 2.0, exit0, False, 65).outcome == "restart"
    slow = scaffold.exit_probe(77, "SIGTERM", None, (1, "line"), False, 65)
    assert slow.outcome == "not back" and "exited with code 1" in slow.detail
    assert "no exit line" in scaffold.exit_probe(77, "SIGTERM", None, None, False, 65).detail
    assert scaffold.exit_probe(77, "SIGTERM", None, None, True, 65).outcome == "unknown"


def test_gone_after_a_termination_and_a_crash_restart_is_stays_down_by_design() -> None:
    """pg_squeeze's scheduler (BGW_NEVER_RESTART) exits with code 0 when terminated and is not
    back after a crash-restart: its design, measured; pg_wait_sampling's collector, also gone
    with code 0, is back after a crash-restart: a defect, restart promised."""
    exit0 = scaffold.exit_lines(EXIT0_LOG)[4242]
    gone = scaffold.exit_probe(4242, "SIGTERM", None, exit0, False, 65)
    crash_down = scaffold.Probe("stays-down", None, "not back within 35 s")
    crash_back = scaffold.Probe("restart", 1.2, "back 1.20 s later")
    never = scaffold.by_design(gone, crash_down)
    assert never.outcome == "stays-down" and "BGW_NEVER_RESTART" in never.detail
    assert never.evidence == exit0[1] and gone.detail in never.detail
    assert scaffold.by_design(gone, crash_back) is gone
    not_back = scaffold.exit_probe(78, "SIGTERM", None, (1, "line"), False, 65)
    assert scaffold.by_design(not_back, crash_down).outcome == "stays-down"
    assert scaffold.by_design(not_back, None) is not_back
    back = scaffold.exit_probe(77, "SIGTERM", 61.3, (1, "line"), False, 65)
    assert scaffold.by_design(back, crash_down) is back


def _proposal(*probes: scaffold.Probe) -> scaffold.Proposal:
    ext = Extension("bgwc_fake", ("bgwc_fake",), None, ("postgresql-{major}-bgwc-fake",))
    kinds = []
    for i, probe in enumerate(probes):
        kind = scaffold.Kind(f"k{i}", f"bgwc_fake k{i}$", f"bgwc_fake k{i}", None, None, 1)
        kind.after_exit = probe
        kind.after_crash = scaffold.Probe("restart", 0.5, "after SIGKILL, back 0.50 s later")
        kinds.append(kind)
    return scaffold.Proposal("bgwc_fake", ext, 17, "2026-01-01T00:00:00Z", kinds=kinds, majors=[17])


def _lines_before(text: str, key_line: str, kind: str) -> str:
    """The comment lines right above ``key_line`` in kind ``kind``'s entry."""
    entry = text.split(f'name = "{kind}"', 1)[1].split("[[process]]", 1)[0]
    head = entry.split(key_line, 1)[0].splitlines()
    comments = []
    for line in reversed(head):
        if not line.startswith("#"):
            break
        comments.insert(0, line)
    return "\n".join(comments)


def test_proposed_after_exit_says_what_was_measured_and_what_is_a_guess(tmp_path: Path) -> None:
    exit0 = scaffold.exit_lines(EXIT0_LOG)[4242]
    p = _proposal(
        scaffold.exit_probe(77, "SIGTERM", 61.3, (1, "line"), False, 65),  # a 60-s restarter
        scaffold.exit_probe(4242, "SIGTERM", None, exit0, False, 65),  # exit 0: unregistered
        scaffold.exit_probe(78, "SIGTERM", None, (1, "line"), False, 65),  # not back
    )
    path = tmp_path / "bgwc_fake.toml"
    path.write_text(scaffold.render_profile(p, tmp_path))
    slow, gone, unknown = load_profile(str(path)).processes
    assert (slow.after_exit, slow.restart_s) == ("restart", 62.0)  # 61.3 s, less the postmaster's latency
    assert (gone.after_exit, unknown.after_exit) == ("restart", "stays-down")
    text = path.read_text()
    assert _lines_before(text, 'after_exit = "restart"', "k0").startswith("# measured: ")
    assert "restart_s = 62   # measured" in text
    said = _lines_before(text, 'after_exit = "restart"', "k1")
    assert said.startswith("# measured: ") and "exit code 0" in said and "unregistered" in said
    assert "pg_cron/issues/99" in said and "postgresql.org/docs" in said
    assert "restart_s = 1   # a guess" in text
    said = _lines_before(text, 'after_exit = "stays-down"', "k2")
    assert said.startswith("# unknown: not back within 65 s; check the extension's docs")
    assert "# a guess, not measured" in said
    assert "watched up to 65 s" in text  # the notes say how long


def test_an_exit_0_kind_s_failures_are_expected_with_the_evidence(tmp_path: Path) -> None:
    exit0 = scaffold.exit_lines(EXIT0_LOG)[4242]
    restarts = scaffold.exit_probe(77, "SIGTERM", 1.1, (1, "line"), False, 65)
    gone = scaffold.exit_probe(4242, "pg_terminate_backend", None, exit0, False, 65)
    assert scaffold.expected_failures(_proposal(restarts)) == []
    path = tmp_path / "bgwc_fake.expectations.toml"
    path.write_text(expectations.render("bgwc_fake", scaffold.expected_failures(_proposal(restarts, gone))))
    entries = expectations.load(path).entries
    # the tests that wait for a kind promised to restart after terminating it: STOP-1, CYCLE-1
    assert [e.test for e in entries] == [
        "bgworker/test_stop.py::test_terminated_workers_come_back_once",
        "bgworker/test_cycles.py::test_nothing_accumulates_over_cycles",
    ]
    for e in entries:
        assert (e.outcome, e.targets, e.link) == ("fail", ("pg17",), scaffold.propose.EXIT0_BUG)
        assert "k1: after pg_terminate_backend of pid 4242" in e.reason and "within 65 s" in e.reason
        assert "(PID 4242) exited with exit code 0" in e.reason and "k0" not in e.reason


# -- on real servers ------------------------------------------------------------------
def test_a_kind_with_a_backend_type_pattern_is_counted_through_pg_stat_activity(
    target: Target, bgwc_config: KitConfig
) -> None:
    """What init proposes for a backend_type with an OID or a pid: the census matches
    the pattern against the whole backend_type in pg_stat_activity, as it compares a
    backend_type, and a pattern that matches only a part of it is a problem."""
    profile = bgwc_config.profile
    spec = next((s for s in profile.processes if s.count > 0 and s.backend_type), None)
    if spec is None:
        pytest.skip("not applicable: the profile promises no process at rest that shows in SQL")
    assert spec.backend_type is not None

    def census(pattern: str) -> Census:
        kind = replace(spec, backend_type=None, backend_type_pattern=pattern)
        return Census(target, replace(profile, processes=(kind,)))

    Census(target, profile).wait_at_rest()
    whole = census("(?:" + re.escape(spec.backend_type) + r")\d*")
    (kind,) = whole.profile.processes
    assert whole.problems_at_rest() == []
    assert sorted(pid for pid, _ in whole.activity(kind)) == whole.census()[spec.name]
    part = census(re.escape(spec.backend_type[:-1]))
    assert part.activity(part.profile.processes[0]) == []
    problems = part.problems_at_rest()
    assert len(problems) == 1 and problems[0].startswith(f"{spec.name}: pg_stat_activity shows []"), problems


STOP = "bgworker/test_stop.py::test_terminated_workers_come_back_once"
CYCLE = "bgworker/test_cycles.py::test_nothing_accumulates_over_cycles"
#: where init proposes other than a shipped profile declares, and why.  pg_partman_bgw's master
#: exits with code 0 on SIGTERM and is unregistered (notes/pg_partman_bgw.md I-1): the shipped
#: profile declares that as its design ("stays-down"; its docs promise a restart only after a
#: crash), init proposes the restart a worker owes and expects the failures that follows
DIFFERENCES = {("pg_partman_bgw", "master"): "restart"}
#: the verdicts (of the tests init's check runs) that differ from the shipped profile's, and
#: why; besides, init proposes no [workload], so the tests of one are not applicable
VERDICT_DIFFERENCES = {
    ("pg_partman_bgw", STOP): "the master, promised to restart, stays down (expected by init, with evidence)",
    ("pg_partman_bgw", CYCLE): "the master, terminated in the first cycle, stays down (expected by init)",
}
#: the kinds that exit with code 0 when terminated: init proposes a restart and expects failures
EXIT_0 = {"pg_wait_sampling": "collector", "pg_partman_bgw": "master background worker"}
CMAKE = load_profile(str(HERE / "data" / "cmake_stub.toml"))
CASES = {
    "pg_wait_sampling": ["--package", "postgresql-{major}-pg-wait-sampling", "--pg", "17"],
    # named as the shipped profile (init names it after the control file, pg_partman)
    "pg_partman_bgw": ["--package", "postgresql-{major}-partman", "--name", "pg_partman_bgw", "--pg", "17"],
    "pg_cron": ["--package", "postgresql-{major}-cron", "--pg", "17,18"],
    "bgwc_cmake": [
        *("--extension", str(HERE / "cmake_ext"), "--recipe", str(CMAKE.install.recipe)),
        *("--library", "bgwc_cmake", "--name", "bgwc_cmake", "--pg", "17"),
    ],
}
#: what init's check runs of the suite on a proposed profile: the files of the clauses init's
#: probes inform (START-1, STOP-1, CYCLE-1), by name ("start" alone would select "restart")
CHECKED = "test_start.py or test_stop.py or test_cycles.py"


def _agrees(proposed: Profile, hand: Profile) -> None:
    """The proposal's kinds are the hand-written profile's kinds at rest, as it declares them
    (apart from DIFFERENCES)."""
    at_rest = [s for s in hand.processes if s.count > 0]
    assert len(proposed.processes) == len(at_rest), proposed.processes
    for spec in at_rest:
        (mine,) = [p for p in proposed.processes if re.fullmatch(p.title, spec.title)]
        assert (mine.backend_type, mine.database, mine.count) == (
            spec.backend_type,
            spec.database,
            spec.count,
        )
        assert mine.after_exit == DIFFERENCES.get((hand.name, spec.name), spec.after_exit), spec.name
        assert mine.after_crash == spec.after_crash, spec.name
        # where it runs and what a promotion does, seen on init's hot standby
        assert (mine.roles, mine.after_promotion) == (spec.roles, spec.after_promotion), spec.name
        if mine.after_exit == spec.after_exit == "restart":
            assert mine.restart_s >= spec.restart_s


def _run_suite(profile: Path, reports: Path, select: str) -> dict[str, Any]:
    """The suite on pg17 with ``profile`` (and the expectations beside it): its results."""
    run_id = f"init{uuid.uuid4().hex[:8]}"
    argv = ["run", "--report-only", "--profile", str(profile), "--target", "pg17"]
    argv += ["--reports", str(reports), "--", "-k", select]
    res = subprocess.run(
        [sys.executable, "-m", "conformance.cli", *argv],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "BGWC_RUN_ID": run_id},
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert _ours(run_id) == [], "the run left containers behind"
    (results,) = reports.rglob("results.json")
    return json.loads(results.read_text())


def _shipped_verdict(name: str, test: str) -> str:
    """The shipped profile's verdict on pg17, as its expectations file gates it: a listed
    failure (a listed failure that passes is unexpected), else a pass."""
    if name == "bgwc_cmake":
        return "pass"
    path = expectations.default_path(load_profile(name).path)
    listed = expectations.load(path).entries if path.is_file() else ()
    failing = any(e.outcome == "fail" and e.covers(test) and e.applies_to("pg17", 17) for e in listed)
    return "fail" if failing else "pass"


@pytest.mark.images
@pytest.mark.parametrize("name", CASES)
def test_init_proposes_what_the_hand_written_profile_says_and_the_suite_agrees(
    name: str, tmp_path: Path
) -> None:
    """About 2.5 min each (init watches terminations up to 65 s; pg_cron builds 18's image too):
    init's profile and expectations; the suite's start, stop and cycle tests on them give the
    shipped profile's verdicts, apart from VERDICT_DIFFERENCES, and nothing unexpected."""
    run_id = f"init{uuid.uuid4().hex[:8]}"
    res = _init(*CASES[name], "--dir", str(tmp_path), run_id=run_id)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert _ours(run_id) == [], "init left containers behind"
    path = tmp_path / "bgw-conformance" / f"{name}.toml"
    assert f"wrote {path}" in res.stdout
    for line in res.stdout.splitlines():  # the next steps it prints are commands of the kit
        if line.startswith(("next, in", "then: ")):
            _parse(line.split(": ", 1)[1], 17)
    proposed = load_profile(str(path))
    hand = CMAKE if name == "bgwc_cmake" else load_profile(name)
    _agrees(proposed, hand)
    assert proposed.majors == tuple(int(m) for m in CASES[name][-1].split(","))
    for ci in (scaffold.GITHUB, scaffold.GITLAB):
        assert _commands(yaml.safe_load((tmp_path / ci).read_text())), ci
    expected = expectations.load(expectations.default_path(path)).entries
    if name in EXIT_0:  # measured: exit code 0, unregistered; the evidence is in the file
        assert [e.test for e in expected] == [STOP, CYCLE]
        for e in expected:
            assert e.targets == ("pg17",) and f"{EXIT_0[name]}: after " in e.reason, e
            assert re.search(r"\(PID \d+\) exited with exit code 0", e.reason), e.reason
            assert "none came back within 65 s" in e.reason, e.reason
    else:
        assert expected == ()

    results = _run_suite(path, tmp_path / "reports", CHECKED)
    assert results["run"]["unexpected"] == [], results["run"]["unexpected"]
    start = [t for t in results["tests"] if "START-1" in t["clauses"]]
    assert start and all(t["outcome"] == "pass" for t in start), start
    verdicts = {t["test"]: t["outcome"] for t in results["tests"]}
    assert {STOP, CYCLE} <= set(verdicts), sorted(verdicts)
    for test, outcome in verdicts.items():
        shipped = _shipped_verdict(name, test)
        if (name, test) in VERDICT_DIFFERENCES:
            assert (shipped, outcome) == ("pass", "fail"), (test, VERDICT_DIFFERENCES[name, test])
        elif outcome == "not-applicable":  # a difference for every extension: no [workload] proposed
            assert "workload" in test.split("::")[1], (test, "init proposes no [workload]")
        else:
            assert outcome == shipped, (test, outcome, shipped)


def _start_1_passes(path: Path, reports: Path) -> None:
    """The suite's start and stop tests, run on the proposed profile: START-1 passes."""
    results = _run_suite(path, reports, "test_start.py or test_stop.py")
    start = [t for t in results["tests"] if "START-1" in t["clauses"]]
    assert start and all(t["outcome"] == "pass" for t in start), start


@pytest.mark.images
def test_init_says_in_one_line_that_it_saw_no_worker_of_pg_background(tmp_path: Path) -> None:
    """About 40 s.  pg_background (packaged from 18 on) has no worker at rest (its workers run
    only while a client's command does): its documented difference from its shipped profile
    is that init proposes nothing, and says so."""
    run_id = f"init{uuid.uuid4().hex[:8]}"
    argv = ["--package", "postgresql-{major}-pg-background", "--pg", "18", "--dir", str(tmp_path)]
    res = _init(*argv, run_id=run_id)
    assert res.returncode == 2 and res.stdout == "", res.stdout + res.stderr
    said = [ln for ln in res.stderr.splitlines() if not ln.startswith(("[init]", "[images]"))]
    assert len(said) == 1 and said[0].startswith("bgw-conformance: "), res.stderr
    assert "no background process of pg_background ran at rest on pg18" in said[0], said
    assert list(tmp_path.iterdir()) == [] and _ours(run_id) == []


@pytest.mark.images
def test_init_watches_long_enough_to_see_a_restart_after_60_s(tmp_path: Path) -> None:
    """About 2.5 min (init's 60 s watch, then STOP-1's).  tests/slow_ext's worker has a
    bgw_restart_time of 60 s: init sees it back and proposes a measured restart_s of at
    least 60, on which STOP-1 passes."""
    argv = ["--extension", str(HERE / "slow_ext"), "--library", "bgwc_slow", "--name", "bgwc_slow"]
    run_id = f"init{uuid.uuid4().hex[:8]}"
    res = _init(*argv, "--pg", "17", "--dir", str(tmp_path), run_id=run_id)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert _ours(run_id) == [], "init left containers behind"
    path = tmp_path / "bgw-conformance" / "bgwc_slow.toml"
    (worker,) = load_profile(str(path)).processes
    assert worker.after_exit == "restart" and 60 <= worker.restart_s <= 62, worker
    assert f"restart_s = {worker.restart_s:g}   # measured" in path.read_text()
    assert expectations.load(expectations.default_path(path)).entries == ()
    results = _run_suite(path, tmp_path / "reports", "test_stop.py")
    verdicts = {t["test"]: t["outcome"] for t in results["tests"]}
    assert verdicts[STOP] == "pass", results["tests"]


@pytest.mark.images
def test_a_major_where_the_package_does_not_install_is_left_out_saying_why() -> None:
    ext = Extension("bgwc_nopkg", ("bgwc_nopkg",), None, ("postgresql-{major}-bgwc-no-such-package",))
    built, left_out = scaffold.installs_on([17], ext)
    assert built == [] and list(left_out) == [17]
    assert left_out[17] == "not packaged: Debian (trixie) has no postgresql-17-bgwc-no-such-package", left_out


#: pg_squeeze (Debian's postgresql-{major}-squeeze) starts its scheduler worker only for the
#: databases in squeeze.worker_autostart, connecting as squeeze.worker_role (its README);
#: its squeeze workers need wal_level = logical (logical decoding), as the README says
SQUEEZE = ["--package", "postgresql-{major}-squeeze", "--pg", "17"]
SQUEEZE_SET = {
    "wal_level": "logical",
    "squeeze.worker_autostart": "postgres",
    "squeeze.worker_role": "postgres",
}


@pytest.mark.images
def test_a_profile_that_needs_settings_is_made_with_set_alone_pg_squeeze(tmp_path: Path) -> None:
    root = tmp_path / "new" / "repo"  # --dir is created
    run_id = f"init{uuid.uuid4().hex[:8]}"
    sets = [a for k, v in SQUEEZE_SET.items() for a in ("--set", f"{k}={v}")]
    res = _init(*SQUEEZE, *sets, "--dir", str(root), run_id=run_id)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert _ours(run_id) == [], "init left containers behind"
    path = root / "bgw-conformance" / "pg_squeeze.toml"
    proposed = load_profile(str(path))
    assert proposed.server == SQUEEZE_SET
    (scheduler,) = proposed.processes
    assert re.fullmatch(scheduler.title, "pg_squeeze scheduler worker for database postgres")
    assert (scheduler.backend_type, scheduler.database, scheduler.count) == ("squeeze worker", "postgres", 1)
    # registered with BGW_NEVER_RESTART (worker.c): gone after a termination and a crash-restart
    assert (scheduler.after_exit, scheduler.after_crash) == ("stays-down", "stays-down")
    assert '"squeeze.worker_autostart" = "postgres"   # given with --set' in path.read_text()
    _start_1_passes(path, tmp_path / "reports")


@pytest.mark.images
@pytest.mark.parametrize(
    "argv, said",
    [
        (
            [],  # no worker starts without squeeze.worker_autostart: init names its settings
            [
                "no background process of pg_squeeze ran at rest on pg17 (after a start with its setup "
                "done, unchanged for 3s): init proposes the processes it sees. Settings that may gate its "
                "workers, as they are: squeeze.max_xlock_time='0', squeeze.worker_autostart='', "
                "squeeze.worker_role='', squeeze.workers_per_database='1', max_worker_processes='",
                "'; give what starts them with --set NAME=VALUE (repeatable)",
            ],
        ),
        (
            ["--set", "squeeze.nope=1"],
            ["--set squeeze.nope: the server knows no such setting (not in pg_settings with 'pg_squeeze'"],
        ),
        (["--set", "wal_level=bogus"], ['LOG: invalid value for parameter "wal_level": "bogus"; FATAL']),
        (
            ["--set", "squeeze.worker_autostart=postgres"],
            ['did not start with it: FATAL: "squeeze.worker_role" parameter is invalid or not set'],
        ),
        (
            ["--setup-sql", "SELECT nope()"],
            ["--setup-sql 'SELECT nope()': failed in postgres: function nope()"],
        ),
    ],
)
def test_settings_and_setup_pg_squeeze_refuses_are_exit_2_with_one_line(
    argv: list[str], said: list[str], tmp_path: Path
) -> None:
    run_id = f"init{uuid.uuid4().hex[:8]}"
    res = _init(*SQUEEZE, *argv, "--dir", str(tmp_path / "repo"), run_id=run_id)
    assert res.returncode == 2 and res.stdout == ""
    (line,) = [ln for ln in res.stderr.splitlines() if not ln.startswith("[init] ")]
    assert line.startswith("bgw-conformance: ") and all(part in line for part in said), line
    assert _ours(run_id) == [], "init left containers behind"
    assert list(tmp_path.iterdir()) == []
