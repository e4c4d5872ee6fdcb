"""The fair-recipe study's section (studies/fair_recipe.py): kd against lt when lt's recipe is tuned
per kappa, for three comparisons (both at the default recipe; both at the tuned lt recipe; lt tuned
against kd at the default recipe), with the tuned recipes, PI and PG per kappa, kappa*, the answer.

    section(default_table, tuned_table, entries, base, out_dir, chance) -> Section "fair_recipe"

`entries` is kappa -> that kappa's entry of the tuned file (`<storage>/_tuned/<key>.json`, plain
JSON dicts: n_train, n_val, best, samples, settings), `base` the file's `base_recipe` dict (lr,
weight_decay, steps), `chance` the accuracy of guessing (1 / classes).

Tables: `tuning` (per kappa: M, n_val, the tuned lr, weight decay and steps, validation accuracy
tuned and of the default recipe), `summary` (per comparison and kappa: n paired seeds, mean and sd
of acc(lt), acc(kd), PI and PG, PI's 95% t CI, diverged and failed trials), `lt_gain` (per kappa:
acc(lt, tuned) - acc(lt, default) paired by seed), `verdict` (per comparison: the PI curve's
verdict) and `kappa_star` (per comparison: analysis.crossover's kappa* and CI).
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from analysis.sections import Section, Table

NAME = "fair_recipe"
FIGURES = ("fair_recipe_pi.png", "fair_recipe_tuned.png")
COMPARISONS = ("default", "shared", "fair")  # both default; both tuned lt recipe; lt tuned, kd default
LABELS = {"default": ("both default recipe", "tab:gray"), "shared": ("both tuned lt recipe", "tab:red"),
          "fair": ("lt tuned, kd default", "tab:blue")}


# --- the numbers (pure functions of results tables) ---------------------------------------------


def per_seed(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (kappa, seed) with an ok lt and an ok kd trial: lt, kd, PI = kd - lt, PG = kd / lt."""
    ok = table[table["status"] == "ok"]
    lt = ok[ok["objective"] == "lt"].set_index(["kappa", "seed"])["test_acc"].astype(float)
    kd = ok[ok["objective"] == "kd"].set_index(["kappa", "seed"])["test_acc"].astype(float)
    paired = pd.concat({"lt": lt, "kd": kd}, axis=1).dropna()
    paired["pi"] = paired["kd"] - paired["lt"]
    paired["pg"] = paired["kd"] / paired["lt"]
    return paired.sort_index()


def summarize(table: pd.DataFrame, chance: float = 0.1) -> pd.DataFrame:
    """Per kappa: mean and sd over seeds of acc(lt), acc(kd), PI (with a 95% t CI) and PG, the number
    of paired seeds, how many lt and kd trials diverged, and how many kd trials did not train
    (diverged, or test accuracy below 1.5 x `chance`, the accuracy of guessing)."""
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


def lt_gain(default_table: pd.DataFrame, tuned_table: pd.DataFrame) -> pd.DataFrame:
    """Per kappa: what tuning did to lt, acc(lt, tuned) - acc(lt, default), paired by seed (mean, sd, n)."""
    def lt(table):
        ok = table[(table["status"] == "ok") & (table["objective"] == "lt")]
        return ok.set_index(["kappa", "seed"])["test_acc"].astype(float)

    diff = (lt(tuned_table) - lt(default_table)).dropna()
    return pd.DataFrame({"mean": diff.groupby(level="kappa").mean(), "sd": diff.groupby(level="kappa").std(ddof=1),
                         "n": diff.groupby(level="kappa").size()})


def verdict(summary: pd.DataFrame) -> dict:
    """Does a PI curve hold where kd trained (no kd trial failed at that kappa): PI > 0 somewhere
    (95% t CI above 0) and falling from its peak to the largest kappa by more than 2 standard
    errors of that difference? See studies/fair_recipe.py's doc."""
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


def crossovers(table: pd.DataFrame, n_boot: int = 2000) -> tuple[str, str, dict | None]:
    """kappa* of PG (analysis.crossover): (short form, the analysis' full message, its row or None)."""
    from analysis import AnalysisError
    from analysis.crossover import ABOVE, BELOW, crossover, format_interval, format_kappa
    from analysis.increments import pair_by_seed
    from analysis.table import prepare

    try:
        result = crossover(pair_by_seed(prepare(table)), n_boot=n_boot)
    except AnalysisError as error:
        return "not computed", f"not computed: {error}", None
    if not len(result):
        return "not computed", "not computed: no pair", None
    row = result.iloc[0].to_dict()
    if row["status"] == ABOVE:
        short = f"kappa* > {format_kappa(row['kappa_max'])} (PG > 1 at every kappa)"
    elif row["status"] == BELOW:
        short = f"kappa* < {format_kappa(row['kappa_min'])} (PG < 1 at every kappa)"
    else:
        short = f"kappa* = {format_kappa(row['kappa_star'])} {format_interval(row)}"
    return short, row["message"], row


