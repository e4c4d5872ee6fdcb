"""The language-model study's section (studies/language_model.py; the paper's Figs. 2 and 3): test
perplexity against kappa for a GPT student of GPT teachers of several sizes, and against FLOPs.

    section(table, out_dir) -> Section "language_model"

Perplexity is exp(mean cross-entropy per test token), lower is better. The gain of distillation is
G = ppl(lt) - ppl(kd), paired by seed at each (teacher, kappa) (positive: kd better), with a 95% t
CI over seeds. Does the gain shrink as kappa grows? Per teacher and seed, the least-squares slope
of G against log2 kappa; the mean slope over seeds with its 95% t CI: it shrinks where the whole
interval is below 0, grows where above, and with one seed the sign of the slope is all there is.

FLOPs are the row's `flops`: the student's forward and backward passes (3 forward passes a token
seen) plus, for kd, the teacher's forward passes, one per student training token (its logits are
cached; kdscale/trial.py). The students' budgets are in epochs, so cost grows with kappa. Is kd
cheaper than lt to a given perplexity? For each kd point (a kappa; means over seeds), the FLOPs lt
needs to reach the same perplexity, read off lt's curve (its best perplexity so far against
FLOPs, log FLOPs interpolated linearly in perplexity); ratio = FLOPs(kd) / FLOPs(lt). Beyond lt's
best, lt does not reach it in the grid (kd cheaper); above lt's cheapest point, lt's cheapest
point bounds it (kd cheaper only if it costs less than that). A teacher's kd is cheaper when it is
cheaper at most of its points (and the table says at how many).

Tables: `gain` (per teacher and kappa: seeds, mean ppl of lt and kd, G with its CI, teacher ppl),
`trend` (per teacher: slope of G per doubling of kappa with its CI, seeds), `cost` (per teacher and
kd kappa: FLOPs and ppl of kd, the lt FLOPs to that ppl, the ratio, cheaper), `cheaper` (per
teacher: points where kd is cheaper, of all, and the verdict).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.paired import mean_ci, paired_columns
from analysis.sections import Section, Table
from analysis.table import AnalysisError, prepare

NAME = "language_model"
FIGURES = ("language_model_kappa.png", "language_model_flops.png")


def gains(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(gain per teacher and kappa, trend of the gain per teacher) from prepared trials."""
    paired = paired_columns(frame, ["test_ppl"])
    paired["gain"] = -paired["test_ppl_gain"]  # ppl(lt) - ppl(kd)
    teacher = frame.groupby("pair")["teacher"].first()
    teacher_ppl = frame.groupby("pair")["teacher_test_ppl"].first() if "teacher_test_ppl" in frame else None
    rows, trend = [], []
    for (pair, kappa), group in paired.groupby(["pair", "kappa"], sort=True):
        ci = mean_ci(group["gain"])
        rows.append({"pair": pair, "teacher": teacher[pair], "kappa": kappa, "n": ci["n"],
                     "ppl_lt": group["test_ppl_lt"].mean(), "ppl_kd": group["test_ppl_kd"].mean(),
                     "gain": ci["mean"], "gain_low": ci["low"], "gain_high": ci["high"],
                     "teacher_ppl": float(teacher_ppl[pair]) if teacher_ppl is not None else math.nan})
    for pair, group in paired.groupby("pair", sort=True):
        slopes = [np.polyfit(np.log2(g["kappa"].to_numpy(float)), g["gain"].to_numpy(float), 1)[0]
                  for _, g in group.groupby("seed") if g["kappa"].nunique() > 1]
        ci = mean_ci(slopes)
        verdict = ("shrinks" if ci["high"] < 0 else "grows" if ci["low"] > 0 else
                   "no clear trend" if ci["n"] > 1 else ("shrinks (one seed)" if ci["mean"] < 0 else "grows (one seed)"))
        trend.append({"pair": pair, "teacher": teacher[pair], "slope": ci["mean"], "slope_low": ci["low"],
                      "slope_high": ci["high"], "n": ci["n"], "verdict": verdict})
    return pd.DataFrame(rows), pd.DataFrame(trend)


