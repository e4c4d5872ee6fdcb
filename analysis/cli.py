"""`python -m analysis RESULTS_DIR` (and `kdscale analyze`): write the report, print the headline.

`kdscale analyze` takes the same arguments and, with `--tracking-uri URI --run-id ID`, also logs the
report to that MLflow run (analysis itself never imports mlflow).

Bad input is one line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys

from analysis.table import METRICS, AnalysisError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analysis",
        description="Fit the knowledge-distillation scaling relations of a study's results table "
                    "(RESULTS_DIR/results.parquet) and write report.md with tables and figures.")
    parser.add_argument("results_dir", metavar="RESULTS_DIR", help="directory holding results.parquet")
    parser.add_argument("--out", default=None, help="output directory (default: RESULTS_DIR/analysis)")
    parser.add_argument("--metric", default="test_acc", choices=sorted(METRICS),
                        help="performance measure R (default: test_acc; test_error = 1 - test_acc)")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap replicates for kappa* (default 2000)")
    parser.add_argument("--ci", type=float, default=0.95, help="confidence level (default 0.95)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    parser.add_argument("--no-figures", action="store_true", help="skip the figures")
    return parser


def run(args: argparse.Namespace):
    """The report of parsed arguments (ReportResult), or None after a one-line error on stderr."""
    from analysis.report import write_report  # matplotlib and statsmodels load only when needed

    try:
        return write_report(args.results_dir, out_dir=args.out, metric=args.metric, n_boot=args.n_boot,
                            ci=args.ci, seed=args.seed, figures=not args.no_figures)
    except AnalysisError as exc:
        print(f"analysis: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    result = run(build_parser().parse_args(argv))
    if result is None:
        return 2
    print(result.headline)
    return 0
