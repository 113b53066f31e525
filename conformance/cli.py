"""The ``bgw-conformance`` command.

  bgw-conformance images build --pg 13,15,17,18 [--profile P] [INPUTS]
  bgw-conformance run [--target pg17[,local...]] [--profile P] [INPUTS] [--expectations F] [--json] [--github]
                      [--reports DIR] [-- PYTEST-ARGS]
  bgw-conformance verify --repeat N [--target ...] [-k EXPR] [INPUTS] [--reports DIR]
  bgw-conformance expectations update --profile P RESULTS...
  bgw-conformance clean
  bgw-conformance repro REPORT CLAUSE [-o FILE]

INPUTS: --extension DIR, --package PKG (repeatable), --recipe CMD, --library LIB,
        --apt-source '[signed-by=KEY] URI SUITE [COMPONENT...]' (repeatable).

Exit status: 0 nothing unexpected; 1 the extension under test has an
unexpected result; 2 bad input, the harness broke, or an interrupt.  Errors
are one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from conformance import __version__, doctor, engine, images, majors, repro, scaffold
from conformance.config import OPTIONS, KitConfig
from conformance.errors import HarnessError, KitError, NotPackaged
from conformance.targets.spec import parse_majors


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _extension_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default=None, help=OPTIONS["profile"][1])
    p.add_argument("--extension", type=Path, default=None, help=OPTIONS["extension"][1])
    p.add_argument(
        "--package",
        action="append",
        default=[],
        help="a Debian package of the extension, e.g. 'postgresql-{major}-cron' (repeatable)",
    )
    p.add_argument(
        "--apt-source",
        action="append",
        default=[],
        help="an extra apt source of server and extension packages, e.g. '[signed-by=pgdg.asc] "
        "https://apt.postgresql.org/pub/repos/apt {codename}-pgdg main' or '[signed-by=K] file:DIR ./' "
        "(repeatable; replaces the profile's; KEY and DIR relative to here)",
    )
    p.add_argument("--recipe", default=None, help=OPTIONS["recipe"][1])
    p.add_argument("--library", default=None, help=OPTIONS["library"][1])
    p.add_argument("--make-args", default="", help=OPTIONS["make_args"][1])
    p.add_argument("--base", default=None, help=OPTIONS["base"][1])
    p.add_argument("--expectations", type=Path, default=None, help=OPTIONS["expectations"][1])


def _input_values(args: argparse.Namespace) -> dict[str, str]:
    """The extension options as KitConfig and pytest (--bgwc-*) take them."""
    return {
        "profile": args.profile or "",
        "extension": str(args.extension) if args.extension else "",
        "package": ",".join(args.package),
        "apt_source": ";".join(getattr(args, "apt_source", None) or []),
        "recipe": args.recipe or "",
        "library": args.library or "",
        "make_args": args.make_args or "",
        "base": args.base or "",
        "expectations": str(args.expectations.resolve()) if args.expectations else "",
    }


def _kit_config(args: argparse.Namespace, target: str) -> KitConfig:
    """Options and profile validated before anything starts."""
    defaults = {k: d for k, (d, _) in OPTIONS.items()}
    given = {k: v for k, v in _input_values(args).items() if v}
    return KitConfig.from_values(
        {**defaults, **given, "target": target, "seed": getattr(args, "seed", None) or ""}
    )


def _cmd_images_build(args: argparse.Namespace) -> int:
    wanted = parse_majors(args.pg, source_only=True)
    ext = _kit_config(args, ",".join(f"pg{m}" for m in wanted)).extension
    for major in wanted:
        t0 = time.monotonic()
        img = images.build_extension(major, ext, args.base)
        state = "built" if img.built else "cached"
        print(f"pg{major}\t{img.tag}\t{state}\t{time.monotonic() - t0:.1f}s")
    return 0


def _cmd_run(args: argparse.Namespace, pytest_args: list[str]) -> int:
    """Run the suite; with ``--json`` the summary is the only thing on stdout."""
    if args.clauses:
        pytest_args = [f"--bgwc-clauses={_known_clauses(args.clauses)}", *pytest_args]
    if not args.json:
        return _run(args, pytest_args)
    stdout = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return _run(args, pytest_args, stdout)
    except HarnessError as exc:
        from conformance import summary

        print(
            json.dumps(summary.harness_error(str(exc), args.profile, args.target.split(",")), indent=1),
            file=stdout,
        )
        raise


def _slow_factor(text: str) -> float:
    try:
        factor = float(text)
    except ValueError:
        factor = 0.0
    if not 1 < factor <= 64:
        raise argparse.ArgumentTypeError(f"{text!r}: FACTOR is a number above 1 (at most 64)")
    return factor


def _known_clauses(text: str) -> str:
    """``--clauses``: clause ids or families of the contract; KitError naming an unknown one."""
    from conformance import verdicts

    known = set(verdicts.load_contract())
    families = {c.split("-")[0] for c in known}
    wanted = [w.strip() for w in text.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in known and w not in families]
    if not wanted or unknown:
        raise KitError(f"--clauses {text!r}: no clause or family {', '.join(unknown) or '(none given)'}")
    return ",".join(wanted)


def _cmd_verify(args: argparse.Namespace, pytest_args: list[str]) -> int:
    """Run each selected test ``--repeat`` times in a row on each target (like
    wptrunner's --verify): a test that both passed and failed is ``flaky``,
    which gates (exit 1) like a failure."""
    if args.repeat < 2:
        raise KitError(f"--repeat {args.repeat}: verify needs at least 2 repetitions")
    extra = [f"--bgwc-repeat={args.repeat}"] + (["-k", args.k] if args.k else [])
    return _run(args, [*extra, *pytest_args])


def _run(args: argparse.Namespace, pytest_args: list[str], json_out: Any = None) -> int:
    import pytest

    from conformance import report, summary
    from conformance.paths import suite_dir

    kit = _kit_config(
        args, args.target
    )  # options, profile and expectations validated before any server starts
    if getattr(args, "slow", None) and any(spec.is_local for spec in kit.specs):
        raise KitError("--slow cuts a container's CPU: it cannot run on the local target")
    runnable: list[str] = []
    for spec in kit.specs:  # inputs built (or found cached) before any test: bad input is exit 2
        target = spec.name
        if spec.major is None:  # the host's server: built when it starts
            runnable.append(target)
            continue
        try:
            images.build_extension(spec.major, kit.extension, kit.base)
        except NotPackaged as exc:
            if args.package:  # named on the command line: a bad input
                raise
            _record_not_packaged(args, kit, target, exc, json_out)
            continue
        runnable.append(target)
    if not runnable:
        return summary.EXIT_OK
    kind = f"-verify{args.repeat}" if getattr(args, "repeat", None) else ""
    run_dir = Path(args.reports) / f"{time.strftime('%Y%m%d-%H%M%S')}-{engine.RUN_ID}{kind}"
    run_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(suite_dir()),
        "-p",
        "no:cacheprovider",
        f"--rootdir={suite_dir()}",
        f"--html={run_dir / 'pytest.html'}",
        "--self-contained-html",
        f"--junitxml={run_dir / 'junit.xml'}",
        f"--bgwc-results={run_dir}",
        "-o",
        "console_output_style=classic",
        "-o",
        "junit_family=xunit1",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    ]
    # the validated config goes to pytest as an object: nothing is read or parsed twice
    from conformance.plugin import HandOff

    handed = dataclasses.replace(kit, targets=tuple(runnable))
    code = int(pytest.main([*argv, *pytest_args], plugins=[HandOff(handed)]))
    results_file = run_dir / "results.json"
    if not results_file.is_file():
        if code == 2:
            raise KeyboardInterrupt
        raise HarnessError(f"the run wrote no results (pytest exit {code}); see the output above")
    results = json.loads(results_file.read_text())
    if getattr(args, "slow", None):
        results = _slow_pass(args, pytest_args, results, run_dir, json_out is not None, kit.expectations)
        results_file.write_text(json.dumps(results, indent=1))
    index = run_dir / "index.html"
    summ = summary.summarize(results, code, run_dir)
    index.write_text(report.render_run(results, summary=summ))
    (run_dir / "summary.json").write_text(json.dumps(summ, indent=1))
    if summ["verdict"] not in (summary.HARNESS_ERROR, summary.INTERRUPTED):
        color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
        print(report.terminal_summary(results, index, color=color))
    print(summary.terminal(summ, run_dir))
    _github(args, summ, results, run_dir)
    if json_out is not None:
        print(json.dumps(summ, indent=1), file=json_out)
    if summ["exit_status"] == summary.EXIT_UNEXPECTED and args.report_only:
        return summary.EXIT_OK
    return int(summ["exit_status"])


def _slow_pass(
    args: argparse.Namespace,
    pytest_args: list[str],
    results: dict[str, Any],
    run_dir: Path,
    quiet: bool,
    expectations: Any,
) -> dict[str, Any]:
    """``run --slow FACTOR``: the same run again in a process of its own with
    the servers' CPU cut (``deadlines.SLOW``), its flips applied to this one."""
    from conformance import slow

    factor = float(args.slow)
    out = run_dir / f"slow-x{factor:g}"
    argv, skip = [], False
    for a in args.argv:  # the command line again, but for the options the slow pass sets itself
        if skip:
            skip = False
            continue
        if a in ("--slow", "--reports"):
            skip = True
            continue
        if a.startswith(("--slow=", "--reports=")) or a in ("--json", "--github", "--no-github"):
            continue
        argv.append(a)
    argv += ["--reports", str(out), "--report-only", "--no-github", "--", *pytest_args]
    print(f"bgw-conformance: the slow pass, the servers' CPU cut to 1/{factor:g} ({out})", file=sys.stderr)
    env = {**os.environ, "BGWC_SLOW": str(factor)}
    code = subprocess.run(
        [sys.executable, "-m", "conformance.cli", *argv], env=env, stdout=sys.stderr if quiet else None
    ).returncode
    found = sorted(out.glob("*/results.json"))
    if code not in (0, 1) or not found:
        raise HarnessError(f"the slow pass broke (exit {code}); see its output above and {out}")
    return slow.apply(results, json.loads(found[-1].read_text()), factor, found[-1].parent, expectations)


def _record_not_packaged(
    args: argparse.Namespace, kit: KitConfig, target: str, exc: NotPackaged, json_out: Any
) -> None:
    """A run of its own for a target whose major Debian does not package the
    profile's extension for: results, summary and page say "not packaged"."""
    from conformance import report, results, summary

    res = results.not_packaged(kit, target, exc.major, exc.packages, exc.suite)
    run_dir = Path(args.reports) / f"{time.strftime('%Y%m%d-%H%M%S')}-{engine.RUN_ID}-{target}"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "results.json").write_text(json.dumps(res, indent=1))
    summ = summary.summarize(res, 0, run_dir)
    (run_dir / "index.html").write_text(report.render_run(res, summary=summ))
    (run_dir / "summary.json").write_text(json.dumps(summ, indent=1))
    print(summary.terminal(summ, run_dir))
    _github(args, summ, res, run_dir)
    if json_out is not None:
        print(json.dumps(summ, indent=1), file=json_out)


