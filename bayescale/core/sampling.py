"""Running the sampler: nutpie (the default when installed) or PyMC's NUTS, and the
observed data of a model in the InferenceData."""

from __future__ import annotations

import os
import time

import numpy as np
import pymc as pm
import xarray as xr
from pymc.backends.arviz import find_observations

try:
    import nutpie
except ImportError:  # optional: PyMC's own NUTS is used instead
    nutpie = None

# the sampler settings every law starts from; a law's ``sampler_defaults`` change some
SAMPLER_DEFAULTS = {"sampler": "auto", "draws": 1000, "tune": 1000, "chains": 4, "target_accept": 0.8}


def observed_dataset(model: pm.Model) -> xr.Dataset:
    """The model's observed values with their dims (nutpie's InferenceData lacks them)."""
    dims = model.named_vars_to_dims
    return xr.Dataset(
        {name: (dims.get(name, [f"{name}_dim_{i}" for i in range(np.ndim(v))]), np.asarray(v))
         for name, v in find_observations(model).items()},
        coords={k: np.asarray(v) for k, v in model.coords.items() if v is not None},
    )


def run_sampler(model, options: dict, seed, progress, initial):
    """Sample with nutpie (default when installed) or PyMC's NUTS with the settings in
    ``options`` (the keys of ``SAMPLER_DEFAULTS``); returns (idata, timing)."""
    sampler, draws, tune, chains, target_accept = (options[k] for k in ("sampler", "draws", "tune", "chains", "target_accept"))
    if sampler == "auto":
        sampler = "pymc" if nutpie is None else "nutpie"
    if sampler == "nutpie":
        if nutpie is None:
            raise ValueError("sampler 'nutpie' asked for, but nutpie is not installed; use 'pymc'")
        t0 = time.perf_counter()
        compiled = nutpie.compile_pymc_model(model, initial_points=initial)
        t1 = time.perf_counter()
        idata = nutpie.sample(
            compiled, draws=draws, tune=tune, chains=chains, seed=seed, progress_bar=progress, save_warmup=False,
            low_rank_modified_mass_matrix=True,
            target_accept=target_accept,
        )
        t2 = time.perf_counter()
        return idata, {"sampler": "nutpie", "compile_seconds": t1 - t0, "sampling_seconds": t2 - t1}
    if sampler == "pymc":
        t0 = time.perf_counter()
        with model:
            idata = pm.sample(
                draws=draws,
                tune=tune,
                chains=chains,
                cores=min(chains, os.cpu_count() or 1),
                random_seed=seed,
                progressbar=progress,
                initvals=initial,
                target_accept=target_accept,
                compute_convergence_checks=False,
            )
        return idata, {"sampler": "pymc", "compile_seconds": 0.0, "sampling_seconds": time.perf_counter() - t0}
    raise ValueError(f"unknown sampler {sampler!r}; choose auto, nutpie or pymc")