def lt_flops_to(ppl: float, lt: pd.DataFrame) -> tuple[float, str]:
    """FLOPs lt needs to reach perplexity `ppl` on its curve (`lt`: flops, ppl), and how it was read."""
    curve = lt.sort_values("flops")
    flops, best = curve["flops"].to_numpy(float), np.minimum.accumulate(curve["ppl"].to_numpy(float))
    if ppl < best[-1]:
        return math.inf, "lt never reaches it"
    if ppl >= best[0]:
        return flops[0], "at or above lt's cheapest point"
    i = int(np.argmax(best <= ppl))  # the first lt point at least as good; i >= 1
    share = (best[i - 1] - ppl) / (best[i - 1] - best[i])
    return float(np.exp(np.log(flops[i - 1]) + share * (np.log(flops[i]) - np.log(flops[i - 1])))), "interpolated"


def costs(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per teacher and kd kappa: the FLOPs comparison, per teacher: the verdict)."""
    means = frame.groupby(["pair", "objective", "kappa"], as_index=False).agg(flops=("flops", "mean"),
                                                                              ppl=("test_ppl", "mean"))
    teacher = frame.groupby("pair")["teacher"].first()
    rows, verdicts = [], []
    for pair, group in means.groupby("pair", sort=True):
        lt, kd = group[group["objective"] == "lt"], group[group["objective"] == "kd"]
        if lt.empty or kd.empty:
            continue
        for point in kd.itertuples(index=False):
            needed, how = lt_flops_to(point.ppl, lt)
            ratio = point.flops / needed
            rows.append({"pair": pair, "teacher": teacher[pair], "kappa": point.kappa, "ppl_kd": point.ppl,
                         "flops_kd": point.flops, "flops_lt": needed, "ratio": ratio, "read": how,
                         "cheaper": bool(ratio < 1)})
        mine = [r for r in rows if r["pair"] == pair]
        count = sum(r["cheaper"] for r in mine)
        verdicts.append({"pair": pair, "teacher": teacher[pair], "cheaper_at": count, "points": len(mine),
                         "kd_cheaper": bool(count > len(mine) / 2)})
    if not rows:
        raise AnalysisError("no teacher has both lt and kd students: nothing to compare in FLOPs")
    return pd.DataFrame(rows), pd.DataFrame(verdicts)


def _ci(mean, low, high) -> str:
    return f"{mean:+.3f}" + (f" [{low:+.3f}, {high:+.3f}]" if np.isfinite(low) else "")


def section(table: pd.DataFrame, out_dir: Path) -> Section:
    trials = prepare(table, "test_ppl")
    frame = trials.frame
    sizes = frame.groupby("pair")["teacher_params"].first().sort_values(kind="stable")
    order = {pair: i for i, pair in enumerate(sizes.index)}  # teachers from the smallest

    def by_size(table: pd.DataFrame, *then: str) -> pd.DataFrame:
        return table.sort_values(["pair", *then], key=lambda c: c.map(order) if c.name == "pair" else c,
                                 kind="stable").reset_index(drop=True)
    gain, trend = gains(frame)
    cost, cheaper = costs(frame)
    gain, trend, cost, cheaper = by_size(gain, "kappa"), by_size(trend), by_size(cost, "kappa"), by_size(cheaper)
    result = Section(NAME, tables={"gain": gain, "trend": trend, "cost": cost, "cheaper": cheaper})
    first = frame.iloc[0]
    params = frame.groupby("teacher")["teacher_params"].first().sort_values()
    result.add("## Language models: perplexity against kappa (Fig. 2)", "",
               f"GPT student {first['student']} ({int(first['student_params']):,} parameters) on M = kappa N windows "
               f"of {first['dataset']} (N = {first['n_teacher']}), budget {first['budget']}; teachers "
               + ", ".join(f"{t} ({int(p):,} parameters)" for t, p in params.items())
               + ". Test perplexity, mean over seeds; gain G = ppl(lt) - ppl(kd) paired by seed, 95% t CI.", "",
               Table(pd.DataFrame([[r.teacher, f"{r.teacher_ppl:.2f}", f"{r.kappa:g}", f"{r.ppl_lt:.3f}",
                                    f"{r.ppl_kd:.3f}", _ci(r.gain, r.gain_low, r.gain_high), str(r.n)]
                                   for r in gain.itertuples(index=False)],
                                  columns=["teacher", "teacher ppl", "kappa", "ppl lt", "ppl kd", "G [95% CI]",
                                           "seeds"])), "",
               "**Does the gain shrink as kappa grows?** " + "; ".join(
                   f"{r.teacher}: G changes by {_ci(r.slope, r.slope_low, r.slope_high)} per doubling of kappa "
                   f"({r.verdict})" for r in trend.itertuples(index=False)) + ".", "",
               "## Perplexity against FLOPs (Fig. 3)", "",
               "FLOPs: the student's training (3 forward passes a token seen) and, for kd, the teacher's forward "
               "passes over the student's tokens. Ratio = FLOPs(kd) / FLOPs(lt to the same perplexity); below 1, "
               "kd is cheaper.", "",
               Table(pd.DataFrame([[r.teacher, f"{r.kappa:g}", f"{r.ppl_kd:.3f}", f"{r.flops_kd:.3g}",
                                    f"{r.flops_lt:.3g}", f"{r.ratio:.2f}", r.read]
                                   for r in cost.itertuples(index=False)],
                                  columns=["teacher", "kd kappa", "ppl kd", "FLOPs kd", "FLOPs lt to it", "ratio",
                                           "lt read"])), "",
               "**Is kd cheaper than lt to a given perplexity?** " + "; ".join(
                   f"{r.teacher}: {'yes' if r.kd_cheaper else 'no'} (cheaper at {r.cheaper_at} of {r.points} "
                   "perplexities)" for r in cheaper.itertuples(index=False))
               + " (the paper: not for two of its three teachers).", "")
    result.figures = [draw_kappa(out_dir, frame), draw_flops(out_dir, frame)]
    return result


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _curves(frame: pd.DataFrame, x: str):
    """(label, x, mean ppl) per teacher's kd and once for lt (lt reads no teacher: one curve)."""
    means = frame.groupby(["pair", "teacher", "objective", "kappa"], as_index=False)[[x, "test_ppl"]].mean()
    lt_pair = means.loc[means["objective"] == "lt", "pair"].iloc[0]
    yield "lt", means[(means["objective"] == "lt") & (means["pair"] == lt_pair)]
    for teacher, group in means[means["objective"] == "kd"].groupby("teacher", sort=True):
        yield f"kd, teacher {teacher}", group


def _draw(out_dir: Path, frame: pd.DataFrame, x: str, xlabel: str, name: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, group in _curves(frame, x):
        group = group.sort_values(x)
        ax.plot(group[x], group["test_ppl"], marker="o", label=label, ls="--" if label == "lt" else "-")
    ax.set(xscale="log", xlabel=xlabel, ylabel="test perplexity")
    ax.xaxis.set_minor_formatter(plt.NullFormatter())  # labelled minor ticks overlap on a short log axis
    ax.legend(fontsize=8)
    path = out_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def draw_kappa(out_dir: Path, frame: pd.DataFrame) -> Path:
    return _draw(out_dir, frame, "kappa", "kappa = student tokens / teacher tokens", FIGURES[0])


def draw_flops(out_dir: Path, frame: pd.DataFrame) -> Path:
    return _draw(out_dir, frame, "flops", "training FLOPs (teacher forward passes counted)", FIGURES[1])
