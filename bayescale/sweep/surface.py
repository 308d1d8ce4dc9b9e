"""The loss surface over an LR × batch-size sweep grid, all (N, D) cells in one model.

In cell c, with x = ln η − ln η*_c and y = ln B − ln B*_c,

    L = L*_c + a_lr · linex(x − γ y − b y², k_lr) + a_bs · linex(y, k_bs),
    linex(u, k) = (e^{k u} − 1 − k u) / k²,

a bowl around (η*_c, B*_c) whose LR axis follows the ridge ln η = ln η*_c + γ y + b y² (the
best LR moves with the batch, less so at large batches: b < 0 on the Step Law grid) and whose sides may be asymmetric (k ≠ 0: exponential on one side,
linear on the other; k = 0 is the quadratic). Curvatures, asymmetries and the ridge slope are
pooled over cells. The cell optima follow power laws with cell-level scatter,

    ln η*_c ~ Normal(lr0 + lr_N ln(N/N_ref) + lr_D ln(D/D_ref), σ_lr)   (same for ln B*_c),
    L*_c ~ Normal(Chinchilla law(N, D), σ_L),

so η*, B*, L* at a new (N, D) are draws from the law plus the cell scatter. Each law is
linear in three of its constants (all of the LR and batch laws; L_ref, s_N, s_D of the loss
law given its exponents), which have Normal priors: the sampler sees the cell optima with
those constants integrated out (a multivariate normal over cells), and the constants are
drawn afterwards from their exact conditional. Sampled jointly, the constants and the
scatter make a funnel on small grids (4 cells: 5–20 divergences, ESS 80–150).

The bowl is a description of the surface near its optimum, not of the whole grid: a run whose
loss is more than ``window`` (relative, 1% by default) above its cell's best, and every
diverged run, is censored at that level: it enters the likelihood as P(loss > level), which
says "this region is bad" without asking the bowl to fit the walls far away (fitting them
pulled the fitted η* half an octave below the cells' best runs). Noise is logistic (heavier
tails than the normal, and a closed-form tail probability for the censored runs).

The answer to "which η and B should I use" is given two ways: the surface's optimum (η*, B*),
and the near-optimal centre a sweep of that cell would measure (the geometric mean of (η, B)
over its runs within 0.25% of the best, which is what Step Law's procedure regresses). The
centre is the optimum plus the scatter that the fitted cells' own centres show around their
optima (grid spacing and noise make it wander by about 0.1 octave).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from pymc_extras.prior import Prior

from bayescale.core import summaries
from bayescale.core.errors import DataError
from bayescale.core.fit import BayesianFit, check_kind
from bayescale.sweep import chinchilla
from bayescale.sweep.data import near_optimal_centres, read_sweep

LAW_PARAMS = ["lr0", "lr_N", "lr_D", "bs0", "bs_N", "bs_D"]
LOSS_LAW_PARAMS = ["L_ref", "s_N", "s_D", "alpha", "beta"]
SHAPE_PARAMS = ["a_lr", "k_lr", "a_bs", "k_bs", "gamma", "bend"]
SCATTER_PARAMS = ["sigma_lr", "sigma_bs", "sigma_L"]
NOISE_PARAMS = ["sigma"]
# the constants each cell-level law is linear in, integrated out while sampling
LINEAR_PARAMS = {"lr": ["lr0", "lr_N", "lr_D"], "bs": ["bs0", "bs_N", "bs_D"], "L": ["L_ref", "s_N", "s_D"]}
SCATTER = {"lr": "sigma_lr", "bs": "sigma_bs", "L": "sigma_L"}


def linex(u, k, xp=np):
    """(e^{k u} − 1 − k u) / k²: convex, minimum 0 at u = 0, u²/2 as k → 0.
    Written as u² φ(k u) with a series for small k u, so k = 0 is exact and gradients finite."""
    lib = np if xp is np else pt
    z = k * u
    small = lib.abs(z) < 1e-3
    z_safe = lib.where(small, 1.0, z)
    phi = lib.where(small, 0.5 + z / 6 + z * z / 24, (lib.expm1(z_safe) - z_safe) / (z_safe * z_safe))
    return u * u * phi


def surface_loss(lr, bs, log_lr_opt, log_bs_opt, loss_opt, a_lr, k_lr, a_bs, k_bs, gamma, bend=0.0, xp=np):
    """Mean loss at (lr, bs) of a cell whose optimum is (exp log_lr_opt, exp log_bs_opt, loss_opt)."""
    y = xp.log(bs) - log_bs_opt
    u = xp.log(lr) - log_lr_opt - (gamma + bend * y) * y
    return loss_opt + a_lr * linex(u, k_lr, xp) + a_bs * linex(y, k_bs, xp)


class SurfaceFit(BayesianFit):
    kind = "sweep"
    law = "surface"
    sampler_defaults = {"draws": 500, "tune": 500, "target_accept": 0.95}

    def default_model_config(self):
        return {"divergence_ratio": 1.5, "min_runs_per_cell": 5, "seq_len": 2048, "window": 0.01}

    @property
    def N_ref(self) -> float:
        return self.derived["N_ref"]

    @property
    def D_ref(self) -> float:
        return self.derived["D_ref"]

    def default_priors(self):
        return {
            "lr0": Prior("Normal", mu=np.log(1e-3), sigma=2.0),
            "lr_N": Prior("Normal", mu=0.0, sigma=1.0),
            "lr_D": Prior("Normal", mu=0.0, sigma=1.0),
            "bs0": Prior("Normal", mu=np.log(1e6), sigma=2.0),
            "bs_N": Prior("Normal", mu=0.0, sigma=1.0),
            "bs_D": Prior("Normal", mu=0.0, sigma=1.0),
            # boundary-avoiding scatter priors (no funnel at zero) that also rule out a cell
            # straying by more than about half an octave from the laws
            "sigma_lr": Prior("Gamma", alpha=3.0, beta=30.0),
            "sigma_bs": Prior("Gamma", alpha=3.0, beta=30.0),
            "sigma_L": Prior("Gamma", alpha=4.0, beta=400.0),
            "L_ref": Prior("Normal", mu=2.5, sigma=1.0),
            # Normal, so that they can be integrated out; centred on a loss that falls with N and D
            "s_N": Prior("Normal", mu=0.2, sigma=0.3),
            "s_D": Prior("Normal", mu=0.2, sigma=0.3),
            "alpha": Prior("LogNormal", mu=np.log(0.35), sigma=0.4),
            "beta": Prior("LogNormal", mu=np.log(0.35), sigma=0.4),
            "a_lr": Prior("LogNormal", mu=np.log(0.02), sigma=1.5),
            "k_lr": Prior("Normal", mu=0.0, sigma=2.0),
            "a_bs": Prior("LogNormal", mu=np.log(0.02), sigma=1.5),
            "k_bs": Prior("Normal", mu=0.0, sigma=2.0),
            "gamma": Prior("Normal", mu=0.0, sigma=1.0),
            "bend": Prior("Normal", mu=0.0, sigma=0.5),
            # noise of a final smoothed loss: a few thousandths (0.1–0.3% here)
            "sigma": Prior("HalfNormal", sigma=0.005),
        }

    def scaled_priors(self):
        """Centre the intercepts on the grid's own near-optimal runs (a wide prior around them)."""
        centres = near_optimal_centres(self.data)
        return {
            "L_ref": Prior("Normal", mu=float(centres["best_loss"].mean()), sigma=1.0),
            "lr0": Prior("Normal", mu=float(np.log(centres["lr"]).mean()), sigma=2.0),
            "bs0": Prior("Normal", mu=float(np.log(centres["batch_tokens"]).mean()), sigma=2.0),
        }

    @property
    def param_names(self):
        return (
            LAW_PARAMS + SCATTER_PARAMS + LOSS_LAW_PARAMS + SHAPE_PARAMS + NOISE_PARAMS
            + ["log_lr_opt", "log_bs_opt", "loss_opt"]
        )

    # --- data ------------------------------------------------------------------------------
    def prepare(self, data):
        cfg = self.model_config
        sweep = read_sweep(data, seq_len=cfg["seq_len"], divergence_ratio=cfg["divergence_ratio"],
                           min_runs_per_cell=cfg["min_runs_per_cell"])
        self.sweep = sweep
        self.data = sweep.table
        cells = sweep.cells
        self.cells = cells
        self.cell_index = (
            self.data[["N", "D"]].merge(cells[["N", "D"]].reset_index(), on=["N", "D"], how="left")["index"].to_numpy()
        )
        # reference point of the laws (derived: the grid's geometric centre)
        self.derived["N_ref"] = float(np.exp(np.log(cells["N"]).mean()))
        self.derived["D_ref"] = float(np.exp(np.log(cells["D"]).mean()))

    def loss_law(self, N, D, p, xp=np):
        return chinchilla.local_loss(N, D, self.N_ref, self.D_ref, *(p[k] for k in LOSS_LAW_PARAMS), xp=xp)

    def law_features(self, N, D):
        return np.log(np.asarray(N, float) / self.N_ref), np.log(np.asarray(D, float) / self.D_ref)

    # --- model -----------------------------------------------------------------------------
    def censoring_level(self) -> np.ndarray:
        """Per run, the loss above which it is censored: ``window`` above its cell's best."""
        best = self.cells["best_loss"].to_numpy()[self.cell_index]
        return best * (1 + self.model_config["window"])

    def censored(self) -> np.ndarray:
        """Runs that enter as P(loss > level): diverged or above the window."""
        return self.data["diverged"].to_numpy() | (self.data["target"].to_numpy() > self.censoring_level())

    def rule_counts(self) -> dict:
        """How many runs each data rule touched: the reader's divergence rules, then the
        censoring (diverged runs, and the others above the window)."""
        diverged = self.data["diverged"].to_numpy()
        above = self.censored() & ~diverged
        return {**self.sweep.rule_counts, "censored_diverged": int(diverged.sum()),
                f"censored_above_{self.model_config['window']:g}_window": int(above.sum())}

    def build_model(self):
        table, cells = self.data, self.cells
        lr, bs, idx = table["lr"].to_numpy(), table["batch_tokens"].to_numpy(), self.cell_index
        level = self.censoring_level()
        observed = np.where(self.censored(), level, table["target"].to_numpy())
        centres = near_optimal_centres(table)
        coords = {"cell": np.arange(len(cells)), "run": np.arange(len(table))}
        with pm.Model(coords=coords) as model:
            p = {name: self.priors[name].create_variable(name) for name in self.sampled_params()}
            log_lr_opt = self._cell_terms("log_lr_opt", "lr", p, np.log(centres["lr"].to_numpy()), 0.1)
            log_bs_opt = self._cell_terms("log_bs_opt", "bs", p, np.log(centres["batch_tokens"].to_numpy()), 0.1)
            loss_opt = self._cell_terms("loss_opt", "L", p, centres["best_loss"].to_numpy(), 0.01)
            shape = {k: p[k] for k in SHAPE_PARAMS}
            mean = surface_loss(lr, bs, log_lr_opt[idx], log_bs_opt[idx], loss_opt[idx], **shape, xp=pm.math)
            noise = pm.Logistic.dist(mu=mean, s=p["sigma"])
            pm.Censored("loss", noise, lower=None, upper=level, observed=observed, dims="run")
        return model

    def sampled_params(self) -> list[str]:
        integrated = {name for names in LINEAR_PARAMS.values() for name in names}
        return [name for name in self.default_priors() if name not in integrated]

    def design(self, term: str, N, D, p: dict, xp=np):
        """The law of ``term`` ("lr", "bs", "L") as design @ its linear constants: columns
        (cells or points, 3), given the exponents in ``p`` for the loss law."""
        n, d = self.law_features(N, D)
        if term != "L":
            return np.column_stack([np.ones_like(n), n, d])
        lib = np if xp is np else pt
        columns = [lib.ones_like(n * p["alpha"]), -chinchilla.box_cox(np.asarray(N) / self.N_ref, p["alpha"], xp),
                   -chinchilla.box_cox(np.asarray(D) / self.D_ref, p["beta"], xp)]
        return lib.stack(columns, axis=-1)

    def linear_prior(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """Mean and s.d. of the Normal priors on the linear constants of ``term``'s law."""
        names = LINEAR_PARAMS[term]
        not_normal = [n for n in names if self.priors[n].distribution != "Normal"]
        if not_normal:
            raise ValueError(f"priors on {not_normal} must be Normal: the law constants {names} are integrated out")
        return (np.array([self.priors[n].parameters["mu"] for n in names], float),
                np.array([self.priors[n].parameters["sigma"] for n in names], float))

    def _cell_terms(self, name, term, p, anchor, unit):
        """Cell terms Normal(X θ, scatter) with θ ~ Normal(m0, diag s0²) integrated out:
        MvNormal(X m0, X diag(s0²) Xᵀ + scatter² I), sampled as the distance from ``anchor``
        (the grid's own near-optimal value) in units of ``unit``, where the sampler's initial
        jitter (±1) is a small step."""
        cells = self.cells
        X = self.design(term, cells["N"].to_numpy(), cells["D"].to_numpy(), p, xp=pm.math)
        m0, s0 = self.linear_prior(term)
        scatter = p[SCATTER[term]]
        cov = (X * s0**2) @ X.T + scatter**2 * np.eye(len(cells))
        gap = pm.MvNormal(f"{name}_gap", mu=(X @ m0 - anchor) / unit, cov=cov / unit**2, dims="cell")
        return pm.Deterministic(name, anchor + unit * gap, dims="cell")

    def add_derived_draws(self, idata, seed) -> None:
        """Draw the integrated-out law constants from their conditional given each posterior
        draw of the cell terms and scatter (Bayesian linear regression), and E, A, B."""
        rng = np.random.default_rng(seed)
        post = idata.posterior
        chains, draws = post.sizes["chain"], post.sizes["draw"]
        flat = {k: self.draws(k) for k in ("alpha", "beta", "sigma_lr", "sigma_bs", "sigma_L")}
        exponents = {k: flat[k][:, None] for k in ("alpha", "beta")}
        cells = self.cells
        new = {}
        for term, cell_name in (("lr", "log_lr_opt"), ("bs", "log_bs_opt"), ("L", "loss_opt")):
            X = self.design(term, cells["N"].to_numpy(), cells["D"].to_numpy(), exponents)
            X = np.broadcast_to(X, (chains * draws,) + X.shape[-2:])
            m0, s0 = self.linear_prior(term)
            precision_data = np.einsum("sci,scj->sij", X, X) / flat[SCATTER[term]][:, None, None] ** 2
            cov = np.linalg.inv(np.diag(1 / s0**2)[None] + precision_data)
            rhs = m0 / s0**2 + np.einsum("sci,sc->si", X, self.draws(cell_name)) / flat[SCATTER[term]][:, None] ** 2
            mean = np.einsum("sij,sj->si", cov, rhs)
            theta = mean + np.einsum("sij,sj->si", np.linalg.cholesky(cov), rng.standard_normal(mean.shape))
            new.update({n: theta[:, i] for i, n in enumerate(LINEAR_PARAMS[term])})
        new.update(zip(("E", "A", "B"), chinchilla.raw_from_local(
            self.N_ref, self.D_ref, *(new[k] if k in new else flat[k] for k in LOSS_LAW_PARAMS))))
        for k, v in new.items():
            post[k] = (("chain", "draw"), v.reshape(chains, draws))

    def initial_point(self) -> dict:
        """The prior's centre (its intercepts sit on the grid's near-optimal runs) with a mild
        asymmetry (k = 0.5): close enough for the sampler, and no optimiser run per fit."""
        return {"k_lr": 0.5, "k_bs": 0.5}

    # --- answers ---------------------------------------------------------------------------
    def _draws(self, names):
        return {k: self.draws(k) for k in names}

    def optimum_draws(self, N, D, seed: int | None = 0) -> pd.DataFrame:
        """Draws of (lr, batch_tokens, loss) at the optimum of a new cell at (N, D): the laws
        plus one draw of the cell-level scatter per posterior draw."""
        n, d = self.law_features(N, D)
        p = self._draws(LAW_PARAMS + SCATTER_PARAMS + LOSS_LAW_PARAMS)
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((3, len(p["lr0"])))
        log_lr = p["lr0"] + p["lr_N"] * n + p["lr_D"] * d + p["sigma_lr"] * z[0]
        log_bs = p["bs0"] + p["bs_N"] * n + p["bs_D"] * d + p["sigma_bs"] * z[1]
        loss = self.loss_law(N, D, p) + p["sigma_L"] * z[2]
        return pd.DataFrame({"lr": np.exp(log_lr), "batch_tokens": np.exp(log_bs), "loss": loss})

    def optimum(self, N, D, prob: float = 0.9, seed: int | None = 0) -> pd.DataFrame:
        """η*, B*, L* at (N, D): posterior mean and central ``prob`` interval, one row each."""
        return summaries.table(self.optimum_draws(N, D, seed), prob)

    def centre_scatter(self) -> np.ndarray:
        """Per draw, the scatter (ln units, shape (draws, 2): LR, batch) of the fitted cells'
        measured near-optimal centres around their surface optima: the root mean square over
        cells of ln(centre) − ln(optimum)."""
        centres = near_optimal_centres(self.data)
        gaps = [np.log(centres[col].to_numpy())[None] - self.draws(name)
                for col, name in (("lr", "log_lr_opt"), ("batch_tokens", "log_bs_opt"))]
        return np.column_stack([np.sqrt(np.mean(g**2, axis=1)) for g in gaps])

    def centre_draws(self, N, D, seed: int | None = 0) -> pd.DataFrame:
        """Draws of the near-optimal centre (lr, batch_tokens) a sweep of a new cell at (N, D)
        would measure (the geometric mean of its runs within 0.25% of the best): the optimum
        plus the scatter of the fitted cells' centres around their optima."""
        opt = self.optimum_draws(N, D, seed)
        scatter = self.centre_scatter() * np.random.default_rng(None if seed is None else seed + 1).standard_normal((len(opt), 2))
        return pd.DataFrame({"lr": opt["lr"] * np.exp(scatter[:, 0]), "batch_tokens": opt["batch_tokens"] * np.exp(scatter[:, 1])})

    def centre(self, N, D, prob: float = 0.9, seed: int | None = 0) -> pd.DataFrame:
        """The near-optimal centre a sweep at (N, D) would measure: mean and central ``prob`` interval."""
        return summaries.table(self.centre_draws(N, D, seed), prob)

    def predict_loss_draws(self, N, D, lr, batch_tokens, seed: int | None = 0) -> np.ndarray:
        """Draws of the mean loss of a run at (N, D, lr, batch_tokens) in a new cell."""
        opt = self.optimum_draws(N, D, seed)
        shape = self._draws(SHAPE_PARAMS)
        return surface_loss(
            lr, batch_tokens, np.log(opt["lr"].to_numpy()), np.log(opt["batch_tokens"].to_numpy()),
            opt["loss"].to_numpy(), **shape,
        )

    def predict(self, data, prob: float = 0.9, kind: str = "mean", seed: int | None = 0) -> pd.DataFrame:
        """Runs at (N, D, lr, batch_tokens), the rows of ``data``, each in a new cell at its
        (N, D): those columns, then the posterior mean and central ``prob`` interval of
        the loss, the surface's mean or (``kind="observation"``) a run's measured loss."""
        summaries.check_prob(prob)
        check_kind(kind)
        rows = pd.DataFrame(data)
        missing = [c for c in ("N", "D", "lr", "batch_tokens") if c not in rows]
        if missing:
            raise DataError(f"predict needs columns N, D, lr, batch_tokens; missing {missing}")
        rows = rows[["N", "D", "lr", "batch_tokens"]].astype(float).reset_index(drop=True)
        draws = np.column_stack([self.predict_loss_draws(*row, seed=seed) for row in rows.itertuples(index=False)])
        if kind == "observation":
            rng = np.random.default_rng(None if seed is None else seed + 2)
            draws = draws + self.draws("sigma")[:, None] * rng.logistic(size=draws.shape)
        return summaries.predictions(rows, draws, prob)

    def cell_optima(self, prob: float = 0.9) -> pd.DataFrame:
        """Per fitted cell: posterior mean and central interval of η*, B*, L*."""
        optima = {"lr": np.exp(self.draws("log_lr_opt")), "batch_tokens": np.exp(self.draws("log_bs_opt")),
                  "loss": self.draws("loss_opt")}
        out = self.cells[["N", "D"]].copy()
        for name, x in optima.items():
            s = summaries.central(x, prob, axis=0)
            out[name], out[f"{name}_lower"], out[f"{name}_upper"] = s["mean"], s["lower"], s["upper"]
        return out.reset_index(drop=True)

    def cell_mean(self, cell: int, lr, batch_tokens) -> np.ndarray:
        """Draws of the mean loss of fitted cell ``cell`` at (lr, batch_tokens), shape (draws, points)."""
        shape = {k: v[:, None] for k, v in self._draws(SHAPE_PARAMS).items()}
        return surface_loss(
            np.asarray(lr, float)[None], np.asarray(batch_tokens, float)[None],
            self.draws("log_lr_opt")[:, cell, None], self.draws("log_bs_opt")[:, cell, None],
            self.draws("loss_opt")[:, cell, None], **shape,
        )
