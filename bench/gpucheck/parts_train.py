"""Parts 2-4 (trial, throughput, grid): kdscale's trainer at work; bench/gpucheck/__init__.py says
what each measures."""
from __future__ import annotations

import math
import time
from dataclasses import replace

from .budget import Skip
from .common import Check, fwd_flops, input_shape, label


def samples_seen(steps: int, batch: int, m: int) -> int:
    """Samples a loop over M samples in shuffled batches of `batch` (the last one partial) sees in `steps`."""
    batch = min(batch, m)
    per_epoch = math.ceil(m / batch)
    full, rest = divmod(steps, per_epoch)
    return full * m + rest * batch


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def part_trial(ck: Check, fig: dict) -> None:
    """Part 2: one real MNIST-1D trial (teacher, then kd student) in fp32 and in bf16."""
    import torch

    from kdscale import data
    from kdscale.config import DataSpec, ObjectiveSpec
    from kdscale.recipes import RECIPES
    from kdscale.train import TrainData, predict

    if ck.state.get("no_mnist1d"):
        raise Skip(f"MNIST-1D cannot be generated here ({ck.state['no_mnist1d']})")
    size, n = ck.size, ck.size.trial_n
    m = n // 10
    teacher_text, student_text = "cnn1d:width=32", "cnn1d:width=16"
    f_t, f_s = fwd_flops(teacher_text, (1, 40)), fwd_flops(student_text, (1, 40))
    t_recipe = RECIPES.get("mnist1d-teacher").with_budget(epochs=size.trial_teacher_epochs)
    s_recipe = RECIPES.get("mnist1d-student")
    if size.trial_student_steps:
        s_recipe = s_recipe.with_budget(steps=size.trial_student_steps)
    t_steps = t_recipe.epochs * math.ceil(n / t_recipe.batch_size)
    fig["setup"] = {"data": f"MNIST-1D, N = {n}, M = {m} (kappa 0.1)", "teacher": label(teacher_text),
                    "student": label(student_text), "objective": "kd tau=4 (tau^2 factor)",
                    "teacher_recipe": f"SGD lr {t_recipe.lr}, batch {t_recipe.batch_size}, {t_recipe.epochs} epochs "
                                      f"({t_steps} steps), cosine",
                    "student_recipe": f"SGD lr {s_recipe.lr}, batch {s_recipe.batch_size}, {s_recipe.steps} steps, "
                                      "cosine", "forward_flops": {"teacher": f_t, "student": f_s}}
    start = time.perf_counter()
    loaded = data.load(DataSpec(n_teacher=n), n)
    fig["data_s"] = time.perf_counter() - start
    x_pool, y_pool, x_test, y_test = (torch.as_tensor(a).to(ck.device) for a in
                                      (loaded.x_pool[:n], loaded.y_pool[:n], loaded.x_test, loaded.y_test))
    idx = torch.as_tensor(data.student_indices(loaded.y_pool[:n], n, m, 0)).to(ck.device)
    kd = ObjectiveSpec("kd", tau=4.0)
    for precision in ("fp32", "bf16"):
        # bf16 autocast on a CPU ran 4-10x slower than fp32 here (no bf16 units)
        slow = 1.0 if ck.cuda or precision == "fp32" else 10.0
        estimate = slow * (ck.costs.train_s(3 * f_t * t_recipe.batch_size, t_steps)
                           + ck.costs.train_s(3 * f_s * s_recipe.batch_size, s_recipe.steps))
        try:
            ck.budget.check(estimate, f"{precision} trial")
        except Skip as skip:
            fig[precision] = {"skipped": str(skip)}
            ck.rec.say(f"  {precision}: skipped: {skip}")
            continue
        t_rec, s_rec = replace(t_recipe, precision=precision), replace(s_recipe, precision=precision)
        teacher, t_wall = ck.fit(teacher_text, ObjectiveSpec("lt"), t_rec, 0, TrainData(x_pool, y_pool, x_test, y_test))
        x, y = x_pool[idx], y_pool[idx]
        teacher_logits = (predict(teacher.model, x), predict(teacher.model, x_test))
        student, s_wall = ck.fit(student_text, kd, s_rec, 0, TrainData(x, y, x_test, y_test, *teacher_logits))
        if precision == "fp32":
            ck.costs.observe(3 * f_t * t_recipe.batch_size, teacher.metrics["steps"], t_wall)
            ck.costs.observe(3 * f_s * s_recipe.batch_size, student.metrics["steps"], s_wall)
        fig[precision] = {
            "teacher": {"status": teacher.status, "test_acc": teacher.metrics.get("test_acc"), "wall_s": t_wall,
                        "steps": teacher.metrics["steps"], "steps_per_s": teacher.metrics["steps"] / t_wall},
            "student": {"status": student.status, "test_acc": student.metrics.get("test_acc"),
                        "fidelity_test": student.metrics.get("fidelity_test"), "wall_s": s_wall,
                        "steps": student.metrics["steps"], "steps_per_s": student.metrics["steps"] / s_wall}}
        ck.rec.say(f"  {precision}: teacher acc {_fmt(teacher.metrics.get('test_acc'))} ({t_wall:.1f} s, "
                   f"{teacher.metrics['steps'] / t_wall:.0f} steps/s); kd student acc "
                   f"{_fmt(student.metrics.get('test_acc'))} ({s_wall:.1f} s, {student.metrics['steps'] / s_wall:.0f} "
                   "steps/s)")
        ck.rec.save()
    both = [fig.get(p, {}).get("student", {}).get("test_acc") for p in ("fp32", "bf16")]
    if all(a is not None for a in both):
        fig["bf16_minus_fp32_student_acc"] = both[1] - both[0]
        fig["bf16_within_0.05"] = abs(both[1] - both[0]) <= 0.05
        teachers = [fig[p]["teacher"]["test_acc"] for p in ("fp32", "bf16")]
        fig["bf16_minus_fp32_teacher_acc"] = teachers[1] - teachers[0]
        fig["bf16_speed_ratio"] = fig["fp32"]["student"]["wall_s"] / fig["bf16"]["student"]["wall_s"]
        ck.rec.say(f"  bf16 - fp32 student accuracy {both[1] - both[0]:+.4f}: "
                   f"{'within' if fig['bf16_within_0.05'] else 'NOT within'} 0.05")