def _github(args: argparse.Namespace, summ: dict[str, Any], results: dict[str, Any], run_dir: Path) -> None:
    """GitHub mode (``--github``, or ``GITHUB_ACTIONS=true`` unless ``--no-github``): the
    step summary and one annotation per unexpected result (on stderr under ``--json``)."""
    from conformance import github

    if github.enabled(getattr(args, "github", None)):
        github.publish(summ, results, run_dir)


def _load_runs(paths: list[str]) -> list[tuple[Path, dict[str, Any]]]:
    from conformance import report, results

    files = report.find_results([Path(p) for p in paths])
    if not files:
        raise KitError(f"no results.json under {', '.join(paths)}")
    return [(f, results.load(f)) for f in files]


def _cmd_expectations(args: argparse.Namespace) -> int:
    """Accept runs into the profile's expectations file (the file is written; review and commit it)."""
    from conformance import expectations
    from conformance.profile import load_profile

    profile = load_profile(args.profile)
    path = args.expectations or expectations.default_path(profile.path)
    current = expectations.load(path) if path.is_file() else None
    runs = [res for _, res in _load_runs(args.paths) if res["run"].get("profile") == profile.name]
    if not runs:
        raise KitError(f"no run of profile {profile.name} under {', '.join(args.paths)}")
    entries, changes = expectations.update(current, runs)
    path.write_text(expectations.render(profile.name, entries))
    for line in changes:
        print(line)
    print(f"{path}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, from {len(runs)} run(s)")
    return 0


