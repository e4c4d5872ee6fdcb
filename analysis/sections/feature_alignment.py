"""The feature-alignment study's section: do kd students learn features closer to the teacher's?

Per kappa: linear CKA of kd and lt students to the teacher on the test set (the paper's Figure 4),
feature alignment FA, the alignment of their empirical NTKs (Figure 16; extras `ntk`), a linear probe refitted on the teacher's N samples, test accuracy; the CKA
gain CKA(kd) - CKA(lt) paired by seed and its correlation with the accuracy gain (Figure 18); and
the pairwise CKA between students of different seeds at the smallest and largest kappa (Figure 5),
from the test-set features the trials stored (extras `features`); from the same features, each
student's eigenspectrum (Figure 17; analysis.spectrum): its participation ratio and decay exponent.

Tables: `per_kappa` (kappa, objective, n, mean and sd over seeds of cka_teacher, fa_teacher,
ntk_teacher, probe_acc, test_acc), `gains` (kappa, seed, cka_gain, acc_gain), `cka_gain` (kappa, mean, se, n),
`correlation` (r, low, high, n), `pairwise` (kappa, kd_kd, lt_lt, kd_lt: mean pairwise CKA) and
`pairwise_cka` (kappa, a, b, cka: the matrices, long). When students did not all start from their
own initialisation (`--student-init`, TrialSpec.init): `starts` (kappa, objective, start, n, mean
and sd over seeds of init_distance, end_distance, fa_teacher and cka_teacher), the start's and the
trained student's relative distance to the teacher's initialisation beside FA and CKA. `spectra`
(kappa, objective, n, mean and sd over seeds of participation_ratio and decay_exponent, dimension)
for the students whose features were stored.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import spectrum
from analysis.paired import pearson_ci
from analysis.sections import Section, Table
from analysis.sections.random_teacher import start_label
from kdscale import schema

NAME = "feature_alignment"
MEASURES = ("cka_teacher", "fa_teacher", "ntk_teacher", "probe_acc", "test_acc")
START_MEASURES = ("init_distance", "end_distance", "fa_teacher", "cka_teacher")
HEADERS = ["kappa", "CKA kd", "CKA lt", "CKA gain ± se (paired)", "FA kd", "FA lt", "NTK kd", "NTK lt", "probe kd",
           "probe lt", "acc kd", "acc lt"]


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of features x [n, d_x] and y [n, d_y] in float64, as kdscale.representations'
    linear_cka: ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) of centred features (the kernel form when
    n < d); NaN when a side is constant."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    x, y = x - x.mean(0), y - y.mean(0)
    if len(x) < max(x.shape[1], y.shape[1]):
        def centre(k):
            return k - k.mean(0, keepdims=True) - k.mean(1, keepdims=True) + k.mean()

        k, l = centre(x @ x.T), centre(y @ y.T)
        num, den_a, den_b = (k * l).sum(), (k * k).sum(), (l * l).sum()
    else:
        num, den_a, den_b = np.square(y.T @ x).sum(), np.square(x.T @ x).sum(), np.square(y.T @ y).sum()
    den = math.sqrt(den_a * den_b)
    return float(num / den) if den > 0 else math.nan


def per_kappa(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean and sd over seeds of CKA, FA, probe and accuracy per (kappa, objective); paired gains."""
    ok = table[table["status"] == "ok"]
    ok = ok.assign(**{m: ok[m].astype(float) if m in ok else math.nan for m in MEASURES})  # older tables lack ntk
    summary = ok.groupby(["kappa", "objective"])[list(MEASURES)].agg(["mean", "std"])
    kd = ok[ok["objective"] == "kd"].set_index(["kappa", "seed"])
    lt = ok[ok["objective"] == "lt"].set_index(["kappa", "seed"])
    gains = pd.DataFrame({"cka_gain": kd["cka_teacher"] - lt["cka_teacher"],
                          "acc_gain": kd["test_acc"] - lt["test_acc"]}).dropna()
    return summary, gains


