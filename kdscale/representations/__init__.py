"""What a student and its teacher learn inside: the measurements behind the paper's evidence for
the dark-knowledge hypothesis (Lanzillotta et al., arXiv 2510.15516).

- feature-kernel alignment, linear CKA of eq. 4 (Figures 4, 5, 18): `linear_cka`, and for large
  test sets the unbiased `minibatch_cka`; `kernel_cka`, `hsic`, `hsic1` for given kernels;
- feature alignment (Table 4): `feature_alignment`, same-width pairs only;
- linear probes retrained on the full data (Figure 14): `linear_probe`; a model's probe on a data
  set and on its second task (arXiv 2302.12091): `probe_accuracy`, `transfer_data`;
- NTK alignment (Figure 16): `empirical_ntk`, `ntk_alignment`;
- the feature eigenspectrum (Figure 17): `feature_spectrum`;
- the features themselves: `features_of(model, x)`, phi of `kdscale.models.base`.

Pure torch (and numpy inputs), no Ray or MLflow: callable from a trial or from a notebook.
`bench/representation_cost.py` measures what each costs at the end of a trial (docs/benchmarks.md).
"""
from kdscale.representations.features import Spectrum, feature_spectrum, features_of
from kdscale.representations.ntk import MAX_JACOBIAN_ELEMENTS, NTK_FORMS, empirical_ntk, ntk_alignment
from kdscale.representations.probe import LinearProbe, linear_probe
from kdscale.representations.transfer import probe_accuracy, transfer_data
from kdscale.representations.similarity import (centre_kernel, feature_alignment, hsic, hsic1, kernel_cka,
                                                linear_cka, minibatch_cka, unit_norm_rows)

__all__ = ["LinearProbe", "MAX_JACOBIAN_ELEMENTS", "NTK_FORMS", "Spectrum", "centre_kernel", "empirical_ntk",
           "feature_alignment", "feature_spectrum", "features_of", "hsic", "hsic1", "kernel_cka", "linear_cka",
           "linear_probe", "minibatch_cka", "ntk_alignment", "probe_accuracy", "transfer_data", "unit_norm_rows"]
