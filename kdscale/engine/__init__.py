"""The engine: kdscale's only Ray code.

    run_study(spec)   every unfinished trial of a study, teachers first (driver.py; trials.py, workers.py:
                      the Tune trials; writes.py: their MLflow writes; checks.py: resources and faults on Ray)
    run_searches()    recipe searches (kdscale.search) as Ray tasks, stored as they finish (searches.py)
    ray_session()     Ray started (or joined) for a block, stopped after it if it started it (session.py)
"""
from kdscale.engine.session import init_ray, ray_session  # first: it sets Ray's process settings
from kdscale.engine.driver import StudyResult, run_study
from kdscale.engine.trials import MAX_PACK, PACK_MAX_FLOPS, make_packs
from kdscale.engine.searches import run_searches, stored_searches

__all__ = ["init_ray", "ray_session", "MAX_PACK", "PACK_MAX_FLOPS", "StudyResult", "make_packs", "run_study",
           "run_searches", "stored_searches"]
