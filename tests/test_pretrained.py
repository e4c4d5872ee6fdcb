"""Pretrained teachers (kdscale/pretrained.py): the file enters the id by content, a bad file is one
line before compute, the head fit is logistic regression (against scikit-learn and a separable
case), and the backbone leaves the fit bit for bit as the file holds it."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from kdscale import models, pretrained
from kdscale.config import DataSpec, ModelSpec, RecipeSpec, TeacherSpec, from_dict, to_dict
from kdscale.errors import SpecError
from kdscale.study import StudySpec, check_study

MNIST1D = DataSpec("mnist1d", n_teacher=200)
CNN = ModelSpec("cnn1d", 4)


def weights_file(path, width=4, seed=0, classes=10):
    torch.manual_seed(seed)
    model = models.build(ModelSpec("cnn1d", width), (1, 40), classes)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return str(path)


def test_the_id_follows_the_files_content_not_its_path(tmp_path):
    a = weights_file(tmp_path / "a.safetensors")
    b = tmp_path / "moved.safetensors"
    b.write_bytes((tmp_path / "a.safetensors").read_bytes())
    spec_a, spec_b = (TeacherSpec(MNIST1D, CNN, RecipeSpec(), weights=p) for p in (a, str(b)))
    assert spec_a.id == spec_b.id and len(spec_a.weights_sha256) == 64
    changed = TeacherSpec(MNIST1D, CNN, RecipeSpec(), weights=weights_file(b, seed=1))
    assert changed.id != spec_a.id  # same path as spec_b, other content
    plain = TeacherSpec(MNIST1D, CNN, RecipeSpec())
    assert spec_a.id != plain.id and spec_a.recipe == RecipeSpec()  # the recipe is not read: reset
    assert TeacherSpec(MNIST1D, CNN, RecipeSpec(lr=0.3), weights=a).id == spec_a.id
    # a spec shipped as a dict keeps its hash without the file being read again
    shipped = from_dict(TeacherSpec, to_dict(spec_a))
    assert shipped.id == spec_a.id and shipped.weights_sha256 == spec_a.weights_sha256


def test_studies_put_the_file_in_every_teacher_and_trial(tmp_path):
    a = weights_file(tmp_path / "a.safetensors")
    grid = dict(name="t", data=MNIST1D, pairs=((CNN, CNN),), kappas=(0.5,), taus=(4.0,), recipe_policy="fixed")
    with_file, without = StudySpec(**grid, teacher_weights=a), StudySpec(**grid)
    assert [t.weights_sha256 for t in with_file.teachers()] == [TeacherSpec(MNIST1D, CNN, RecipeSpec(), weights=a).weights_sha256]
    assert not {t.id for t in with_file.trials()} & {t.id for t in without.trials()}


@pytest.mark.parametrize("content, name, message", [
    (None, "missing.safetensors", "cannot be read"),
    (b"not a tensor file", "bad.safetensors", "cannot be read as safetensors"),
    (b"not a pickle", "bad.pth", "cannot be read as a PyTorch state_dict"),
    ("width8", "wide.safetensors", "has other shapes: body.0.weight (8, 1, 5)"),
    ("dict", "notstate.pth", "holds no state_dict"),
])
def test_a_bad_file_is_one_line_naming_it(tmp_path, content, name, message):
    path = tmp_path / name
    if content == "width8":
        weights_file(path, width=8)
    elif content == "dict":
        torch.save({"epoch": 3}, path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(SpecError) as error:
        spec = StudySpec(name="t", data=MNIST1D, pairs=((CNN, CNN),), kappas=(0.5,), taus=(4.0,),
                         recipe_policy="fixed", teacher_weights=str(path))
        check_study(spec)
    text = str(error.value)
    assert message in text and str(path) in text and "\n" not in text


def test_a_torch_state_dict_with_another_head_loads(tmp_path):
    """A .pth as torch.save writes it (weights_only reading), with a 3-class head the target refits."""
    path = tmp_path / "three.pth"
    torch.manual_seed(0)
    source = models.build(CNN, (1, 40), 3)
    torch.save(source.state_dict(), path)
    model = pretrained.build(TeacherSpec(MNIST1D, CNN, RecipeSpec(), weights=str(path)))
    assert model.head.out_features == 10 and torch.equal(model.body[0].weight, source.body[0].weight)


@pytest.mark.slow  # importing scikit-learn alone took 2.5 s here; the separable case below stays fast
def test_the_head_fit_is_scikit_learns_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4)) + np.repeat(np.eye(3, 4) * 1.5, 40, axis=0)  # overlapping classes
    y = np.repeat(np.arange(3), 40)
    wd = 0.05
    weight, bias = pretrained.fit_head(torch.as_tensor(x), torch.as_tensor(y), 3, wd)
    reference = LogisticRegression(C=1 / (len(x) * wd), tol=1e-12, max_iter=10_000).fit(x, y)
    assert np.allclose(weight.numpy(), reference.coef_, atol=1e-4)
    # softmax ignores a constant added to every bias: compare them centred
    assert np.allclose(bias.numpy() - bias.numpy().mean(), reference.intercept_ - reference.intercept_.mean(), atol=1e-4)


def test_separable_features_fit_every_training_sample_and_fold_back_exactly():
    rng = np.random.default_rng(1)
    centres = rng.normal(scale=10, size=(5, 8))
    y = np.repeat(np.arange(5), 30)
    x = torch.as_tensor(centres[y] * 3 + rng.normal(size=(150, 8)) + 50)  # far apart, off centre, large scale
    weight, bias = pretrained.fit_standardised(x, torch.as_tensor(y), 5, 1e-3)
    assert ((x @ weight.T + bias).argmax(1).numpy() == y).all()
    z = (x - x.mean(0)) / x.std(0)
    w_z, b_z = pretrained.fit_head(z, torch.as_tensor(y), 5, 1e-3)
    assert torch.allclose(x @ weight.T + bias, z @ w_z.T + b_z, atol=1e-8)


def test_the_backbone_leaves_the_head_fit_as_the_file_holds_it(tmp_path):
    """fit_teacher on made-up target samples: every backbone tensor equal to the file's, the head
    changed and fitting its samples; meta-data says which weight decay won."""
    path = weights_file(tmp_path / "a.safetensors", seed=3)
    spec = TeacherSpec(MNIST1D, CNN, RecipeSpec(), weights=path)
    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(10), 20)
    x = (rng.normal(size=(200, 1, 40)) + np.sin(np.arange(40) * (y[:, None, None] + 1) / 6)).astype(np.float32)
    loaded = SimpleNamespace(x_pool=x, y_pool=y, info=SimpleNamespace(num_classes=10))
    model, metrics = pretrained.fit_teacher(spec, loaded, torch.device("cpu"))
    saved, fitted = load_file(path), model.state_dict()
    assert all(torch.equal(fitted[k], v) for k, v in saved.items() if not k.startswith("head."))
    assert not torch.equal(fitted["head.weight"], saved["head.weight"])
    with torch.no_grad():
        train_acc = (model(torch.as_tensor(x)).argmax(1).numpy() == y).mean()
    assert train_acc > 0.5 and metrics["head_fit"]["weight_decay"] in pretrained.WEIGHT_DECAYS
    json.dumps(metrics["head_fit"])  # goes into meta.json
    (tmp_path / "a.safetensors").write_bytes(b"changed")
    with pytest.raises(SpecError, match="changed since its spec was made"):
        pretrained.fit_teacher(spec, loaded, torch.device("cpu"))


def test_kdscale_trial_refuses_a_backbone_that_does_not_fit_in_one_line(tmp_path, capsys):
    from kdscale import cli

    path = weights_file(tmp_path / "w8.safetensors", width=8)
    code = cli.main(["trial", "--teacher", "cnn1d:width=4", "--student", "cnn1d:width=4", "--teacher-weights", path])
    err = capsys.readouterr().err
    assert code == 2 and "has other shapes: body.0.weight (8, 1, 5)" in err and len(err.strip().splitlines()) == 1
