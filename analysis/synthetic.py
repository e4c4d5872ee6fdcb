"""Synthetic results tables whose truth is set: for tests, and to try the report before a study.

The truth, per pair with size ratio r = P_student / P_teacher and teacher error e:

    kappa*  = prefactor * r^slope * e^teacher_exponent
    PG_s(kappa) = 1 + pg_slope * (log kappa* - log kappa) + u_s + e_(s,kappa)     (u_s: seed effect)
    R(kd)   = R(lt) * PG_s,       R = test accuracy
    fidelity_train - fidelity_test = omega * kappa^(-beta) + noise

The seed-mean PG is linear in log kappa, so it crosses 1 exactly at kappa*, and the seed effect
u_s is shared by all kappas of a seed, as a data draw would be. The test probabilities are random
softmaxes whose bias and variance shrink with kappa.

    python -m analysis.synthetic OUT_DIR    # writes OUT_DIR/results.parquet and predictions/
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import pandas as pd

from kdscale import schema

from analysis.table import PREDICTIONS_DIR, RESULTS_FILE


@dataclass(frozen=True)
class SyntheticPair:
    student: str
    student_params: int
    teacher: str = "cnn1d-32"
    teacher_params: int = 16000
    teacher_acc: float = 0.94
    omega: float = 0.15  # fidelity-gap prefactor


DEFAULT_PAIRS = (
    SyntheticPair("mlp-8", 1000), SyntheticPair("mlp-32", 4000),
    SyntheticPair("mlp-128", 16000), SyntheticPair("mlp-512", 64000),
)


def kappa_star(pair: SyntheticPair, prefactor: float, slope: float, teacher_exponent: float) -> float:
    ratio = pair.student_params / pair.teacher_params
    return prefactor * ratio ** slope * (1.0 - pair.teacher_acc) ** teacher_exponent


def synthetic_study(results_dir=None, *, pairs=DEFAULT_PAIRS,
                    kappas=(0.05, 0.1, 0.3, 1.0, 3.0, 10.0), n_seeds: int = 5, taus=(4.0,),
                    prefactor: float = 1.0, slope: float = 0.5, teacher_exponent: float = 0.0,
                    pg_slope: float = 0.1, seed_sd: float = 0.02, noise_sd: float = 0.02,
                    beta: float = 0.5, fidelity_sd: float = 0.005, statuses: dict | None = None,
                    n_test: int = 64, n_classes: int = 10, predictions: bool = True, seed: int = 0,
                    dataset: str = "mnist1d", n_teacher: int = 4000):
    """Returns (table, truth); writes results.parquet and predictions/ under results_dir if given.

    statuses: e.g. {"failed": 2, "diverged": 1} marks that many random trials as not ok.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=n_test)
    rows, probs_by_trial = [], {}
    truth = {"kappa_star": {}, "slope": slope, "prefactor": prefactor,
             "teacher_exponent": teacher_exponent, "beta": beta, "omega": {}}
    for pair in pairs:
        label = schema.pair_label(pair.teacher, pair.student)
        k_star = kappa_star(pair, prefactor, slope, teacher_exponent)
        truth["kappa_star"][label] = k_star
        truth["omega"][label] = pair.omega
        seed_effect = rng.normal(0.0, seed_sd, size=n_seeds)
        for kappa in kappas:
            shared_logits = rng.normal(0.0, 1.0, size=(n_test, n_classes))  # the "bias" of this kappa
            for s in range(n_seeds):
                r_lt = 0.3 + 0.5 * kappa / (kappa + 0.5) + rng.normal(0.0, noise_sd)
                fid_test = 0.8 + rng.normal(0.0, 0.01)
                common = dict(pair=pair, kappa=kappa, seed=s, dataset=dataset, n_teacher=n_teacher,
                              fidelity_test=fid_test)
                arms = [("lt", 4.0, r_lt)]  # lt rows carry ObjectiveSpec's default tau
                for tau in taus:
                    pg = 1.0 + pg_slope * (np.log(k_star) - np.log(kappa)) + seed_effect[s] \
                        + rng.normal(0.0, noise_sd)
                    arms.append(("kd", tau, r_lt * pg))
                for objective, tau, r in arms:
                    gap = pair.omega * kappa ** (-beta) + rng.normal(0.0, fidelity_sd)
                    row = _row(**common, objective=objective, tau=tau, test_acc=r,
                               fidelity_train=fid_test + gap)
                    rows.append(row)
                    if predictions:
                        sharpness = 2.0 + np.log1p(kappa)
                        logits = (sharpness * np.eye(n_classes)[labels] + shared_logits / (1 + kappa)
                                  + rng.normal(0.0, 0.7, size=(n_test, n_classes)))
                        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
                        probs_by_trial[row["trial_id"]] = (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)
    table = pd.DataFrame(rows)
    for status, count in (statuses or {}).items():
        chosen = rng.choice(table.index[table["status"] == "ok"], size=count, replace=False)
        table.loc[chosen, "status"] = status
        table.loc[chosen, "error"] = "FloatingPointError: loss is NaN" if status == "diverged" \
            else "RuntimeError: worker died"
        table.loc[chosen, ["test_acc", "test_loss", "train_acc", "fidelity_train", "fidelity_test"]] = np.nan
    if results_dir is not None:
        write_results(results_dir, table, {t: (p, labels) for t, p in probs_by_trial.items()})
    return table, truth


