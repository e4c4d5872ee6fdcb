"""Does distillation's gain survive a fair lt baseline, with lt's recipe tuned per kappa?

    python studies/fair_recipe.py          # MNIST-1D, cnn1d-16 > cnn1d-16, 8 kappas, 3 seeds, 16 samples a kappa
    python studies/fair_recipe.py --quick  # smoke size: 2 kappas, 2 seeds, 3 samples, short budgets

The paper's protocol for its Table 1 (arXiv 2510.15516): the lt recipe (learning rate, weight
decay, budget in steps) is tuned at each data size on a validation split of the student's own M
samples, never on the test set, and both lt and kd then train with the tuned lt recipe. A gain
of kd over an lt trained with one fixed recipe could be a gain over a badly tuned baseline.

Steps: `kdscale tune` for the pair's student at every kappa (Optuna TPE through Ray Tune;
kdscale/tuned.py documents the search space; a stored tuning is reused), then two studies on
one grid: `fair_default`, lt and kd (tau = 4, tau^2 factor on, alpha = 0) with the data set's
default recipe, the same trials as model_size (adopted from a shared --storage, not retrained),
and `fair_tuned`, lt and kd with the tuned lt recipe of each kappa (`--recipe tuned-lt`'s
overrides). Two studies because the analysis refuses two recipes in one table.

Printed: the tuned recipe per kappa; per kappa acc(lt) and acc(kd) under both recipes; PI =
acc(kd) - acc(lt) and PG = acc(kd) / acc(lt) (paired by seed, mean +- sd, PI with a 95% t CI) and
kappa* (analysis.crossover) for three comparisons: both objectives with the default recipe; both
with the tuned lt recipe (the protocol as specified); and lt with its tuned recipe against kd with
the default recipe (lt gets every advantage: its recipe is tuned, kd's is not), which needs no
extra trial. A PI curve "survives" when, over the kappas where kd trained (no kd trial diverged or
ended below 1.5 x chance accuracy), PI's 95% CI lies above 0 at some kappa and PI falls from its
peak to the largest kappa by more than twice the standard error of that difference. Kappas where
kd did not train with the shared tuned recipe are reported apart, with their learning rate.
Cost here (2-core CPU, after model_size): 12 min 46 s, 11.4 of them the tuning (128 samples); 48
trials trained, 48 adopted from model_size; --quick about 50 s. Answer here: with one shared tuned
recipe kd does not train from kappa = 0.05 on (lr 0.08-0.29); against the tuned lt with kd at its
default recipe PI is +0.26 at kappa = 0.1 and below 0 from kappa = 0.5 on, kappa* = 0.41
(default recipe for both: kappa* > 4). Details: docs/studies.md (fair_recipe).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import replace
from pathlib import Path

from kdscale.config import DataSpec
from kdscale.errors import SpecError
from kdscale.study import StudySpec
from kdscale.recipes import study_recipes
from kdscale.studyargs import Grid, StudyParser, add_run_flags, analyse, finish, resources, run
from kdscale.config import parse_pair
from kdscale.studyargs import MAIN_KAPPAS as DEFAULT_KAPPAS

PAIR = "cnn1d:width=16>cnn1d:width=16"
GRID = Grid("fair", kappas=DEFAULT_KAPPAS, quick=dict(kappas=(0.05, 1.0), seeds=2, samples=3, tune_seeds=1), pair=PAIR,
            name_help="prefix of the two studies' names (default fair: fair_default and fair_tuned; --quick adds "
            "_quick)", seeds_help="seeds of the studies")


def build_parser() -> argparse.ArgumentParser:
    parser = StudyParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    GRID.add_flags(parser)
    parser.add_argument("--tau", type=float, default=4.0, help="kd's temperature (tau^2 factor on, alpha 0)")
    parser.add_argument("--samples", type=int, help="configurations tried per kappa (default 16)")
    parser.add_argument("--tune-seeds", type=int, help="tuning seeds, each holding out part of its own study "
                        "seed's samples; the score is their mean (default 3, the studies' seeds)")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="share of M held out for validation")
    parser.add_argument("--sampler-seed", type=int, default=0, help="seed of Optuna's TPE sampler")
    parser.add_argument("--force-tune", action="store_true", help="tune again even where a stored tuning matches")
    add_run_flags(parser)
    return parser


def build_specs(args: argparse.Namespace):
    """(default-recipe StudySpec, TuneSpec): every check that needs no compute runs here."""
    from kdscale.tuned import QUICK_SPACE, SearchSpace, TuneSpec, base_recipe

    teacher_recipe, student_recipe = study_recipes("mnist1d", bool(args.quick))
    suffix = "_quick" if args.quick else ""
    pair = parse_pair(args.pair)
    default = StudySpec(
        name=f"{args.name or GRID.name}_default{suffix}", data=DataSpec(), pairs=(pair,),
        kappas=GRID.kappa_values(args), objectives=("lt", "kd"), taus=(args.tau,), alpha=0.0, tau_squared=True,
        seeds=GRID.seed_values(args), recipe=student_recipe, teacher_recipe=teacher_recipe, resources=resources(args))
    if student_recipe != base_recipe("mnist1d", bool(args.quick)):
        raise SpecError("the studies' student recipe is not the base the tuning starts from")
    tune_spec = TuneSpec(
        data=default.data, student=pair[1], base=student_recipe, kappas=default.kappas,
        samples=args.samples if args.samples is not None else GRID.get(args, "samples", 16),
        seeds=args.tune_seeds if args.tune_seeds is not None else GRID.get(args, "tune_seeds", 3),
        val_fraction=args.val_fraction, sampler_seed=args.sampler_seed,
        space=QUICK_SPACE if args.quick else SearchSpace())
    return default, tune_spec


def tuned_study(default: StudySpec, storage: str, name: str) -> StudySpec:
    """The default study with the tuned lt recipe of each kappa, read back from the tuned file
    exactly as `model_size --recipe tuned-lt` reads it (so the trials are the same trials)."""
    from kdscale.tuned import recipe_overrides

    overrides = recipe_overrides(storage, default.data, [s for _, s in default.pairs], default.kappas, default.recipe)
    return replace(default, name=name, recipe_overrides=overrides)


# --- the numbers (pure functions of results tables) ---------------------------------------------


def per_seed(table):
    """One row per (kappa, seed) with an ok lt and an ok kd trial: lt, kd, PI = kd - lt, PG = kd / lt."""
    import pandas as pd

    ok = table[table["status"] == "ok"]
    lt = ok[ok["objective"] == "lt"].set_index(["kappa", "seed"])["test_acc"].astype(float)
    kd = ok[ok["objective"] == "kd"].set_index(["kappa", "seed"])["test_acc"].astype(float)
    paired = pd.concat({"lt": lt, "kd": kd}, axis=1).dropna()
    paired["pi"] = paired["kd"] - paired["lt"]
    paired["pg"] = paired["kd"] / paired["lt"]
    return paired.sort_index()


def summarize(table, chance: float = 0.1):
    """Per kappa: mean and sd over seeds of acc(lt), acc(kd), PI (with a 95% t CI) and PG, the number
    of paired seeds, how many lt and kd trials diverged, and how many kd trials did not train
    (diverged, or test accuracy below 1.5 x `chance`, the accuracy of guessing)."""
    import pandas as pd

    from analysis.paired import mean_ci

    paired = per_seed(table)
    rows = []
    for kappa in sorted(set(table["kappa"].astype(float))):
        part = paired.xs(kappa, level="kappa") if kappa in paired.index.get_level_values("kappa") else paired.iloc[:0]
        spread = {column: mean_ci(part[column]) for column in ("lt", "kd", "pi", "pg")}
        row = {"kappa": kappa, "n": len(part),
               **{f"{column}_{k}": values[k] for column, values in spread.items() for k in ("mean", "sd")},
               "pi_low": spread["pi"]["low"], "pi_high": spread["pi"]["high"]}
        here = table[table["kappa"].astype(float) == kappa]
        for objective in ("lt", "kd"):
            row[f"{objective}_diverged"] = int(((here["objective"] == objective) & (here["status"] == "diverged")).sum())
        kd = here[here["objective"] == "kd"]
        row["kd_failed"] = row["kd_diverged"] + int(((kd["status"] == "ok") &
                                                     (kd["test_acc"].astype(float) < 1.5 * chance)).sum())
        rows.append(row)
    return pd.DataFrame(rows).set_index("kappa")


def lt_gain(default_table, tuned_table):
    """Per kappa: what tuning did to lt, acc(lt, tuned) - acc(lt, default), paired by seed (mean, sd, n)."""
    import pandas as pd

    def lt(table):
        ok = table[(table["status"] == "ok") & (table["objective"] == "lt")]
        return ok.set_index(["kappa", "seed"])["test_acc"].astype(float)

    diff = (lt(tuned_table) - lt(default_table)).dropna()
    return pd.DataFrame({"mean": diff.groupby(level="kappa").mean(), "sd": diff.groupby(level="kappa").std(ddof=1),
                         "n": diff.groupby(level="kappa").size()})


def verdict(summary) -> dict:
    """Does a PI curve hold where kd trained (no kd trial failed at that kappa): PI > 0 somewhere
    (95% t CI above 0) and falling from its peak to the largest kappa by more than 2 standard
    errors of that difference? See the module doc."""
    valid = summary[(summary["n"] > 0) & (summary["kd_failed"] == 0)]
    out = {"failed": [float(k) for k in summary.index[summary["kd_failed"] > 0]], "kappas": len(valid)}
    if valid.empty:
        return out | {"positive": [], "peak_kappa": math.nan, "peak_pi": math.nan, "last_kappa": math.nan,
                      "last_pi": math.nan, "drop": math.nan, "drop_se": math.nan, "falls": False, "survives": False}
    positive = [float(k) for k, r in valid.iterrows() if r["pi_low"] > 0]
    peak = valid["pi_mean"].idxmax()
    last = valid.index.max()
    se = lambda k: valid.loc[k, "pi_sd"] / math.sqrt(valid.loc[k, "n"])  # noqa: E731
    drop = valid.loc[peak, "pi_mean"] - valid.loc[last, "pi_mean"]
    drop_se = math.sqrt(se(peak) ** 2 + se(last) ** 2) if peak != last else math.nan
    falls = bool(peak != last and math.isfinite(drop_se) and drop > 2 * drop_se)
    return out | {"positive": positive, "peak_kappa": float(peak), "peak_pi": float(valid.loc[peak, "pi_mean"]),
                  "last_kappa": float(last), "last_pi": float(valid.loc[last, "pi_mean"]), "drop": float(drop),
                  "drop_se": drop_se, "falls": falls, "survives": bool(positive) and falls}


def crossovers(table, n_boot: int = 2000) -> tuple[str, str]:
    """kappa* of PG (analysis.crossover): (short form, the analysis' full message)."""
    from analysis import AnalysisError
    from analysis.crossover import ABOVE, BELOW, crossover, format_interval, format_kappa
    from analysis.increments import pair_by_seed
    from analysis.table import prepare

    try:
        result = crossover(pair_by_seed(prepare(table)), n_boot=n_boot)
    except AnalysisError as error:
        return "not computed", f"not computed: {error}"
    if not len(result):
        return "not computed", "not computed: no pair"
    row = result.iloc[0].to_dict()
    if row["status"] == ABOVE:
        short = f"kappa* > {format_kappa(row['kappa_max'])} (PG > 1 at every kappa)"
    elif row["status"] == BELOW:
        short = f"kappa* < {format_kappa(row['kappa_min'])} (PG < 1 at every kappa)"
    else:
        short = f"kappa* = {format_kappa(row['kappa_star'])} {format_interval(row)}"
    return short, row["message"]


# --- the report section -------------------------------------------------------------------------


def _pm(mean, sd, decimals=3, sign=False) -> str:
    if not math.isfinite(mean):
        return "-"
    text = f"{mean:+.{decimals}f}" if sign else f"{mean:.{decimals}f}"
    return text + (f" ± {sd:.{decimals}f}" if math.isfinite(sd) else "")


def fair_baseline(default_table, tuned_table):
    """The comparison where lt gets every advantage: lt with its tuned recipe against kd with the
    default recipe (a results table of the tuned study's lt rows and the default study's kd rows)."""
    import pandas as pd

    return pd.concat([tuned_table[tuned_table["objective"] == "lt"], default_table[default_table["objective"] == "kd"]],
                     ignore_index=True)


def _curve(v: dict) -> str:
    """One sentence on a PI curve's verdict."""
    if not v["kappas"]:
        return "no kappa where kd trained in every seed"
    where = f" ({', '.join(f'{k:g}' for k in v['positive'])})" if v["positive"] else ""
    text = (f"PI's 95% CI is above 0 at {len(v['positive'])} of {v['kappas']} kappas{where}; PI peaks at "
            f"{v['peak_pi']:+.3f} (kappa = {v['peak_kappa']:g})")
    if v["peak_kappa"] == v["last_kappa"]:
        return text + ", the largest kappa, so it does not fall with kappa"
    return (text + f" and is {v['last_pi']:+.3f} at kappa = {v['last_kappa']:g} (peak minus last "
            f"{v['drop']:+.3f} ± {v['drop_se']:.3f} se: {'falls' if v['falls'] else 'no clear fall'})")


def _head(v: dict) -> str:
    """yes / only in part / no / cannot tell, for one comparison's verdict."""
    if v["kappas"] < 2:
        return f"cannot tell (kd trained at {v['kappas']} kappa(s), too few for a curve)"
    if v["survives"]:
        return "yes, the PI curve survives"
    if v["positive"]:
        return "only in part: kd still beats lt somewhere, but PI does not fall clearly with kappa"
    if v["falls"]:
        return "only in part: PI falls with kappa, but its CI is above 0 nowhere"
    return "no: kd's gain is significant nowhere and does not fall with kappa"


def answer(verdicts: dict, summaries: dict, gain, tuning_lr: dict, kappa_stars: dict, base_lr: float) -> str:
    """The answer in words and numbers. `verdicts`, `summaries` and `kappa_stars` (short forms) are
    keyed by comparison: 'default' (both the default recipe), 'shared' (both the tuned lt recipe:
    the protocol as specified) and 'fair' (lt tuned, kd at the default recipe)."""
    shared, fair = verdicts["shared"], verdicts["fair"]
    lines = []
    if shared["failed"]:
        failed = summaries["shared"].loc[shared["failed"]]
        lines.append(
            f"With one shared tuned recipe (the protocol as specified) kd did not train at {len(shared['failed'])} of "
            f"{len(summaries['shared'])} kappas ({', '.join(f'{k:g}' for k in shared['failed'])}: "
            f"{int(failed['kd_failed'].sum())} trials diverged or ended at chance, at tuned learning rates "
            f"{', '.join(f'{tuning_lr[k]:.3g}' for k in shared['failed'])}, where kd with the tau^2 factor trains at "
            f"the default {base_lr:g}), so PI there ({', '.join(f'{v:+.3f}' for v in failed['pi_mean'])}) measures a "
            f"broken kd, not distillation; at the other kappas: {_head(shared)}"
            + (f" ({_curve(shared)})." if shared["kappas"] >= 2 else
               f": PI = {shared['peak_pi']:+.3f} at kappa = {shared['peak_kappa']:g}." if shared["kappas"] else "."))
    else:
        lines.append(f"Both objectives with the tuned lt recipe (the protocol as specified): {_head(shared)}; "
                     f"{_curve(shared)}; {kappa_stars['shared']}.")
    lines += [f"Against the tuned lt baseline with kd at its default recipe (lt gets every advantage): "
              f"{_head(fair)}; {_curve(fair)}; {kappa_stars['fair']}.",
              f"With the default recipe for both: {_curve(verdicts['default'])}; {kappa_stars['default']}.",
              f"Tuning lt's recipe on validation changed acc(lt) by {gain['mean'].min():+.3f} to "
              f"{gain['mean'].max():+.3f} (per-kappa means over seeds, paired)."]
    return " ".join(lines)


def write_section(default_result, tuned_result, tuning, tune_spec, out_dir: Path) -> tuple[str, list[Path]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kdscale import data

    chance = 1.0 / data.info(tune_spec.data).num_classes
    tables = {"default": default_result.table, "shared": tuned_result.table,
              "fair": fair_baseline(default_result.table, tuned_result.table)}
    summaries = {name: summarize(table, chance) for name, table in tables.items()}
    verdicts = {name: verdict(summary) for name, summary in summaries.items()}
    stars = {name: crossovers(table) for name, table in tables.items()}  # (short, full)
    gain = lt_gain(default_result.table, tuned_result.table)
    names = {"default": ("both default recipe", "tab:gray"), "shared": ("both tuned lt recipe", "tab:red"),
             "fair": ("lt tuned, kd default", "tab:blue")}
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = []

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, (label, colour) in names.items():
        summary = summaries[name]
        left.errorbar(summary.index, summary["pi_mean"], yerr=summary["pi_sd"].fillna(0), marker="o", capsize=3,
                      label=label, color=colour)
    for name, objective, style, label in (("default", "lt", "--", "lt, default recipe"),
                                          ("shared", "lt", "-", "lt, tuned recipe"),
                                          ("default", "kd", "--", "kd, default recipe"),
                                          ("shared", "kd", "-", "kd, tuned lt recipe")):
        summary = summaries[name]
        right.errorbar(summary.index, summary[f"{objective}_mean"], yerr=summary[f"{objective}_sd"].fillna(0),
                       marker="o", capsize=3, linestyle=style, color="tab:orange" if objective == "lt" else "tab:blue",
                       label=label)
    left.axhline(0, color="black", linewidth=0.8)
    left.set(xscale="log", xlabel="kappa = M / N", ylabel="PI = acc(kd) - acc(lt)",
             title="kd's gain over lt (mean ± sd over seeds)")
    right.set(xscale="log", xlabel="kappa = M / N", ylabel="test accuracy", title="lt and kd under both recipes")
    left.legend(fontsize=8)
    right.legend(fontsize=7)
    figures.append(out_dir / "fair_recipe_pi.png")
    fig.savefig(figures[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)

    kappas = sorted(tuning.entries)
    best = [tuning.entries[k]["best"] for k in kappas]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    base = tune_spec.base
    for ax, key, base_value, log_y in zip(axes, ("lr", "weight_decay", "steps"),
                                          (base.lr, base.weight_decay, base.steps), (True, True, False)):
        ax.plot(kappas, [b[key] for b in best], marker="o", label="tuned")
        ax.axhline(base_value, color="tab:gray", linestyle="--", label="default")
        ax.set(xscale="log", yscale="log" if log_y else "linear", xlabel="kappa", title=f"tuned lt {key}")
    axes[0].legend()
    figures.append(out_dir / "fair_recipe_tuned.png")
    fig.savefig(figures[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)

    space = tune_spec.space
    table = default_result.table
    lines = ["## Fair recipe: kd against an lt baseline tuned per kappa", "",
             f"{table['teacher'].iloc[0]} > {table['student'].iloc[0]} on {tune_spec.data.name} "
             f"(N = {tune_spec.data.n_teacher}), kd at tau = {table.loc[table['objective'] == 'kd', 'tau'].iloc[0]:g} "
             f"(tau^2 factor, alpha = 0), {tuned_result.table['seed'].nunique()} seeds. The lt recipe was tuned per "
             f"kappa by an Optuna TPE search of {tune_spec.samples} samples (lr log-uniform in "
             f"[{space.lr[0]:g}, {space.lr[1]:g}], weight decay log-uniform in [{space.weight_decay[0]:g}, "
             f"{space.weight_decay[1]:g}], steps in {{{', '.join(map(str, space.steps))}}}; the default recipe is the "
             f"first sample when it lies in the space), scored by validation accuracy on "
             f"{tune_spec.val_fraction:.0%} of the student's own M samples (mean over {tune_spec.seeds} tuning "
             "seed(s), seed s holding out part of study seed s's samples; the test set is never read). Both lt and "
             "kd then train on all M samples with the tuned lt recipe (the protocol as specified).", "",
             "| kappa | M | n_val | lr | weight decay | steps | val acc (tuned) | val acc (default recipe) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for kappa in kappas:
        entry = tuning.entries[kappa]
        b = entry["best"]
        first = entry["samples"][0] if entry["settings"]["evaluate_base"] else None
        base_acc = f"{first['val_acc']:.3f}" if first and first.get("val_acc") is not None else "-"
        lines.append(f"| {kappa:g} | {entry['n_train']} | {entry['n_val']} | {b['lr']:.3g} | {b['weight_decay']:.2g} "
                     f"| {b['steps']} | {b['val_acc']:.3f} | {base_acc} |")
    lines += ["", "Test accuracy, mean ± sd over seeds; a kd trial *failed* if it diverged or ended below 1.5 x "
              "chance accuracy.", "",
              "| kappa | lt default | lt tuned | Δ lt (paired) | kd default | kd with tuned lt recipe |",
              "| --- | --- | --- | --- | --- | --- |"]
    default_s, shared_s = summaries["default"], summaries["shared"]
    for kappa in shared_s.index:
        d, t = default_s.loc[kappa], shared_s.loc[kappa]
        g = gain.loc[kappa] if kappa in gain.index else None
        note = f" ({int(t['kd_failed'])} failed)" if t["kd_failed"] else ""
        lines.append(f"| {kappa:g} | {_pm(d['lt_mean'], d['lt_sd'])} | {_pm(t['lt_mean'], t['lt_sd'])} | "
                     f"{_pm(g['mean'], g['sd'], sign=True) if g is not None else '-'} | "
                     f"{_pm(d['kd_mean'], d['kd_sd'])} | {_pm(t['kd_mean'], t['kd_sd'])}{note} |")
    lines += ["", "PI = acc(kd) - acc(lt) and PG = acc(kd) / acc(lt), paired by seed, mean ± sd [95% t CI of PI], "
              "for three comparisons: both with the default recipe; lt tuned against kd at the default recipe "
              "(lt gets every advantage); both with the tuned lt recipe.", "",
              "| kappa | PI both default | PI lt tuned, kd default | PI both tuned | PG both default "
              "| PG lt tuned, kd default | PG both tuned |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for kappa in shared_s.index:
        rows = [summaries[name].loc[kappa] for name in ("default", "fair", "shared")]
        pis = [f"{_pm(r['pi_mean'], r['pi_sd'], sign=True)} [{r['pi_low']:+.3f}, {r['pi_high']:+.3f}]" for r in rows]
        pgs = [_pm(r["pg_mean"], r["pg_sd"], 2) for r in rows]
        lines.append(f"| {kappa:g} | {' | '.join(pis)} | {' | '.join(pgs)} |")
    lines += ["", "kappa* (where PG crosses 1; analysis.crossover, expanded-percentile bootstrap over seeds):", "",
              f"- both default recipe: {stars['default'][1]}",
              f"- lt tuned, kd default: {stars['fair'][1]}",
              f"- both tuned lt recipe: {stars['shared'][1]}"
              + (" (every kappa, those where kd failed included)" if verdicts["shared"]["failed"] else ""), "",
              "**Answer.** " + answer(verdicts, summaries, gain, {k: tuning.entries[k]["best"]["lr"] for k in kappas},
                                      {name: star[0] for name, star in stars.items()}, base.lr), ""]
    return "\n".join(lines) + "\n", figures


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from kdscale.study import check_study
    from kdscale.engine import ray_session, run_tuning
    from kdscale.tuned import check_tune, format_table, pending_kappas

    try:
        default_spec, tune_spec = build_specs(args)
        check_study(default_spec)
        check_tune(tune_spec)
    except SpecError as error:
        print(f"fair_recipe: error: {error}", file=sys.stderr)
        return 2
    if args.cache:
        os.environ["KDSCALE_CACHE"] = args.cache  # the tuning loads its data in this process
    tuned_name = default_spec.name.replace("_default", "_tuned", 1)
    # One Ray start for the tuning and both studies when there is something to tune.
    with ray_session(args.address, args.verbose, start=bool(pending_kappas(tune_spec, args.storage, args.force_tune))):
        tuning = run_tuning(tune_spec, storage=args.storage, tracking_uri=args.tracking_uri, address=args.address,
                            force=args.force_tune, verbose=args.verbose)
        print(format_table(tune_spec, tuning))
        default_result = run(lambda _: default_spec, args, "fair_recipe")
        if default_result is None or not default_result.complete:
            return 2 if default_result is None else 1
        tuned_result = run(lambda _: tuned_study(default_spec, args.storage, tuned_name), args, "fair_recipe")
    if tuned_result is not None and tuned_result.complete and not args.no_analysis:
        analyse(default_result, print_headline=False)  # the default study's own standard report
    return finish(tuned_result, args, "fair_recipe",
                  lambda result, out_dir: write_section(default_result, result, tuning, tune_spec, out_dir))


if __name__ == "__main__":
    sys.exit(main())
