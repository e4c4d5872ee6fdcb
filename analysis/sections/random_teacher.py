"""The random-teacher study's section: does a student distilled from an untrained teacher, with no
labels, learn features a linear probe reads better than its teacher's, by how much, and how does
that depend on kappa, on where the student starts and on the inputs? (studies/random_teacher.py;
Sarnthein et al., arXiv 2302.12091)

Per trial the gain is probe_acc - teacher_probe_acc (the same probe on the same N samples, the
student's features against its own teacher's), and likewise on the second task
(transfer_probe_acc - teacher_transfer_probe_acc). Seeds are the unit: each seed has its own
teacher, so a cell's interval is a t-interval over its seeds' gains.

Tables: `cells` (per kappa, start, inputs: the relative distance of the start to the teacher, the
probes of student and teacher, the gain and transfer gain with 95% intervals), `versus_independent`
(each start's gain minus the independent start's, paired by seed, per kappa and inputs),
`versus_kappa` (each start's and inputs' gain at the largest kappa minus at the smallest, paired by seed).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis import AnalysisError
from analysis import markdown as md
from analysis.paired import mean_ci
from analysis.sections import Section, Table

NAME = "random_teacher"
NEEDED = ("kappa", "seed", "init", "init_scale", "inputs", "init_distance", "probe_acc", "teacher_probe_acc")


def start_label(init: str, scale: float) -> str:
    """`independent`, `teacher`, `near 0.1`, `interpolate 0.5`."""
    return f"{init} {scale:g}" if init in ("near", "interpolate") else str(init)


def trials(table: pd.DataFrame) -> pd.DataFrame:
    """The finished trials with both probes, a `start` label and the gains."""
    if hasattr(table, "to_pandas"):
        table = table.to_pandas()
    missing = [c for c in NEEDED if c not in table.columns]
    if missing:
        raise AnalysisError(f"random_teacher: the results table lacks column(s) {', '.join(missing)}")
    frame = table[table["status"].astype(str) == "ok"].copy()
    frame = frame[np.isfinite(frame["probe_acc"].astype(float)) & np.isfinite(frame["teacher_probe_acc"].astype(float))]
    if frame.empty:
        raise AnalysisError("random_teacher: no finished trial with student and teacher probes")
    frame["start"] = [start_label(i, float(s)) for i, s in zip(frame["init"], frame["init_scale"])]
    frame["gain"] = frame["probe_acc"].astype(float) - frame["teacher_probe_acc"].astype(float)
    transfer = frame.get("transfer_probe_acc", pd.Series(math.nan, index=frame.index)).astype(float)
    teacher_transfer = frame.get("teacher_transfer_probe_acc", pd.Series(math.nan, index=frame.index)).astype(float)
    frame["transfer_gain"] = transfer - teacher_transfer
    return frame


def _ci(prefix: str, values) -> dict:
    found = mean_ci(values)
    return {f"{prefix}_mean": found["mean"], f"{prefix}_low": found["low"], f"{prefix}_high": found["high"]}


def numbers(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    frame = trials(table)
    keys = ["kappa", "start", "inputs"]
    rows = []
    for (kappa, start, inputs), group in frame.groupby(keys, sort=True):
        rows.append({"kappa": kappa, "start": start, "inputs": inputs, "n": len(group),
                     "init_distance": float(group["init_distance"].astype(float).mean()),
                     "probe_acc": float(group["probe_acc"].mean()),
                     "teacher_probe_acc": float(group["teacher_probe_acc"].mean()),
                     **_ci("gain", group["gain"]), **_ci("transfer_gain", group["transfer_gain"])})
    cells = pd.DataFrame(rows).sort_values(["inputs", "kappa", "init_distance"]).reset_index(drop=True)
    versus = []
    for (kappa, inputs), group in frame.groupby(["kappa", "inputs"], sort=True):
        base = group[group["start"] == "independent"].set_index("seed")["gain"]
        for start, part in group[group["start"] != "independent"].groupby("start"):
            diff = part.set_index("seed")["gain"].sub(base).dropna()
            versus.append({"kappa": kappa, "inputs": inputs, "start": start, "n": len(diff),
                           **_ci("gain_minus_independent", diff)})
    by_kappa = []
    small, large = frame["kappa"].min(), frame["kappa"].max()
    if large > small:
        for (start, inputs), group in frame.groupby(["start", "inputs"], sort=True):
            low = group[group["kappa"] == small].set_index("seed")["gain"]
            high = group[group["kappa"] == large].set_index("seed")["gain"]
            diff = high.sub(low).dropna()
            by_kappa.append({"start": start, "inputs": inputs, "kappa_low": small, "kappa_high": large,
                             "n": len(diff), **_ci("gain_change", diff)})
    return {"cells": cells, "versus_independent": pd.DataFrame(versus), "versus_kappa": pd.DataFrame(by_kappa)}


def _interval(row: dict, prefix: str) -> str:
    mean, low, high = row[f"{prefix}_mean"], row[f"{prefix}_low"], row[f"{prefix}_high"]
    if not np.isfinite(low):
        return md.fixed(mean, sign=True)
    return f"{md.fixed(mean, sign=True)} [{md.fixed(low, sign=True)}, {md.fixed(high, sign=True)}]"


def section(table: pd.DataFrame, results_dir=None, out_dir=None) -> Section:
    tables = numbers(table)
    cells = tables["cells"]
    out = Section(NAME, tables=tables)
    out.add("## Random teachers: does a label-free student beat its untrained teacher's features?", "",
            "Gain = student's linear-probe accuracy minus its untrained teacher's (same probe, same N samples); "
            "transfer: the same on MNIST-1D with reversed templates. Mean over seeds [95% t-interval]; "
            "distance = ||theta_S0 - theta_T|| / ||theta_T|| at the start.", "")
    if cells["n"].min() < 5:
        out.add(f"Only {int(cells['n'].min())} seed(s) in some cells: intervals are wide or missing.", "")
    display = pd.DataFrame([{
        "inputs": r["inputs"], "kappa": md.number(r["kappa"]), "start": r["start"],
        "distance": md.fixed(r["init_distance"], 2), "student probe": md.fixed(r["probe_acc"]),
        "teacher probe": md.fixed(r["teacher_probe_acc"]), "gain": _interval(r, "gain"),
        "transfer gain": _interval(r, "transfer_gain"), "n": str(int(r["n"]))} for r in cells.to_dict("records")])
    out.add(Table(display), "")
    above = cells[cells["gain_low"] > 0]
    out.add(f"The student's probe beats its teacher's (interval above 0) in {len(above)} of {len(cells)} cells; "
            f"gains range from {md.fixed(cells['gain_mean'].min(), sign=True)} to "
            f"{md.fixed(cells['gain_mean'].max(), sign=True)}.", "")
    versus = tables["versus_independent"]
    if not versus.empty:
        out.add("Each start against the independent one (gain difference, paired by seed):", "")
        out.add(Table(pd.DataFrame([{"inputs": r["inputs"], "kappa": md.number(r["kappa"]), "start": r["start"],
                                     "gain - independent's": _interval(r, "gain_minus_independent")}
                                    for r in versus.to_dict("records")])), "")
    by_kappa = tables["versus_kappa"]
    if not by_kappa.empty:
        out.add("Gain at the largest kappa minus at the smallest (paired by seed):", "")
        out.add(Table(pd.DataFrame([{"inputs": r["inputs"], "start": r["start"],
                                     "kappa": f"{md.number(r['kappa_low'])} -> {md.number(r['kappa_high'])}",
                                     "gain change": _interval(r, "gain_change")}
                                    for r in by_kappa.to_dict("records")])), "")
    return out
