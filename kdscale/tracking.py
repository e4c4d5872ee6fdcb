"""MLflow tracking: the only module of kdscale that imports mlflow.

Workers never talk to MLflow; the driver logs everything from one process (several processes
creating one SQLite database at once broke its schema migration, see DESIGN).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable


def log_artifacts(tracking_uri: str, run_id: str, paths: Iterable[str | Path],
                  artifact_path: str | None = None) -> None:
    """Attach files to an existing run (e.g. the analysis report to a study's parent run)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    for path in paths:
        client.log_artifact(run_id, str(path), artifact_path)
