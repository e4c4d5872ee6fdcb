"""Recipe searches (kdscale.search) in MLflow: one run each in the experiment `kdscale-search`, logged
once (looked up by search id), with its candidates as nested runs."""
from __future__ import annotations

import time
from typing import Any

from kdscale.tracking.client import ROLE, STUDY, log_batched, metrics_of, open_experiment, resolve_uri
from kdscale.search import trained_with

SEARCH_EXPERIMENT, SEARCH_ID = "kdscale-search", "kdscale.search_id"


def log_search(tracking_uri: str | None, result: dict[str, Any], study: str | None = None,
               verbose: bool = False) -> str:
    """One recipe search (kdscale.search) as a run of the experiment `kdscale-search`, once: the cell
    and the chosen recipe as params, its validation score as metrics (and every candidate's at step =
    its index, to chart), and each candidate as a nested run with its lr, budget and scores."""
    client, experiment_id = open_experiment(tracking_uri, SEARCH_EXPERIMENT, verbose)
    found = client.search_runs([experiment_id], f"tags.`{SEARCH_ID}` = '{result['id']}'", max_results=1)
    if found:
        return found[0].info.run_id
    spec = result["spec"]
    run = client.create_run(experiment_id, run_name=result["label"], tags={
        ROLE: "search", SEARCH_ID: result["id"], **({STUDY: study} if study else {})})
    objective, (lr, steps) = spec["objective"], trained_with(result)
    params = {"student": _model_label(spec["student"]), "objective": objective["name"], "kappa": spec["kappa"],
              "teacher": _model_label(spec["teacher"]["model"]) if spec.get("teacher") else "none",
              "n_fit": result["n_fit"], "n_val": result["n_val"], "best.lr": result["best"]["lr"],
              "best.steps": result["best"]["steps"], "chosen.lr": lr, "chosen.steps": steps,
              "space.lrs": spec["space"]["lrs"],
              "space.budgets": spec["space"]["budgets"], "space.seeds": spec["space"]["seeds"]}
    if objective["name"] == "kd":
        params["objective.tau"] = objective["tau"]
    now = int(time.time() * 1000)
    metrics = metrics_of({"best_val_acc": result["best"]["val_acc"], "search_wall_s": result["wall_s"]}, 0, now)
    for index, candidate in enumerate(result["candidates"]):
        metrics += metrics_of({"candidate_" + k: candidate[k] for k in ("lr", "steps", "val_acc", "val_loss")},
                            index, now)
    log_batched(client, run.info.run_id, {k: str(v) for k, v in params.items()}, metrics,
                tags={"warnings": "; ".join(result["warnings"])})
    for index, candidate in enumerate(result["candidates"]):  # every candidate as a nested run
        child = client.create_run(experiment_id, run_name=f"lr {candidate['lr']:g}, {candidate['steps']} steps", tags={
            ROLE: "search-candidate", SEARCH_ID: result["id"], "mlflow.parentRunId": run.info.run_id})
        log_batched(client, child.info.run_id, {"lr": str(candidate["lr"]), "steps": str(candidate["steps"]),
                                                "rung": str(candidate["rung"])},
                    metrics_of({k: candidate.get(k) for k in ("val_acc", "val_acc_min", "val_loss")}, 0, now))
        client.set_terminated(child.info.run_id, status="FINISHED")
    client.set_terminated(run.info.run_id, status="FINISHED")
    return run.info.run_id


def _model_label(model: dict[str, Any]) -> str:
    from kdscale.config import ModelSpec, from_dict

    return from_dict(ModelSpec, model).label


def search_runs(tracking_uri: str | None) -> list[dict[str, Any]]:
    """Every logged recipe search: run id, search id, status, chosen lr and steps (for checks and tests)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=resolve_uri(tracking_uri))
    experiment = client.get_experiment_by_name(SEARCH_EXPERIMENT)
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], f"tags.`{ROLE}` = 'search'", max_results=50000)
    return [{"run_id": r.info.run_id, "search_id": r.data.tags.get(SEARCH_ID), "status": r.info.status,
             "lr": float(r.data.params["chosen.lr"]), "steps": int(r.data.params["chosen.steps"]),
             "best_val_acc": r.data.metrics.get("best_val_acc")} for r in runs]
