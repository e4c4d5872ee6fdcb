"""bench/underfit_check.py: the longer search runs in two halves of its learning rates, and the
recipe it trains is the one a single search over all of them would have given."""
from kdscale.search import SearchSpace, trained_with
from tests.scripts import load_script


def half(module, lrs, scores):
    from kdscale.config import to_dict

    spec = module._search("cnn1d:width=4", 0.5, SearchSpace(lrs=lrs, budgets=(8000,), max_epochs=None))
    candidates = [{"lr": lr, "steps": 8000, "rung": 0, "val_acc": s, "val_acc_min": s, "val_loss": 1.0 - s,
                   "diverged": 0} for lr, s in zip(lrs, scores)]
    return {"spec": to_dict(spec), "n_fit": 1600, "n_val": 400, "candidates": candidates, "best": candidates[0]}


def test_the_two_halves_choose_as_one_search_would():
    module = load_script("underfit_check", "bench")
    lrs = SearchSpace().lrs
    scores = [0.60, 0.70, 0.66, 0.50, 0.62, 0.40]  # 0.02 wins; 0.04 is outside one standard error (0.023)
    halves = [half(module, lrs[:3], scores[:3]), half(module, lrs[3:], scores[3:])]
    merged = module.merged_recipe("cnn1d:width=4", 0.5, halves)
    whole = half(module, lrs, scores)
    assert (merged["lr"], merged["steps"]) == trained_with(whole) == (0.01, 8000)  # half of 0.02, at most 8000
    # the second half's winner wins when it scores higher
    halves[1]["candidates"][1]["val_acc_min"] = 0.9
    assert module.merged_recipe("cnn1d:width=4", 0.5, halves)["lr"] == 0.08
