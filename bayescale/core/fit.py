"""The fit contract shared by every law: the fit object owns a ``pm.Model`` (composition,
not inheritance), fits it, keeps the training data and its settings inside the
InferenceData, saves and loads through netCDF.

Three kinds of settings, kept apart:
- ``model_config``: the law's settings (class defaults from ``default_model_config``, a
  spec may override them, then the constructor's argument), and the priors: user > spec >
  scaled to the data (``scaled_priors``) > the code's defaults (``default_priors``), each
  prior's source recorded in the fit file. Both enter the model id.
- ``sampler_config``: sampler, draws, tune, chains, target_accept (``SAMPLER_DEFAULTS``,
  then the law's ``sampler_defaults``, a spec, the constructor, ``fit(**overrides)``).
- ``derived``: state the fit derives from its data (reference scales, the form of the
  sampled model chosen from the data); stored in the file, not part of the model id.

A law sets ``kind``, ``law`` and ``version`` and implements ``default_priors``, ``prepare``
(turn the user's table into ``self.data``, a DataFrame, plus the model's arrays),
``build_model`` and ``predict``; ``bayescale.registry`` registers it by name. Every interval
in the package is central (``bayescale.core.summaries``).
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
from bayescale.core.sampling import SAMPLER_DEFAULTS, observed_dataset, run_sampler
from bayescale.core.summaries import check_prob, predictions

FORMAT_VERSION = 2
PRIOR_SOURCES = ("default", "scaled", "spec", "user")
PREDICTION_KINDS = ("mean", "observation")


class FitFileError(ValueError):
    """A file that is not a readable bayescale fit."""


class SamplingWarning(UserWarning):
    """R-hat, ESS or divergences outside the thresholds."""


def check_kind(kind: str) -> str:
    if kind not in PREDICTION_KINDS:
        raise ValueError(f"kind must be one of {PREDICTION_KINDS}, not {kind!r}")
    return kind


def as_prior(value) -> Prior:
    if isinstance(value, Prior):
        return value
    if isinstance(value, dict):
        return Prior.from_dict(value)
    raise TypeError(f"a prior must be a pymc_extras Prior or its dict form, got {type(value).__name__}")


class BayesianFit:
    kind: ClassVar[str] = ""
    law: ClassVar[str] = ""
    version: ClassVar[int] = 1  # of the law's model and file contents; load refuses a newer one
    sampler_defaults: ClassVar[dict] = {}  # the law's departures from SAMPLER_DEFAULTS

    def __init__(self, priors: dict | None = None, model_config: dict | None = None,
                 sampler_config: dict | None = None, spec_priors: dict | None = None):
        defaults = self.default_model_config()
        unknown = set(model_config or {}) - set(defaults)
        if unknown:
            raise ValueError(f"{self.law}: no model setting {sorted(unknown)}; the settings are {sorted(defaults)}"
                             + ("; sampler settings go in sampler_config" if unknown & set(SAMPLER_DEFAULTS) else ""))
        self.model_config = {**defaults, **copy.deepcopy(model_config or {})}
        self.sampler_config = {**SAMPLER_DEFAULTS, **self.sampler_defaults}
        self.sampler_config = {**self.sampler_config, **self._checked_sampler(sampler_config or {})}
        self.derived: dict = {}  # before the priors: which parameters a law has may depend on it
        self.user_priors = self._checked_priors(priors)
        self.spec_priors = self._checked_priors(spec_priors)
        self.data: pd.DataFrame | None = None
        self.model: pm.Model | None = None
        self.priors: dict[str, Prior] = {}
        self.prior_sources: dict[str, str] = {}
        self.fit_report: dict = {}
        self._idata = None

    def _checked_priors(self, priors) -> dict[str, Prior]:
        priors = {name: as_prior(p) for name, p in (priors or {}).items()}
        unknown = set(priors) - set(self.default_priors())
        if unknown:
            raise ValueError(
                f"{self.law}: no parameter named {sorted(unknown)}; priors can be set for {sorted(self.default_priors())}"
            )
        return priors

    def _checked_sampler(self, options: dict) -> dict:
        unknown = set(options) - set(SAMPLER_DEFAULTS)
        if unknown:
            raise TypeError(f"{self.law}: no sampler setting {sorted(unknown)}; the settings are {sorted(SAMPLER_DEFAULTS)}")
        return dict(options)

    # --- what a law provides -------------------------------------------------------------
    def default_model_config(self) -> dict:
        return {}

    def default_priors(self) -> dict[str, Prior]:
        raise NotImplementedError

    def scaled_priors(self) -> dict[str, Prior]:
        return {}

    def prepare(self, data) -> None:
        """Validate ``data`` and set ``self.data`` (a DataFrame), the model's arrays and
        ``self.derived``."""
        raise NotImplementedError

    def build_model(self) -> pm.Model:
        raise NotImplementedError

    def predict(self, data, prob: float = 0.9, kind: str = "mean") -> pd.DataFrame:
        """The rows of ``data`` (identifying columns first) with ``mean``, ``lower`` and
        ``upper``: the posterior mean and central ``prob`` interval of the loss; ``kind``
        "mean" for the law's mean, "observation" with the noise added. By default from
        ``predict_draws``; a law that needs more (a seed, its own rows) overrides this."""
        check_prob(prob)
        draws = self.predict_draws(data, observed=check_kind(kind) == "observation")
        return predictions(pd.DataFrame(data), draws, prob)

    def predict_draws(self, data, observed: bool = False) -> np.ndarray:
        """Posterior draws (draws, rows) of the loss at the rows of ``data``: the law's
        mean, or with ``observed`` a measured loss (the noise added)."""
        raise NotImplementedError

    @property
    def param_names(self) -> list[str]:
        return list(self.default_priors())

    # --- fitting ---------------------------------------------------------------------------
    def resolve_priors(self) -> dict[str, Prior]:
        """Every parameter's prior and ``prior_sources``: user > spec > scaled > default."""
        layers = {"default": self.default_priors(), "scaled": self.scaled_priors(), "spec": self.spec_priors,
                  "user": self.user_priors}
        priors, sources = {}, {}
        for source in PRIOR_SOURCES:
            for name, prior in layers[source].items():
                priors[name], sources[name] = prior, source
        self.prior_sources = sources
        return priors

    def fit(self, data, seed: int | None = None, progress: bool = True, **sampler):
        """Sample the posterior; returns the InferenceData (log-likelihood and training data
        included). Keyword arguments override ``sampler_config`` for this fit (sampler
        "nutpie", "pymc" or "auto": nutpie when installed; draws, tune, chains,
        target_accept). If anything fails, the object keeps its earlier data and posterior."""
        options = {**self.sampler_config, **self._checked_sampler(sampler)}
        earlier = {**self.__dict__, "derived": copy.deepcopy(self.derived)}
        try:
            return self._fit(data, options, seed, progress)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(earlier)
            raise

    def _fit(self, data, options, seed, progress):
        self.prepare(data)
        self.priors = self.resolve_priors()
        idata = self._sample(options, seed, progress)
        change = self.reparametrisation(idata)
        if change:
            first = {k: self.fit_report[k] for k in ("rhat_max", "ess_bulk_min", "divergences", "seconds")}
            self.derived.update(change)
            idata = self._sample(options, seed, progress)
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

    def _sample(self, options, seed, progress):
        self.model = self.build_model()
        t0 = time.perf_counter()
        idata, timing = run_sampler(self.model, options, seed, progress, self.initial_point())
        with self.model:
            pm.compute_log_likelihood(idata, progressbar=False)
        self._idata = idata
        self.add_derived_draws(idata, seed)
        if "observed_data" not in idata.groups():
            idata.add_groups(observed_data=observed_dataset(self.model))
        timing["seconds"] = time.perf_counter() - t0
        idata.add_groups(fit_data=xr.Dataset.from_dataframe(self.data.reset_index(drop=True)))
        self.fit_report = {**diag.sampling_diagnostics(idata, self.param_names), **timing,
                           "sampler_config": options, "seed": seed}
        idata.attrs.update(self._attrs())
        return idata

    def add_derived_draws(self, idata, seed) -> None:
        """Add to ``idata.posterior`` draws of quantities not sampled directly (constants
        integrated out of the model, say), before the diagnostics see them."""

    def reparametrisation(self, idata) -> dict | None:
        """A change of ``derived`` that samples the same model in a better form after this
        first attempt went badly, or None; the fit then samples once more with it."""
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
        """Per parameter: mean, sd, central ``prob`` interval (lower, upper), R-hat, bulk ESS."""
        return diag.posterior_summary(self.idata, self.param_names, check_prob(prob))

    def diagnostics(self) -> dict:
        return diag.sampling_diagnostics(self.idata, self.param_names)

    # --- persistence -----------------------------------------------------------------------
    def _attrs(self) -> dict:
        model_config = json.dumps(self.model_config, sort_keys=True)
        priors = json.dumps({k: p.to_dict() for k, p in self.priors.items()}, sort_keys=True)
        return {
            "bayescale_format": FORMAT_VERSION,
            "bayescale_kind": self.kind,
            "bayescale_law": self.law,
            "bayescale_law_version": self.version,
            "model_config": model_config,
            "sampler_config": json.dumps(self.sampler_config, sort_keys=True),
            "derived": json.dumps(self.derived, sort_keys=True),
            "priors": priors,
            "prior_sources": json.dumps(self.prior_sources, sort_keys=True),
            "fit_report": json.dumps(self.fit_report),
            "model_id": hashlib.sha256((self.kind + self.law + model_config + priors).encode()).hexdigest()[:16],
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
        if int(attrs.get("bayescale_format", 1)) != FORMAT_VERSION:
            raise FitFileError(f"{path}: written in bayescale's fit format {attrs.get('bayescale_format', 1)}; "
                               f"this version reads format {FORMAT_VERSION}: fit again")
        version = int(attrs["bayescale_law_version"])
        if version > cls.version:
            raise FitFileError(f"{path}: saved by version {version} of the {cls.kind}/{cls.law} law, newer than this "
                               f"bayescale's version {cls.version}: upgrade bayescale to read it")
        priors = {k: Prior.from_dict(v) for k, v in json.loads(attrs["priors"]).items()}
        sources = json.loads(attrs["prior_sources"])
        by_source = {source: {k: p for k, p in priors.items() if sources[k] == source} for source in ("user", "spec")}
        fit = cls(priors=by_source["user"], model_config=json.loads(attrs["model_config"]),
                  sampler_config=json.loads(attrs["sampler_config"]), spec_priors=by_source["spec"])
        fit.derived = json.loads(attrs["derived"])
        fit.priors, fit.prior_sources = priors, sources
        fit.prepare(idata.fit_data.to_dataframe().reset_index(drop=True))
        fit.fit_report = json.loads(attrs.get("fit_report", "{}"))
        fit._idata = idata
        if fit._attrs()["model_id"] != attrs["model_id"]:
            raise FitFileError(f"{path}: its settings do not match its model id (edited or foreign file)")
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
