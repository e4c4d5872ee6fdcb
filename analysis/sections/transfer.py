"""The transfer study's section (studies/transfer.py; the paper's Table 1): a pretrained teacher with
its head fitted on the target's N samples, students from scratch with lt and kd per kappa.

    section(table, out_dir, source, source_acc=None, target=None, recipe="lt") -> Section "transfer"

`source` says where the teacher's backbone came from and `source_acc` its accuracy on its own task
(the study knows them; the results table holds the target's trials only).
Tables: `accuracy` (per arm and kappa: n, mean, sd, 95% t CI of test accuracy), `gain` (per kd
arm and kappa: PI = acc(kd) - acc(lt) and PG = acc(kd) / acc(lt), paired by seed, mean and 95% t
CI, and `sign` of PI: above, below or unclear) and `kappa_star` (analysis.crossover, per kd arm).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.crossover import crossover, describe
from analysis.paired import mean_ci
from analysis.sections import Section, Table
from analysis.supervision import increments, usable

NAME = "transfer"
FIGURE = "transfer_accuracy.png"
RECIPES = {"lt": "searched for lt per kappa and reused for kd (--recipe lt, the paper's protocol)",
           "fair": "searched for each arm (--recipe fair)", "fixed": "fixed (--recipe fixed)"}


def section(table: pd.DataFrame, out_dir: Path, source: str, source_acc: float | None = None,
            target: str | None = None, recipe: str = "lt", n_boot: int = 2000) -> Section:
    trials, per_seed = usable(table), increments(table)
    per_seed = per_seed.assign(PG=per_seed["R"] / per_seed["R_lt"])
    arms = ["lt", *sorted(a for a in trials["arm"].unique() if a != "lt")]
    kds = arms[1:]
    accuracy = pd.DataFrame([{"arm": arm, "kappa": kappa, **mean_ci(group["R"])}
                             for (arm, kappa), group in trials.groupby(["arm", "kappa"])])
    gain = pd.DataFrame([{"arm": arm, "kappa": kappa, **{f"{v}_{k}": c[k] for v in ("PI", "PG")
                                                         for c in [mean_ci(group[v])] for k in ("n", "mean", "low", "high")}}
                         for (arm, kappa), group in per_seed.groupby(["arm", "kappa"])])
    if len(gain):
        gain["sign"] = ["above" if r.PI_n > 1 and r.PI_low > 0 else "below" if r.PI_n > 1 and r.PI_high < 0
                        else "unclear" for r in gain.itertuples()]
    stars = crossover(per_seed, n_boot=n_boot) if len(per_seed) else pd.DataFrame()
    acc, gains = accuracy.set_index(["arm", "kappa"]), gain.set_index(["arm", "kappa"]) if len(gain) else gain
    row = table.iloc[0]
    rows = []
    for kappa in sorted(trials["kappa"].unique()):
        cells = [f"{kappa:g}", str(int(round(kappa * row["n_teacher"]))), interval(acc, ("lt", kappa))]
        for arm in kds:
            cells += [interval(acc, (arm, kappa)), interval(gains, (arm, kappa), "PI", signed=True),
                      interval(gains, (arm, kappa), "PG")]
        rows.append(cells)
    columns = ["kappa", "M", "acc lt"] + [f"{name} {arm}" for arm in kds for name in ("acc", "PI", "PG")]
    teacher_acc = float(row["teacher_test_acc"])
    result = Section(NAME, tables={"accuracy": accuracy, "gain": gain, "kappa_star": stars})
    result.add("## Transfer from a pretrained teacher (paper Table 1)", "",
               f"Teacher: {row['teacher']}, its backbone {source}"
               + (f" (test accuracy there {source_acc:.4f})" if source_acc is not None else "")
               + f", frozen, with its linear head fitted on the target's N = {row['n_teacher']} samples: test accuracy "
               f"**{teacher_acc:.4f}** on the target ({target or row['dataset']}). Students {row['student']} from "
               f"scratch on M = kappa N target samples, recipes {RECIPES.get(recipe, recipe)}. Test accuracy mean [95% t CI over "
               "seeds]; PI = acc(kd) - acc(lt) and PG = acc(kd) / acc(lt) paired by seed.", "",
               Table(pd.DataFrame(rows, columns=columns)), "",
               "**Answer.** " + answer(acc, gain, stars, teacher_acc, kds), "")
    result.figures = [draw(out_dir, acc, gain, teacher_acc, arms)]
    return result


def interval(frame: pd.DataFrame, key, value: str | None = None, signed: bool = False) -> str:
    """`0.812 [0.790, 0.834]` (the mean alone for one seed; `-` without a row)."""
    if not len(frame) or key not in frame.index:
        return "-"
    r = frame.loc[key]
    mean, low, high, n = (r[f"{value}_{k}"] if value else r[k] for k in ("mean", "low", "high", "n"))
    fmt = "{:+.3f}" if signed else "{:.3f}"
    return fmt.format(mean) + (f" [{fmt.format(low)}, {fmt.format(high)}]" if n > 1 else "")


def answer(acc, gain, stars, teacher_acc: float, kds: list[str]) -> str:
    """How the teacher compares with lt on all N, and per kd arm where PI is clearly above or below 0."""
    lt = acc.xs("lt", level="arm")["mean"]
    top = lt.index.max()
    parts = [f"the transferred teacher ({teacher_acc:.3f}) is {'above' if teacher_acc > lt[top] else 'not above'} "
             f"lt trained from scratch at the largest kappa ({top:g}: {lt[top]:.3f})"]
    for arm in kds:
        rows = gain[gain["arm"] == arm] if len(gain) else gain
        above = [f"{k:g}" for k in rows.loc[rows["sign"] == "above", "kappa"]] if len(rows) else []
        below = [f"{k:g}" for k in rows.loc[rows["sign"] == "below", "kappa"]] if len(rows) else []
        text = f"{arm} beats lt (95% CI of PI above 0) at kappa {', '.join(above) or 'none'}"
        text += f" and loses (below 0) at {', '.join(below)}" if below else " and loses nowhere"
        star = stars[stars["arm"] == arm] if len(stars) else stars
        if len(star):
            text += f" (kappa*: {describe(star.iloc[0].to_dict(), True, seed_note=False).rstrip('.')})"
        parts.append(text)
    text = ". ".join(parts) + "."  # each arm's sentence opens with its name, kd in lower case
    return text[0].upper() + text[1:]


def draw(out_dir: Path, acc, gain, teacher_acc: float, arms: list[str]) -> Path:
    """Accuracy of every arm against kappa with the teacher's as a line; PI of each kd arm with its CI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for index, arm in enumerate(arms):  # one colour per arm in both panels
        part = acc.xs(arm, level="arm")
        left.errorbar(part.index, part["mean"], yerr=(part["high"] - part["mean"]).fillna(0), marker="o",
                      capsize=3, label=arm, color=f"C{index}")
    left.axhline(teacher_acc, color="grey", ls="--", label="transferred teacher")
    for index, arm in enumerate(arms[1:], start=1):
        part = gain[gain["arm"] == arm]
        right.plot(part["kappa"], part["PI_mean"], marker="o", label=arm, color=f"C{index}")
        right.fill_between(part["kappa"], part["PI_low"].fillna(part["PI_mean"]),
                           part["PI_high"].fillna(part["PI_mean"]), alpha=0.2, color=f"C{index}")
    right.axhline(0, color="grey", lw=0.8)
    left.set(xscale="log", xlabel="kappa = M / N", ylabel="test accuracy", title="students from scratch")
    right.set(xscale="log", xlabel="kappa = M / N", ylabel="PI = acc(kd) - acc(lt)", title="PI, 95% CI over seeds")
    left.legend()
    right.legend()
    figure = out_dir / FIGURE
    fig.savefig(figure, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return figure