def starts(table: pd.DataFrame) -> pd.DataFrame | None:
    """Per (kappa, objective, start): n, and mean and sd over seeds of START_MEASURES; None when every
    finished student started from its own initialisation (or the table predates the init column)."""
    ok = table[table["status"] == "ok"]
    if "init" not in ok or ok["init"].fillna("independent").eq("independent").all():
        return None
    scales = ok["init_scale"] if "init_scale" in ok else pd.Series(0.0, index=ok.index)
    frame = ok.assign(start=[start_label(i, float(s)) for i, s in zip(ok["init"].fillna("independent"), scales)],
                      **{m: ok[m].astype(float) if m in ok else math.nan for m in START_MEASURES})
    keys = ["kappa", "objective", "start"]
    summary = frame.groupby(keys)[list(START_MEASURES)].agg(["mean", "std"])
    summary.columns = [f"{measure}_{'sd' if stat == 'std' else stat}" for measure, stat in summary.columns]
    summary.insert(0, "n", frame.groupby(keys).size())
    return summary.reset_index()


def pairwise_cka(results_dir: str, trial_ids) -> np.ndarray:
    """Linear CKA between every two students' test features, in the order of trial_ids."""
    fs, root = schema.filesystem(results_dir)
    features = []
    for trial_id in trial_ids:
        found = schema.read_features(fs, root, trial_id)
        if found is None:
            raise FileNotFoundError(schema.trial_file(root, schema.FEATURES_DIR, trial_id))
        features.append(found)
    n = len(features)
    matrix = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            matrix[i, j] = matrix[j, i] = linear_cka(features[i], features[j])
    return matrix


def spectra(table: pd.DataFrame, results_dir: str) -> tuple[pd.DataFrame, dict]:
    """Per (kappa, objective): n, mean and sd over seeds of the participation ratio and the decay
    exponent, and the feature dimension; and the mean normalised spectrum of each (kappa, objective).
    Students without stored features are left out (n counts those with)."""
    fs, root = schema.filesystem(results_dir)
    rows, curves = [], {}
    for row in table[table["status"] == "ok"].itertuples(index=False):
        features = schema.read_features(fs, root, row.trial_id)
        if features is None or len(features) < 2:
            continue
        lam = spectrum.eigenspectrum(features)
        rows.append({"kappa": row.kappa, "objective": row.objective, **spectrum.summarise(features)})
        if lam.sum() > 0:
            curves.setdefault((row.kappa, row.objective), []).append(lam / lam.sum())
    columns = ["kappa", "objective", "n", "participation_ratio_mean", "participation_ratio_sd",
               "decay_exponent_mean", "decay_exponent_sd", "dimension"]
    if not rows:
        return pd.DataFrame(columns=columns), {}
    frame = pd.DataFrame(rows)
    grouped = frame.groupby(["kappa", "objective"])
    out = grouped[["participation_ratio", "decay_exponent"]].agg(["mean", "std"])
    out.columns = [f"{m}_{'sd' if stat == 'std' else stat}" for m, stat in out.columns]
    out.insert(0, "n", grouped.size())
    out["dimension"] = grouped["dimension"].max()
    means = {key: np.mean([c[:min(map(len, cs))] for c in cs], axis=0) for key, cs in curves.items()}
    return out.reset_index()[columns], means


def section(table: pd.DataFrame, results_dir: str, out_dir: Path) -> Section:
    """The study's section and figures (Figures 4, 5 and 18 of the paper) in out_dir."""
    summary, gains = per_kappa(table)
    ok = table[table["status"] == "ok"].sort_values(["objective", "seed"], ascending=[True, True])
    matrices = {}
    for kappa in (min(ok["kappa"]), max(ok["kappa"])):
        rows = ok[ok["kappa"] == kappa]
        rows = rows.sort_values(["objective", "seed"],
                                key=lambda c: c.map({"kd": 0, "lt": 1}) if c.name == "objective" else c)
        matrices[kappa] = (pairwise_cka(results_dir, rows["trial_id"]),
                           [f"{o} s{s}" for o, s in zip(rows["objective"], rows["seed"])])
    r, low, high, n = pearson_ci(gains["cka_gain"].to_numpy(), gains["acc_gain"].to_numpy())

    flat = summary.copy()
    flat.columns = [f"{measure}_{'sd' if stat == 'std' else stat}" for measure, stat in flat.columns]
    flat.insert(0, "n", ok.groupby(["kappa", "objective"]).size())
    kappas = sorted(set(ok["kappa"]))
    gain_rows = []
    for kappa in kappas:
        gain = gains.xs(kappa, level="kappa")["cka_gain"] if kappa in gains.index.get_level_values("kappa") else []
        gain_rows.append({"kappa": kappa, "mean": np.mean(gain) if len(gain) else math.nan,
                          "se": np.std(gain, ddof=1) / math.sqrt(len(gain)) if len(gain) > 1 else math.nan,
                          "n": len(gain)})
    pair_rows, cells = [], []
    for kappa, (matrix, names) in matrices.items():
        k = sum(name.startswith("kd") for name in names)
        pair_rows.append({
            "kappa": kappa,
            "kd_kd": matrix[:k, :k][np.triu_indices(k, 1)].mean() if k > 1 else math.nan,
            "lt_lt": matrix[k:, k:][np.triu_indices(len(names) - k, 1)].mean() if len(names) - k > 1 else math.nan,
            "kd_lt": matrix[:k, k:].mean()})
        cells += [{"kappa": kappa, "a": a, "b": b, "cka": matrix[i, j]}
                  for i, a in enumerate(names) for j, b in enumerate(names)]
    tables = {"per_kappa": flat.reset_index(), "gains": gains.reset_index(), "cka_gain": pd.DataFrame(gain_rows),
              "correlation": pd.DataFrame([{"r": r, "low": low, "high": high, "n": n}]),
              "pairwise": pd.DataFrame(pair_rows), "pairwise_cka": pd.DataFrame(cells)}
    started = starts(table)
    if started is not None:
        tables["starts"] = started
    tables["spectra"], curves = spectra(table, results_dir)
    figures = draw(summary, gains, matrices, r, out_dir) + draw_spectra(curves, out_dir)
    return Section(NAME, blocks(tables, flat), tables, figures)


