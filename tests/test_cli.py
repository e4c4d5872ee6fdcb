import json
import subprocess
import sys

import pytest

from kdscale import cli
from kdscale.data import DATASETS

FAST = ["--dataset", "digits", "--n-teacher", "400", "--teacher", "mlp:width=32", "--student", "mlp:width=16",
        "--teacher-steps", "150", "--steps", "60", "--device", "cpu"]


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "cifar7"], f"dataset: unknown 'cifar7'; known: {', '.join(DATASETS.names())}"),
    (["--student", "transformer:width=8"], "student: model.family: unknown 'transformer'"),
    (["--objective", "distill"], "objective.name='distill' is invalid: must be one of lt, kd, ls, hard, l2"),
    (["--kappa", "0"], "trial.kappa=0.0 is invalid"),
    (["--kappa", "-1"], "trial.kappa=-1.0 is invalid"),
    (["--dataset", "digits", "--n-teacher", "500", "--kappa", "5"], "maximum kappa is 2.874"),
    (["--tau", "0"], "objective.tau=0.0 is invalid"),
    (["--alpha", "1.5"], "objective.alpha=1.5 is invalid"),
    (["--student", "mlp:width=16,num_classes=5"], "student: model.options.num_classes=5 is invalid"),
    (["--steps", "10", "--epochs", "3"], "--steps and --epochs are exclusive"),
])
def test_bad_input_is_one_line_and_exit_2_before_training(argv, message, capsys, monkeypatch):
    import kdscale.teacher

    monkeypatch.setattr(kdscale.teacher, "train", lambda *a, **k: pytest.fail("trained on bad input"))
    assert cli.main(["trial", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kdscale: error: ") and message in err and "\n" not in err


@pytest.mark.slow  # trains a teacher on MNIST-1D
def test_trial_prints_json_row_and_a_readable_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "kdscale.cli", "trial", *FAST, "--kappa", "0.5",
                           "--objective", "kd", "--tau", "4", "--cache", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    def refuse(constant):  # strict JSON: NaN and Infinity are not JSON, `python -m json.tool` rejects them
        raise ValueError(f"non-standard JSON constant {constant}")
    row = json.loads(done.stdout, parse_constant=refuse)
    assert row["status"] == "ok" and row["n_train"] == 200 and row["objective"] == "kd" and row["tau"] == 4.0
    assert row["epsilon"] is None and row["test_ppl"] is None  # kd reads no epsilon; no perplexity here
    assert subprocess.run([sys.executable, "-m", "json.tool"], input=done.stdout, capture_output=True,
                          text=True).returncode == 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("mlp-32>mlp-16 kd tau=4 kappa=0.5 seed=0: test_acc ") and row["trial_id"] in last


def test_augmenting_data_that_are_not_images_is_refused(capsys):
    assert cli.main(["trial", "--augment", "crop-flip"]) == 2  # mnist1d samples are (1, 40)
    assert "recipe.augment='crop-flip' is invalid for mnist1d" in capsys.readouterr().err


@pytest.mark.slow  # trains a teacher on MNIST-1D
def test_augmented_trial_on_images_runs(tmp_path):
    done = subprocess.run([sys.executable, "-m", "kdscale.cli", "trial", *FAST, "--teacher", "cnn2d:width=4",
                           "--student", "cnn2d:width=4", "--augment", "crop-flip-rotate", "--kappa", "0.5",
                           "--cache", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    assert row["status"] == "ok" and row["flops"] > 0


@pytest.mark.slow  # over 3 s: the fast tier stays under a minute
def test_kdscale_analyze_logs_the_report_to_a_real_mlflow_run(tmp_path, capsys):
    """analysis writes the report without mlflow; `kdscale analyze --tracking-uri --run-id` attaches
    every file it wrote to the run, under analysis/."""
    import mlflow

    from analysis.synthetic import SyntheticPair, synthetic_study

    results = tmp_path / "results"
    synthetic_study(results, pairs=(SyntheticPair("mlp-8", 1000),), kappas=(0.1, 1.0), n_seeds=2)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    run_id = client.create_run(client.create_experiment("x", artifact_location=str(tmp_path / "art"))).info.run_id
    out = tmp_path / "out"
    assert cli.main(["analyze", str(results), "--out", str(out), "--n-boot", "10", "--no-figures",
                     "--tracking-uri", uri, "--run-id", run_id]) == 0
    logged = {f.path for f in client.list_artifacts(run_id, "analysis")}
    assert {"analysis/report.md", "analysis/crossover.csv"} <= logged
    assert logged == {f"analysis/{p.name}" for p in out.iterdir()}
    with pytest.raises(SystemExit) as refused:
        cli.main(["analyze", str(results), "--tracking-uri", uri])
    assert refused.value.code == 2 and "go together" in capsys.readouterr().err
