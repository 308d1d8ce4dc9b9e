"""Annealing law (Tissue, Wang, Wang 2024): L(t) = L0 + A·S1(t)^(−α) − C·S2(t).

Fitted in scaled units: u = η/η_peak, s1 = S1/(η_peak·area_scale) and
s2 = S2/(η_peak·s2_scale) with s2_scale = 1/(1 − λ0), the momentum's memory in steps.
The initial warmup counts as steps at the peak LR (the paper's convention).
"""

from __future__ import annotations

import numpy as np
from pymc_extras.prior import Prior

from bayescale.core.features import AnnealingTerms
from bayescale.curves.fit import CurveFit


class AnnealingLaw(CurveFit):
    law = "annealing"
    elementwise_params = ("L0", "A", "alpha", "C")

    def default_model_config(self) -> dict:
        return {**super().default_model_config(), "lam": 0.999, "fit_lam": False}

    @property
    def law_params(self) -> tuple[str, ...]:
        return ("L0", "A", "alpha", "C") + (("memory",) if self.model_config["fit_lam"] else ())

    @property
    def s2_scale(self) -> float:
        return 1.0 / (1.0 - self.model_config["lam"])

    def law_priors(self) -> dict[str, Prior]:
        priors = {
            "L0": Prior("HalfNormal", sigma=5.0),
            "A": Prior("LogNormal", mu=np.log(0.3), sigma=1.5),
            "alpha": Prior("LogNormal", mu=np.log(0.5), sigma=0.5),
            "C": Prior("LogNormal", mu=np.log(0.1), sigma=1.5),
        }
        if self.model_config["fit_lam"]:
            # memory 1/(1−λ) in steps; λ = 0.99…0.999 is 100…1000 steps
            priors["memory"] = Prior("LogNormal", mu=np.log(1.0 / (1.0 - self.model_config["lam"])), sigma=1.0)
        return priors

    def extra_start(self) -> dict:
        return {"C": 0.1}

    def run_features(self, schedule, steps) -> dict:
        cfg = self.model_config
        u = schedule.post_warmup() / self.derived["lr_scale"]
        s1 = np.cumsum(u)[steps] / self.derived["area_scale"]
        terms = AnnealingTerms.from_schedule(u, steps)
        return {"s1": s1, "s2": terms.area(cfg["lam"]) / self.s2_scale, "terms": terms}

    def annealing_area(self, feats, memory, xp):
        """s2 for a fitted λ: symbolic in PyMC, one row per draw in numpy."""
        if xp is np:
            return np.stack([
                np.concatenate([t.area(1.0 - 1.0 / m) for t in feats["terms"]]) for m in np.ravel(memory)
            ]) / self.s2_scale
        return xp.concatenate([t.area_pt(1.0 - 1.0 / memory) for t in feats["terms"]]) / self.s2_scale

    def law_mean(self, feats, p, xp=np):
        s2 = self.annealing_area(feats, p["memory"], xp) if "memory" in p else feats["s2"]
        return p["L0"] + p["A"] * feats["s1"] ** (-p["alpha"]) - p["C"] * s2

    def raw_params(self, p: dict) -> dict:
        raw = {
            "L0": p["L0"],
            "A": p["A"] * (self.derived["lr_scale"] * self.derived["area_scale"]) ** p["alpha"],
            "alpha": p["alpha"],
            "C": p["C"] / (self.derived["lr_scale"] * self.s2_scale),
        }
        if "memory" in p:
            raw["lam"] = 1.0 - 1.0 / p["memory"]
        return raw

    def scaled_params(self, raw: dict) -> dict:
        """Inverse of ``raw_params``: published raw-LR constants in this fit's units."""
        return {
            **raw,
            "A": raw["A"] * (self.derived["lr_scale"] * self.derived["area_scale"]) ** (-raw["alpha"]),
            "C": raw["C"] * self.derived["lr_scale"] * self.s2_scale,
        }
