"""MLflow tracking: the only package of kdscale that imports mlflow.

One experiment per study, one parent run, one nested run per trial. Workers never talk to MLflow;
the driver logs everything from one process (several processes creating one SQLite database at
once broke its schema migration, see DESIGN).

Ray's MLflowLoggerCallback keeps its trial-to-run map in memory and duplicated runs after a driver
kill, so kdscale keeps its own: each trial run carries the tag `kdscale.trial_id`, looked up before a
run is created. At start-up the study's trial runs left RUNNING by a killed driver are marked KILLED
(SIGKILL cannot be caught; this sweep is the only defence), and a trial whose row reached the
results store but whose run did not finish is logged again from the store. A driver that stops
(Ctrl-C, a fault) marks its open trial runs KILLED itself (`StudyTracker.close`).

The tracking URI is checked before anything starts (`check_uri`): its scheme, a server's reachability
(one request, 5 s) and a SQLite database's directory. With a `sqlite:` URI, artifacts go beside the
database (`<db dir>/mlartifacts/<experiment>`), never into the working directory's ./mlruns; every
experiment is of MLflow's kind "custom model development", so the UI opens on its runs table.
A failing MLflow call is one EnvironmentFault naming the URI.

    client.py    URIs, the client, experiments, batched logging
    study.py     StudyTracker (parent and trial runs), headline metrics, study_runs
    searches.py  recipe searches (experiment kdscale-search), search_runs
"""
from kdscale.tracking.client import (KIND, KIND_TAG, ROLE, STUDY, TRIAL_ID, budget_of, check_uri, flatten,
                                     log_batched, metrics_of, open_experiment, resolve_uri, sqlite_path)
from kdscale.tracking.searches import SEARCH_EXPERIMENT, SEARCH_ID, log_search, search_runs
from kdscale.tracking.study import StudyTracker, log_artifacts, log_headline, run_name, study_runs, trial_params

__all__ = ["KIND", "KIND_TAG", "ROLE", "STUDY", "TRIAL_ID", "budget_of", "check_uri", "flatten", "log_batched",
           "metrics_of", "open_experiment", "resolve_uri", "sqlite_path", "SEARCH_EXPERIMENT", "SEARCH_ID",
           "log_search", "search_runs", "StudyTracker", "log_artifacts", "log_headline", "run_name", "study_runs",
           "trial_params"]
