"""Loss against model size and data: L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022).

The PyMC model works in scaled units, N/N_REF and D/D_REF, where the coefficients
a = A/N_REF^α and b = B/D_REF^β are of order 0.1–1 and only weakly correlated with the
exponents; A and B in raw units are derived. The likelihood is a Student-t on log loss,
the Bayesian counterpart of the Huber loss on log loss used by Epoch AI's replication.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from pymc_extras.prior import Prior

from bayescale.core import summaries
from bayescale.core.errors import DataError
from bayescale.core.fit import BayesianFit, check_kind
from bayescale.core.io import read_csv, where

N_REF = 1e9
D_REF = 1e11
PARAMS = ["E", "a", "b", "alpha", "beta"]


def loss(N, D, E, A, B, alpha, beta):
    """L = E + A/N^α + B/D^β in raw units (numpy, broadcasting)."""
    return E + A / np.power(N, alpha) + B / np.power(D, beta)


def scaled_loss(N, D, E, a, b, alpha, beta, xp=np):
    """The same law with N/N_REF and D/D_REF; ``xp`` is numpy or pymc.math."""
    return E + a * xp.exp(-alpha * xp.log(N / N_REF)) + b * xp.exp(-beta * xp.log(D / D_REF))


def box_cox(x, k, xp=np):
    """(1 − x^(−k)) / k: ln x as k → 0; the loss law's shape in N or D around the reference."""
    expm1 = np.expm1 if xp is np else pt.expm1
    return -expm1(-k * np.log(x)) / k


def local_loss(N, D, N_ref, D_ref, L_ref, s_N, s_D, alpha, beta, xp=np):
    """The same law written around a reference point: L_ref is the loss at (N_ref, D_ref) and
    s_N, s_D the slopes −dL/d ln N, −dL/d ln D there. On a narrow grid these are what the data
    fix, nearly independently of the exponents, which makes the posterior easy to sample.
    E = L_ref − s_N/α − s_D/β, A = (s_N/α) N_ref^α, B = (s_D/β) D_ref^β."""
    return L_ref - s_N * box_cox(N / N_ref, alpha, xp) - s_D * box_cox(D / D_ref, beta, xp)


def raw_from_local(N_ref, D_ref, L_ref, s_N, s_D, alpha, beta):
    """(E, A, B) of the raw law from the local parametrisation."""
    return L_ref - s_N / alpha - s_D / beta, s_N / alpha * np.power(N_ref, alpha), s_D / beta * np.power(D_ref, beta)


def raw_coefficients(a, b, alpha, beta):
    """A and B in raw units from the scaled coefficients."""
    return a * np.power(N_REF, alpha), b * np.power(D_REF, beta)


def read_loss_table(path) -> pd.DataFrame:
    """A CSV of (N, D, loss): columns N, D, loss, or the Epoch AI layout ``Model Size``,
    ``Training FLOP``, ``loss`` with D = FLOP / (6 N)."""
    path = Path(path)
    frame = read_csv(path)
    if {"Model Size", "Training FLOP"} <= set(frame.columns) and "N" not in frame.columns:
        frame["N"] = pd.to_numeric(frame["Model Size"], errors="coerce")
        frame["D"] = pd.to_numeric(frame["Training FLOP"], errors="coerce") / (6 * frame["N"])
    return validate(frame, str(path))


def validate(frame: pd.DataFrame, source: str = "<table>") -> pd.DataFrame:
    missing = [c for c in ("N", "D", "loss") if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; found {list(frame.columns)}")
    frame = frame.copy()
    if "source" not in frame:
        frame["source"] = source
    if "row" not in frame:
        frame["row"] = np.arange(len(frame))
    for column in ("N", "D", "loss"):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = ~(np.isfinite(values) & (values > 0))
        if bad.any():
            raise DataError(
                f"{where(frame[bad.to_numpy()])}: column {column!r} must be a positive finite number, "
                f"got {frame[column][bad].iloc[0]!r}"
            )
        frame[column] = values.astype(float)
    if len(frame) < len(PARAMS) + 1:
        raise DataError(f"{source}: {len(frame)} rows; the law has {len(PARAMS)} parameters and needs more points")
    return frame[["N", "D", "loss", "source", "row"]].reset_index(drop=True)


class ChinchillaFit(BayesianFit):
    kind = "loss"
    law = "chinchilla"

    sampler_defaults = {"target_accept": 0.95}  # the E–A–α ridge gives a few divergences at 0.8

    def default_priors(self):
        return {
            "E": Prior("LogNormal", mu=np.log(1.7), sigma=0.5),
            "a": Prior("LogNormal", mu=np.log(0.3), sigma=1.5),
            "b": Prior("LogNormal", mu=np.log(0.3), sigma=1.5),
            "alpha": Prior("LogNormal", mu=np.log(0.35), sigma=0.5),
            "beta": Prior("LogNormal", mu=np.log(0.35), sigma=0.5),
            "sigma": Prior("HalfNormal", sigma=0.05),
            "nu": Prior("Gamma", alpha=2.0, beta=0.1),
        }

    @property
    def param_names(self):
        return PARAMS + ["sigma", "nu"]

    def prepare(self, data):
        if isinstance(data, (str, Path)):
            self.data = read_loss_table(data)
        else:
            self.data = validate(pd.DataFrame(data))

    def build_model(self):
        N = self.data["N"].to_numpy()
        D = self.data["D"].to_numpy()
        with pm.Model(coords={"point": np.arange(len(N))}) as model:
            p = {name: self.priors[name].create_variable(name) for name in PARAMS + ["sigma", "nu"]}
            mean = scaled_loss(N, D, p["E"], p["a"], p["b"], p["alpha"], p["beta"], xp=pm.math)
            pm.StudentT(
                "log_loss", nu=p["nu"], mu=pm.math.log(mean), sigma=p["sigma"],
                observed=np.log(self.data["loss"].to_numpy()), dims="point",
            )
            A, B = raw_coefficients(p["a"], p["b"], p["alpha"], p["beta"])
            pm.Deterministic("A", A)
            pm.Deterministic("B", B)
        return model

    def parameters(self, prob: float = 0.9) -> pd.DataFrame:
        """Posterior mean, median and central ``prob`` interval of E, A, B, α, β in raw units."""
        table = summaries.table({name: self.draws(name) for name in ("E", "A", "B", "alpha", "beta")}, prob, median=True)
        return table.rename_axis("parameter").reset_index()

    def predict(self, data, prob: float = 0.9, kind: str = "mean", seed: int = 0) -> pd.DataFrame:
        """The rows of ``data`` (N, D) with the posterior mean and central ``prob`` interval
        of the law's loss, or (``kind="observation"``) of a measured loss."""
        summaries.check_prob(prob)
        rows = pd.DataFrame(data)[["N", "D"]].astype(float).reset_index(drop=True)
        return summaries.predictions(rows, self.predict_draws(rows, check_kind(kind) == "observation", seed), prob)

    def predict_draws(self, data, observed: bool = False, seed: int = 0) -> np.ndarray:
        """Draws (draws, rows) of the law's loss at the rows (N, D) of ``data``; with
        ``observed`` the Student-t noise on log loss is added."""
        rows = pd.DataFrame(data)
        p = {k: self.draws(k)[:, None] for k in PARAMS}
        draws = scaled_loss(rows["N"].to_numpy(float)[None], rows["D"].to_numpy(float)[None], **p)
        if observed:
            t = np.random.default_rng(seed).standard_t(self.draws("nu")[:, None], size=draws.shape)
            draws = draws * np.exp(self.draws("sigma")[:, None] * t)
        return draws
