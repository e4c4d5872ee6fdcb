"""Running a search job: the searches of one (student, kappa), successive halving over one pack.

What a search looks at, how it ranks its candidates and what a cell trains with live in
kdscale.search; this module trains the candidates, rung by rung (pure PyTorch: the engine runs a
job on a Ray worker, kdscale.engine.workers.search_task; `kdscale tune` runs it in process).
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from kdscale.config import to_dict
from kdscale.search import SearchSpec, carried, choosable, last_rung_decided, rank_key, trained_with


def _split_data(spec: SearchSpec, seed: int, loaded, teacher_logits, device):
    """The fit and validation samples of the student of `seed` (validation in the test slot)."""
    import torch

    from kdscale.data.subsets import split_for
    from kdscale.train import TrainData

    fit, val = split_for(loaded.y_pool, spec.data.n_teacher, spec.n_train, seed, spec.space.val_fraction)

    def tensor(array):
        return torch.as_tensor(np.ascontiguousarray(array)).to(device)
    teacher_fit = tensor(teacher_logits[fit]) if teacher_logits is not None else None
    teacher_val = tensor(teacher_logits[val]) if teacher_logits is not None else None
    return TrainData(tensor(loaded.x_pool[fit]), tensor(loaded.y_pool[fit]), tensor(loaded.x_pool[val]),
                     tensor(loaded.y_pool[val]), teacher_fit, teacher_val), len(fit), len(val)


def run_job(specs: list[SearchSpec], loaded, teacher_logits: dict[str, Any], device="cpu", log=None) -> list[dict]:
    """Run the searches `specs` (one job key) with successive halving; return one result per spec.

    `loaded` holds the data stream (at least as far as the students' samples reach) and
    `teacher_logits` maps a teacher id to its logits on that stream.
    """
    from kdscale.train import train_students

    started = time.perf_counter()
    first = specs[0]
    if any(s.job_key != first.job_key for s in specs):
        raise ValueError("a search job's searches must share data, student, kappa, base recipe and space")
    space, seeds = first.space, list(range(first.space.seeds))
    num_classes = loaded.info.num_classes
    datas, sizes = {}, {}
    for spec in specs:
        logits = teacher_logits[spec.teacher.id] if spec.teacher is not None else None
        for seed in seeds:
            datas[spec.id, seed], n_fit, n_val = _split_data(spec, seed, loaded, logits, device)
            sizes[spec.id] = (n_fit, n_val)
    alive = {spec.id: list(space.lrs) for spec in specs}
    candidates: dict[str, list[dict]] = {spec.id: [] for spec in specs}
    rungs = space.rungs(next(iter(sizes.values()))[0], first.base.batch_size)
    rung_seeds = space.rung_seeds(len(rungs))
    skipped: set[str] = set()
    for rung, (budget, keep) in enumerate(rungs):
        scored = seeds[:rung_seeds[rung]]
        if rung > 0 and rung == len(rungs) - 1:
            for spec in specs:
                if last_rung_decided(spec, candidates[spec.id], alive[spec.id][:keep], budget,
                                     sizes[spec.id][1]):
                    alive[spec.id] = []
                    skipped.add(spec.id)
        members = [(spec, lr, seed) for spec in specs for lr in alive[spec.id][:keep] for seed in scored]
        if not members:
            break
        rung_started = time.perf_counter()
        results = train_students(first.student, [spec.objective for spec, _, _ in members],
                                 [spec.recipe(lr, budget) for spec, lr, _ in members], [seed for _, _, seed in members],
                                 [datas[spec.id, seed] for spec, _, seed in members], num_classes, max_reports=1,
                                 vocab_size=loaded.info.vocab_size)
        scores: dict[tuple[str, float], list] = {}
        for (spec, lr, seed), result in zip(members, results):
            ok = result.status == "ok"
            scores.setdefault((spec.id, lr), []).append(
                (result.metrics["test_acc"] if ok else 0.0, result.metrics["test_loss"] if ok else math.inf))
        screen = space.is_screen(len(rungs), rung)
        for spec in specs:
            for lr in alive[spec.id][:keep]:
                accs, losses = zip(*scores[spec.id, lr])
                entry = {"lr": lr, "steps": budget, "rung": rung, "val_acc": float(np.mean(accs)),
                         "val_acc_min": float(np.min(accs)), "val_loss": float(np.mean(losses)),
                         "val_acc_by_seed": [float(a) for a in accs],
                         "diverged": int(sum(not math.isfinite(v) for v in losses))}
                if screen:
                    entry["screen"] = True
                candidates[spec.id].append(entry)
            alive[spec.id] = carried(space, candidates[spec.id], rung, num_classes)
        if log:
            log(f"search {first.student.label} kappa={first.kappa:g}: rung {rung + 1}/{len(rungs)}, "
                f"{budget} steps, {len(members)} students in one pack ({time.perf_counter() - rung_started:.1f} s)")
    wall = time.perf_counter() - started
    return [_result(spec, candidates[spec.id], sizes[spec.id], wall / len(specs), spec.id in skipped) for spec in specs]


def _result(spec: SearchSpec, candidates: list[dict], sizes: tuple[int, int], wall: float,
            skipped_last: bool = False) -> dict:
    finite = choosable([c for c in candidates if not c["diverged"]])
    if not finite:  # every candidate diverged: the smallest learning rate at the smallest budget
        best = {"lr": spec.space.lrs[0], "steps": spec.space.budgets[0], "val_acc": 0.0, "val_acc_min": 0.0,
                "val_loss": None}
    else:
        best = min(finite, key=rank_key)
    space = spec.space
    edges = []
    if best["lr"] == space.lrs[-1] and len(space.lrs) > 1:
        edges.append(f"best lr {best['lr']:g} is the largest searched")
    if best["lr"] == space.lrs[0] and len(space.lrs) > 1:
        edges.append(f"best lr {best['lr']:g} is the smallest searched")
    tried = sorted({c["steps"] for c in candidates})
    if best["steps"] == space.budgets[-1] and len(tried) > 1:
        edges.append(f"best budget {best['steps']} steps is the largest searched")
    if sizes[1] < 50:
        edges.append(f"the validation split holds {sizes[1]} samples: the choice is noisy")
    result = {"id": spec.id, "label": spec.label, "spec": to_dict(spec), "n_fit": sizes[0], "n_val": sizes[1],
            "candidates": candidates, "best": {k: best[k] for k in ("lr", "steps", "val_acc", "val_acc_min", "val_loss")},
            "warnings": edges,
            "all_diverged": not finite, "skipped_last_rung": skipped_last, "wall_s": wall,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    return {**result, "recipe": to_dict(spec.recipe(*trained_with(result)))}
