"""The recipe-protocols study's section (studies/fair_recipe.py): kd against lt when the students'
recipes are chosen three ways on one grid: `fixed` (both arms the data set's default recipe), `lt`
(both arms lt's searched recipe, the paper's protocol), `fair` (each arm its own searched recipe).

    section(tables, out_dir, chance=0.1) -> Section "fair_recipe"

`tables` maps a protocol to its study's results table (any of the three, shown in that order);
`chance` is the accuracy of guessing (1 / classes).

Tables (CSVs beside the report):
- `summary`: per protocol and kappa, n paired seeds, mean and sd of acc(lt) and acc(kd), PI = kd - lt
  (mean, sd, 95% t CI) and PG = kd / lt (mean of the per-seed ratios, sd), paired by seed;
- `recipes`: per protocol, arm and kappa, the lr and budget its rows trained with (and how many rows);
- `kappa_star`: per protocol, kappa* of analysis.crossover (as the report computes it) with its CI;
- `kd_failed`: per protocol and kappa, kd trials, diverged, ok but below 1.5 x chance, failed;
- `lt_failed`: the same for lt (a searched learning rate can break lt itself in some seeds);
- `lt_change`: per kappa, acc(lt) under fair minus under fixed, paired by seed, with a 95% t CI.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from kdscale import schema

from analysis.paired import mean_ci
from analysis.sections import Section, Table
from analysis.supervision import mean_sd
from analysis.table import AnalysisError, arm_label, prepare

NAME = "fair_recipe"
FIGURES = ("fair_recipe_pi.png", "fair_recipe_accuracy.png")
PROTOCOLS = {"fixed": ("both arms the default recipe", "tab:gray"),
             "lt": ("both arms lt's searched recipe", "tab:red"),
             "fair": ("each arm its own searched recipe", "tab:blue")}
UNDER = {"fixed": "the fixed recipe", "lt": "lt's recipe", "fair": "its own searched recipe"}
FAIL_FACTOR = 1.5  # a kd trial that ends below this many times chance accuracy did not train
SUMMARY = ["kappa", "n", "lt_mean", "lt_sd", "kd_mean", "kd_sd", "pi_mean", "pi_sd", "pi_low", "pi_high",
           "pg_mean", "pg_sd"]
INTERVAL = ["kappa", "n", "mean", "sd", "low", "high"]


def _kappas(values) -> list[float]:
    return [float(f"{float(k):.10g}") for k in values]  # as analysis.table.prepare rounds them


# --- the numbers (pure functions of results tables) ---------------------------------------------


def paired(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (kappa, seed) with an ok lt and an ok kd trial: lt, kd, PI = kd - lt, PG = kd / lt."""
    from analysis.increments import pair_by_seed

    try:
        frame = pair_by_seed(prepare(table))
    except AnalysisError:  # no ok kd (or lt) trial at all: nothing paired
        return pd.DataFrame(columns=["kappa", "seed", "lt", "kd", "PI", "PG"])
    return frame.rename(columns={"R_lt": "lt", "R_kd": "kd"})[["kappa", "seed", "lt", "kd", "PI", "PG"]]


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per kappa of the table (columns SUMMARY): paired seeds, acc(lt), acc(kd), PI with its t CI, PG."""
    per_seed, rows = paired(table), []
    for kappa in sorted(set(_kappas(table["kappa"]))):
        part = per_seed[per_seed["kappa"] == kappa]
        lt, kd, pi, pg = (mean_ci(part[c].astype(float)) for c in ("lt", "kd", "PI", "PG"))
        rows.append([kappa, len(part), lt["mean"], lt["sd"], kd["mean"], kd["sd"], pi["mean"], pi["sd"], pi["low"],
                     pi["high"], pg["mean"], pg["sd"]])
    return pd.DataFrame(rows, columns=SUMMARY)


def recipes(table: pd.DataFrame) -> pd.DataFrame:
    """Per arm (lt first), kappa, lr and budget: how many rows trained with that recipe."""
    frame = table.assign(arm=[arm_label(r) for r in table.to_dict("records")], kappa=_kappas(table["kappa"]))
    out = frame.groupby(["arm", "kappa", "lr", "budget"], sort=True, dropna=False).size().rename("trials").reset_index()
    return out.sort_values(["arm"], key=lambda a: a != "lt", kind="stable").reset_index(drop=True)


def failed_trials(table: pd.DataFrame, chance: float = 0.1, objective: str = "kd") -> pd.DataFrame:
    """Per kappa: the objective's trials, diverged, ok but below FAIL_FACTOR x chance accuracy, and
    failed (both)."""
    kd = table[table["objective"] == objective]
    status, acc = kd["status"].astype(str), pd.to_numeric(kd["test_acc"], errors="coerce")
    frame = pd.DataFrame({"kappa": _kappas(kd["kappa"]), "trials": 1, "diverged": (status == "diverged").to_numpy(),
                          "below_chance": ((status == "ok") & (acc < FAIL_FACTOR * chance)).to_numpy()})
    out = frame.groupby("kappa", sort=True).sum().astype(int).reset_index()
    return out.assign(failed=out["diverged"] + out["below_chance"])


def kappa_star(table: pd.DataFrame, n_boot: int = 2000) -> dict:
    """kappa* of PG (analysis.crossover on analysis.increments.pair_by_seed, as the report), its CI,
    `short` (a few words for the answer) and `message` (the analysis' own line)."""
    from analysis.crossover import ABOVE, BELOW, UNSTABLE, UPWARD, crossover, format_interval, format_kappa
    from analysis.increments import pair_by_seed

    keys = ("status", "kappa_star", "ci_low", "ci_high", "n_crossings", "n_seeds")
    try:
        result = crossover(pair_by_seed(prepare(table)), n_boot=n_boot)
    except AnalysisError as error:
        return {k: math.nan for k in keys} | {"status": "not computed", "short": "not computed",
                                              "message": f"not computed: {error}"}
    row = result.iloc[0].to_dict()
    if row["status"] == ABOVE:
        short = f"> {format_kappa(row['kappa_max'])} (PG > 1 at every kappa)"
    elif row["status"] == BELOW:
        short = f"< {format_kappa(row['kappa_min'])} (PG < 1 at every kappa)"
    elif row["status"] == UNSTABLE:
        short = f"no stable crossing (PG > 1 again at {format_kappa(row['kappa_max'])})"
    else:
        short = f"{format_kappa(row['kappa_star'])} {format_interval(row)}"
        short += " (upward)" if row["status"] == UPWARD else ""
    return {k: row[k] for k in keys} | {"short": short, "message": row["message"]}


def lt_change(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Per kappa: acc(lt) of `after` minus that of `before`, paired by seed (columns INTERVAL)."""
    def lt(table):
        try:
            frame = prepare(table).frame
        except AnalysisError:
            return pd.Series(dtype=float)
        return frame[frame["objective"] == "lt"].set_index(["kappa", "seed"])["R"]

    diff = (lt(after) - lt(before)).dropna()
    rows = [[kappa, *(mean_ci(group)[k] for k in INTERVAL[1:])] for kappa, group in diff.groupby(level="kappa")]
    return pd.DataFrame(rows, columns=INTERVAL)


def sign(row) -> str:
    """`above` or `below` 0 (the 95% CI clear of it, two seeds or more), else `unclear`."""
    return "above" if row["n"] > 1 and row["low"] > 0 else "below" if row["n"] > 1 and row["high"] < 0 else "unclear"


# --- the text ------------------------------------------------------------------------------------


def _list(values, fmt="{:g}") -> str:
    return ", ".join(fmt.format(v) for v in values)


def answer(summaries: dict, stars: dict, failed: dict, recipe: dict, change: pd.DataFrame | None,
           lt_failed: dict | None = None) -> str:
    """The answer from the numbers: kappa* and the PI curve per protocol, where kd (or lt) fails,
    lt's change from fixed to fair. `failed` and `lt_failed` map a protocol to its failed_trials."""
    order = [p for p in PROTOCOLS if p in summaries]
    s = {p: summaries[p].set_index("kappa") for p in order}
    low, high = min(f.index.min() for f in s.values()), max(f.index.max() for f in s.values())

    def pi(p, k):
        return f"{s[p].loc[k, 'pi_mean']:+.3f}" if k in s[p].index and s[p].loc[k, "n"] else "-"

    text = ["kappa* is " + ", ".join(f"{stars[p]['short']} under {p}" for p in order) + ".",
            f"PI is {', '.join(f'{pi(p, low)} ({p})' for p in order)} at the smallest kappa ({low:g}) and "
            f"{', '.join(f'{pi(p, high)} ({p})' for p in order)} at the largest ({high:g})"]
    peaks = {p: s[p]["pi_mean"].idxmax() for p in order if s[p]["pi_mean"].notna().any()}
    text[-1] += (f"; it peaks at kappa = {', '.join(f'{k:g} ({p})' for p, k in peaks.items())}." if peaks else ".")
    for p in order:
        bad = failed[p][failed[p]["failed"] > 0]
        if p == "lt" and bad.empty:
            text.append(f"Under lt's recipe kd trained at every kappa (no kd trial diverged or ended below "
                        f"{FAIL_FACTOR:g} x chance).")
        elif not bad.empty:
            lrs = recipe[p][recipe[p]["arm"] != "lt"].set_index("kappa")["lr"]
            own = recipe["fair"][recipe["fair"]["arm"] != "lt"].set_index("kappa")["lr"] if "fair" in recipe else None
            text.append(
                f"Under {UNDER[p]} kd failed at kappa = "
                f"{_list(bad['kappa'])} ({int(bad['failed'].sum())} of {int(bad['trials'].sum())} kd trials there "
                f"diverged or ended below {FAIL_FACTOR:g} x chance), at lr {_list(lrs.reindex(bad['kappa']), '{:.3g}')}"
                + (f", where kd's own search chose lr {_list(own.reindex(bad['kappa']), '{:.3g}')}"
                   if p == "lt" and own is not None else "")
                + f": PI there{' (and kappa* under lt)' if p == 'lt' else ''} measures a broken kd.")
    groups: dict[tuple, list[str]] = {}  # lt and fair share their lt trials: one sentence for both
    for p in order if lt_failed else ():
        bad = lt_failed[p][lt_failed[p]["failed"] > 0]
        if len(bad):
            lrs = recipe[p][recipe[p]["arm"] == "lt"].set_index("kappa")["lr"].reindex(bad["kappa"])
            groups.setdefault((tuple(bad["kappa"]), int(bad["failed"].sum()), int(bad["trials"].sum()),
                               tuple(lrs)), []).append(p)
    for (kappas, n_failed, n_trials, lrs), ps in groups.items():
        text.append(f"lt itself failed under {' and '.join(ps)} at kappa = {_list(kappas)} ({n_failed} of "
                    f"{n_trials} lt trials there diverged or ended below {FAIL_FACTOR:g} x chance), at lr "
                    f"{_list(lrs, '{:.3g}')}: PI there is inflated by a broken lt.")
    if change is not None and len(change):
        last, before, after = change.iloc[-1], s["fixed"].loc[change.iloc[-1]["kappa"]], \
            s["fair"].loc[change.iloc[-1]["kappa"]]
        verb = {"above": "raises", "below": "lowers", "unclear": "does not measurably change"}[sign(last)]
        ci = f" [{last['low']:+.3f}, {last['high']:+.3f}]" if last["n"] > 1 else " (one seed: no CI)"
        text.append(f"Searching lt's recipe {verb} acc(lt) at the largest kappa ({last['kappa']:g}): "
                    f"{before['lt_mean']:.3f} (fixed) to {after['lt_mean']:.3f} (fair), {last['mean']:+.3f}{ci} "
                    f"paired by seed; over the grid the change is {change['mean'].min():+.3f} to "
                    f"{change['mean'].max():+.3f}.")
    return " ".join(text)


def _cell(row, column: str, signed: bool = False, ci: bool = False) -> str:
    if row is None or not row["n"]:
        return "-"
    text = mean_sd(row[f"{column}_mean"], row[f"{column}_sd"], digits=2 if column == "pg" else 3, signed=signed)
    return text + (f" [{row['pi_low']:+.3f}, {row['pi_high']:+.3f}]" if ci and row["n"] > 1 else "")


def section(tables: dict[str, pd.DataFrame], out_dir: Path, chance: float = 0.1, n_boot: int = 2000) -> Section:
    """The section of the protocols' tables (see the module doc); figures drawn into out_dir."""
    order = [p for p in PROTOCOLS if p in tables]
    if not order:
        raise AnalysisError(f"no table of any protocol ({', '.join(PROTOCOLS)})")
    summaries = {p: summarize(tables[p]) for p in order}
    recipe = {p: recipes(tables[p]) for p in order}
    failed = {p: failed_trials(tables[p], chance, "kd") for p in order}
    lt_failed = {p: failed_trials(tables[p], chance, "lt") for p in order}
    stars = {p: kappa_star(tables[p], n_boot) for p in order}
    change = lt_change(tables["fixed"], tables["fair"]) if {"fixed", "fair"} <= set(order) else None

    def stacked(frames):
        return pd.concat([frames[p].assign(protocol=p) for p in order], ignore_index=True).pipe(
            lambda f: f[["protocol", *f.columns[:-1]]])
    result = Section(NAME, tables={
        "summary": stacked(summaries), "recipes": stacked(recipe), "kd_failed": stacked(failed),
        "lt_failed": stacked(lt_failed),
        "kappa_star": pd.DataFrame([{"protocol": p, **stars[p]} for p in order]),
        "lt_change": change if change is not None else pd.DataFrame(columns=INTERVAL)})

    any_table = tables[order[0]]
    first = any_table.iloc[0]
    taus = sorted(set(any_table.loc[any_table["objective"] == "kd", "tau"].dropna()))
    seeds = max(t["seed"].nunique() for t in tables.values())
    result.add("## Recipe protocols: how much of kd's gain depends on the students' recipes", "",
               f"{schema.pair_label(first['teacher'], first['student'])} on {first['dataset']} (N = {first['n_teacher']}), kd at "
               f"tau = {_list(taus)} (alpha = 0), {seeds} seeds, under "
               + "; ".join(f"`{p}`: {PROTOCOLS[p][0]}" for p in order) + ". Searched recipes: lr and step budget "
               "by successive halving on a validation split of the student's own samples (kdscale.search).", "",
               "Test accuracy, mean ± sd over the paired seeds; *failed*: trials that diverged or ended below "
               f"{FAIL_FACTOR:g} x chance accuracy.", "")
    kappas = sorted(set().union(*(f["kappa"] for f in summaries.values())))
    rows_of = {p: summaries[p].set_index("kappa") for p in order}

    def row(p, k):
        return rows_of[p].loc[k] if k in rows_of[p].index else None

    def fail_note(frames, p, k):
        n = frames[p].set_index("kappa")["failed"].get(k, 0)
        return f" ({n} failed)" if n else ""
    result.add(Table(pd.DataFrame([[f"{k:g}", *(c for p in order for c in (
                                       _cell(row(p, k), "lt") + fail_note(lt_failed, p, k),
                                       _cell(row(p, k), "kd") + fail_note(failed, p, k)))]
                                   for k in kappas], columns=["kappa", *(f"{a} ({p})" for p in order
                                                                         for a in ("acc lt", "acc kd"))])), "",
               "PI = acc(kd) - acc(lt) paired by seed, mean ± sd [95% t CI], and PG = acc(kd) / acc(lt):", "",
               Table(pd.DataFrame([[f"{k:g}", *(_cell(row(p, k), "pi", True, True) for p in order),
                                    *(_cell(row(p, k), "pg") for p in order)] for k in kappas],
                                  columns=["kappa", *(f"PI {p}" for p in order), *(f"PG {p}" for p in order)])), "",
               "The recipes the arms trained with (lr, budget):", "")
    cells = {(p, "lt" if a == "lt" else "kd", k): f"{lr:.3g}, {b}" for p in order
             for a, k, lr, b in recipe[p][["arm", "kappa", "lr", "budget"]].itertuples(index=False)}
    result.add(Table(pd.DataFrame([[f"{k:g}", *(cells.get((p, a, k), "-") for p in order for a in ("lt", "kd"))]
                                   for k in kappas], columns=["kappa", *(f"{a} ({p})" for p in order
                                                                         for a in ("lt", "kd"))])), "",
               "kappa* (where PG crosses 1; analysis.crossover, bootstrap over seeds):", "",
               *(f"- {p}: {stars[p]['message']}" for p in order), "",
               "**Answer.** " + answer(summaries, stars, failed, recipe, change, lt_failed), "")
    result.figures = draw(out_dir, summaries, {p: pd.concat([failed[p], lt_failed[p]]) for p in order})
    return result


def draw(out_dir: Path, summaries: dict, failed: dict) -> list[Path]:
    """PI against kappa per protocol (95% t CI; x where a kd or lt trial failed, `failed`), and acc(lt),
    acc(kd) against kappa per protocol."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, (p, frame) in enumerate(summaries.items()):
        label, colour = PROTOCOLS[p]
        x = frame["kappa"] * 1.04 ** (i - 1)  # the protocols side by side at each kappa
        yerr = [(frame["pi_mean"] - frame["pi_low"]).fillna(0), (frame["pi_high"] - frame["pi_mean"]).fillna(0)]
        ax.errorbar(x, frame["pi_mean"], yerr=yerr, marker="o", capsize=3, color=colour, label=f"{p}: {label}")
        bad = frame["kappa"].isin(failed[p].loc[failed[p]["failed"] > 0, "kappa"])
        ax.scatter(x[bad], frame.loc[bad, "pi_mean"], marker="x", s=80, color=colour, zorder=3)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set(xscale="log", xlabel="kappa = M / N", ylabel="PI = acc(kd) - acc(lt), paired by seed",
           title="kd's gain per recipe protocol (error bars: 95% t CI; x: a trial failed)")
    ax.legend(fontsize=8)
    paths = [out_dir / FIGURES[0]]
    fig.savefig(paths[0], dpi=120, bbox_inches="tight")
    plt.close(fig)

    fig, axes = plt.subplots(1, len(summaries), figsize=(4 * len(summaries), 3.6), sharey=True, squeeze=False)
    for ax, (p, frame) in zip(axes[0], summaries.items()):
        for arm, colour in (("lt", "tab:orange"), ("kd", "tab:blue")):
            ax.errorbar(frame["kappa"], frame[f"{arm}_mean"], yerr=frame[f"{arm}_sd"].fillna(0), marker="o",
                        capsize=3, color=colour, label=f"acc({arm})")
        ax.set(xscale="log", xlabel="kappa = M / N", title=f"{p}: {PROTOCOLS[p][0]}")
        ax.title.set_fontsize(9)
    axes[0][0].set_ylabel("test accuracy (mean ± sd over seeds)")
    axes[0][0].legend(fontsize=8)
    paths.append(out_dir / FIGURES[1])
    fig.savefig(paths[1], dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths
