"""Parts 5 and 6 (pack_threshold, projection): when packing pays, and what the paper's grid would
cost; bench/gpucheck/__init__.py says what each measures."""
from __future__ import annotations

import itertools
import math
from typing import Any, Callable

from .budget import Skip
from .common import NUM_CLASSES, Check, build, fwd_flops, import_error, input_shape, label, parse, repo_constant


def part_pack_threshold(ck: Check, fig: dict) -> None:
    """Part 5: the pack-4 time ratio per model size, and the suggested PACK_MAX_FLOPS."""
    from gpu_throughput import random_split
    from kdscale.config import ObjectiveSpec, RecipeSpec
    from kdscale.train import TrainData

    size = ck.size
    pack = 4
    constant = "PACK_MAX_FLOPS_GPU" if ck.device.type == "cuda" else "PACK_MAX_FLOPS"
    current, source = repo_constant("kdscale/engine/trials.py", constant, 2e6)
    fig["setup"] = {"pack": pack, "objective": "lt", "M": size.thr_m, "batch": size.thr_batch,
                    "data": "random tensors of the model's input shape", "win": "ratio <= 0.9",
                    "ratio": "(packed seconds / 4) / (alone seconds), one call each, after a warm-up; the "
                             f"lower of {size.thr_repeats} alternating repeats",
                    "current_PACK_MAX_FLOPS": current, "current_source": source}
    models = sorted(((fwd_flops(t, input_shape(t)), t) for t in size.thr_models))
    rows: list[dict] = []
    fig["models"] = rows
    lt = ObjectiveSpec("lt")
    batch = min(size.thr_batch, size.thr_m)
    for f, text in models:
        shape = input_shape(text)
        per = 3 * f * batch
        lo, hi = size.thr_steps
        steps = int(min(hi, max(lo, size.thr_target_s / ck.costs.step_s(per)))) if size.thr_target_s else lo
        estimate = size.thr_repeats * (ck.costs.train_s(per, steps) + ck.costs.train_s(per * pack, steps, packed=True)) \
            + ck.costs.train_s(per * (1 + pack), 4, calls=2)
        try:
            ck.budget.check(estimate, label(text))
        except Skip as skip:
            rows.append({"model": label(text), "forward_flops": f, "skipped": str(skip)})
            ck.rec.say(f"  {label(text)}: skipped: {skip}")
            continue
        d = TrainData(*(t.to(ck.device) for t in random_split(shape, size.thr_m, batch, seed=2)))

        def run(students: int, n_steps: int) -> float:
            recipe = RecipeSpec(lr=0.01, steps=n_steps, batch_size=batch)
            return ck.fit_pack(text, lt, recipe, range(students), [d] * students)[1]
        run(1, 2)
        run(pack, 2)  # warm-ups: kernels, the vmapped path
        alone, packed = math.inf, math.inf
        for _ in range(size.thr_repeats):
            a, p = run(1, steps), run(pack, steps)
            ck.costs.observe(per, steps, a)
            ck.costs.observe(per * pack, steps, p, packed=True)
            alone, packed = min(alone, a), min(packed, p)
        ratio = (packed / pack) / alone
        rows.append({"model": label(text), "forward_flops": f, "steps": steps, "alone_s": alone,
                     "packed_s_per_student": packed / pack, "ratio": ratio, "packing_wins": ratio <= 0.9})
        ck.rec.say(f"  {label(text):<12} {f / 1e6:9.3f} MFLOP  alone {alone:.3f} s, packed {packed / pack:.3f} s/student "
                   f"over {steps} steps: ratio {ratio:.2f}")
        ck.rec.save()
    measured = [r for r in rows if "ratio" in r]
    if not measured:
        raise Skip("no model size fitted in the time left")
    largest = max((r["forward_flops"] for r in measured if r["packing_wins"]), default=None)
    # ascending FLOPs: the largest size below which every measured size wins
    all_win = [r["forward_flops"] for r in itertools.takewhile(lambda r: r["packing_wins"], measured)]
    fig["largest_winning_flops"] = largest
    fig["largest_flops_all_smaller_win"] = all_win[-1] if all_win else None
    fig["suggested_PACK_MAX_FLOPS"] = largest or 0.0
    fig["suggestion_note"] = ("suggested = the largest measured forward-FLOPs size where a pack of 4 took <= 0.9 of the "
                              "alone time per student; the true threshold lies between it and the next measured size")
    ck.rec.say(f"  suggested PACK_MAX_FLOPS for this device: {fig['suggested_PACK_MAX_FLOPS']:.3g} "
               f"(now {current:.3g})")


def part_projection(ck: Check, fig: dict) -> None:
    """Part 6: the paper's CIFAR grid in FLOPs and device-hours, kdscale against the paper's code."""
    import torch

    from gpu_throughput import paper_loop, random_split
    from kdscale.config import ObjectiveSpec, RecipeSpec
    from kdscale.data import stream_length_for
    from kdscale.recipes import RECIPES
    from kdscale.schema import n_train
    from kdscale.train import TrainData

    size = ck.size
    shape = (3, 32, 32)
    pairs_text, pairs_source = repo_constant("kdscale/studyargs.py", "IMAGE_PAIRS", (
        "resnet18:width=64>cnn2d:width=20", "resnet18:width=64>resnet18:width=16",
        "cnn2d:width=20>cnn2d:width=20", "cnn2d:width=20>resnet18:width=64"))
    kappas, kappas_source = repo_constant("kdscale/studyargs.py", "MAIN_KAPPAS", (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 4.0))
    n_teachers, n_source = repo_constant("kdscale/data/__init__.py", "DEFAULT_N", {"cifar5m": 60_000})
    n = int(n_teachers.get("cifar5m", 60_000))
    paper = RECIPES.get("paper-cifar10")
    epochs, p_batch, seeds, n_test = paper.epochs, paper.batch_size, 3, 10_000
    pairs = [tuple(p.split(">")) for p in pairs_text]
    no_torchvision = import_error("torchvision")
    flops = {t: fwd_flops(t, shape) for pair in pairs for t in pair}
    fig["assumptions"] = {
        "pairs": [f"{label(t)} > {label(s)}" for t, s in pairs], "pairs_source": pairs_source
        + " (the paper's ResNet-18 and vanilla CNN, both ways; Fig. 7's exact pairs are not in this repo)",
        "data": f"CIFAR-5m, N = {n} teacher samples ({n_source}), test set 10,000 (CIFAR-10's)",
        "kappas": kappas, "kappas_source": kappas_source, "objectives": ["lt", "kd (one tau)"],
        "seeds": f"{seeds} (the repo's default; the paper's count is not in this repo)",
        "recipe": f"paper-cifar10 (kdscale.recipes): {epochs} epochs at batch {p_batch} for teachers (on N) and "
                  "students (on M)",
        "teachers": "one per teacher model, trained with lt; the same in both paths",
        "kdscale_teacher_logits": "once per teacher on the stream a grid needs (N blocks up to max kappa) and the "
                                  "test set, cached (kdscale.teacher)",
        "paper_teacher_forward": "on every kd step (samples seen); lt students have no teacher",
        "not_counted": "evaluations, data loading outside the timed loop, checkpoints",
        "time": "FLOPs over steady-state seconds per sample measured here per model (and per pair for the paper "
                "loop): time at n and 3n steps after a warm-up, (t3n - tn) / 2n; fp32; unmeasured figures fall back "
                "to part 3's cifar rates (a FLOP-rate conversion), as `sources` says"}
    fig["forward_flops"] = {label(t): f for t, f in flops.items()}
    batch = size.proj_batch
    m = 4 * batch  # whole batches: no partial one
    workers = 4 if ck.cuda else 0
    students = list(dict.fromkeys(s for _, s in pairs))
    measured: dict[str, dict[str, float]] = {"alone": {}, "paper_kd": {}, "paper_lt": {}, "packed": {}}
    fig["measured_s_per_sample"] = measured
    fig["measured_setup"] = {"batch": batch, "M": m, "n": size.proj_steps, "pack": size.proj_pack,
                             "paper_workers": workers}
    x, y, x_test, y_test = (t.to(ck.device) for t in random_split(shape, m, batch, seed=3))
    kd, n_steps = ObjectiveSpec("kd", tau=4.0), size.proj_steps
    warm = 1 if size.name != "full" else 2
    built_teachers: dict[str, Any] = {}

    def teacher_of(text: str):
        if text not in built_teachers:
            torch.manual_seed(0)
            built_teachers[text] = build(text, shape, ck.device).eval()
        return built_teachers[text]

    def steady(run: Callable[[int], float], per_step_flops: float, what: str, table: str, key: str,
               packed: bool = False) -> None:
        """Seconds per sample of `run(k)` (k steps, its seconds) in the steady state, per student of a
        pack, into measured[table][key]; a skip goes into the part's `skipped` list."""
        estimate = ck.costs.train_s(per_step_flops, warm + 4 * n_steps, packed=packed, calls=3)
        try:
            if "resnet18" in what:
                if no_torchvision:
                    raise Skip(f"{what}: torchvision is missing ({no_torchvision})")
                if not size.proj_resnet:
                    raise Skip(f"{what}: not at the {size.name} size")
            ck.budget.check(estimate, what)
        except Skip as skip:
            fig.setdefault("skipped", []).append(str(skip))
            ck.rec.say(f"  {what}: skipped: {skip}")
            return
        run(warm)
        t1, t3 = run(n_steps), run(3 * n_steps)
        ck.costs.observe(per_step_flops, 3 * n_steps, t3, packed=packed)
        per_step = (t3 - t1) / (2 * n_steps)
        if per_step <= 0:  # noise larger than the difference: the plain average
            per_step = t3 / (3 * n_steps)
        ck.rec.say(f"  {what}: {1e3 * per_step:.2f} ms/step ({t1:.2f} s at {n_steps}, {t3:.2f} s at {3 * n_steps} steps)")
        measured[table][key] = per_step / batch / (pack if packed else 1)

    # kdscale's step does not run the teacher: random logits stand in for its cached ones
    gen = torch.Generator().manual_seed(4)
    cached = TrainData(x, y, x_test, y_test, torch.randn(m, NUM_CLASSES, generator=gen).to(ck.device),
                       torch.randn(batch, NUM_CLASSES, generator=gen).to(ck.device))
    plain = TrainData(x, y, x_test, y_test)  # the paper loop's: samples and labels
    pack = size.proj_pack

    def sgd(k: int):
        return RecipeSpec(lr=0.02, steps=k, batch_size=batch)

    def paper_run(teacher_text: str | None, spec) -> Callable[[int], float]:
        return lambda k: ck.timed(lambda: paper_loop(teacher_text and teacher_of(teacher_text), spec, plain, k, batch,
                                                     workers, ck.device))[1]

    # (a) kdscale alone per student model, (b) the paper loop per pair (kd), (c) the paper loop per
    # student model (lt), (d) kdscale packed per student model; the most needed first
    for s_text in students:
        steady(lambda k: ck.fit(s_text, kd, sgd(k), 0, cached)[1], 3 * flops[s_text] * batch,
               f"kdscale alone {s_text}", "alone", label(s_text))
    ck.rec.save()
    for t_text, s_text in pairs:
        steady(paper_run(t_text, parse(s_text)), (3 * flops[s_text] + flops[t_text]) * batch,
               f"paper kd {t_text} > {s_text}", "paper_kd", f"{label(t_text)} > {label(s_text)}")
    ck.rec.save()
    for s_text in students:
        steady(paper_run(None, parse(s_text)), 3 * flops[s_text] * batch, f"paper lt {s_text}", "paper_lt", label(s_text))
    ck.rec.save()
    for s_text in students:
        steady(lambda k: ck.fit_pack(s_text, kd, sgd(k), range(pack), [cached] * pack)[1],
               3 * flops[s_text] * batch * pack, f"kdscale packed x{pack} {s_text}", "packed", label(s_text), packed=True)
    ck.rec.save()
    built_teachers.clear()

    # seconds per sample for every figure the projection needs, measured or converted from part 3
    cifar = ck.state.get("throughput_cifar")
    sources: dict[str, str] = {}

    def rate_from(key: str) -> tuple[float, str]:
        if cifar and cifar.get(key):
            return cifar[key]["useful_tflops"] * 1e12, f"part 3 cifar {cifar[key]['way']}"
        if ck.costs.obs:
            return ck.costs.rate, "the best training FLOP/s of this run (its cost model)"
        return 0.25 * ck.state.get("matmul_fp32", 1e13), "a quarter of the fp32 matmul rate (nothing measured)"

    def sps_alone(s: str) -> float:
        if label(s) in measured["alone"]:
            return measured["alone"][label(s)]
        rate, src = rate_from("alone")
        sources[f"alone {label(s)}"] = src
        return 3 * flops[s] / rate

    def sps_packed(s: str) -> float:
        if label(s) in measured["packed"]:
            return min(measured["packed"][label(s)], sps_alone(s))
        return sps_alone(s)

    def sps_paper(t: str | None, s: str) -> float:
        key = label(s) if t is None else f"{label(t)} > {label(s)}"
        table = measured["paper_lt" if t is None else "paper_kd"]
        if key in table:
            return table[key]
        useful = 3 * flops[s] + (0 if t is None else flops[t])
        rate, src = rate_from("paper")
        sources[f"paper {'lt' if t is None else 'kd'} {key}"] = src
        return useful / rate

    stream = stream_length_for(n, n_train(max(kappas), n))
    per_pair, totals = [], {"kdscale_flops": 0.0, "paper_flops": 0.0, "kdscale_packed_s": 0.0, "kdscale_alone_s": 0.0,
                            "paper_s": 0.0}
    teachers = list(dict.fromkeys(t for t, _ in pairs))
    for t in teachers:  # teachers: the same training in both paths; kdscale also caches their logits once
        seen = epochs * n
        train_flops = 3 * flops[t] * seen
        logits_flops = flops[t] * (stream + n_test)
        totals["kdscale_flops"] += train_flops + logits_flops
        totals["paper_flops"] += train_flops
        t_kd = seen * sps_alone(t) + (stream + n_test) * sps_alone(t) / 3
        totals["kdscale_packed_s"] += t_kd
        totals["kdscale_alone_s"] += t_kd
        totals["paper_s"] += seen * sps_paper(None, t)
    for t, s in pairs:
        row = {"pair": f"{label(t)} > {label(s)}", "kdscale_flops": 0.0, "paper_flops": 0.0, "kdscale_packed_s": 0.0,
               "kdscale_alone_s": 0.0, "paper_s": 0.0}
        for kappa in kappas:
            seen = epochs * n_train(kappa, n)
            for objective in ("lt", "kd"):
                student_flops = 3 * flops[s] * seen * seeds
                row["kdscale_flops"] += student_flops
                row["paper_flops"] += student_flops + (flops[t] * seen * seeds if objective == "kd" else 0.0)
                row["kdscale_packed_s"] += seen * seeds * sps_packed(s)
                row["kdscale_alone_s"] += seen * seeds * sps_alone(s)
                row["paper_s"] += seen * seeds * sps_paper(t if objective == "kd" else None, s)
        for key in totals:
            totals[key] += row[key]
        row.update(kdscale_packed_gpu_hours=row["kdscale_packed_s"] / 3600, paper_gpu_hours=row["paper_s"] / 3600)
        per_pair.append(row)
    fig["per_pair"] = per_pair
    fig["sources"] = sources or "every figure measured in this part"
    fig["trials"] = {"students": len(pairs) * len(kappas) * 2 * seeds, "teachers": len(teachers)}
    fig["total"] = {
        "kdscale_pflop": totals["kdscale_flops"] / 1e15, "paper_pflop": totals["paper_flops"] / 1e15,
        "kdscale_packed_gpu_hours": totals["kdscale_packed_s"] / 3600,
        "kdscale_alone_gpu_hours": totals["kdscale_alone_s"] / 3600, "paper_gpu_hours": totals["paper_s"] / 3600,
        "paper_over_kdscale_packed": totals["paper_s"] / totals["kdscale_packed_s"],
        "kdscale_useful_tflops": totals["kdscale_flops"] / totals["kdscale_packed_s"] / 1e12,
        "paper_useful_tflops": totals["paper_flops"] / totals["paper_s"] / 1e12}
    tot = fig["total"]
    ck.rec.say(f"  paper grid ({fig['trials']['students']} students, {len(teachers)} teachers): kdscale "
               f"{tot['kdscale_pflop']:.1f} PFLOP, {tot['kdscale_packed_gpu_hours']:.2f} device-hours (packed where faster; "
               f"{tot['kdscale_alone_gpu_hours']:.2f} alone); paper code {tot['paper_pflop']:.1f} PFLOP, "
               f"{tot['paper_gpu_hours']:.2f} device-hours ({tot['paper_over_kdscale_packed']:.2f}x)")