def fair_baseline(default_table: pd.DataFrame, tuned_table: pd.DataFrame) -> pd.DataFrame:
    """The comparison where lt gets every advantage: lt with its tuned recipe against kd with the
    default recipe (a results table of the tuned study's lt rows and the default study's kd rows)."""
    return pd.concat([tuned_table[tuned_table["objective"] == "lt"], default_table[default_table["objective"] == "kd"]],
                     ignore_index=True)


def tuning_frame(entries: dict[float, dict]) -> pd.DataFrame:
    """Per tuned kappa: M, n_val, the best sample's lr, weight decay, steps and validation accuracy,
    and the default recipe's validation accuracy where it was the first sample (else NaN)."""
    rows = []
    for kappa in sorted(entries):
        entry = entries[kappa]
        best = entry["best"]
        first = entry["samples"][0] if entry["settings"]["evaluate_base"] else None
        rows.append({"kappa": kappa, "n_train": entry["n_train"], "n_val": entry["n_val"], "lr": best["lr"],
                     "weight_decay": best["weight_decay"], "steps": best["steps"], "val_acc": best["val_acc"],
                     "val_acc_default": first["val_acc"] if first and first.get("val_acc") is not None else math.nan})
    return pd.DataFrame(rows, columns=["kappa", "n_train", "n_val", "lr", "weight_decay", "steps", "val_acc",
                                       "val_acc_default"])


# --- the text ------------------------------------------------------------------------------------


def _pm(mean, sd, decimals=3, sign=False) -> str:
    if not math.isfinite(mean):
        return "-"
    text = f"{mean:+.{decimals}f}" if sign else f"{mean:.{decimals}f}"
    return text + (f" ± {sd:.{decimals}f}" if math.isfinite(sd) else "")


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


