"""The state-tracking study's section (studies/state_tracking.py): which model solves which sequence
task at which length (part 1, the table of Movahedi et al. 2025 at CPU size), and what distilling a
dense teacher adds per kappa (part 2).

    section(tables, kd_task, out_dir, solved=0.9, n_boot=2000) -> Section "state_tracking"

`tables` maps each study's results directory to its table; each lt student at kappa = 1 has its
token predictions read from there (kdscale.schema.read_token_predictions). A test sequence's
length is its number of labelled tokens; the shortest test length is the training length.

Tables: `by_length` (per task, model, seed and length: token and sequence accuracy), `solves`
(per task, model and length: seeds, mean and 95% t CI of both accuracies, `solved` = mean sequence
accuracy >= `solved`), `pi` (per student and kappa: seeds, mean accuracy of lt and kd, PI = kd - lt
paired by seed with its 95% t CI, per token and per sequence), `crossover` (kappa* per student,
analysis.crossover on PG = acc(kd) / acc(lt) per token).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.crossover import crossover
from analysis.increments import pair_by_seed
from analysis.paired import mean_ci, paired_columns
from analysis.sections import Section, Table
from analysis.table import AnalysisError, prepare
from kdscale import schema

NAME = "state_tracking"
FIGURES = ("state_tracking_lengths.png", "state_tracking_pi.png")


def accuracy_by_length(pred: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """Per test length (labelled tokens of a sequence): sequences, token and sequence accuracy."""
    labelled = labels >= 0
    right = pred == labels
    whole = (right | ~labelled).all(1)
    lengths = labelled.sum(1)
    rows = [{"length": int(n), "sequences": int((lengths == n).sum()),
             "token_acc": float(right[lengths == n][labelled[lengths == n]].mean()),
             "seq_acc": float(whole[lengths == n].mean())} for n in np.unique(lengths)]
    return pd.DataFrame(rows, columns=["length", "sequences", "token_acc", "seq_acc"])


def by_length(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per lt student at kappa = 1 (part 1's models), its accuracies per test length."""
    parts = []
    for results_dir, table in tables.items():
        fs, root = schema.filesystem(results_dir)
        rows = table[(table["status"] == "ok") & (table["objective"] == "lt") & (table["kappa"] == 1.0)]
        for row in rows.itertuples(index=False):
            found = schema.read_token_predictions(fs, root, row.trial_id)
            if found is None:
                raise AnalysisError(f"no token predictions for trial {row.trial_id} in {results_dir}")
            parts.append(accuracy_by_length(*found).assign(task=row.dataset, model=row.student, seed=int(row.seed),
                                                           params=int(row.student_params)))
    if not parts:
        raise AnalysisError("no lt student at kappa = 1 ended ok: part 1 has nothing to show")
    frame = pd.concat(parts, ignore_index=True)
    return frame[["task", "model", "params", "seed", "length", "sequences", "token_acc", "seq_acc"]]


def solves(per_seed: pd.DataFrame, solved: float = 0.9) -> pd.DataFrame:
    """Per task, model and length: mean and 95% t CI over seeds of both accuracies, and `solved`."""
    rows = []
    for (task, model, length), group in per_seed.groupby(["task", "model", "length"], sort=False):
        token, seq = mean_ci(group["token_acc"]), mean_ci(group["seq_acc"])
        rows.append({"task": task, "model": model, "params": int(group["params"].iloc[0]), "length": length,
                     "n": token["n"], "token_acc": token["mean"], "token_low": token["low"], "token_high": token["high"],
                     "seq_acc": seq["mean"], "seq_low": seq["low"], "seq_high": seq["high"],
                     "solved": bool(seq["mean"] >= solved)})
    return pd.DataFrame(rows)


