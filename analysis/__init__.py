"""analysis: scaling relations of knowledge distillation from a kdscale results table.

Reads DESIGN's results schema (results.parquet and predictions/) and returns numbers, tables and
figures: paired increments PI and PG, the crossover kappa* with bootstrap CIs, kappa* against the
student/teacher size ratio, the train-test fidelity gap against omega * kappa^-beta, and the
bias-variance decomposition over seeds. It imports no torch, Ray or mlflow (MLflow logging goes
through kdscale.tracking, imported only when asked to log).

    import analysis
    table = analysis.load_results("results/model_size")
    result = analysis.report.write_report("results/model_size")   # report.md, CSVs, figures
    print(result.headline)
"""
from analysis.table import AnalysisError, load_results, prepare

__all__ = ["AnalysisError", "load_results", "prepare", "write_report", "main", "report"]


def __getattr__(name):
    # The report pulls in scipy and matplotlib; load it only when it is used. import_module, not
    # `from analysis import report`, which would ask this very function for `report` again.
    import importlib

    if name in ("write_report", "report"):
        report = importlib.import_module("analysis.report")
        return report.write_report if name == "write_report" else report
    if name == "main":
        return importlib.import_module("analysis.cli").main
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