def _row(pair: SyntheticPair, kappa, seed, dataset, n_teacher, objective, tau, test_acc,
         fidelity_train, fidelity_test) -> dict:
    teacher_id = hashlib.sha256(f"{dataset}/{n_teacher}/{pair.teacher}".encode()).hexdigest()[:16]
    key = f"{teacher_id}/{pair.student}/{kappa}/{objective}/{tau}/{seed}"
    n_train = int(np.floor(kappa * n_teacher + 0.5))
    return {"study": "synthetic", "trial_id": hashlib.sha256(key.encode()).hexdigest()[:16],
            "status": "ok", "error": None, "dataset": dataset, "n_teacher": n_teacher,
            "n_train": n_train, "kappa": float(kappa), "teacher": pair.teacher, "student": pair.student,
            "teacher_params": pair.teacher_params, "student_params": pair.student_params,
            "teacher_id": teacher_id, "objective": objective, "tau": float(tau), "alpha": 0.0,
            "seed": seed, "test_acc": float(test_acc), "test_loss": float(-np.log(np.clip(test_acc, 1e-3, 1))),
            "test_ppl": None, "train_acc": min(1.0, float(test_acc) + 0.1),
            "fidelity_train": float(fidelity_train), "fidelity_test": float(fidelity_test),
            "teacher_test_acc": pair.teacher_acc, "epochs": 30, "steps": 1000, "wall_s": 1.0,
            "flops": 1e9 * kappa}


def write_results(results_dir, table: pd.DataFrame, predictions: dict | None = None) -> Path:
    """Write a table (and {trial_id: (probs, labels)}) in the layout the engine writes."""
    results_dir = Path(results_dir)
    (results_dir / PREDICTIONS_DIR).mkdir(parents=True, exist_ok=True)
    table.to_parquet(results_dir / RESULTS_FILE, index=False)
    for trial_id, (probs, labels) in (predictions or {}).items():
        np.savez(results_dir / PREDICTIONS_DIR / f"{trial_id}.npz", probs=probs,
                 labels=np.asarray(labels, dtype=np.int64))
    return results_dir


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m analysis.synthetic OUT_DIR")
    _, truth = synthetic_study(sys.argv[1], statuses={"failed": 2, "diverged": 1})
    print(f"wrote {sys.argv[1]}; true kappa*: "
          + ", ".join(f"{k}: {v:.3g}" for k, v in truth["kappa_star"].items()))


@dataclass(frozen=True)
class PlantedBackend:
    """A trial backend with planted truth, for the kappa* search (analysis.kappa_search): the rows
    lt and kd would write for (pair, kappa, seed), each the same whenever it is asked for, as a
    trial of one id is. Per pair with planted kappa* k and seed s,

        PG_s(kappa) = 1 + height * tanh(slope * (log k - log kappa) / height) + u_s + e_(s,kappa)

    a curve that falls through 1 at k with `slope` per e-fold there and levels off at 1 +- height
    (so a straight line between far-apart kappas misplaces the crossing), u_s ~ N(0, seed_sd)
    shared by every kappa of the seed (its data draw), e ~ N(0, noise_sd). R(lt) rises with kappa.
    """
    kappa_stars: dict            # {SyntheticPair: planted kappa*}
    slope: float = 0.1
    height: float = 0.5
    seed_sd: float = 0.01
    noise_sd: float = 0.02
    replicate: int = 0           # which draw of the noise

    @property
    def labels(self) -> dict:
        return {schema.pair_label(p.teacher, p.student): p for p in self.kappa_stars}

    def rows(self, pair: SyntheticPair, kappa: float, seed: int) -> list[dict]:
        index = list(self.kappa_stars).index(pair)
        seed_effect = np.random.default_rng([self.replicate, index, seed, 0]).normal(0.0, self.seed_sd)
        rng = np.random.default_rng([self.replicate, index, seed, 1, int(round(kappa * 1e6))])
        r_lt = 0.5 + 0.4 * kappa / (kappa + 0.3) + rng.normal(0.0, 0.01)
        shift = np.log(self.kappa_stars[pair]) - np.log(kappa)
        pg = 1.0 + self.height * np.tanh(self.slope * shift / self.height) + seed_effect \
            + rng.normal(0.0, self.noise_sd)
        common = dict(pair=pair, kappa=kappa, seed=seed, dataset="mnist1d", n_teacher=4000,
                      fidelity_train=0.9, fidelity_test=0.8)
        return [_row(**common, objective="lt", tau=4.0, test_acc=r_lt),
                _row(**common, objective="kd", tau=4.0, test_acc=r_lt * pg)]

    def table(self, design: dict) -> pd.DataFrame:
        """The rows of a search's design {pair label: {kappa: seeds}}: seeds 0..n-1 at each kappa."""
        pairs = self.labels
        return pd.DataFrame([row for label, cells in design.items() for kappa, n in cells.items()
                             for seed in range(n) for row in self.rows(pairs[label], kappa, seed)])