def part_throughput(ck: Check, fig: dict) -> None:
    """Part 3: students per hour and useful FLOP/s, the paper-style loop against kdscale alone and packed."""
    import torch

    from gpu_throughput import paper_loop, workload
    from kdscale.config import ObjectiveSpec, RecipeSpec

    size = ck.size
    workers_list = (0, 4) if ck.cuda else (0,)
    kd = ObjectiveSpec("kd", tau=4.0)
    rows: list[dict] = []
    fig["setup"] = {"steps": size.tp_steps, "batch": size.tp_batch, "objective": "kd tau=4, kappa 0.1",
                    "timing": "one call per way, wall clock, as bench/gpu_throughput.py (after one 3-step "
                              "kdscale warm-up)", "useful_flops": "3 x student forward FLOPs x samples seen, plus "
                              "the teacher's forward FLOPs x samples seen in the paper-style loop"}
    fig["rows"] = rows
    matmul = ck.state.get("matmul_fp32")
    workloads = {"mnist1d": (4000, "cnn1d:width=32", "cnn1d:width=16"),
                 "cifar": (size.tp_cifar_n, "cnn2d:width=40", "cnn2d:width=20")}
    for which, (n, t_text, s_text) in workloads.items():
        shape = input_shape(s_text)
        f_t, f_s = fwd_flops(t_text, shape), fwd_flops(s_text, shape)
        m = n // 10
        batch = min(size.tp_batch, m)
        steps = size.tp_steps
        seen = samples_seen(steps, batch, m)
        n_test = size.tp_test
        # data, teacher logits on one seed's M and the test set, warm-up, paper loop(s), alone, pack x2
        first = (ck.costs.train_s(3 * f_s * batch, steps * (len(workers_list) + 2), calls=len(workers_list) + 2,
                                  forward_flops=f_t * (m + n_test) + f_t * seen * len(workers_list))
                 + ck.costs.train_s(3 * f_s * batch * 2, steps, packed=True, forward_flops=f_t * m)
                 + (8.0 if which == "mnist1d" else 2e-8 * n * math.prod(shape)))
        try:
            ck.budget.check(first, f"{which} workload")
        except Skip as skip:
            fig[which] = {"skipped": str(skip)}
            ck.rec.say(f"  {which}: skipped: {skip}")
            continue
        random_data = which == "mnist1d" and bool(ck.state.get("no_mnist1d"))
        teacher, student, datas, description = workload(which, None, ck.device, n_teacher=n,
                                                        n_test=n_test, random_data=random_data)
        train_datas = datas([0])
        info = {"description": description, "M": m, "batch": batch, "steps": steps, "samples_seen": seen,
                "forward_flops": {"teacher": f_t, "student": f_s}}
        fig[which] = info
        ck.rec.say(f"  {which}: {description}")
        recipe = RecipeSpec(lr=0.02, steps=steps, batch_size=batch)
        ck.fit(student, kd, RecipeSpec(lr=0.02, steps=3, batch_size=batch), 0, train_datas[0])  # warm-up

        def row(way: str, seconds: float, students: int, useful: float, **extra) -> dict:
            r = {"workload": which, "way": way, **extra, "seconds": seconds, "seconds_per_student": seconds / students,
                 "students_per_hour": 3600 * students / seconds, "useful_tflops": useful / seconds / 1e12,
                 "share_of_matmul_fp32": useful / seconds / matmul if matmul else None}
            rows.append(r)
            ck.rec.say(f"    {way:<30} {r['seconds_per_student']:9.3f} s/student {r['students_per_hour']:10.0f} "
                       f"students/h {r['useful_tflops']:9.4f} TFLOP/s"
                       + (f" ({100 * r['share_of_matmul_fp32']:.1f}% of fp32 matmul)" if matmul else ""))
            ck.rec.save()
            return r

        paper_best = None
        for workers in workers_list:
            try:
                ck.budget.check(ck.costs.train_s(3 * f_s * batch + f_t * batch, steps) + (4.0 if workers else 0.0),
                                f"paper loop, {workers} workers")
            except Skip as skip:
                info[f"paper_{workers}_workers"] = {"skipped": str(skip)}
                continue
            seconds = paper_loop(teacher, student, train_datas[0], steps, batch, workers, ck.device)  # its own clock
            r = row(f"paper (DataLoader, {workers} workers)", seconds, 1, (3 * f_s + f_t) * seen, workers=workers)
            if paper_best is None or r["seconds"] < paper_best["seconds"]:
                paper_best = r
        _, seconds = ck.fit(student, kd, recipe, 0, train_datas[0])
        ck.costs.observe(3 * f_s * batch, steps, seconds)
        alone = row("kdscale", seconds, 1, 3 * f_s * seen, pack=1)
        best_pack = alone
        sample_bytes = 4 * math.prod(shape)
        for pack in size.tp_packs:
            new = pack - len(train_datas)
            estimate = ck.costs.train_s(3 * f_s * batch * pack, steps, packed=True, forward_flops=f_t * m * max(0, new))
            memory = 3 * pack * m * sample_bytes + pack * batch * f_s / 10  # data (3 copies), activations
            try:
                if memory > 0.5 * ck.free_bytes():
                    raise Skip(f"pack of {pack}: about {memory / 2 ** 30:.1f} GiB, over half the free memory")
                ck.budget.check(estimate, f"pack of {pack}")
            except Skip as skip:
                info.setdefault("packs_skipped", []).append(str(skip))
                ck.rec.say(f"    pack of {pack}: skipped: {skip}")
                continue
            if new > 0:
                train_datas += datas(range(len(train_datas), pack))
            _, seconds = ck.fit_pack(student, kd, recipe, range(pack), train_datas[:pack])
            ck.costs.observe(3 * f_s * batch * pack, steps, seconds, packed=True)
            r = row(f"kdscale packed x{pack}", seconds, pack, 3 * f_s * seen * pack, pack=pack)
            if r["seconds_per_student"] < best_pack["seconds_per_student"]:
                best_pack = r
        for r in rows:
            if r["workload"] == which and paper_best is not None:
                r["vs_paper"] = paper_best["seconds_per_student"] / r["seconds_per_student"]
        info["best"] = {"paper": paper_best and paper_best["way"], "kdscale": best_pack["way"]}
        ck.state[f"throughput_{which}"] = {"paper": paper_best, "alone": alone, "best": best_pack,
                                           "f_s": f_s, "f_t": f_t}
        train_datas.clear()  # the pack's tensors go before the next workload's
        if ck.cuda:
            torch.cuda.empty_cache()



