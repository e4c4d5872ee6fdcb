"""The recipe searches of a study (kdscale.search) on Ray: stored ones are read, the others run as one
Ray task per job (the searches of one student and kappa, one pack) after the teachers, and each
result is stored the moment it arrives, so an interrupted study keeps every finished search. A job
can run for many minutes (a ViT student's search, say); while none finishes, a line every
PROGRESS_S says how far the searches are.
"""
from __future__ import annotations

import time

import ray

from kdscale.engine.checks import task_fault
from kdscale.engine.trials import STEP_FLOPS
from kdscale.engine.workers import search_task
from kdscale.search import SearchSpec, describe, read_search, write_search

PROGRESS_S = 300.0  # with no search finished for this long, say how far the searches are


def stored_searches(searches: list[SearchSpec], storage: str) -> tuple[dict[str, dict], list[SearchSpec]]:
    """({search id: stored result}, the searches not stored yet)."""
    stored, pending = {}, []
    for search in searches:
        result = read_search(storage, search.id)
        if result is None:
            pending.append(search)
        else:
            stored[search.id] = result
    return stored, pending


def _cost(job: list[SearchSpec]) -> float:
    """A job's work, roughly: its searches x their student-steps x the student's forward FLOPs."""
    import math

    from kdscale import data as datasets, models
    from kdscale.train import forward_flops

    first = job[0]
    info = datasets.info(first.data)
    flops = forward_flops(models.build(first.student, info.input_shape, info.num_classes, info.vocab_size),
                          info.example())
    n_fit = first.n_train - max(1, math.floor(first.space.val_fraction * first.n_train + 0.5))
    rungs = first.space.rungs(n_fit, first.base.batch_size)
    steps = sum(budget * keep * seeds for (budget, keep), seeds in zip(rungs, first.space.rung_seeds(len(rungs))))
    return len(job) * steps * (flops + STEP_FLOPS)


def run_searches(pending: list[SearchSpec], teachers: dict, storage: str, cache: str, resources, log,
                 on_result=None) -> dict[str, dict]:
    """Run the pending searches, one Ray task per job; store and log each result as it arrives."""
    jobs: dict[tuple, list[SearchSpec]] = {}
    for search in pending:
        jobs.setdefault(search.job_key, []).append(search)
    logits = ray.put({tid: out.logits_train for tid, out in teachers.items()})
    task = ray.remote(num_cpus=resources.cpus_per_trial, num_gpus=resources.gpus_per_trial)(search_task)
    threads = max(1, int(resources.cpus_per_trial))
    ordered = sorted(jobs.values(), key=_cost, reverse=True)  # the longest first: no long job left for last
    refs = {task.remote(job, cache, threads, logits): job for job in ordered}
    log(f"recipe searches: {len(pending)} to run in {len(refs)} jobs (the searches of one student and kappa "
        "share a pack)")
    results, started, n_jobs = {}, time.perf_counter(), len(refs)
    while refs:
        ready, _ = ray.wait(list(refs), num_returns=1, timeout=PROGRESS_S)
        if not ready:
            log(f"recipe searches: {len(results)} of {len(pending)} done, {n_jobs - len(refs)} of {n_jobs} jobs, "
                f"{(time.perf_counter() - started) / 60:.1f} min so far")
            continue
        refs.pop(ready[0])
        try:
            job_results = ray.get(ready[0])
        except ray.exceptions.RayTaskError as error:  # a full cache disk is one line, a bug its traceback
            found = task_fault(error, "cache")
            if found is None:
                raise
            raise found from error
        for result in job_results:
            write_search(storage, result)
            results[result["id"]] = result
            log(f"[search {len(results)}/{len(pending)}] {describe(result)} "
                f"({time.perf_counter() - started:.0f} s)")
            if on_result is not None:
                on_result(result)
    return results