def _cmd_report_diff(args: argparse.Namespace) -> int:
    """What changed from runs A to runs B: text on stdout, HTML with -o.  Exit 0 whatever it
    says; with --fail-on-regression, 1 when a clause or test newly fails or is newly flaky."""
    from conformance import diff, diff_report

    if not args.factor > 1:
        raise KitError(f"--factor {args.factor:g}: must be more than 1")
    for p in (args.a, args.b):
        if not Path(p).exists():
            raise KitError(f"{p}: no such file or directory")
    found = diff.pair(_load_runs([args.a]), _load_runs([args.b]), args.factor)
    print(diff_report.text(found))
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(diff_report.render(found))
        print(out)
    return 1 if args.fail_on_regression and found.regressions else 0


def _cmd_report(args: argparse.Namespace) -> int:
    from conformance import report

    if args.report_command == "diff":
        return _cmd_report_diff(args)
    paths = [Path(p) for p in args.paths]
    loaded = _load_runs(args.paths)
    if args.report_command == "render":
        from conformance import summary

        for f, res in loaded:
            summ = summary.summarize(res, int(res["run"]["exit_status"]), f.parent)
            (f.parent / "index.html").write_text(report.render_run(res, summary=summ))
            print(f.parent / "index.html")
        return 0
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    mutants = [run for p in paths if p.is_dir() for run in report.latest_mutants(p)]
    zoo = [table for p in paths if p.is_dir() for table in report.zoo_tables(p)]
    out.write_text(report.render_matrix(loaded, out_dir=out.parent, mutants=mutants, zoo=zoo))
    print(f"{out}: {len(loaded)} run(s)")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from conformance.bench import measure
    from conformance.targets import make_target

    kit = _kit_config(args, args.target)
    if len(kit.targets) != 1:
        raise KitError("bench takes one target")
    target = make_target(kit.targets[0], kit)
    try:
        result = measure(target, args.rounds)
    finally:
        target.close()
    print(f"{'ms':<20}{'p50':>10}{'p95':>10}")
    for name, r in result.items():
        print(f"{name:<20}{r['p50']:>10.3f}{r['p95']:>10.3f}")
    ratio = result["submit_no_connect"]["p50"] / result["direct"]["p50"]
    print(f"submit_no_connect / direct (p50): {ratio:.2f}x")
    return 0