def section(default_table: pd.DataFrame, tuned_table: pd.DataFrame, entries: dict[float, dict], base: dict,
            out_dir: Path, chance: float = 0.1) -> Section:
    """The section of the two studies' tables (default recipe, tuned lt recipe) and the tuning."""
    tables = {"default": default_table, "shared": tuned_table, "fair": fair_baseline(default_table, tuned_table)}
    summaries = {name: summarize(table, chance) for name, table in tables.items()}
    verdicts = {name: verdict(summary) for name, summary in summaries.items()}
    stars = {name: crossovers(table) for name, table in tables.items()}  # (short, full, row)
    gain = lt_gain(default_table, tuned_table)
    tuned = tuning_frame(entries)
    kappas = sorted(entries)
    settings = entries[kappas[0]]["settings"]  # the search's settings, one for every kappa of a tuning
    space = settings["space"]
    result = Section(NAME, tables={
        "tuning": tuned,
        "summary": pd.concat([summaries[n].reset_index().assign(comparison=n) for n in COMPARISONS], ignore_index=True)
        .pipe(lambda f: f[["comparison", *f.columns[:-1]]]),
        "lt_gain": gain.rename_axis("kappa").reset_index(),
        "verdict": pd.DataFrame([{"comparison": n, **{k: (" ".join(f"{x:g}" for x in v) if isinstance(v, list) else v)
                                                      for k, v in verdicts[n].items()}} for n in COMPARISONS]),
        "kappa_star": pd.DataFrame([{"comparison": n, "short": stars[n][0], **{
            k: (stars[n][2] or {}).get(k, math.nan) for k in ("status", "kappa_star", "ci_low", "ci_high", "n_seeds")}}
            for n in COMPARISONS])})

    first = {column: default_table[column].iloc[0] for column in ("teacher", "student", "dataset", "n_teacher")}
    tau = default_table.loc[default_table["objective"] == "kd", "tau"].iloc[0]
    result.add("## Fair recipe: kd against an lt baseline tuned per kappa", "",
               f"{first['teacher']} > {first['student']} on {first['dataset']} (N = {first['n_teacher']}), kd at "
               f"tau = {tau:g} "
               f"(tau^2 factor, alpha = 0), {tuned_table['seed'].nunique()} seeds. The lt recipe was tuned per "
               f"kappa by an Optuna TPE search of {settings['samples']} samples (lr log-uniform in "
               f"[{space['lr'][0]:g}, {space['lr'][1]:g}], weight decay log-uniform in [{space['weight_decay'][0]:g}, "
               f"{space['weight_decay'][1]:g}], steps in {{{', '.join(map(str, space['steps']))}}}; the default recipe "
               f"is the first sample when it lies in the space), scored by validation accuracy on "
               f"{settings['val_fraction']:.0%} of the student's own M samples (mean over {settings['seeds']} tuning "
               "seed(s), seed s holding out part of study seed s's samples; the test set is never read). Both lt and "
               "kd then train on all M samples with the tuned lt recipe (the protocol as specified).", "")
    rows = [[f"{r.kappa:g}", str(r.n_train), str(r.n_val), f"{r.lr:.3g}", f"{r.weight_decay:.2g}", str(r.steps),
             f"{r.val_acc:.3f}", "-" if math.isnan(r.val_acc_default) else f"{r.val_acc_default:.3f}"]
            for r in tuned.itertuples(index=False)]
    result.add(display(["kappa", "M", "n_val", "lr", "weight decay", "steps", "val acc (tuned)",
                        "val acc (default recipe)"], rows), "",
               "Test accuracy, mean ± sd over seeds; a kd trial *failed* if it diverged or ended below 1.5 x "
               "chance accuracy.", "")
    default_s, shared_s = summaries["default"], summaries["shared"]
    rows = []
    for kappa in shared_s.index:
        d, t = default_s.loc[kappa], shared_s.loc[kappa]
        g = gain.loc[kappa] if kappa in gain.index else None
        note = f" ({int(t['kd_failed'])} failed)" if t["kd_failed"] else ""
        rows.append([f"{kappa:g}", _pm(d["lt_mean"], d["lt_sd"]), _pm(t["lt_mean"], t["lt_sd"]),
                     _pm(g["mean"], g["sd"], sign=True) if g is not None else "-", _pm(d["kd_mean"], d["kd_sd"]),
                     _pm(t["kd_mean"], t["kd_sd"]) + note])
    result.add(display(["kappa", "lt default", "lt tuned", "Δ lt (paired)", "kd default", "kd with tuned lt recipe"],
                       rows), "",
               "PI = acc(kd) - acc(lt) and PG = acc(kd) / acc(lt), paired by seed, mean ± sd [95% t CI of PI], "
               "for three comparisons: both with the default recipe; lt tuned against kd at the default recipe "
               "(lt gets every advantage); both with the tuned lt recipe.", "")
    rows = []
    for kappa in shared_s.index:
        cells = [summaries[name].loc[kappa] for name in ("default", "fair", "shared")]
        rows.append([f"{kappa:g}", *(f"{_pm(r['pi_mean'], r['pi_sd'], sign=True)} [{r['pi_low']:+.3f}, "
                                     f"{r['pi_high']:+.3f}]" for r in cells),
                     *(_pm(r["pg_mean"], r["pg_sd"], 2) for r in cells)])
    result.add(display(["kappa", "PI both default", "PI lt tuned, kd default", "PI both tuned", "PG both default",
                        "PG lt tuned, kd default", "PG both tuned"], rows), "",
               "kappa* (where PG crosses 1; analysis.crossover, expanded-percentile bootstrap over seeds):", "",
               f"- both default recipe: {stars['default'][1]}",
               f"- lt tuned, kd default: {stars['fair'][1]}",
               f"- both tuned lt recipe: {stars['shared'][1]}"
               + (" (every kappa, those where kd failed included)" if verdicts["shared"]["failed"] else ""), "",
               "**Answer.** " + answer(verdicts, summaries, gain, {k: entries[k]["best"]["lr"] for k in kappas},
                                       {name: star[0] for name, star in stars.items()}, base["lr"]), "")
    result.figures = draw(out_dir, summaries, entries, base)
    return result


def display(columns: list[str], rows: list[list[str]]) -> Table:
    return Table(pd.DataFrame(rows, columns=columns))


def draw(out_dir: Path, summaries: dict, entries: dict[float, dict], base: dict) -> list[Path]:
    """PI per comparison and acc(lt), acc(kd) under both recipes against kappa; the tuned lr,
    weight decay and steps against kappa beside the default recipe's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    figures = []
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, (label, colour) in LABELS.items():
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
    figures.append(out_dir / FIGURES[0])
    fig.savefig(figures[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)

    kappas = sorted(entries)
    best = [entries[k]["best"] for k in kappas]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, key, log_y in zip(axes, ("lr", "weight_decay", "steps"), (True, True, False)):
        ax.plot(kappas, [b[key] for b in best], marker="o", label="tuned")
        ax.axhline(base[key], color="tab:gray", linestyle="--", label="default")
        ax.set(xscale="log", yscale="log" if log_y else "linear", xlabel="kappa", title=f"tuned lt {key}")
    axes[0].legend()
    figures.append(out_dir / FIGURES[1])
    fig.savefig(figures[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)
    return figures
