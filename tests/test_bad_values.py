"""Values a user gives are checked like any other: an explicit 0, a negative count, nan or inf, a kappa
that would generate without bound, a cache path that is a file. Each is one line and exit 2 before
any compute (issue 15, items 2 and 9)."""
import pytest

from kdscale import cli
from tests.scripts import assert_refused, call_script


@pytest.mark.parametrize("argv, message", [
    (["--kappa", "nan"], "trial.kappa=nan is invalid: must be a finite number > 0"),
    (["--kappa", "inf"], "trial.kappa=inf is invalid: must be a finite number > 0"),
    (["--kappa", "1e9"], "kappa=1e+09 is invalid: it needs M=4,000,000,000,000 generated mnist1d samples; at most "
                         "1,000,000 are made, so with N=4000 the maximum kappa is 250"),
    (["--n-teacher", "0"], "data.n_teacher=0 is invalid"),
    (["--steps", "0"], "recipe.steps=0 is invalid"),
    (["--lr", "0"], "recipe.lr=0.0 is invalid: must be a finite number > 0"),
    (["--teacher-epochs", "0"], "recipe.epochs=0 is invalid"),
])
def test_trial_refuses_bad_values_in_one_line(argv, message, tmp_path, capsys, monkeypatch):
    import kdscale.teacher

    monkeypatch.setattr(kdscale.teacher, "train", lambda *a, **k: pytest.fail("trained on bad input"))
    assert cli.main(["trial", *argv, "--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"kdscale: error: {err.split('error: ', 1)[1]}" and message in err and "\n" not in err


def test_a_cache_that_is_a_file_is_one_line(tmp_path, capsys, monkeypatch):
    path = tmp_path / "not-a-directory"
    path.write_text("")
    monkeypatch.setenv("KDSCALE_CACHE", str(path))
    assert cli.main(["trial", "--kappa", "0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"kdscale: error: KDSCALE_CACHE={path} is not a directory: point it at a directory (or remove the file)"


def test_n_defaults_per_data_set():
    from kdscale.cli import build_parser, trial_spec_from_flags

    spec = trial_spec_from_flags(build_parser().parse_args(["trial", "--dataset", "digits", "--kappa", "1.5",
                                                            "--teacher", "mlp:width=8", "--student", "mlp:width=8"]))
    assert spec.data.n_teacher == 700 and spec.n_train == 1050  # digits holds 1,257: N = 4000 would not fit


@pytest.mark.slow  # about a second or more: the fast tier stays near a minute
@pytest.mark.parametrize("argv, message", [
    (["--seeds", "-1"], "--seeds -1 is invalid: must be an integer >= 1"),
    (["--n-teacher", "0"], "data.n_teacher=0 is invalid"),
    (["--recipe", "fixed", "--student-steps", "0"], "recipe.steps=0 is invalid"),
    (["--recipe", "fixed", "--student-lr", "0"], "recipe.lr=0.0 is invalid"),
    (["--teacher-epochs", "0"], "recipe.epochs=0 is invalid"),
    (["--student-lr", "0.1"], "--recipe fair chooses the students' lr and budget per cell: drop --student-lr"),
    (["--kappas", "1e9"], "the maximum kappa is 250"),
    (["--vit", "--pairs", "cnn1d:width=8>vit:width=8"], "--vit and --pairs are exclusive: --vit chooses the pairs"),
])
def test_model_size_refuses_bad_values_in_one_line(argv, message, tmp_path):
    assert_refused(call_script("model_size", tmp_path, *argv), message, tmp_path)
