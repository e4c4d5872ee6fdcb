"""Command-line flags every study script shares: where results go, where it runs, what it may use.

    parser = argparse.ArgumentParser(...)
    add_run_flags(parser)
    ...
    result = run(build_spec, args, "my_study")   # None after a one-line bad-input error
"""
from __future__ import annotations

import argparse
import sys

from kdscale.study import Resources


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", default="kdscale_results",
                        help="results directory or URI (s3://... or a shared path on a cluster)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    parser.add_argument("--address", help="Ray cluster address ('auto' on a cluster's head node)")
    parser.add_argument("--cache", help="teacher and data cache (default $KDSCALE_CACHE or ~/.cache/kdscale)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--gpus-per-trial", type=float, default=0.0, help="fractions share a GPU")
    parser.add_argument("--max-concurrent", type=int, help="trials at a time (default: what Ray holds)")
    parser.add_argument("--pack-size", type=int, help="seeds trained together in one trial (default: all "
                        "seeds of small models; 1 = off)")
    parser.add_argument("--no-analysis", action="store_true", help="skip the fits and figures")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Ray's and MLflow's own console output")


def resources(args: argparse.Namespace) -> Resources:
    return Resources(cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                     max_concurrent=args.max_concurrent, pack_size=args.pack_size)


def run(build_spec, args: argparse.Namespace, prog: str):
    """Build the study from the flags and run it (Ray is imported only after the cheap checks).

    Returns the StudyResult, or None after printing a bad-input line `prog: error: ...` to stderr
    (the caller exits with status 2).
    """
    from kdscale.errors import SpecError

    try:
        spec = build_spec(args)
        from kdscale.engine import run_study

        return run_study(spec, storage=args.storage, tracking_uri=args.tracking_uri, address=args.address,
                         cache=args.cache, verbose=args.verbose)
    except SpecError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return None


def analyse(result, print_headline: bool = True):
    """The analysis report of a finished study, logged to its MLflow parent run; None if it failed."""
    from analysis import AnalysisError
    from analysis.report import write_report

    try:
        report = write_report(result.store.uri, tracking_uri=result.tracking_uri, run_id=result.parent_run_id)
    except AnalysisError as error:
        print(f"analysis: {error}", file=sys.stderr)
        return None
    if print_headline:
        print()
        print(report.headline)
    return report
