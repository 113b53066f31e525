"""The ``bgw-conformance`` command.

  bgw-conformance images build --pg 13,15,17,18 [--profile P] [INPUTS]
  bgw-conformance run [--target pg17[,local...]] [--profile P] [INPUTS] [--reports DIR] [-- PYTEST-ARGS]
  bgw-conformance clean

INPUTS: --extension DIR, --package PKG (repeatable), --recipe CMD, --library LIB.

Errors are one line on stderr and a non-zero exit status (2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from conformance import engine, images
from conformance.config import OPTIONS, KitConfig
from conformance.errors import KitError


def _majors(text: str) -> list[int]:
    try:
        majors = [int(p.strip().removeprefix("pg")) for p in text.split(",") if p.strip()]
    except ValueError:
        raise KitError(f"--pg {text!r}: give majors like 13,15,17,18") from None
    bad = [m for m in majors if m not in images.SUPPORTED_MAJORS]
    if bad or not majors:
        raise KitError(f"--pg {text!r}: supported majors are {', '.join(map(str, images.SUPPORTED_MAJORS))}")
    return majors


def _extension_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default=None, help=OPTIONS["profile"][1])
    p.add_argument("--extension", type=Path, default=None, help=OPTIONS["extension"][1])
    p.add_argument(
        "--package",
        action="append",
        default=[],
        help="a Debian package of the extension, e.g. 'postgresql-{major}-cron' (repeatable)",
    )
    p.add_argument("--recipe", default=None, help=OPTIONS["recipe"][1])
    p.add_argument("--library", default=None, help=OPTIONS["library"][1])
    p.add_argument("--make-args", default="", help=OPTIONS["make_args"][1])
    p.add_argument("--base", default=None, help=OPTIONS["base"][1])


def _input_values(args: argparse.Namespace) -> dict[str, str]:
    """The extension options as KitConfig and pytest (--bgwc-*) take them."""
    return {
        "profile": args.profile or "",
        "extension": str(args.extension) if args.extension else "",
        "package": ",".join(args.package),
        "recipe": args.recipe or "",
        "library": args.library or "",
        "make_args": args.make_args or "",
        "base": args.base or "",
    }


def _kit_config(args: argparse.Namespace, target: str) -> KitConfig:
    """Options and profile validated before anything starts."""
    defaults = {k: d for k, (d, _) in OPTIONS.items()}
    given = {k: v for k, v in _input_values(args).items() if v}
    return KitConfig.from_values(
        {**defaults, **given, "target": target, "seed": getattr(args, "seed", None) or ""}
    )


def _cmd_images_build(args: argparse.Namespace) -> int:
    majors = _majors(args.pg)
    ext = _kit_config(args, ",".join(f"pg{m}" for m in majors)).extension
    for major in majors:
        t0 = time.monotonic()
        img = images.build_extension(major, ext, args.base)
        state = "built" if img.built else "cached"
        print(f"pg{major}\t{img.tag}\t{state}\t{time.monotonic() - t0:.1f}s")
    return 0


def _cmd_run(args: argparse.Namespace, pytest_args: list[str]) -> int:
    import pytest

    from conformance.paths import suite_dir

    kit = _kit_config(args, args.target)  # options and profile validated before any server starts
    for target in kit.targets:  # inputs built (or found cached) before any test: bad input is exit 2
        if target != "local":
            images.build_extension(int(target.removeprefix("pg")), kit.extension, kit.base)
    run_dir = Path(args.reports) / f"{time.strftime('%Y%m%d-%H%M%S')}-{engine.RUN_ID}"
    run_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(suite_dir()),
        "-p",
        "no:cacheprovider",
        f"--rootdir={suite_dir()}",
        f"--bgwc-target={args.target}",
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
    values = {**_input_values(args), "seed": args.seed or ""}
    argv += [f"--bgwc-{k.replace('_', '-')}={v}" for k, v in values.items() if v]
    code = int(pytest.main([*argv, *pytest_args]))
    results_file = run_dir / "results.json"
    if not results_file.is_file():
        raise KitError(f"the run wrote no results (pytest exit {code}); see the output above")
    from conformance import report

    results = json.loads(results_file.read_text())
    index = run_dir / "index.html"
    index.write_text(report.render_run(results))
    print(report.terminal_summary(results, index, color=sys.stdout.isatty() and "NO_COLOR" not in os.environ))
    if code not in (0, 1):  # the harness broke (usage, internal error, interrupted, no tests)
        return code
    if report.verdict(results, report.load_contract()) or args.report_only:
        return 0
    return 1


def _cmd_report(args: argparse.Namespace) -> int:
    from conformance import report

    paths = [Path(p) for p in args.paths]
    files = report.find_results(paths)
    if not files:
        raise KitError(f"no results.json under {', '.join(args.paths)}")
    loaded = [(f, json.loads(f.read_text())) for f in files]
    if args.report_command == "render":
        for f, res in loaded:
            (f.parent / "index.html").write_text(report.render_run(res))
            print(f.parent / "index.html")
        return 0
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    mutants = [run for p in paths if p.is_dir() for run in report.latest_mutants(p)]
    out.write_text(report.render_matrix(loaded, out_dir=out.parent, mutants=mutants))
    print(f"{out}: {len(loaded)} run(s)")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from conformance.bench import measure
    from conformance.plugin import make_target

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

    majors = _majors(args.pg)
    mutants = mutation.load_mutants(args.only.split(",") if args.only else None)
    ok = True
    for major in majors:
        out_dir = Path(args.reports) / f"mutants-{time.strftime('%Y%m%d-%H%M%S')}-pg{major}"
        t0 = time.monotonic()
        results = mutation.run_all(mutants, major, out_dir, args.parallel)
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
    parser = argparse.ArgumentParser(prog="bgw-conformance", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    img = sub.add_parser("images", help="build server images")
    img_sub = img.add_subparsers(dest="images_command", required=True)
    build = img_sub.add_parser("build", help="build (or reuse) one image per major")
    build.add_argument("--pg", default="13,15,17,18", help="majors, comma-separated")
    _extension_args(build)

    run = sub.add_parser("run", help="run the conformance suite and write a report")
    run.add_argument("--target", default="pg17", help=OPTIONS["target"][1])
    run.add_argument("--reports", default="reports", help="directory for run reports")
    run.add_argument("--seed", default=None, help=OPTIONS["seed"][1])
    run.add_argument(
        "--report-only",
        action="store_true",
        help="write the reports and verdicts but exit 0 when the extension fails clauses "
        "(for surveying others' extensions; 2 still means the harness broke)",
    )
    _extension_args(run)

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

    sub.add_parser("clean", help="remove containers left by dead runs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pytest_args: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, pytest_args = argv[:i], argv[i + 1 :]
    args = build_parser().parse_args(argv)
    try:
        if args.command == "images":
            return _cmd_images_build(args)
        if args.command == "run":
            return _cmd_run(args, pytest_args)
        if args.command == "bench":
            return _cmd_bench(args)
        if args.command == "mutants":
            return _cmd_mutants(args)
        if args.command == "report":
            return _cmd_report(args)
        return _cmd_clean(args)
    except KitError as exc:
        print(f"bgw-conformance: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bgw-conformance: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
