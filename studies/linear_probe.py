"""Does the gain of kd survive retraining the head? A linear probe fitted on all N of the
teacher's samples, on frozen student features, against the student's own test accuracy.

    python studies/linear_probe.py           # MNIST-1D, cnn1d-16 > cnn1d-16, kappa 0.05-2, lt and kd tau 1/4/10, 3 seeds
    python studies/linear_probe.py --quick   # smoke size (kappa 0.05 and 1, 2 seeds)

Figures 14 and 19 of the paper (arXiv 2510.15516). At small kappa an lt student has seen few
labels; part of kd's advantage could sit in the last layer only, which a probe trained on the
teacher's full N-sample pool would recover for lt too. Each trial measures `probe_acc`
(kdscale.representations: an L-BFGS linear probe on the penultimate features of the frozen
student, fitted on the teacher's N training samples, scored on the test set). Per kappa and tau:
PI of test accuracy and PI of probe accuracy, both kd - lt paired by seed (mean ± sd), and the
share of the PI that remains after the probe (ratio of the seed means; the range of the per-seed
ratios beside it), reported where the PI of test accuracy is clearly positive (mean > 2 se and
at least 0.01).

The probe is an opt-in measurement (extras "probe"), so these trials train here even where
model_size has the same cell without it: 72 trials, all trained, 105 s on this project's 2-core
CPU machine. The answer (65-84% of the PI survives the probe at tau = 4 and 10) with its numbers:
docs/studies.md (linear_probe).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from kdscale.config import DataSpec
from kdscale.study import StudySpec
from kdscale.recipes import study_recipes
from kdscale.studyargs import Grid, StudyParser, add_run_flags, finish, resources, run
from kdscale.config import parse_pair

PAIR = "cnn1d:width=16>cnn1d:width=16"
KAPPAS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
TAUS = (1.0, 4.0, 10.0)
GRID = Grid("linear_probe", kappas=KAPPAS, quick=dict(kappas=(0.05, 1.0), seeds=2), pairs=(PAIR,))


def build_parser() -> argparse.ArgumentParser:
    parser = StudyParser(description=__doc__.splitlines()[0])
    GRID.add_flags(parser)
    parser.add_argument("--taus", nargs="+", type=float, default=list(TAUS), help="kd temperatures (default 1 4 10)")
    add_run_flags(parser)
    return parser


def build_spec(args: argparse.Namespace) -> StudySpec:
    teacher_recipe, student_recipe = study_recipes("mnist1d", bool(args.quick))
    return StudySpec(
        name=GRID.study_name(args), data=DataSpec(), pairs=tuple(parse_pair(p) for p in GRID.pair_values(args)),
        kappas=GRID.kappa_values(args), taus=tuple(args.taus), seeds=GRID.seed_values(args), recipe=student_recipe,
        teacher_recipe=teacher_recipe, resources=resources(args), extras=("probe",))


def probe_numbers(table):
    """(accuracy and probe accuracy per cell, the share of PI that remains per cell)."""
    from analysis.paired import paired_columns, per_cell, share_remaining
    from analysis.table import prepare

    trials = prepare(table)
    cells = per_cell(trials.frame, ["test_acc", "probe_acc"])
    shares = share_remaining(paired_columns(trials.frame, ["test_acc", "probe_acc"]), "test_acc", "probe_acc")
    return cells, shares


def by_tau(arm: str) -> float:
    """Sort key of an arm label: "kd tau=10" after "kd tau=4"; lt first."""
    return float(arm.split("=")[1].split()[0]) if "=" in arm else 0.0


def _draw(cells, shares, out_dir: Path) -> list[Path]:
    from matplotlib.figure import Figure

    arms = sorted(shares["arm"].unique(), key=by_tau)
    paths = []
    for pair in sorted(shares["pair"].unique()):
        figure = Figure(figsize=(4.0 * (len(arms) + 1), 3.5), layout="constrained")
        ax = figure.add_subplot(1, len(arms) + 1, 1)
        for arm in sorted(cells.loc[cells["pair"] == pair, "arm"].unique(), key=by_tau):
            group = cells[(cells["pair"] == pair) & (cells["arm"] == arm)].sort_values("kappa")
            line = ax.errorbar(group["kappa"], group["test_acc_mean"], yerr=group["test_acc_sd"].fillna(0),
                               marker="o", ms=3, capsize=2, label=f"{arm} test acc")
            ax.errorbar(group["kappa"], group["probe_acc_mean"], yerr=group["probe_acc_sd"].fillna(0), ls="--",
                        marker="s", ms=3, capsize=2, color=line[0].get_color(), label=f"{arm} probe")
        ax.set(xscale="log", xlabel="kappa = M / N", ylabel="accuracy", title="student head (solid) vs probe (dashed)")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=6)
        first = None
        for i, arm in enumerate(arms):
            ax = figure.add_subplot(1, len(arms) + 1, i + 2, sharey=first)
            first = first or ax
            part = shares[(shares["pair"] == pair) & (shares["arm"] == arm)].sort_values("kappa")
            for column, label in (("test_acc", "PI, student head"), ("probe_acc", "PI, linear probe")):
                ax.errorbar(part["kappa"], part[f"{column}_gain_mean"], yerr=part[f"{column}_gain_sd"].fillna(0),
                            marker="o", ms=3, capsize=2, label=label)
            ax.axhline(0, color="gray", lw=0.8, ls="--")
            ax.set(xscale="log", xlabel="kappa = M / N", ylabel="kd - lt (mean ± sd over seeds)", title=arm)
            ax.title.set_fontsize(9)
            ax.legend(fontsize=7)
        figure.suptitle(f"{pair}: does the PI survive a linear probe on the teacher's N samples? (Figs. 14, 19)",
                        fontsize=10)
        name = "linear_probe_pi.png" if len(paths) == 0 else f"linear_probe_pi_{len(paths)}.png"
        paths.append(out_dir / name)
        figure.savefig(paths[-1], dpi=120)
    return paths


def write_section(result, out_dir: Path) -> tuple[str, list[Path]]:
    """The study's Markdown section and its figures."""
    from analysis import markdown as md

    cells, shares = probe_numbers(result.table)
    figures = _draw(cells, shares, out_dir)
    lines = ["## Linear probe: does the PI survive retraining the head?", "",
             "PI = kd - lt, paired by seed, mean ± sd over seeds: of the student's own test accuracy, and of a "
             "linear probe fitted on the teacher's N training samples on the frozen student features. Share = "
             "mean PI(probe) / mean PI(test acc); in brackets the range of the per-seed ratios. Shown where "
             "PI(test acc) is clearly positive (mean > 2 se and >= 0.01); `n/a` elsewhere.", "",
             "| pair | kd arm | kappa | seeds | acc lt | acc kd | probe lt | probe kd | PI acc | PI probe | share |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    by_cell = cells.set_index(["pair", "arm", "kappa"])

    def stat(pair, arm, kappa, column):
        row = by_cell.loc[(pair, arm, kappa)]
        return md.mean_pm(row[f"{column}_mean"], row[f"{column}_sd"])
    shares = shares.assign(tau=shares["arm"].map(by_tau)).sort_values(["pair", "tau", "kappa"])
    for row in shares.to_dict("records"):
        pair, arm, kappa = row["pair"], row["arm"], row["kappa"]
        share = (f"{row['share']:.2f} [{row['share_min']:.2f}, {row['share_max']:.2f}]" if row["clear"] else md.MISSING)
        lines.append(f"| {pair} | {arm} | {kappa:g} | {row['n_seeds']} | {stat(pair, 'lt', kappa, 'test_acc')} | "
                     f"{stat(pair, arm, kappa, 'test_acc')} | {stat(pair, 'lt', kappa, 'probe_acc')} | "
                     f"{stat(pair, arm, kappa, 'probe_acc')} | "
                     f"{md.mean_pm(row['test_acc_gain_mean'], row['test_acc_gain_sd'], sign=True)} | "
                     f"{md.mean_pm(row['probe_acc_gain_mean'], row['probe_acc_gain_sd'], sign=True)} | {share} |")
    clear = shares[shares["clear"]]
    lines.append("")
    if len(clear):
        survives = clear[clear["probe_acc_gain_mean"] > 0]
        lines.append(f"Where kd clearly helps ({len(clear)} of {len(shares)} (kappa, tau) cells), the PI of the probe is "
                     f"positive in {len(survives)}; the share that remains ranges from {clear['share'].min():.2f} to "
                     f"{clear['share'].max():.2f} (median {np.median(clear['share']):.2f}).")
        for _, group in clear.groupby(["pair", "tau"], sort=True):
            shares_text = ", ".join(f"{s:.2f} at kappa {k:g}" for k, s in zip(group["kappa"], group["share"]))
            lines.append(f"- {group['pair'].iloc[0]}, {group['arm'].iloc[0]}: share {shares_text}")
    else:
        lines.append("kd does not clearly help in any (kappa, tau) cell here, so there is no PI whose survival to test.")
    return "\n".join(lines) + "\n", figures


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(build_spec, args, "linear_probe")
    return finish(result, args, "linear_probe", write_section)


if __name__ == "__main__":
    sys.exit(main())