def distillation(table: pd.DataFrame, n_boot: int = 2000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Part 2: per student and kappa, lt and kd paired by seed (token and sequence accuracy), and kappa*."""
    trials = prepare(table)
    paired = paired_columns(trials.frame, ["test_acc", "test_seq_acc"])
    rows = []
    for (pair, kappa), group in paired.groupby(["pair", "kappa"], sort=True):
        token, seq = mean_ci(group["test_acc_gain"]), mean_ci(group["test_seq_acc_gain"])
        rows.append({"pair": pair, "student": pair.split(" -> ")[-1], "kappa": kappa, "n": token["n"],
                     "acc_lt": group["test_acc_lt"].mean(), "acc_kd": group["test_acc_kd"].mean(),
                     "pi": token["mean"], "pi_low": token["low"], "pi_high": token["high"],
                     "seq_lt": group["test_seq_acc_lt"].mean(), "seq_kd": group["test_seq_acc_kd"].mean(),
                     "pi_seq": seq["mean"], "pi_seq_low": seq["low"], "pi_seq_high": seq["high"]})
    return pd.DataFrame(rows), crossover(pair_by_seed(trials), n_boot=n_boot)


def _ci(mean: float, low: float, high: float, signed: bool = False) -> str:
    """`0.870 [0.80, 0.94]` (an accuracy: the interval clipped to [0, 1]) or `+0.031 [-0.010, +0.072]`."""
    if signed:
        return f"{mean:+.3f}" + (f" [{low:+.3f}, {high:+.3f}]" if np.isfinite(low) else "")
    return f"{mean:.3f}" + (f" [{max(low, 0.0):.2f}, {min(high, 1.0):.2f}]" if np.isfinite(low) else "")


def section(tables: dict[str, pd.DataFrame], kd_task: str, out_dir: Path, solved: float = 0.9,
            n_boot: int = 2000) -> Section:
    per_seed = by_length(tables)
    summary = solves(per_seed, solved)
    lengths = sorted(summary["length"].unique())
    kd_table = next(t for t in tables.values() if len(t) and (t["dataset"] == kd_task).all())
    pi, cross = distillation(kd_table, n_boot)
    result = Section(NAME, tables={"by_length": per_seed, "solves": summary, "pi": pi, "crossover": cross})
    rows = []
    for (task, model), group in summary.groupby(["task", "model"], sort=False):
        cells = group.set_index("length")
        rows.append([task, model, f"{cells['params'].iloc[0]:,}"]
                    + [_ci(*cells.loc[n, ["seq_acc", "seq_low", "seq_high"]]) if n in cells.index else "-"
                       for n in lengths]
                    + [f"{cells.loc[n, 'token_acc']:.3f}" if n in cells.index else "-" for n in lengths]
                    + [", ".join(str(n) for n in cells.index[cells["solved"]]) or "none"])
    header = ([f"seq acc {n}" + (" (train)" if n == lengths[0] else "") for n in lengths]
              + [f"token acc {n}" for n in lengths])
    teacher = kd_table.iloc[0]
    result.add("## State tracking: which model solves which task at which length (part 1)", "",
               f"Trained with labels on N = {teacher['n_teacher']} sequences of length {lengths[0]} (kappa = 1), "
               f"tested at lengths {', '.join(map(str, lengths))}; mean over {int(summary['n'].max())} seeds with 95% t "
               f"CIs. Sequence accuracy: every labelled token of a test sequence right. Solves: mean sequence "
               f"accuracy >= {solved:g}.", "",
               Table(pd.DataFrame(rows, columns=["task", "model", "parameters", *header, "solves lengths"])),
               "", "**Answer (part 1).** " + answer_solves(summary, lengths), "")
    pi_rows = [[r.student, f"{r.kappa:g}", f"{r.acc_lt:.3f}", f"{r.acc_kd:.3f}", _ci(r.pi, r.pi_low, r.pi_high, True),
                f"{r.seq_lt:.3f}", f"{r.seq_kd:.3f}", _ci(r.pi_seq, r.pi_seq_low, r.pi_seq_high, True), str(r.n)]
               for r in pi.itertuples(index=False)]
    result.add(f"## Distilling a dense fixed-point teacher on {kd_task} (part 2)", "",
               f"Teacher {teacher['teacher']} ({int(teacher['teacher_params']):,} parameters, test token accuracy "
               f"{teacher['teacher_test_acc']:.3f}) on N = {teacher['n_teacher']}; students on M = kappa N sequences, "
               f"budget {teacher['budget']}. PI = acc(kd) - acc(lt) over all test tokens (lengths "
               f"{', '.join(map(str, lengths))}) and over whole sequences, paired by seed, 95% t CI.", "",
               Table(pd.DataFrame(pi_rows, columns=["student", "kappa", "acc lt", "acc kd", "PI [95% CI]", "seq lt",
                                                    "seq kd", "PI seq [95% CI]", "seeds"])), "",
               *[f"- {r['pair']}: {r['message']}" for r in cross.to_dict("records")], "",
               "**Answer (part 2).** " + answer_pi(pi, cross), "")
    result.figures = [draw_lengths(out_dir, summary), draw_pi(out_dir, pi)]
    return result


def answer_solves(summary: pd.DataFrame, lengths: list[int]) -> str:
    """Per model, the tasks it solves at the training length and at the longest test length."""
    parts = []
    for model, group in summary.groupby("model", sort=False):
        train = group[(group["length"] == lengths[0]) & group["solved"]]["task"].tolist()
        longest = group[(group["length"] == lengths[-1]) & group["solved"]]["task"].tolist()
        parts.append(f"{model} solves {', '.join(train) or 'no task'} at length {lengths[0]}"
                     f" and {', '.join(longest) or 'none'} at {lengths[-1]}")
    unsolved = sorted(set(summary["task"]) - set(summary.loc[summary["solved"], "task"]))
    if unsolved:
        parts.append(f"no model solves {', '.join(unsolved)} at any length")
    return "; ".join(parts) + "."


def answer_pi(pi: pd.DataFrame, cross: pd.DataFrame) -> str:
    """Per student, the kappas where kd's token PI is clearly above or below 0, and kappa*."""
    parts = []
    for student, group in pi.groupby("student", sort=False):
        above = [f"{k:g}" for k, low in zip(group["kappa"], group["pi_low"]) if low > 0]
        below = [f"{k:g}" for k, high in zip(group["kappa"], group["pi_high"]) if high < 0]
        best = group.loc[group["pi"].idxmax()]
        text = (f"{student}: PI above 0 (95% CI) at kappa {', '.join(above) or 'none'}, below 0 at "
                f"{', '.join(below) or 'none'}, largest {best['pi']:+.3f} at kappa {best['kappa']:g}")
        star = cross[cross["pair"].str.endswith(f"-> {student}")]
        parts.append(text + (f"; {star.iloc[0]['message'].split(';')[0]}" if len(star) else ""))
    return "; ".join(parts) + "."


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_lengths(out_dir: Path, summary: pd.DataFrame) -> Path:
    """Sequence accuracy against test length, one panel per task, a line per model with its CI."""
    fig = lengths_figure(summary)
    return _save(fig, _plt(), out_dir / FIGURES[0])


def lengths_figure(summary: pd.DataFrame):
    """draw_lengths' figure: each model keeps one colour in every panel (the tasks list their models
    in different orders), and the test lengths are the only x ticks."""
    plt = _plt()
    tasks = list(dict.fromkeys(summary["task"]))
    colors = {model: f"C{i}" for i, model in enumerate(sorted(summary["model"].unique()))}
    lengths = sorted(summary["length"].unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.2), squeeze=False, sharey=True)
    for ax, task in zip(axes[0], tasks):
        for model, group in summary[summary["task"] == task].groupby("model", sort=True):
            ax.plot(group["length"], group["seq_acc"], marker="o", label=model, color=colors[model])
            ax.fill_between(group["length"], group["seq_low"].fillna(group["seq_acc"]),
                            group["seq_high"].fillna(group["seq_acc"]), alpha=0.2, color=colors[model])
        ax.set(title=task, xscale="log", xlabel="test length", ylim=(-0.05, 1.05))
        ax.minorticks_off()
        ax.set_xticks(lengths, labels=[str(n) for n in lengths])
    axes[0][0].set_ylabel("sequence accuracy")
    axes[0][-1].legend(fontsize=8)
    return fig


def draw_pi(out_dir: Path, pi: pd.DataFrame) -> Path:
    """PI per token against kappa, a line per student with its 95% CI."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for student, group in pi.groupby("student", sort=False):
        ax.errorbar(group["kappa"], group["pi"], yerr=[group["pi"] - group["pi_low"].fillna(group["pi"]),
                                                       group["pi_high"].fillna(group["pi"]) - group["pi"]],
                    marker="o", capsize=3, label=student)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xscale="log", xlabel="kappa = M / N", ylabel="PI = acc(kd) - acc(lt), per token",
           title="distilling the dense teacher")
    ax.legend()
    return _save(fig, plt, out_dir / FIGURES[1])


def _save(fig, plt, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