def blocks(tables: dict[str, pd.DataFrame], flat: pd.DataFrame) -> list:
    """The Markdown: the per-kappa table, the correlation, the pairwise CKA sentences."""
    def cell(kappa, objective, measure):
        if (kappa, objective) not in flat.index:
            return "-"
        mean, sd = flat.loc[(kappa, objective), [f"{measure}_mean", f"{measure}_sd"]]
        return "-" if math.isnan(mean) else f"{mean:.3f} ± {0 if math.isnan(sd) else sd:.3f}"

    rows = []
    for g in tables["cka_gain"].itertuples(index=False):
        gain_text = f"{g.mean:+.3f} ± {g.se:.3f}" if g.n else "-"
        rows.append([f"{g.kappa:g}", cell(g.kappa, "kd", "cka_teacher"), cell(g.kappa, "lt", "cka_teacher"),
                     gain_text] + [cell(g.kappa, objective, measure)
                                   for measure in MEASURES[1:] for objective in ("kd", "lt")])
    c = tables["correlation"].iloc[0]
    lines = ["## Feature alignment to the teacher", "",
             "Linear CKA of the students' test-set features to the teacher's (eq. 4 of the paper), feature "
             "alignment FA (mean cosine of same-width feature vectors), NTK alignment (CKA of the student's and "
             "the teacher's empirical NTKs on 100 test samples, Fig. 16; '-' where not measured), and a linear "
             "probe refitted on the teacher's N samples; mean ± sd over seeds.", "",
             Table(pd.DataFrame(rows, columns=HEADERS)),
             "", f"Correlation of the CKA gain with the accuracy gain over (kappa, seed): r = {c['r']:.3f}, "
             f"95% CI [{c['low']:.3f}, {c['high']:.3f}] (Fisher z), n = {int(c['n'])}.", ""]
    for p in tables["pairwise"].itertuples(index=False):
        lines.append(f"Pairwise CKA at kappa = {p.kappa:g}: kd-kd {p.kd_kd:.3f}, lt-lt {p.lt_lt:.3f}, "
                     f"kd-lt {p.kd_lt:.3f} (mean over pairs of different seeds).")
    if "starts" in tables:
        lines += ["", "Where the students started and ended: relative distance ||theta - theta_T|| / ||theta_T|| "
                  "to the teacher's initialisation theta_T, of the start and of the trained student, beside FA and "
                  "CKA; mean ± sd over seeds.", "", Table(start_cells(tables["starts"]))]
    if len(tables["spectra"]):
        lines += ["", "Eigenspectrum of the students' test-set features (Fig. 17): participation ratio PR = "
                  "(sum lambda)^2 / sum lambda^2 of the covariance eigenvalues (the effective number of directions, "
                  "out of D) and the decay exponent alpha of lambda_i ~ i^-alpha over the leading half of the "
                  "spectrum; mean ± sd over seeds.", "", Table(spectrum_cells(tables["spectra"]))]
    return lines


