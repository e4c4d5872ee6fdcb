"""The recipe searches of a study (kdscale.search) on Ray: stored ones are read, the others run as one
Ray task per job (the searches of one student and kappa, one pack) after the teachers, and each
result is stored the moment it arrives, so an interrupted study keeps every finished search.
"""
from __future__ import annotations

import time

import ray

from kdscale.engine.workers import search_task
from kdscale.search import SearchSpec, describe, read_search, write_search


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


def run_searches(pending: list[SearchSpec], teachers: dict, storage: str, cache: str, resources, log,
                 on_result=None) -> dict[str, dict]:
    """Run the pending searches, one Ray task per job; store and log each result as it arrives."""
    jobs: dict[tuple, list[SearchSpec]] = {}
    for search in pending:
        jobs.setdefault(search.job_key, []).append(search)
    logits = ray.put({tid: out.logits_train for tid, out in teachers.items()})
    task = ray.remote(num_cpus=resources.cpus_per_trial, num_gpus=resources.gpus_per_trial)(search_task)
    threads = max(1, int(resources.cpus_per_trial))
    refs = {task.remote(job, cache, threads, logits): job for job in jobs.values()}
    log(f"recipe searches: {len(pending)} to run in {len(refs)} jobs (the searches of one student and kappa "
        "share a pack)")
    results, started = {}, time.perf_counter()
    while refs:
        ready, _ = ray.wait(list(refs), num_returns=1)
        refs.pop(ready[0])
        for result in ray.get(ready[0]):
            write_search(storage, result)
            results[result["id"]] = result
            log(f"[search {len(results)}/{len(pending)}] {describe(result)} "
                f"({time.perf_counter() - started:.0f} s)")
            if on_result is not None:
                on_result(result)
    return results
