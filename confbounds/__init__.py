"""confbounds: valid confidence bounds for randomized smoothing.

Framework-agnostic statistics on NumPy arrays: counts (binomial, trinomial)
and score matrices.  Nothing here imports torch, onnxruntime, cvxpy or ray.
See ``docs/conventions.md`` for the call conventions shared by every bound.
"""
from .binomial import clopper_pearson
from .taylor import phi_inv_taylor, taylor_coefficients
from .bernstein import empirical_bernstein, hoeffding
from .betting import betting_ci, betting_cs
from .margin import margin_lower_bound, MarginBound
from .mixture import beta_binomial_cs, beta_binomial_cs_path
from .nuisance import certified_sup
from .signomial import signomial_sup
from .trinomial import tail_prob
from . import coverage

__all__ = [
    "clopper_pearson",
    "phi_inv_taylor",
    "taylor_coefficients",
    "empirical_bernstein",
    "hoeffding",
    "betting_ci",
    "betting_cs",
    "margin_lower_bound",
    "MarginBound",
    "beta_binomial_cs",
    "beta_binomial_cs_path",
    "certified_sup",
    "signomial_sup",
    "tail_prob",
    "coverage",
]
__version__ = "0.1.0"