def spectrum_cells(spectra: pd.DataFrame) -> pd.DataFrame:
    """The display cells of the `spectra` table: one row per kappa, kd beside lt."""
    def pm(kappa, objective, measure):
        hit = spectra[(spectra["kappa"] == kappa) & (spectra["objective"] == objective)]
        if not len(hit):
            return "-"
        mean, sd = hit.iloc[0][f"{measure}_mean"], hit.iloc[0][f"{measure}_sd"]
        return "-" if math.isnan(mean) else f"{mean:.2f} ± {0 if math.isnan(sd) else sd:.2f}"

    rows = [[f"{k:g}", f"{spectra[spectra['kappa'] == k]['dimension'].max():.0f}"] +
            [pm(k, o, m) for m in ("participation_ratio", "decay_exponent") for o in ("kd", "lt")]
            for k in sorted(set(spectra["kappa"]))]
    return pd.DataFrame(rows, columns=["kappa", "D", "PR kd", "PR lt", "alpha kd", "alpha lt"])


def start_cells(started: pd.DataFrame) -> pd.DataFrame:
    """The display cells of the `starts` table."""
    def pm(row, measure):
        mean, sd = row[f"{measure}_mean"], row[f"{measure}_sd"]
        return "-" if math.isnan(mean) else f"{mean:.3f} ± {0 if math.isnan(sd) else sd:.3f}"

    rows = [[f"{r['kappa']:g}", r["objective"], r["start"], str(int(r["n"]))] + [pm(r, m) for m in START_MEASURES]
            for _, r in started.iterrows()]
    return pd.DataFrame(rows, columns=["kappa", "objective", "start", "n", "start distance", "end distance", "FA",
                                       "CKA"])


def draw(summary, gains, matrices, r, out_dir: Path) -> list[Path]:
    """CKA to the teacher vs kappa (Fig. 4), the pairwise CKA matrices (Fig. 5), CKA gain vs PI (Fig. 18)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    figures = []

    fig, ax = plt.subplots(figsize=(6, 4))
    for objective, colour in (("kd", "tab:blue"), ("lt", "tab:orange")):
        part = summary.xs(objective, level="objective")["cka_teacher"]
        ax.errorbar(part.index, part["mean"], yerr=part["std"].fillna(0), label=objective, color=colour, capsize=3,
                    marker="o")
    ax.set(xscale="log", xlabel="kappa = M / N", ylabel="linear CKA to the teacher (test set)",
           title="Feature-kernel alignment to the teacher (paper Fig. 4)")
    ax.legend()
    figures.append(out_dir / "cka_vs_kappa.png")
    fig.savefig(figures[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)

    fig, axes = plt.subplots(1, len(matrices), figsize=(5 * len(matrices), 4.2))
    for ax, (kappa, (matrix, names)) in zip(np.atleast_1d(axes), matrices.items()):
        image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(names)), names, rotation=90)
        ax.set_yticks(range(len(names)), names)
        ax.set_title(f"pairwise CKA between students, kappa={kappa:g}")
        fig.colorbar(image, ax=ax, fraction=0.046)
    figures.append(out_dir / "cka_pairwise.png")
    fig.savefig(figures[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    points = ax.scatter(gains["cka_gain"], gains["acc_gain"], c=np.log10(gains.index.get_level_values("kappa")),
                        cmap="viridis")
    fig.colorbar(points, ax=ax, label="log10 kappa")
    ax.set(xlabel="CKA gain, kd - lt (same seed)", ylabel="accuracy gain PI",
           title=f"CKA gain vs accuracy gain (Fig. 18): r = {r:.2f}")
    figures.append(out_dir / "cka_gain_vs_pi.png")
    fig.savefig(figures[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)
    return figures


def draw_spectra(curves: dict, out_dir: Path) -> list[Path]:
    """Mean normalised eigenspectra of kd and lt students at the smallest and largest kappa (Fig. 17)."""
    if not curves:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kappas = sorted({k for k, _ in curves})
    fig, ax = plt.subplots(figsize=(6, 4))
    for kappa, style in zip(sorted({kappas[0], kappas[-1]}), ("-", "--")):
        for objective, colour in (("kd", "tab:blue"), ("lt", "tab:orange")):
            if (kappa, objective) in curves:
                curve = curves[(kappa, objective)]
                ax.plot(np.arange(1, len(curve) + 1), curve, style, color=colour, label=f"{objective}, kappa={kappa:g}")
    ax.set(xscale="log", yscale="log", xlabel="eigenvalue rank i", ylabel="lambda_i / sum lambda",
           title="Eigenspectrum of the students' features (paper Fig. 17)")
    ax.legend()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "feature_spectrum.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return [path]
