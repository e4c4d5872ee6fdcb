"""The model-size study's gain tables: per pair and kd temperature, mean test accuracy of lt and kd
and the performance gain PG = acc(kd) / acc(lt) per kappa, paired by seed; then the data
equivalence (analysis.equivalence): per kappa, how many times more data lt needs to reach kd's
accuracy, with a bootstrap interval over seeds (the paper's "3x less data").

studies/model_size.py prints it (fixed-width text, not Markdown) before the standard analysis and
adds it to the report. Table `gains`: teacher, student, tau, kappa, lt, kd, pg (means over seeds),
pg_sd, seeds. Table `equivalence`: teacher, student, tau and analysis.equivalence.COLUMNS.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from kdscale import schema

from analysis import equivalence as eq
from analysis.sections import Section

NAME = "model_size"
COLUMNS = ["teacher", "student", "tau", "kappa", "lt", "kd", "pg", "pg_sd", "seeds"]


def gains(table: pd.DataFrame) -> pd.DataFrame:
    """Per (pair, tau of kd, kappa): mean accuracy of lt and kd, mean and sd of PG over the seeds
    both have; pairs in the order of the table, taus and kappas ascending."""
    ok = table[table["status"] == "ok"]
    parts = []
    for (teacher, student), rows in ok.groupby(["teacher", "student"], sort=False):
        lt = rows[rows["objective"] == "lt"].set_index(["kappa", "seed"])["test_acc"]
        for tau, kd_rows in rows[rows["objective"] == "kd"].groupby("tau"):
            kd = kd_rows.set_index(["kappa", "seed"])["test_acc"]
            paired = pd.concat({"lt": lt, "kd": kd}, axis=1).dropna()
            if paired.empty:
                continue
            paired["pg"] = paired["kd"] / paired["lt"]
            summary = paired.groupby(level="kappa").agg(lt=("lt", "mean"), kd=("kd", "mean"), pg=("pg", "mean"),
                                                        pg_sd=("pg", "std"), seeds=("pg", "size"))
            parts.append(summary.reset_index().assign(teacher=teacher, student=student, tau=tau))
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(parts, ignore_index=True)[COLUMNS]


def equivalence(table: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per (pair, tau of kd): analysis.equivalence.data_equivalence of test accuracy over the
    kappas and seeds lt and kd share."""
    ok = table[table["status"] == "ok"]
    parts = []
    for (teacher, student), rows in ok.groupby(["teacher", "student"], sort=False):
        lt = rows[rows["objective"] == "lt"].pivot_table(index="seed", columns="kappa", values="test_acc")
        for tau, kd_rows in rows[rows["objective"] == "kd"].groupby("tau"):
            kd = kd_rows.pivot_table(index="seed", columns="kappa", values="test_acc")
            seeds, kappas = lt.index.intersection(kd.index), lt.columns.intersection(kd.columns)
            if len(seeds) == 0 or len(kappas) < 2:
                continue
            frame = eq.data_equivalence(kappas.to_numpy(dtype=float), lt.loc[seeds, kappas].to_numpy(dtype=float),
                                        kd.loc[seeds, kappas].to_numpy(dtype=float), n_boot=n_boot, seed=seed)
            parts.append(frame.assign(teacher=teacher, student=student, tau=tau))
    columns = ["teacher", "student", "tau", *eq.COLUMNS]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def section(table: pd.DataFrame, n_boot: int = 2000, seed: int = 0, out_dir=None) -> Section:
    """The gain tables, one text block per (pair, tau), then the data-equivalence blocks; blocks
    separated by a blank line. With out_dir, the data-equivalence figure is drawn there."""
    frame = gains(table)
    lines = []
    for (teacher, student, tau), rows in frame.groupby(["teacher", "student", "tau"], sort=False):
        lines += [""] if lines else []
        lines += [f"{schema.pair_label(teacher, student)}, kd tau={tau:g}:", "   kappa   acc(lt)   acc(kd)       PG   sd(PG)  seeds"]
        lines += [f"  {r.kappa:6g}   {r.lt:7.4f}   {r.kd:7.4f}   {r.pg:6.3f}   {r.pg_sd:6.3f}  {int(r.seeds):5d}"
                  for r in rows.itertuples(index=False)]
    equivalent = equivalence(table, n_boot, seed)
    for (teacher, student, tau), rows in equivalent.groupby(["teacher", "student", "tau"], sort=False):
        lines += ["", f"{schema.pair_label(teacher, student)}, kd tau={tau:g}: data lt needs for kd's accuracy "
                  f"(kappa_lt / kappa; bootstrap CI over {int(rows['n_seeds'].max())} seeds):"]
        lines += [f"  kappa {r.kappa:6g}: {eq.describe(r)}" for r in rows.itertuples(index=False)]
    figures = []
    if out_dir is not None and len(equivalent):
        from analysis.plots import data_equivalence  # matplotlib: only when a figure is asked for

        figures.append(data_equivalence(equivalent, Path(out_dir) / "data_equivalence.png"))
    return Section(NAME, lines, {"gains": frame, "equivalence": equivalent}, figures)