def part_grid(ck: Check, fig: dict) -> None:
    """Part 4: a small Fig. 7-shaped cnn2d grid, packed per (pair, kappa) as the engine packs."""
    import torch

    from gpu_throughput import random_split
    from kdscale import data
    from kdscale.config import ObjectiveSpec, RecipeSpec
    from kdscale.schema import n_train
    from kdscale.train import TrainData, predict

    size = ck.size
    n, n_test, batch = size.grid_n, size.grid_test, size.grid_batch
    pairs = (("cnn2d:width=40", "cnn2d:width=20"), ("cnn2d:width=20", "cnn2d:width=40"))
    kappas, seeds = (0.1, 1.0), (0, 1)
    objectives = (ObjectiveSpec("lt"), ObjectiveSpec("kd", tau=4.0))
    shape = (3, 32, 32)
    flops = {t: fwd_flops(t, shape) for t in ("cnn2d:width=20", "cnn2d:width=40")}
    t_recipe, s_recipe = (RecipeSpec(lr=0.05, momentum=0.9, weight_decay=1e-3, batch_size=batch, epochs=epochs,
                                     steps=None, schedule="cosine")
                          for epochs in (size.grid_teacher_epochs, size.grid_student_epochs))
    pack = len(seeds) * len(objectives)

    def grid_estimate(packed: bool) -> float:
        total = 0.0
        for t_text, s_text in pairs:
            for kappa in kappas:
                m = n_train(kappa, n)
                steps = s_recipe.epochs * math.ceil(m / min(batch, m))
                per = 3 * flops[s_text] * min(batch, m)
                total += (ck.costs.train_s(per * pack, steps, packed=True) if packed
                          else ck.costs.train_s(per, steps * pack, calls=pack))
        return total

    teachers_s = sum(ck.costs.train_s(3 * f * batch, t_recipe.epochs * math.ceil(n / batch),
                                      forward_flops=f * (2 * n + n_test)) for f in flops.values())
    ck.budget.check(teachers_s + grid_estimate(True), "the packed grid")
    fig["setup"] = {"pairs": [f"{label(t)} > {label(s)}" for t, s in pairs], "kappas": kappas, "N": n,
                    "n_test": n_test, "data": "random tensors of CIFAR-10's shape", "objectives": ["lt", "kd tau=4"],
                    "seeds": list(seeds), "students": len(pairs) * len(kappas) * pack,
                    "teacher_recipe": f"SGD lr 0.05, batch {batch}, {t_recipe.epochs} epochs on N, cosine",
                    "student_recipe": f"SGD lr 0.05, batch {batch}, {s_recipe.epochs} epochs on M, cosine",
                    "packing": f"one train_students call per (pair, kappa): {len(seeds)} seeds x lt and kd = {pack}"}
    x_pool, y_pool, x_test, y_test = (t.to(ck.device) for t in random_split(shape, n, n_test, seed=1))
    y_numpy = y_pool.cpu().numpy()
    start = time.perf_counter()
    teachers = {}
    for t_text in dict.fromkeys(t for t, _ in pairs):
        result, seconds = ck.fit(t_text, ObjectiveSpec("lt"), t_recipe, 0, TrainData(x_pool, y_pool, x_test, y_test))
        ck.costs.observe(3 * flops[t_text] * batch, result.metrics["steps"], seconds)
        teachers[t_text] = (result.model, predict(result.model, x_test))
        fig.setdefault("teachers", {})[label(t_text)] = {"wall_s": seconds, "steps": result.metrics["steps"],
                                                         "test_acc": result.metrics.get("test_acc")}
    teachers_wall = time.perf_counter() - start
    fig["teachers_wall_s"] = teachers_wall
    ck.rec.say(f"  teachers: {teachers_wall:.1f} s")

    def members(t_text: str, kappa: float):
        model, teacher_test = teachers[t_text]
        m = n_train(kappa, n)
        by_seed = {}
        for seed in seeds:
            idx = torch.as_tensor(data.student_indices(y_numpy, n, m, seed)).to(ck.device)
            x = x_pool[idx]
            by_seed[seed] = TrainData(x, y_pool[idx], x_test, y_test, predict(model, x), teacher_test)
        specs = [(seed, objective) for objective in objectives for seed in seeds]
        return m, specs, [by_seed[seed] for seed, _ in specs]

    packs: list[dict] = []
    fig["packs"] = packs
    students_wall = 0.0
    for t_text, s_text in pairs:
        for kappa in kappas:
            m, specs, datas = members(t_text, kappa)
            results, seconds = ck.fit_pack(s_text, [o for _, o in specs], s_recipe, [s for s, _ in specs], datas)
            steps = results[0].metrics["steps"]
            ck.costs.observe(3 * flops[s_text] * min(batch, m) * pack, steps, seconds, packed=True)
            students_wall += seconds
            packs.append({"pair": f"{label(t_text)} > {label(s_text)}", "kappa": kappa, "M": m, "steps": steps,
                          "wall_s": seconds, "students": [
                              {"seed": s, "objective": o.name, "status": r.status, "test_acc": r.metrics.get("test_acc")}
                              for (s, o), r in zip(specs, results)]})
            ck.rec.say(f"  {label(t_text)} > {label(s_text)} kappa {kappa:g} (M = {m}, {steps} steps): pack of "
                       f"{len(specs)} in {seconds:.2f} s")
            ck.rec.save()
    students = len(pairs) * len(kappas) * pack
    total = time.perf_counter() - start
    fig.update(students_wall_s=students_wall, total_wall_s=total, students_per_hour=3600 * students / students_wall,
               students_per_hour_with_teachers=3600 * students / total)
    ck.rec.say(f"  {students} students packed: {students_wall:.1f} s ({3600 * students / students_wall:.0f} students/h; "
               f"{total:.1f} s and {3600 * students / total:.0f}/h with the teachers)")
    # the same students one at a time (the engine's default for models over PACK_MAX_FLOPS), if time allows
    if not size.grid_unpacked:
        fig["unpacked"] = {"skipped": f"not at the {size.name} size"}
        return
    estimate = grid_estimate(False)
    if not ck.budget.fits(estimate):
        fig["unpacked"] = {"skipped": f"estimated {estimate:.1f} s, {max(0.0, ck.budget.spare()):.1f} s left"}
        return
    unpacked = 0.0
    for t_text, s_text in pairs:
        for kappa in kappas:
            m, specs, datas = members(t_text, kappa)
            for (seed, objective), d in zip(specs, datas):
                result, seconds = ck.fit(s_text, objective, s_recipe, seed, d)
                ck.costs.observe(3 * flops[s_text] * min(batch, m), result.metrics["steps"], seconds)
                unpacked += seconds
    fig["unpacked"] = {"students_wall_s": unpacked, "students_per_hour": 3600 * students / unpacked,
                       "packed_speedup": unpacked / students_wall}
    ck.rec.say(f"  the same {students} one at a time: {unpacked:.1f} s (packing {unpacked / students_wall:.2f}x)")
