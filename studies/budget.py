"""Steps or epochs: does the training budget decide the PI curve and kappa*?

    python studies/budget.py           # model_size's grid (5 pairs, kappa 0.02-4, lt and kd tau=4, 3 seeds), two budgets
    python studies/budget.py --quick   # smoke size (cnn1d-16 > cnn1d-16, kappa 0.05 and 1, 2 seeds)

Beyond the paper (arXiv 2510.15516), which trains every kappa for the same number of EPOCHS: a
student with a small kappa then also gets few optimizer steps, and part of what looks like a data
effect could be a budget effect. kdscale's default gives every kappa the same number of STEPS
(1500 at batch 128). This study runs one grid, model_size's, under both budgets, as two studies:

- `budget_steps`: the default recipe, 1500 steps at every kappa. Its trials are model_size's, so
  under the default storage they come from model_size's results (the shared trial cache).
- `budget_epochs`: the same recipe with E epochs at every kappa (lt and kd alike), E chosen so
  that kappa = 1 (M = N = 4000) sees as many samples as under the step budget:
  E = 1500 * 128 / 4000 = 48, which is 48 * ceil(4000 / 128) = 1536 steps at kappa = 1 (the last
  partial batch of an epoch is a step), 48 at kappa = 0.02 and 6000 at kappa = 4.

The results table's `budget` column (`steps=1500` / `epochs=48`) and each MLflow trial run's
`budget` param say which budget a result was trained with. Each study gets the standard analysis
(the analysis refuses two budgets in one table); the comparison section (PI and PG per budget
side by side, PI paired by seed across budgets, kappa* per budget from analysis.crossover) joins
the epochs study's report and both studies' MLflow parent runs.
480 trials, 240 trained (the epoch budget), 7 min 49 s on this project's 2-core CPU machine. The
answer (under the epoch budget kappa* falls inside the grid, 1.8-3.4, for the four pairs where it
lies beyond kappa = 4 under the step budget) with its numbers: docs/studies.md (budget).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from kdscale.config import DataSpec
from kdscale.errors import SpecError
from kdscale.study import StudySpec
from kdscale.recipes import study_recipes
from kdscale.studyargs import Grid, StudyParser, add_run_flags, analyse, finish, resources, run
from kdscale.config import parse_pair
from kdscale.studyargs import MAIN_KAPPAS as DEFAULT_KAPPAS, MAIN_PAIRS as DEFAULT_PAIRS

GRID = Grid("budget", kappas=DEFAULT_KAPPAS, quick=dict(pairs=("cnn1d:width=16>cnn1d:width=16",), kappas=(0.05, 1.0),
            seeds=2), pairs=DEFAULT_PAIRS, name_help="prefix of the two studies' names (default budget, or "
            "budget_quick): NAME_steps and NAME_epochs")
NAMES = ("steps", "epochs")


def build_parser() -> argparse.ArgumentParser:
    parser = StudyParser(description=__doc__.splitlines()[0])
    GRID.add_flags(parser)
    parser.add_argument("--tau", type=float, default=4.0, help="kd temperature (default 4)")
    parser.add_argument("--epochs", type=int, help="the epoch budget (default: the steps budget's samples at "
                        "kappa = 1, steps * batch / N: 48, or 16 with --quick)")
    add_run_flags(parser)
    return parser


def build_specs(args: argparse.Namespace) -> tuple[StudySpec, StudySpec]:
    """(fixed-steps study, fixed-epochs study): one grid, two student budgets."""
    from analysis.budget import epochs_matching_steps

    teacher_recipe, steps_recipe = study_recipes("mnist1d", bool(args.quick))
    n_teacher = DataSpec().n_teacher
    epochs = args.epochs
    if epochs is None:
        epochs, _ = epochs_matching_steps(steps_recipe.steps, steps_recipe.batch_size, n_teacher)
    elif epochs < 1:
        raise SpecError(f"--epochs {epochs} is invalid: must be an integer >= 1")
    epochs_recipe = replace(steps_recipe, steps=None, epochs=epochs, warmup=0.0, milestones=())
    prefix = GRID.study_name(args)
    common = dict(data=DataSpec(n_teacher=n_teacher), pairs=tuple(parse_pair(p) for p in GRID.pair_values(args)),
                  kappas=GRID.kappa_values(args), taus=(args.tau,), seeds=GRID.seed_values(args),
                  teacher_recipe=teacher_recipe, resources=resources(args))
    return (StudySpec(name=f"{prefix}_steps", recipe=steps_recipe, **common),
            StudySpec(name=f"{prefix}_epochs", recipe=epochs_recipe, **common))


def budget_numbers(steps_table, epochs_table, n_boot: int = 2000):
    """(PI/PG per budget and their paired difference per cell, kappa* per budget, per-cell steps)."""
    from analysis.budget import compare_crossings, compare_increments
    from analysis.crossover import crossover
    from analysis.increments import pair_by_seed
    from analysis.table import prepare

    paired, crossings = {}, {}
    for name, table in zip(NAMES, (steps_table, epochs_table)):
        paired[name] = pair_by_seed(prepare(table))
        crossings[name] = crossover(paired[name], higher_is_better=True, n_boot=n_boot)
    increments = compare_increments(paired["steps"], paired["epochs"], NAMES)
    steps_taken = (epochs_table.groupby("kappa")["steps"].median().rename("steps_epochs_budget")
                   .rename_axis("kappa").reset_index())
    steps_taken["kappa"] = [float(f"{k:.10g}") for k in steps_taken["kappa"]]
    increments = increments.merge(steps_taken, on="kappa", how="left")
    return increments, compare_crossings(crossings["steps"], crossings["epochs"], NAMES)


def epoch_choice(steps_table, epochs_table) -> str:
    """One sentence on how the epoch budget relates to the step budget at kappa = 1."""
    from analysis.budget import epochs_matching_steps

    steps = int(str(steps_table["budget"].iloc[0]).removeprefix("steps="))  # the `budget` column: steps=S
    epochs = int(str(epochs_table["budget"].iloc[0]).removeprefix("epochs="))  # epochs=E
    batch, n_teacher = int(steps_table["batch_size"].iloc[0]), int(steps_table["n_teacher"].iloc[0])
    matching, exact = epochs_matching_steps(steps, batch, n_teacher)
    how = (f"E = {steps} * {batch} / {n_teacher} = {exact:g}" + ("" if matching == exact else f", rounded to {matching}"))
    if epochs == matching:
        return f"The epoch budget gives kappa = 1 as many samples as the step budget: {how}."
    return f"The epoch budget E = {epochs} was set by hand; the step budget's samples at kappa = 1 would be {how}."


def kappa_star_cell(row: dict, name: str) -> str:
    """kappa* of one budget in a few words: the estimate and its interval, or the side of the grid."""
    from analysis.crossover import ABOVE, BELOW, UPWARD, format_interval

    status, value = row[f"status_{name}"], row[f"kappa_star_{name}"]
    interval = format_interval({"ci_low": row[f"ci_low_{name}"], "ci_high": row[f"ci_high_{name}"],
                                "kappa_min": row["kappa_min"], "kappa_max": row["kappa_max"]})
    if status == ABOVE:
        known = row[f"ci_low_{name}"] < float("inf")  # some replicates cross inside the grid
        return f"> {row['kappa_max']:g} (kd helps at every kappa{f'; CI {interval}' if known else ''})"
    if status == BELOW:
        return f"< {row['kappa_min']:g} (kd hurts at every kappa)"
    text = f"{value:.3g} {interval}"
    return text + " (upward: kd starts to help there)" if status == UPWARD else text


def max_coverage_note(crossings) -> str:
    from analysis.crossover import max_bootstrap_coverage

    least = int(min(crossings["n_seeds_steps"].min(), crossings["n_seeds_epochs"].min()))
    return (f"with {least} seeds such an interval covers at most about {max_bootstrap_coverage(least):.0%}, "
            "whatever its nominal 95%")


def _draw(increments, out_dir: Path, labels: dict) -> Path:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 7), layout="constrained")
    axes = figure.subplots(2, 2, sharey="row")
    for column, name in enumerate(NAMES):
        for (pair, arm), group in increments.groupby(["pair", "arm"], sort=True):
            group = group.sort_values("kappa")
            axes[0, column].errorbar(group["kappa"], group[f"PI_{name}"], yerr=group[f"PI_{name}_sd"].fillna(0),
                                     marker="o", ms=3, capsize=2, label=pair)
            axes[1, column].plot(group["kappa"], group[f"PG_{name}"], marker="o", ms=3, label=pair)
        axes[0, column].set(title=f"budget {labels[name]}", ylabel="PI = acc(kd) - acc(lt)")
        axes[1, column].axhline(1.0, color="gray", lw=0.8, ls="--")
        axes[1, column].set(ylabel="PG = acc(kd) / acc(lt)")
        for ax in axes[:, column]:
            ax.set(xscale="log", xlabel="kappa = M / N")
            ax.legend(fontsize=6)
    figure.suptitle("The same grid under a fixed step budget (left) and a fixed epoch budget (right)", fontsize=10)
    path = out_dir / "budget_pi_pg.png"
    figure.savefig(path, dpi=120)
    return path


def write_section(steps_result, epochs_result, out_dir: Path) -> tuple[str, list[Path]]:
    """The comparison section and its figure."""
    from analysis import markdown as md

    increments, crossings = budget_numbers(steps_result.table, epochs_result.table)
    labels = {name: str(result.table["budget"].iloc[0]) for name, result in zip(NAMES, (steps_result, epochs_result))}
    figures = [_draw(increments, out_dir, labels)]
    lines_e = epoch_choice(steps_result.table, epochs_result.table)
    lines = ["## Budget: fixed steps against fixed epochs", "",
             f"One grid, two student budgets: `{labels['steps']}` at every kappa (study {steps_result.store.study}) "
             f"and `{labels['epochs']}` at every kappa (study {epochs_result.store.study}; the steps column gives "
             "what that budget means at each kappa). PI and PG are kd against lt paired by seed, means over "
             f"seeds; dPI = PI(epochs) - PI(steps), paired by seed across the budgets (mean with a 95% t-interval). "
             f"{lines_e}", "", "| pair | kd arm | kappa | steps under epochs | acc lt (steps / epochs) | acc kd (steps / epochs) | "
             "PI steps | PI epochs | dPI [95% CI] | PG steps | PG epochs |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in increments.to_dict("records"):
        interval = (f"{row['dPI']:+.3f} [{row['dPI_low']:+.3f}, {row['dPI_high']:+.3f}]"
                    if row["n_seeds"] > 1 else md.fixed(row["dPI"], sign=True))
        lines.append(f"| {row['pair']} | {row['arm']} | {row['kappa']:g} | {md.number(row['steps_epochs_budget'], 6)} | "
                     f"{row['R_lt_steps']:.3f} / {row['R_lt_epochs']:.3f} | {row['R_kd_steps']:.3f} / "
                     f"{row['R_kd_epochs']:.3f} | {md.mean_pm(row['PI_steps'], row['PI_steps_sd'], sign=True)} | "
                     f"{md.mean_pm(row['PI_epochs'], row['PI_epochs_sd'], sign=True)} | {interval} | "
                     f"{row['PG_steps']:.3f} | {row['PG_epochs']:.3f} |")
    lines += ["", "kappa* (where the seed-mean PG crosses 1, analysis.crossover) with its expanded-percentile "
              f"bootstrap interval over seeds ({max_coverage_note(crossings)}):", "",
              "| pair | kd arm | kappa* steps budget | kappa* epochs budget | status changed | intervals overlap |",
              "| --- | --- | --- | --- | --- | --- |"]
    for row in crossings.to_dict("records"):
        overlap = md.MISSING if row["ci_overlap"] != row["ci_overlap"] else ("yes" if row["ci_overlap"] else "no")
        lines.append(f"| {row['pair']} | {row['arm']} | {kappa_star_cell(row, 'steps')} | "
                     f"{kappa_star_cell(row, 'epochs')} | {'yes' if row['status_changed'] else 'no'} | {overlap} |")
    moved = increments[(increments["dPI_low"] > 0) | (increments["dPI_high"] < 0)]
    lines += ["", f"PI changes between the budgets (95% interval of dPI excludes 0) in {len(moved)} of "
              f"{len(increments)} (pair, kappa) cells: lower under epochs in {int((moved['dPI'] < 0).sum())}, "
              f"higher in {int((moved['dPI'] > 0).sum())}. kappa* changes status (crossing inside the grid or "
              f"not) for {int(crossings['status_changed'].sum())} of {len(crossings)} pairs."]
    return "\n".join(lines) + "\n", figures


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    specs = {}

    def steps_spec(args):  # builds (and so checks) both studies before either runs
        specs["steps"], specs["epochs"] = build_specs(args)
        return specs["steps"]
    steps_result = run(steps_spec, args, "budget")
    if steps_result is None or not steps_result.complete:
        return 2 if steps_result is None else 1
    epochs_result = run(lambda _: specs["epochs"], args, "budget")
    if not args.no_analysis and analyse(steps_result, print_headline=False) is None:
        return 1
    figures: list[Path] = []

    def section(result, out_dir):
        text, paths = write_section(steps_result, result, out_dir)
        figures.extend([out_dir / "budget.md", *paths])
        return text, paths
    status = finish(epochs_result, args, "budget", section)
    if status == 0:  # the comparison belongs to both studies: attach it to the steps study's run too
        from kdscale.tracking import log_artifacts

        log_artifacts(steps_result.tracking_uri, steps_result.parent_run_id, figures, artifact_path="analysis")
    return status


if __name__ == "__main__":
    sys.exit(main())
