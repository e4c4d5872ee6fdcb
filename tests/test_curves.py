"""analysis.curves on histories written through the real store: the late gain by hand, trials
without a history left out, the still-improving line; and analysis.plots' per (kappa, tau) panels."""
import math

import numpy as np
import pandas as pd
import pytest

from analysis import curves, plots
from kdscale.store import ResultsStore


def history(accs, every=100):
    return [{"epoch": i + 1, "step": every * (i + 1), "test_acc": a, "train_loss": 1.0} for i, a in enumerate(accs)]


@pytest.fixture
def stored(tmp_path):
    """lt rising late on both seeds, kd flat; a third lt trial without a history file."""
    store = ResultsStore(str(tmp_path), "study")
    rows = []
    for trial_id, arm, seed, accs in (("a", "lt", 0, [0.2, 0.5, 0.6, 0.7]),
                                      ("b", "lt", 1, [0.2, 0.4, 0.5, 0.7]),
                                      ("c", "kd tau=4", 0, [0.6, 0.8, 0.8, 0.8]),
                                      ("d", "kd tau=4", 1, [0.6, 0.8, 0.81, 0.8])):
        store.write_history(trial_id, history(accs))
        rows.append({"trial_id": trial_id, "arm": arm, "kappa": 0.5, "seed": seed})
    rows.append({"trial_id": "e", "arm": "lt", "kappa": 0.5, "seed": 2})  # no history stored
    return store.root, pd.DataFrame(rows)


def test_late_gain_by_hand(stored):
    root, frame = stored
    found = curves.histories(frame, root)
    assert len(found) == 16 and set(found["seed"]) == {0, 1}  # trial e has no file: left out
    gains = curves.late_gain(found).set_index("arm")
    # the last report at or before half of 400 steps is step 200: lt 0.7 - 0.5 and 0.7 - 0.4
    assert gains.loc["lt", "n"] == 2 and gains.loc["lt", "late_gain_mean"] == pytest.approx(0.25)
    assert gains.loc["lt", "late_gain_sd"] == pytest.approx(np.std([0.2, 0.3], ddof=1))
    assert gains.loc["lt", "final_mean"] == pytest.approx(0.7)
    assert gains.loc["kd tau=4", "late_gain_mean"] == pytest.approx(0.0)
    assert curves.still_rising(gains.reset_index()) == "lt at kappa 0.5 (+0.250)"


def test_still_rising_needs_more_than_the_floor_and_the_seed_sd():
    gains = pd.DataFrame({"arm": ["kd tau=20 no-tau2", "kd tau=3", "kd tau=20", "lt", "l2"],
                          "kappa": [0.1, 1.0, 1.0, 4.0, 1.0], "n": 3,
                          "final_mean": 0.5, "late_gain_mean": [0.05, 0.009, 0.02, 0.03, 0.04],
                          "late_gain_sd": [0.01, 0.0, 0.03, math.nan, 0.01]})
    # tau=3 under the 0.01 floor, tau=20 under its sd; the rest in arm order (lt, kd by tau, l2)
    assert curves.still_rising(gains) == ("lt at kappa 4 (+0.030); kd tau=20 no-tau2 at kappa 0.1 (+0.050); "
                                          "l2 at kappa 1 (+0.040)")
    assert curves.still_rising(gains.iloc[[1]]) == "none"


def test_no_results_dir_no_curves(stored):
    _, frame = stored
    assert curves.histories(frame, None).empty


def test_panels_a_row_per_kappa_and_a_column_per_tau(stored, tmp_path):
    root, frame = stored
    found = curves.histories(frame, root)
    from matplotlib.image import imread

    def arms(tau):
        return [("lt", ":", "lt"), (f"kd tau={tau:g}", "-", "kd")]

    tall = imread(plots.curves_per_kappa_tau(found, [0.25, 0.5, 1.0], [4.0], arms, tmp_path / "tall.png", "title")).shape
    wide = imread(plots.curves_per_kappa_tau(found, [0.5], [1.0, 4.0, 8.0], arms, tmp_path / "wide.png", "title")).shape
    assert tall[0] > tall[1] and wide[1] > wide[0]  # a row per kappa, a column per tau