def _cmd_mutants(args: argparse.Namespace) -> int:
    from conformance import mutation

    wanted = parse_majors(args.pg)
    mutants = mutation.load_mutants(args.only.split(",") if args.only else None)
    ok = True
    for major in wanted:
        out_dir = Path(args.reports) / f"mutants-{time.strftime('%Y%m%d-%H%M%S')}-pg{major}"
        t0 = time.monotonic()
        results = mutation.run_all(mutants, major, out_dir, args.parallel)
        for m in mutants:
            if not m.applies_to(major):
                only = ", ".join(f"pg{x}" for x in m.majors)
                print(f"--  pg{major} {m.name:<26} not applicable (its clauses judge on {only} only)")
        for r in results:
            clauses = sorted({c for k in r.killed_by for c in k["clauses"]})
            mark = "ok " if r.as_expected else "BAD"
            why = ", ".join(clauses) or r.detail[:80]
            print(f"{mark} pg{major} {r.mutant.name:<26} {r.verdict:<12} {r.seconds:>6.1f}s  {why}")
        print(
            f"pg{major}: {mutation.kill_ratio(results):.0%} killed by their own clauses, in "
            f"{time.monotonic() - t0:.0f}s; {out_dir / 'mutants.json'}"
        )
        ok = ok and all(r.as_expected for r in results)
    return 0 if ok else 1


