"""The gpt family (kdscale/models/gpt.py): its size and cost by hand, causality, and a GPT student
trained in a vmapped pack against the same student trained alone."""
import pytest
import torch
import torch.nn.functional as F

from kdscale import models
from kdscale.config import ModelSpec, ObjectiveSpec, RecipeSpec
from kdscale.errors import SpecError
from kdscale.train import TrainData, forward_flops, packable, train, train_students


def build(text, vocab=11, classes=11, length=16, seed=0):
    torch.manual_seed(seed)
    return models.build(ModelSpec.parse(text), (length,), classes, vocab_size=vocab)


@pytest.mark.parametrize("text, vocab, classes, length, depth, context",
                         [("gpt:width=32", 11, 11, 16, 2, 16), ("gpt:width=24,depth=3,heads=6,context=40", 7, 5, 20, 3, 40)])
def test_parameters_and_flops_by_hand(text, vocab, classes, length, depth, context):
    model = build(text, vocab, classes, length)
    w = model.feature_dim
    per_block = 4 * w + (3 * w * w + 3 * w) + (w * w + w) + (8 * w * w + 5 * w)
    assert per_block == 12 * w * w + 13 * w
    assert models.count_params(model) == vocab * w + context * w + depth * per_block + 2 * w + w * classes + classes
    # FLOPs of one sequence of T tokens (2 per multiply-add): the linear maps on every token, and per
    # block the two attention matmuls q k^T and (attention) v, T x T x w multiply-adds each
    T = length
    linear = 2 * T * (depth * 12 * w * w + w * classes)
    attention = depth * 2 * (2 * T * T * w)
    assert forward_flops(model, torch.zeros(1, T, dtype=torch.int64)) == linear + attention


def test_logits_at_t_do_not_depend_on_later_tokens():
    model = build("gpt:width=16,depth=2,heads=2").eval()
    x = torch.randint(0, 11, (4, 16), generator=torch.Generator().manual_seed(1))
    changed = x.clone()
    changed[:, 9:] = (changed[:, 9:] + 1 + torch.randint(0, 9, (4, 7))) % 11  # every token from t = 9 differs
    with torch.no_grad():
        before, after = model(x), model(changed)
    assert torch.equal(before[:, :9], after[:, :9])
    assert not torch.allclose(before[:, 9:], after[:, 9:])  # and later logits do see them
    assert model(x[:, :5]).shape == (4, 5, 11)  # shorter sequences are prefixes
    assert torch.allclose(model(x[:, :5]), before[:, :5], atol=1e-6)


def test_bad_options_and_long_inputs_are_one_line():
    with pytest.raises(SpecError, match="heads=3 is invalid for gpt of width 16"):
        build("gpt:width=16,heads=3")
    with pytest.raises(SpecError, match="context=8 is invalid: the data's sequences have 16 tokens"):
        build("gpt:width=16,context=8")
    with pytest.raises(SpecError, match="depth=0 is invalid"):
        build("gpt:width=16,depth=0")
    with pytest.raises(SpecError, match="'gpt' is invalid for real-valued inputs"):
        models.build(ModelSpec.parse("gpt:width=16"), (16,), 4)
    with pytest.raises(ValueError, match="longer than the model's context"):
        build("gpt:width=16")(torch.zeros(1, 17, dtype=torch.int64))


def next_token_data(seed, n=24, n_test=10, T=8, vocab=6):
    """A next-token task: x_{t+1} = x_t + 1 mod vocab, with random starts; teacher logits one-hot x3."""
    def sequences(count, generator):
        start = torch.randint(0, vocab, (count, 1), generator=generator)
        return (start + torch.arange(T + 1)) % vocab
    train_seq, test_seq = sequences(n, torch.Generator().manual_seed(seed)), sequences(n_test, torch.Generator().manual_seed(99))
    x, y, x_test, y_test = train_seq[:, :-1], train_seq[:, 1:], test_seq[:, :-1], test_seq[:, 1:]
    return TrainData(x, y, x_test, y_test, 3 * F.one_hot(y, vocab).float(), 3 * F.one_hot(y_test, vocab).float())


@pytest.mark.slow  # about 20 s here, most of it vmap's first trace
def test_a_pack_of_gpt_students_matches_them_alone():
    spec, recipe = ModelSpec.parse("gpt:width=16,depth=2,heads=2"), RecipeSpec(optimizer="adamw", lr=3e-3, steps=12,
                                                                              batch_size=8, weight_decay=0.01)
    assert packable(build("gpt:width=16,heads=2", vocab=6, classes=6, length=8))
    objectives_, seeds = [ObjectiveSpec("lt"), ObjectiveSpec("kd", tau=2.0), ObjectiveSpec("lt")], [0, 1, 2]
    datas = [next_token_data(s) for s in seeds]
    packed = train_students(spec, objectives_, recipe, seeds, datas, 6, vocab_size=6)
    for objective, seed, data, result in zip(objectives_, seeds, datas, packed):
        alone = train(spec, objective, recipe, seed, data, 6, vocab_size=6)
        assert result.status == alone.status == "ok" and result.test_probs.shape == (10, 8, 6)
        assert result.metrics["pack_size"] == 3
        assert torch.allclose(result.test_probs, alone.test_probs, atol=1e-4)
        assert result.metrics["test_loss"] == pytest.approx(alone.metrics["test_loss"], abs=1e-5)
        # Argmax counts: after 12 steps the logits are near ties, and a pack sums in another order, so
        # one token may flip (the suite saw it); within one token of 10 x 8 test / 24 x 8 train tokens.
        for key, tokens in (("test_acc", 80), ("fidelity_test", 80), ("train_acc", 192), ("fidelity_train", 192)):
            assert result.metrics[key] == pytest.approx(alone.metrics[key], abs=1.001 / tokens), key
        for name, value in alone.model.state_dict().items():
            assert torch.allclose(result.model.state_dict()[name], value, atol=1e-4), name
