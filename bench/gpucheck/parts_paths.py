"""Part 7: every path of the trainer on the device, each pack against its students trained alone.

tests/test_packed.py and its kin check on the CPU that a pack equals its students trained alone; this
part runs the same comparison on the device for each path the trainer takes there: batch norm,
ResNet-18 (a student alone in channels_last on a GPU, then a pack given the same data), a ViT, kd
with augmentation (the teacher on every augmented batch), students of different learning rates
(stacked SGD), bf16 autocast, students scored on their own test sets (a recipe search's
validation splits), and the token families (GPT, diagonal and fixed-point RNNs). Each trains 12 steps
at lr 0.02: longer, batch norm of these tiny models amplifies float-order differences (on the CPU a
ResNet-18 of width 4 after 30 steps at lr 0.05 differed packed and alone by 0.46 in a probability,
at 12 steps by 3e-7), and the comparison would measure chaos, not the path. TF32 is off in this
part: with cuDNN's default TF32 convolutions that ResNet-18 came out 3.1e-2 apart on an H200, with
TF32 off 2e-7. A case passes when the pack's test probabilities are within `tol` of the students'
alone: 5e-4, the CPU tests' loosest (tests/test_packed.py), and 5e-3 under bf16; a case that raises
is a failure with its error, as part 6's channels_last defect was on an H200.
"""
from __future__ import annotations

import traceback

from .common import NUM_CLASSES, parse

# name, model, data kind, objectives of the pack's students, recipe fields
CASES = (
    ("cnn2d with batch norm, lt", "cnn2d:width=8,batch_norm=true", "image", ("lt", "lt"), {}),
    ("resnet18 alone, then packed on the same data", "resnet18:width=4", "image", ("lt", "lt"), {}),
    ("vit, kd", "vit:width=16,depth=1,heads=2,patch=4", "image", ("kd", "kd"), {}),
    ("cnn2d kd with crop-flip augmentation", "cnn2d:width=8", "image", ("kd", "kd"), {"augment": "crop-flip"}),
    ("cnn1d lt and kd at learning rates 0.02 and 0.05", "cnn1d:width=8", "vector", ("lt", "kd"), {"lrs": (0.02, 0.05)}),
    ("cnn1d kd under bf16 autocast", "cnn1d:width=8", "vector", ("kd", "kd"), {"precision": "bf16"}),
    ("mlp on its own test sets (a search's validation splits)", "mlp:width=16", "own", ("lt", "lt"), {}),
    ("gpt tokens, lt and kd", "gpt:width=16,depth=2,heads=2", "tokens", ("lt", "kd"),
     {"optimizer": "adamw", "lr": 3e-3}),
    ("diagrnn tokens, lt", "diagrnn:width=8", "tokens", ("lt", "lt"), {}),
    ("fprnn tokens, kd", "fprnn:width=8", "tokens", ("kd", "kd"), {}),
)
VOCAB, LENGTH = 6, 8


def _data(kind: str, seed: int, device, teacher=None):
    """One student's TrainData of `kind` on `device` (random inputs; labels and teacher logits from a
    fixed random map, so there is something to learn), with `teacher` as its teacher model if given."""
    import torch
    import torch.nn.functional as F

    from kdscale.train import TrainData

    gen = torch.Generator().manual_seed(100 + seed)
    test_gen = torch.Generator().manual_seed(99 + (seed if kind == "own" else 0))  # own: a test set each
    if kind == "tokens":
        def sequences(count, generator):
            return (torch.randint(0, VOCAB, (count, 1), generator=generator) + torch.arange(LENGTH + 1)) % VOCAB
        train_seq, test_seq = sequences(48, gen), sequences(20, test_gen)
        x, y, x_test, y_test = train_seq[:, :-1], train_seq[:, 1:], test_seq[:, :-1], test_seq[:, 1:]
        logits, test_logits = 3 * F.one_hot(y, VOCAB).float(), 3 * F.one_hot(y_test, VOCAB).float()
    else:
        shape = (3, 16, 16) if kind == "image" else (1, 40)
        x, x_test = torch.randn(96, *shape, generator=gen), torch.randn(64, *shape, generator=test_gen)
        w = torch.randn(x[0].numel(), NUM_CLASSES, generator=torch.Generator().manual_seed(7))
        logits, test_logits = 3 * x.flatten(1) @ w, 3 * x_test.flatten(1) @ w
        y, y_test = logits.argmax(1), test_logits.argmax(1)
    to = (lambda t: t.to(device))
    return TrainData(to(x), to(y), to(x_test), to(y_test), to(logits), to(test_logits), teacher)


