"""bayescale: Bayesian models of the empirical laws of LLM training.

The layers import one way: ``bayescale.core`` (schedules, features, the fit contract,
sampling, noise, diagnostics, errors, I/O) ← the capabilities ``bayescale.curves``,
``bayescale.sweep``, ``bayescale.bound`` ← ``registry``, ``compare``, ``demo`` ← ``cli``.
This module gathers the public names.
"""

from bayescale.bound.curve import BoundCurveFit
from bayescale.bound.data import read_runs
from bayescale.bound.final import BoundFinalFit
from bayescale.bound.size_horizon import Bound2DFit
from bayescale.core import schedules
from bayescale.core.errors import DataError
from bayescale.core.fit import BayesianFit, FitFileError, SamplingWarning
from bayescale.curves.annealing import AnnealingLaw
from bayescale.curves.data import read_curves
from bayescale.curves.multipower import MultiPowerLaw
from bayescale.registry import from_spec, load, register
from bayescale.sweep.chinchilla import ChinchillaFit
from bayescale.sweep.data import read_sweep
from bayescale.sweep.surface import SurfaceFit

__version__ = "0.1.0"

__all__ = [
    "AnnealingLaw",
    "BayesianFit",
    "Bound2DFit",
    "BoundCurveFit",
    "BoundFinalFit",
    "ChinchillaFit",
    "DataError",
    "FitFileError",
    "MultiPowerLaw",
    "SamplingWarning",
    "SurfaceFit",
    "__version__",
    "from_spec",
    "load",
    "read_curves",
    "read_runs",
    "read_sweep",
    "register",
    "schedules",
]
