"""The eigenspectrum summaries (analysis.spectrum) on features whose spectrum is planted exactly,
and the feature_alignment section's `spectra` table on stored features."""
import math

import numpy as np
import pandas as pd
import pytest

from analysis import spectrum
from analysis.sections import feature_alignment, render


def planted(eigenvalues, n=200, seed=0):
    """Features [n, D] whose covariance eigenvalues are exactly `eigenvalues`: centred orthonormal
    columns scaled by sqrt(lambda (n - 1))."""
    rng = np.random.default_rng(seed)
    centring = np.eye(n) - 1.0 / n
    q, _ = np.linalg.qr(centring @ rng.standard_normal((n, len(eigenvalues))))
    return q * np.sqrt(np.asarray(eigenvalues) * (n - 1))


def test_eigenspectrum_returns_the_planted_eigenvalues_largest_first():
    lam = np.array([0.5, 4.0, 1.0, 2.0])
    assert spectrum.eigenspectrum(planted(lam)) == pytest.approx(np.sort(lam)[::-1], rel=1e-9)
    # a centred n x D matrix has at most n - 1 nonzero eigenvalues: 3 samples in 5 dimensions give 2
    assert len(spectrum.eigenspectrum(np.arange(15.0).reshape(3, 5) ** 2)) == 2
    with pytest.raises(ValueError, match="at least 2 samples"):
        spectrum.eigenspectrum(np.ones((1, 4)))


def test_the_spectrum_matches_the_engines():
    """analysis.spectrum (numpy) against kdscale.representations.feature_spectrum (torch)."""
    from kdscale.representations import feature_spectrum

    features = np.random.default_rng(2).standard_normal((60, 12)) @ np.diag(np.linspace(0.2, 3.0, 12))
    engine = feature_spectrum(features)
    lam = spectrum.eigenspectrum(features)
    assert lam == pytest.approx(engine.eigenvalues.numpy()[:len(lam)], rel=1e-9)
    assert spectrum.participation_ratio(lam) == pytest.approx(engine.participation_ratio, rel=1e-9)


def test_participation_ratio_by_hand():
    assert spectrum.participation_ratio([1.0, 1.0, 1.0, 1.0]) == pytest.approx(4.0)  # isotropic: D
    assert spectrum.participation_ratio([3.0, 0.0, 0.0]) == pytest.approx(1.0)  # one line
    assert spectrum.participation_ratio([2.0, 1.0]) == pytest.approx(9.0 / 5.0)  # (2 + 1)^2 / (4 + 1)
    assert math.isnan(spectrum.participation_ratio([0.0, 0.0]))
    # from features: a line in 3 dimensions, and isotropic Gaussian features close to D
    line = np.outer(np.arange(10.0), [1.0, 2.0, -1.0])
    assert spectrum.summarise(line)["participation_ratio"] == pytest.approx(1.0)
    gaussian = np.random.default_rng(1).standard_normal((20000, 8))
    assert spectrum.summarise(gaussian)["participation_ratio"] == pytest.approx(8.0, rel=0.01)


def test_decay_exponent_recovers_a_planted_power_law():
    for alpha in (0.5, 1.0, 2.0):
        lam = np.arange(1, 31, dtype=float) ** -alpha
        assert spectrum.decay_exponent(spectrum.eigenspectrum(planted(lam))) == pytest.approx(alpha, abs=1e-6)
    # only the leading half counts: a tail of noise at the floor does not move it
    lam = np.concatenate([np.arange(1, 11, dtype=float) ** -1.0, np.full(10, 1e-3)])
    assert spectrum.decay_exponent(lam) == pytest.approx(1.0, abs=1e-9)
    assert math.isnan(spectrum.decay_exponent([1.0, 0.0])) and math.isnan(spectrum.decay_exponent([]))


@pytest.mark.slow  # draws the section's figures (2 s)
def test_feature_alignment_section_reports_the_spectra(tmp_path):
    """kd students on a line (PR 1), lt students isotropic in 2 of 3 dimensions (PR 2); a student
    without stored features (lt at kappa 0.5) is left out."""
    rows = [dict(trial_id=t, status="ok", kappa=k, objective=o, seed=s, cka_teacher=0.5, fa_teacher=0.5,
                 probe_acc=0.5, test_acc=0.5) for t, k, o, s in
            [("a", 0.1, "kd", 0), ("b", 0.1, "kd", 1), ("c", 0.1, "lt", 0), ("d", 0.1, "lt", 1),
             ("e", 1.0, "kd", 0), ("f", 1.0, "lt", 0),
             ("g", 0.5, "kd", 0), ("h", 0.5, "lt", 0)]]
    table = pd.DataFrame(rows)
    directory = tmp_path / "study" / "features"
    directory.mkdir(parents=True)
    line = np.outer(np.array([1.0, -1.0, 2.0, -2.0]), [1.0, 0.0, 0.0])
    plane = np.array([[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]])
    for trial_id, features in dict(a=line, b=2 * line, c=plane, d=plane, e=line, f=plane, g=line).items():
        np.save(directory / f"{trial_id}.npy", features.astype(np.float32))
    section = feature_alignment.section(table, str(tmp_path / "study"), tmp_path / "figures")
    spectra = section.tables["spectra"].set_index(["kappa", "objective"])
    assert spectra.loc[(0.1, "kd"), "n"] == 2 and spectra.loc[(0.1, "lt"), "n"] == 2
    assert (0.5, "kd") in spectra.index and (0.5, "lt") not in spectra.index
    assert spectra.loc[(0.1, "kd"), "participation_ratio_mean"] == pytest.approx(1.0)
    assert spectra.loc[(0.1, "lt"), "participation_ratio_mean"] == pytest.approx(2.0)
    assert spectra.loc[(1.0, "lt"), "dimension"] == 3
    text = render(section)
    assert "| 0.1 | 3 | 1.00 ± 0.00 | 2.00 ± 0.00 |" in text and "| 0.5 | 3 | 1.00 ± 0.00 | - |" in text
    assert (tmp_path / "figures" / "feature_spectrum.png").exists()