def _case(ck, name: str, model: str, kind: str, objectives: tuple[str, ...], fields: dict) -> dict:
    from dataclasses import replace

    from kdscale import models
    from kdscale.config import ObjectiveSpec, RecipeSpec
    from kdscale.train import train, train_students

    fields = dict(fields)
    lrs = fields.pop("lrs", None)
    base = RecipeSpec(**{"lr": 0.02, "steps": 12, "batch_size": 16, **fields})
    recipes = [replace(base, lr=lr) for lr in lrs] if lrs else [base] * len(objectives)
    objective = [ObjectiveSpec(o, tau=4.0) if o == "kd" else ObjectiveSpec(o) for o in objectives]
    seeds = list(range(len(objectives)))
    vocab = VOCAB if kind == "tokens" else None
    classes = VOCAB if kind == "tokens" else NUM_CLASSES
    teacher = None
    if base.augment != "none":  # kd with augmentation runs the teacher on each augmented batch
        teacher = models.build(parse("cnn2d:width=4"), (3, 16, 16), NUM_CLASSES).to(ck.device).eval()
    datas = [_data(kind, seed, ck.device, teacher) for seed in seeds]
    spec = parse(model)
    alone = [train(spec, o, r, s, d, classes, max_reports=1, vocab_size=vocab)
             for o, r, s, d in zip(objective, recipes, seeds, datas)]
    packed, seconds = ck.timed(lambda: train_students(spec, objective, recipes, seeds, datas, classes, max_reports=1,
                                                      vocab_size=vocab))
    tol = 5e-3 if base.precision == "bf16" else 5e-4
    diffs = [float((p.test_probs - a.test_probs).abs().max()) if p.test_probs is not None and a.test_probs is not None
             else float("inf") for p, a in zip(packed, alone)]
    acc = [(round(a.metrics["test_acc"], 4), round(p.metrics["test_acc"], 4)) for p, a in zip(packed, alone)]
    ok = all(d <= tol for d in diffs) and all(p.status == a.status == "ok" for p, a in zip(packed, alone))
    return {"case": name, "model": model, "ok": ok, "max_prob_diff": max(diffs), "tol": tol,
            "test_acc_alone_packed": acc, "pack_size": packed[0].metrics["pack_size"], "packed_s": round(seconds, 3)}


def part_paths(ck, fig: dict) -> None:
    """Part 7: each case of CASES, packed against alone on ck.device, in full fp32 (TF32 off: the
    default TF32 convolutions of cuDNN put a ResNet-18 of width 4 3e-2 apart on an H200, which says
    nothing of the path); a failing case keeps its error."""
    import torch

    rows: list[dict] = []
    fig["cases"] = rows
    fig["tf32"] = False
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        _run_cases(ck, fig, rows)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _run_cases(ck, fig: dict, rows: list[dict]) -> None:
    for name, model, kind, objectives, fields in CASES:
        ck.budget.check(1.0, f"paths: {name}")
        try:
            row = _case(ck, name, model, kind, objectives, fields)
        except Exception as error:  # one path's defect must not hide the others'
            row = {"case": name, "model": model, "ok": False, "error": f"{type(error).__name__}: {error}",
                   "where": traceback.format_exc().strip().splitlines()[-3:]}
        rows.append(row)
        how = (f"max |p_packed - p_alone| {row['max_prob_diff']:.1e} (tol {row['tol']:g}), test_acc alone/packed "
               f"{row['test_acc_alone_packed']}" if "error" not in row else row["error"])
        ck.rec.say(f"  {'ok  ' if row['ok'] else 'FAIL'} {name}: {how}")
    fig["passed"] = sum(r["ok"] for r in rows)
    fig["failed"] = [r["case"] for r in rows if not r["ok"]]
    ck.rec.say(f"  {fig['passed']} of {len(rows)} paths agree packed and alone")
    if fig["failed"]:  # the part's status says so: error, with the cases kept above
        raise RuntimeError(f"{len(fig['failed'])} of {len(rows)} paths disagree packed and alone: "
                           + "; ".join(fig["failed"]))
