"""The fit object shared by every law: owns a ``pm.Model`` (composition, not inheritance),
fits it, keeps the training data and config inside the InferenceData, saves and loads
through netCDF.

Subclasses set ``kind`` and ``law`` and implement ``default_priors``, ``prepare`` (turn the
user's table into ``self.data``, a DataFrame, plus whatever arrays the model needs) and
``build_model``; ``bayescale.registry`` registers them by name. Prior precedence: user >
scaled-to-data (``scaled_priors``) > default.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from pymc_extras.prior import Prior

from bayescale.core import diagnostics as diag
from bayescale.core.sampling import observed_dataset, run_sampler

FORMAT_VERSION = 1


class FitFileError(ValueError):
    """A file that is not a readable bayescale fit."""


class SamplingWarning(UserWarning):
    """R-hat, ESS or divergences outside the thresholds."""


def as_prior(value) -> Prior:
    if isinstance(value, Prior):
        return value
    if isinstance(value, dict):
        return Prior.from_dict(value)
    raise TypeError(f"a prior must be a pymc_extras Prior or its dict form, got {type(value).__name__}")


class BayesianFit:
    kind: ClassVar[str] = ""
    law: ClassVar[str] = ""

    def __init__(self, priors: dict | None = None, config: dict | None = None):
        self.config = {**self.default_config(), **(config or {})}
        self.user_priors = {name: as_prior(p) for name, p in (priors or {}).items()}
        unknown = set(self.user_priors) - set(self.default_priors())
        if unknown:
            raise ValueError(
                f"{self.law}: no parameter named {sorted(unknown)}; priors can be set for {sorted(self.default_priors())}"
            )
        self.data: pd.DataFrame | None = None
        self.model: pm.Model | None = None
        self.priors: dict[str, Prior] = {}
        self.fit_report: dict = {}
        self._idata = None

    # --- what a law provides -------------------------------------------------------------
    def default_config(self) -> dict:
        return {}

    def default_priors(self) -> dict[str, Prior]:
        raise NotImplementedError

    def scaled_priors(self) -> dict[str, Prior]:
        return {}

    def prepare(self, data) -> None:
        """Validate ``data`` and set ``self.data`` (a DataFrame) and the model's arrays."""
        raise NotImplementedError

    def build_model(self) -> pm.Model:
        raise NotImplementedError

    @property
    def param_names(self) -> list[str]:
        return list(self.default_priors())

    # --- fitting ---------------------------------------------------------------------------
    def resolve_priors(self) -> dict[str, Prior]:
        return {**self.default_priors(), **self.scaled_priors(), **self.user_priors}

    def fit(
        self,
        data,
        sampler: str = "auto",
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        seed: int | None = None,
        progress: bool = True,
        start: str = "map",
    ):
        """Sample the posterior; returns the InferenceData (log-likelihood and training data
        included). ``sampler`` is "nutpie", "pymc" or "auto" (nutpie when installed). If
        anything fails, the object keeps its earlier data and posterior."""
        earlier = {**self.__dict__, "config": copy.deepcopy(self.config)}
        try:
            return self._fit(data, sampler, draws, tune, chains, seed, progress, start)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(earlier)
            raise

    def _fit(self, data, sampler, draws, tune, chains, seed, progress, start):
        self.prepare(data)
        self.priors = self.resolve_priors()
        options = (sampler, draws, tune, chains, seed, progress, start)
        idata = self._sample(*options)
        change = self.reparametrisation(idata)
        if change:
            first = {k: self.fit_report[k] for k in ("rhat_max", "ess_bulk_min", "divergences", "seconds")}
            self.config.update(change)
            idata = self._sample(*options)
            self.fit_report["first_attempt"] = {**first, "changed": change}
            self.fit_report["seconds"] += first["seconds"]  # the wall time of the whole fit
        bad = diag.problems(self.fit_report)
        if bad:
            warnings.warn(
                f"{self.law} fit has sampling problems: {'; '.join(bad)}. Do not trust these intervals; "
                "check the data and priors, or sample longer.",
                SamplingWarning,
                stacklevel=3,
            )
        return idata

    def _sample(self, sampler, draws, tune, chains, seed, progress, start):
        self.model = self.build_model()
        t0 = time.perf_counter()
        initial = self.initial_point() if start == "map" else None
        idata, timing = run_sampler(
            self.model, sampler, draws, tune, chains, seed, progress, initial, self.config.get("target_accept", 0.8)
        )
        with self.model:
            pm.compute_log_likelihood(idata, progressbar=False)
        self._idata = idata
        self.add_derived_draws(idata, seed)
        if "observed_data" not in idata.groups():
            idata.add_groups(observed_data=observed_dataset(self.model))
        timing["seconds"] = time.perf_counter() - t0
        idata.add_groups(fit_data=xr.Dataset.from_dataframe(self.data.reset_index(drop=True)))
        idata.attrs.update(self._attrs())
        self.fit_report = {**diag.sampling_diagnostics(idata, self.param_names), **timing}
        return idata

    def add_derived_draws(self, idata, seed) -> None:
        """Add to ``idata.posterior`` draws of quantities not sampled directly (constants
        integrated out of the model, say), before the diagnostics see them."""

    def reparametrisation(self, idata) -> dict | None:
        """A config change that samples the same model in a better form after this first
        attempt went badly, or None; the fit then samples once more with it."""
        return None

    def initial_point(self) -> dict:
        """Where the chains start: the MAP by default; laws may offer a cheaper point fit."""
        with self.model:
            point = pm.find_MAP(progressbar=False, maxeval=5000)
        return {rv.name: point[rv.name] for rv in self.model.free_RVs}

    # --- accessors -------------------------------------------------------------------------
    @property
    def idata(self):
        if self._idata is None:
            raise RuntimeError(f"this {self.law} model has no posterior yet: call fit() first")
        return self._idata

    def draws(self, name: str) -> np.ndarray:
        return diag.draws(self.idata, name)

    def summary(self, prob: float = 0.9) -> pd.DataFrame:
        return diag.posterior_summary(self.idata, self.param_names, prob)

    def diagnostics(self) -> dict:
        return diag.sampling_diagnostics(self.idata, self.param_names)

    # --- persistence -----------------------------------------------------------------------
    def _attrs(self) -> dict:
        config = json.dumps(self.config, sort_keys=True)
        priors = json.dumps({k: p.to_dict() for k, p in self.priors.items()}, sort_keys=True)
        return {
            "bayescale_format": FORMAT_VERSION,
            "bayescale_kind": self.kind,
            "bayescale_law": self.law,
            "config": config,
            "priors": priors,
            "user_priors": json.dumps(sorted(self.user_priors)),
            "fit_report": json.dumps(self.fit_report),
            "model_id": hashlib.sha256((self.kind + self.law + config + priors).encode()).hexdigest()[:16],
        }

    def save(self, path) -> Path:
        """Write to a temporary file beside ``path`` and rename it, so that a failure never
        leaves a half-written file in place of an earlier fit; then reload to check."""
        path = Path(path)
        idata = self.idata
        idata.attrs.update(self._attrs())
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            diag.save(idata, tmp)
            reloaded = type(self).load(tmp)
            if reloaded.idata.attrs["model_id"] != idata.attrs["model_id"]:
                raise RuntimeError(f"{path}: the saved fit does not reload to the same model")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path) -> BayesianFit:
        """Load a fit of this law saved with ``save`` (``bayescale.load`` reads any law's)."""
        return cls.from_saved(read_fit_file(path), path)

    @classmethod
    def from_saved(cls, idata, path) -> BayesianFit:
        """Rebuild the fit object from the InferenceData of a saved fit of this law."""
        attrs = idata.attrs
        key = (attrs["bayescale_kind"], attrs["bayescale_law"])
        if key != (cls.kind, cls.law):
            raise FitFileError(f"{path}: a {key[0]}/{key[1]} fit, not a {cls.kind}/{cls.law} fit")
        priors = {k: Prior.from_dict(v) for k, v in json.loads(attrs["priors"]).items()}
        fit = cls(priors={k: priors[k] for k in json.loads(attrs["user_priors"])}, config=json.loads(attrs["config"]))
        fit.priors = priors
        fit.prepare(idata.fit_data.to_dataframe().reset_index(drop=True))
        fit.fit_report = json.loads(attrs.get("fit_report", "{}"))
        fit._idata = idata
        if fit._attrs()["model_id"] != attrs["model_id"]:
            raise FitFileError(f"{path}: its config does not match its model id (edited or foreign file)")
        return fit


def read_fit_file(path):
    """The InferenceData of a saved bayescale fit; FitFileError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FitFileError(f"{path}: no such file")
    try:
        idata = diag.load(path)
    except Exception as exc:  # netCDF/HDF5 raise many types for a corrupt file
        raise FitFileError(f"{path}: not a readable netCDF fit ({type(exc).__name__}: {exc})") from None
    if "bayescale_kind" not in idata.attrs or "fit_data" not in idata.groups() or "posterior" not in idata.groups():
        raise FitFileError(f"{path}: a netCDF file, but not a bayescale fit (no bayescale attributes)")
    return idata