def _cmd_clean(_args: argparse.Namespace) -> int:
    removed = engine.sweep_stale()
    print(f"removed {len(removed)} stale container(s)" + (f": {', '.join(removed)}" if removed else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bgw-conformance", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"bgw-conformance {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    img = sub.add_parser("images", help="build server images")
    img_sub = img.add_subparsers(dest="images_command", required=True)
    build = img_sub.add_parser("build", help="build (or reuse) one image per major")
    build.add_argument(
        "--pg",
        default=",".join(map(str, majors.SUPPORTED_MAJORS)),
        help="majors, comma-separated (default: all)",
    )
    _extension_args(build)

    run = sub.add_parser("run", help="run the conformance suite and write a report")
    run.add_argument("--target", default="pg17", help=OPTIONS["target"][1])
    run.add_argument("--reports", default="reports", help="directory for run reports")
    run.add_argument("--seed", default=None, help=OPTIONS["seed"][1])
    run.add_argument(
        "--clauses",
        default=None,
        metavar="IDS",
        help="only the tests of these clauses or families, comma-separated (e.g. REPLICA,HOT,SHUT-1)",
    )
    run.add_argument(
        "--slow",
        type=_slow_factor,
        default=None,
        metavar="FACTOR",
        help="run the selection again with the servers' CPU cut to 1/FACTOR of one core; a clause "
        "that passes at full speed and fails there is a timing-window finding, a failure "
        "(container targets only)",
    )
    run.add_argument(
        "--report-only",
        action="store_true",
        help="write the reports and verdicts but exit 0 when the extension fails clauses "
        "(for surveying others' extensions; 2 still means the harness broke)",
    )
    run.add_argument(
        "--json", action="store_true", help="print the run's summary.json on stdout (and nothing else)"
    )
    run.add_argument(
        "--github",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="GitHub Actions mode: a step summary in $GITHUB_STEP_SUMMARY and an ::error annotation "
        "per unexpected result (default: on when GITHUB_ACTIONS=true; the flag wins)",
    )
    _extension_args(run)

    ver = sub.add_parser(
        "verify", help="run each selected test N times; one that both passes and fails is flaky (exit 1)"
    )
    ver.add_argument("--repeat", type=int, default=10, help="repetitions of each test (default 10)")
    ver.add_argument("--target", default="pg17", help=OPTIONS["target"][1])
    ver.add_argument("-k", default=None, metavar="EXPR", help="only the tests pytest's -k EXPR selects")
    ver.add_argument("--reports", default="reports", help="directory for run reports")
    ver.add_argument("--seed", default=None, help=OPTIONS["seed"][1])
    ver.set_defaults(json=False, report_only=False)
    _extension_args(ver)

    exp = sub.add_parser("expectations", help="the expected outcomes of a profile")
    exp_sub = exp.add_subparsers(dest="expectations_command", required=True)
    upd = exp_sub.add_parser("update", help="accept runs: rewrite the expectations file from their results")
    upd.add_argument("--profile", required=True, help=OPTIONS["profile"][1])
    upd.add_argument(
        "--expectations", type=Path, default=None, help="the file to write (default: beside the profile)"
    )
    upd.add_argument("paths", nargs="+", help="results.json files or directories holding them")

    bench = sub.add_parser("bench", help="submit latency of the reference pool against its floor")
    bench.add_argument("--target", default="pg17", help="one target")
    bench.add_argument("--rounds", type=int, default=50)
    _extension_args(bench)

    mut = sub.add_parser("mutants", help="run the suite against each mutant of the reference pool")
    mut.add_argument("--pg", default="17", help="majors, comma-separated")
    mut.add_argument("--only", default=None, help="mutant names, comma-separated")
    mut.add_argument("--parallel", type=int, default=2, help="mutants run at once")
    mut.add_argument("--reports", default="reports", help="directory for the results")

    rep = sub.add_parser("report", help="render reports from results.json")
    rep_sub = rep.add_subparsers(dest="report_command", required=True)
    merge = rep_sub.add_parser("merge", help="the clause-by-run matrix of several runs")
    merge.add_argument("paths", nargs="+", help="results.json files or directories holding them")
    merge.add_argument("-o", "--output", default="reports/matrix.html")
    render = rep_sub.add_parser("render", help="(re)write a run's index.html")
    render.add_argument("paths", nargs="+", help="results.json files or directories holding them")
    rdiff = rep_sub.add_parser(
        "diff", help="what changed from runs A to runs B (paired by profile and target)"
    )
    rdiff.add_argument("a", help="a results.json or a directory holding runs")
    rdiff.add_argument("b", help="a results.json or a directory holding runs")
    rdiff.add_argument(
        "--factor", type=float, default=2.0, help="a figure moved when it changed more than this (default 2)"
    )
    rdiff.add_argument("-o", "--output", default=None, help="also write the diff as a self-contained page")
    rdiff.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 when a clause or test newly fails or is flaky",
    )

    sub.add_parser("clean", help="remove containers left by dead runs")
    doctor.add_parser(sub)
    scaffold.add_parser(sub)
    repro.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pytest_args: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, pytest_args = argv[:i], argv[i + 1 :]
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        if args.command == "images":
            return _cmd_images_build(args)
        if args.command == "run":
            return _cmd_run(args, pytest_args)
        if args.command == "verify":
            return _cmd_verify(args, pytest_args)
        if args.command == "bench":
            return _cmd_bench(args)
        if args.command == "mutants":
            return _cmd_mutants(args)
        if args.command == "report":
            return _cmd_report(args)
        if args.command == "expectations":
            return _cmd_expectations(args)
        if args.command == "doctor":
            return doctor.run(args)
        if args.command == "init":
            return scaffold.run(args)
        if args.command == "repro":
            return repro.run(args)
        return _cmd_clean(args)
    except HarnessError as exc:
        print(f"bgw-conformance: HARNESS ERROR: {exc}", file=sys.stderr)
        return 2
    except KitError as exc:
        print(f"bgw-conformance: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bgw-conformance: INTERRUPTED (exit 2)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
