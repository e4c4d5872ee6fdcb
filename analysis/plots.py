"""Figures of the report, drawn headless.

Figures are built as `matplotlib.figure.Figure` objects and saved directly, never through pyplot:
no backend is chosen, no global figure state is touched, so this works without a display and
inside a caller that uses pyplot for something else. Every function takes the tables the fits
return and a path, and returns the path written.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import matplotlib
from matplotlib.figure import Figure

from analysis.fidelity import power_law
from analysis.table import Metric

FIGURE_DPI = 120


def _grid(n_panels: int, width: float = 4.0, height: float = 3.2):
    columns = min(3, max(1, n_panels))
    rows = math.ceil(n_panels / columns)
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = [figure.add_subplot(rows, columns, i + 1) for i in range(n_panels)]
    return figure, axes


def _pair_panel(ax, pair: str, ylabel: str, legend_size: int = 7) -> None:
    """The decorations every per-pair panel shares: log kappa axis, the pair as title, a legend."""
    ax.set_xscale("log")
    ax.set_title(pair, fontsize=9)
    ax.set_xlabel("kappa = M / N")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=legend_size)


def _save(figure: Figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=FIGURE_DPI)
    return path


def error_vs_kappa(frame: pd.DataFrame, metric: Metric, pairs: list[str], path) -> Path:
    """Per pair: the lt and kd curves of the measure against kappa, mean +- 1 sd over seeds."""
    use_error = metric.name in ("test_acc", "test_error")
    values = (1.0 - pd.to_numeric(frame["test_acc"])) if use_error else frame["R"]
    ylabel = "test error (1 - accuracy)" if use_error else metric.label
    frame = frame.assign(value=values)
    figure, axes = _grid(len(pairs))
    for ax, pair in zip(axes, pairs):
        part = frame[(frame["pair"] == pair) & frame["objective"].isin(["lt", "kd"])]
        for arm, group in part.groupby("arm", sort=True):
            stats = group.groupby("kappa")["value"].agg(["mean", "std"]).sort_index()
            kappas, mean, sd = stats.index.to_numpy(), stats["mean"].to_numpy(), stats["std"].fillna(0).to_numpy()
            line, = ax.plot(kappas, mean, marker="o", ms=3, label=arm)
            ax.fill_between(kappas, mean - sd, mean + sd, color=line.get_color(), alpha=0.2, lw=0)
        teacher = pd.to_numeric(part.get("teacher_test_acc", pd.Series(dtype=float)), errors="coerce").dropna()
        if use_error and len(teacher) and (part["objective"] == "kd").any():  # what bounds a kd student
            ax.axhline(1.0 - teacher.iloc[0], color="black", lw=0.8, ls=":", label="teacher")
        _pair_panel(ax, pair, ylabel)
    figure.suptitle("Test performance against kappa (band: +-1 sd over seeds; dotted: the teacher's)",
                    fontsize=10)
    return _save(figure, path)


def gain_vs_kappa(summary: pd.DataFrame, cross: pd.DataFrame, higher_is_better: bool, path) -> Path:
    """PG against kappa, one curve per (pair, kd arm), kappa* and its CI marked on the PG = 1 line."""
    figure = Figure(figsize=(7.0, 4.5), layout="constrained")
    ax = figure.add_subplot()
    crossings = cross.set_index(["pair", "arm"]) if len(cross) else None
    for (pair, arm), group in summary.groupby(["pair", "arm"], sort=True):
        group = group.sort_values("kappa")
        label = pair if summary["arm"].nunique() == 1 else f"{pair} {arm}"
        line = ax.errorbar(group["kappa"], group["PG_mean"], yerr=group["PG_se"].fillna(0),
                           marker="o", ms=3, capsize=2, label=label)
        color = line[0].get_color()
        if crossings is not None and (pair, arm) in crossings.index:
            row = crossings.loc[(pair, arm)]
            if np.isfinite(row["kappa_star"]):
                ax.plot([row["kappa_star"]], [1.0], marker="D", color=color, ms=7, mec="black")
                low, high = row["ci_low"], row["ci_high"]
                if np.isfinite(low) and np.isfinite(high) and low > 0:
                    ax.hlines(1.0, low, high, color=color, lw=4, alpha=0.4)
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("kappa = M / N")
    helps = "above" if higher_is_better else "below"
    ax.set_ylabel("PG = R(kd) / R(lt)")
    ax.set_title(f"Performance gain (kd helps {helps} 1); error bars: +-1 se over seeds;\n"
                 "diamonds: kappa*, thick bars: its bootstrap CI", fontsize=10)
    ax.legend(fontsize=7)
    return _save(figure, path)


def gain_vs_ratio(summary: pd.DataFrame, info: pd.DataFrame, higher_is_better: bool, path) -> Path:
    """PG against P_student / P_teacher, one curve per kappa (and kd arm), whether or not a kappa*
    exists: how the gain at a given data size depends on the pair's size ratio."""
    ratios = info.set_index("pair")["size_ratio"]
    frame = summary[summary["pair"].isin(ratios.index)].assign(size_ratio=lambda f: f["pair"].map(ratios))
    figure = Figure(figsize=(7.0, 4.5), layout="constrained")
    ax = figure.add_subplot()
    arms = frame["arm"].nunique()
    colors = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, max(1, frame["kappa"].nunique())))
    for color, (kappa, by_kappa) in zip(colors, frame.groupby("kappa", sort=True)):
        for arm, group in by_kappa.groupby("arm", sort=True):
            group = group.sort_values("size_ratio")
            label = f"kappa {kappa:g}" + (f" {arm}" if arms > 1 else "")
            ax.errorbar(group["size_ratio"], group["PG_mean"], yerr=group["PG_se"].fillna(0), marker="o", ms=3,
                        capsize=2, color=color, label=label)
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("size ratio P_student / P_teacher")
    ax.set_ylabel("PG = R(kd) / R(lt)")
    helps = "above" if higher_is_better else "below"
    ax.set_title(f"Performance gain against size ratio, one line per kappa (kd helps {helps} 1;\n"
                 "error bars: +-1 se over seeds; pairs of one ratio are joined in order)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    return _save(figure, path)


def kappa_star_vs_ratio(points: pd.DataFrame, fits: pd.DataFrame, path) -> Path:
    """kappa* against P_student / P_teacher, log-log: each kappa* with its bootstrap interval (an
    arrow where a bound lies beyond the grid) and the fitted power law per kd arm."""
    figure = Figure(figsize=(6.0, 4.5), layout="constrained")
    ax = figure.add_subplot()
    for (dataset, arm), group in points.groupby(["dataset", "arm"], sort=True):
        used = group[group["used"]]
        label = f"{arm}" + (f" [{dataset}]" if points["dataset"].nunique() > 1 else "")
        star = used["kappa_star"].to_numpy(float)
        low, high = used["ci_low"].to_numpy(float), used["ci_high"].to_numpy(float)
        # A bound beyond the grid is drawn as an arrow one decade long; a missing interval not at all.
        open_low, open_high = (low == 0), (high == np.inf)
        down = np.where(np.isfinite(low) & ~open_low, star - low, 0.0)
        up = np.where(np.isfinite(high), high - star, 0.0)
        ratio = used["size_ratio"].to_numpy(float)
        drawn = ax.errorbar(ratio, star, yerr=np.array([down, up]), fmt="o", capsize=3, label=label)
        color = drawn[0].get_color()
        for side, where in ((open_low, "low"), (open_high, "high")):
            if side.any():
                bar = [star[side] * 0.9, np.zeros(side.sum())] if where == "low" else \
                    [np.zeros(side.sum()), star[side] * 9.0]
                ax.errorbar(ratio[side], star[side], yerr=bar, fmt="none", color=color,
                            uplims=where == "low", lolims=where == "high")
        fit = fits[(fits["dataset"] == dataset) & (fits["arm"] == arm) & (fits["model"] == "ratio")]
        if len(fit) and "slope" in fit.columns and np.isfinite(fit["slope"].iloc[0]):
            fit = fit.iloc[0]
            ratios = np.geomspace(used["size_ratio"].min(), used["size_ratio"].max(), 50)
            key = "exponent" if pd.notna(fit.get("exponent_low", np.nan)) else "slope"
            ax.plot(ratios, fit["prefactor"] * ratios ** fit["slope"], color=color,
                    label=f"fit: b = {fit['slope']:.2f} [{fit[key + '_low']:.2f}, {fit[key + '_high']:.2f}], "
                          f"R^2 {fit['r2']:.2f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("size ratio P_student / P_teacher")
    ax.set_ylabel("kappa*")
    ax.set_title("Crossover against size ratio (pairs with a stable kappa* inside the grid;\n"
                 "bars: bootstrap CI over seeds, arrows: a bound beyond the grid)", fontsize=9)
    ax.legend(fontsize=7)
    return _save(figure, path)


def fidelity_gap(points: pd.DataFrame, fits: pd.DataFrame, pairs: list[str], path) -> Path:
    """Per pair: the train-test fidelity gap against kappa with the fitted omega * kappa^-beta."""
    figure, axes = _grid(len(pairs))
    for ax, pair in zip(axes, pairs):
        for arm, group in points[points["pair"] == pair].groupby("arm", sort=True):
            group = group.sort_values("kappa")
            drawn = ax.errorbar(group["kappa"], group["delta_mean"], yerr=group["delta_se"].fillna(0),
                                fmt="o", ms=3, capsize=2, label=arm)
            fit = fits[(fits["pair"] == pair) & (fits["arm"] == arm)]
            if len(fit) and "beta" in fit.columns and np.isfinite(fit["beta"].iloc[0]):
                fit = fit.iloc[0]
                grid = np.geomspace(group["kappa"].min(), group["kappa"].max(), 50)
                ax.plot(grid, power_law(grid, fit["omega"], fit["beta"]), color=drawn[0].get_color(),
                        lw=1, label=f"fit beta={fit['beta']:.2f}")
        _pair_panel(ax, pair, "fidelity_train - fidelity_test")
    figure.suptitle("Fidelity gap against kappa with omega * kappa^-beta fits", fontsize=10)
    return _save(figure, path)


def bias_variance(table: pd.DataFrame, pairs: list[str], path) -> Path:
    """Per pair: bias^2 (solid) and variance (dashed) of the squared loss against kappa, per arm."""
    figure, axes = _grid(len(pairs))
    for ax, pair in zip(axes, pairs):
        for arm, group in table[table["pair"] == pair].groupby("arm", sort=True):
            group = group.sort_values("kappa")
            line, = ax.plot(group["kappa"], group["bias2"], marker="o", ms=3, label=f"{arm} bias^2")
            ax.plot(group["kappa"], group["variance"], marker="s", ms=3, ls="--",
                    color=line.get_color(), label=f"{arm} variance")
        _pair_panel(ax, pair, "squared loss term", legend_size=6)
    figure.suptitle("Bias-variance decomposition of the squared loss over seeds (eq. 2)", fontsize=10)
    return _save(figure, path)


def data_equivalence(frame: pd.DataFrame, path) -> Path:
    """kappa_lt / kappa against kappa, log-log, one curve per (pair, tau) of model_size's
    `equivalence` table: points inside the grid with their bootstrap intervals, and the bound a
    point at the grid's edge has (a triangle pointing up: more than; down: at most)."""
    figure = Figure(figsize=(7.0, 4.5), layout="constrained")
    ax = figure.add_subplot()
    for (teacher, student, tau), group in frame.groupby(["teacher", "student", "tau"], sort=False):
        group = group.sort_values("kappa")
        inside = group[group["status"] == "inside"]
        low = (inside["ratio"] - inside["ci_low"]).clip(lower=0).fillna(0)
        high = (inside["ci_high"] - inside["ratio"]).replace(np.inf, np.nan).clip(lower=0).fillna(0)
        line = ax.errorbar(inside["kappa"], inside["ratio"], yerr=[low, high], marker="o", ms=3, capsize=2,
                           label=f"{teacher}>{student}" + (f" tau={tau:g}" if frame["tau"].nunique() > 1 else ""))
        color = line[0].get_color()
        for status, marker in (("beyond", "^"), ("below", "v")):
            edge = group[group["status"] == status]
            ax.scatter(edge["kappa"], edge["bound"], marker=marker, color=color, s=30)
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.set(xscale="log", yscale="log", xlabel="kappa = M / N", ylabel="kappa_lt / kappa")
    ax.set_title("Data lt needs to reach kd's accuracy, in units of kd's (bars: bootstrap CI over seeds;\n"
                 "triangles: bounds at the grid's edge, up = more than, down = at most)", fontsize=9)
    ax.legend(fontsize=7)
    return _save(figure, path)


def curves_per_kappa_tau(curves: pd.DataFrame, kappas, taus, arms_of, path, title: str) -> Path:
    """Learning curves (analysis.curves.histories) in a grid of panels, a row per kappa and a column
    per tau; each panel shows the test accuracy against step of the arms `arms_of(tau)` gives ((arm,
    line style, legend name) each), mean over seeds with a min-max band; one colour per legend name."""
    figure = Figure(figsize=(2.3 * len(taus) + 0.6, 1.9 * len(kappas) + 0.7), layout="constrained")
    axes = figure.subplots(len(kappas), len(taus), sharex="row", sharey="row", squeeze=False)
    colours = {}
    for i, kappa in enumerate(kappas):
        for j, tau in enumerate(taus):
            ax = axes[i][j]
            for arm, style, name in arms_of(tau):
                part = curves[(curves["arm"] == arm) & np.isclose(curves["kappa"], kappa)]
                if not len(part):
                    continue
                stats = part.groupby("step")["test_acc"].agg(["mean", "min", "max"]).sort_index()
                line, = ax.plot(stats.index, stats["mean"], ls=style, lw=1.2, color=colours.get(name),
                                label=None if name in colours else name)
                colours.setdefault(name, line.get_color())
                ax.fill_between(stats.index, stats["min"], stats["max"], color=line.get_color(), alpha=0.15, lw=0)
            ax.tick_params(labelsize=6)
            if i == 0:
                ax.set_title(f"tau = {tau:g}", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"kappa = {kappa:g}\ntest acc", fontsize=7)
            if i == len(kappas) - 1:
                ax.set_xlabel("step", fontsize=7)
    handles = [handle for ax in axes.flat for handle in ax.get_legend_handles_labels()[0]]
    if handles:
        figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
    figure.suptitle(title, fontsize=9)
    return _save(figure, path)
