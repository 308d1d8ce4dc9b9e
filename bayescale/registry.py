"""The law registry: each law class under its (kind, law) name, once; model specs (JSON
files shipped in ``bayescale/resources/specs``) that name a law and hold only what differs
from its code's defaults (``priors``, ``model_config``, ``sampler_config``); ``from_spec``
and ``load``.

A class is registered by name, here or by ``register`` for a user's own law; a subclass of
a registered law is not registered unless it takes a name of its own, and a name already
taken is refused.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

from bayescale.bound.curve import BoundCurveFit
from bayescale.bound.final import BoundFinalFit
from bayescale.bound.size_horizon import Bound2DFit
from bayescale.core.fit import BayesianFit, FitFileError, read_fit_file
from bayescale.curves.annealing import AnnealingLaw
from bayescale.curves.multipower import MultiPowerLaw
from bayescale.sweep.chinchilla import ChinchillaFit
from bayescale.sweep.surface import SurfaceFit

SPECS = files("bayescale") / "resources" / "specs"
LAWS: dict[tuple[str, str], type[BayesianFit]] = {}


def register(cls: type[BayesianFit]) -> type[BayesianFit]:
    """Register a law class under its (kind, law); refuses a name already taken."""
    if not (isinstance(cls, type) and issubclass(cls, BayesianFit)):
        raise TypeError(f"register takes a BayesianFit subclass, not {cls!r}")
    key = (cls.kind, cls.law)
    if not all(key):
        raise ValueError(f"{cls.__name__}: set the class attributes kind and law before registering it")
    if key in LAWS:
        raise ValueError(
            f"law {key[0]}/{key[1]} is taken by {LAWS[key].__module__}.{LAWS[key].__qualname__}; "
            f"give {cls.__name__} a law name of its own"
        )
    LAWS[key] = cls
    return cls


for _law in (AnnealingLaw, MultiPowerLaw, SurfaceFit, ChinchillaFit, BoundFinalFit, Bound2DFit, BoundCurveFit):
    register(_law)


def spec_names() -> list[str]:
    return sorted(p.name[: -len(".json")] for p in SPECS.iterdir() if p.name.endswith(".json"))


def load_spec(name_or_path) -> dict:
    """A spec by name (one shipped with the package) or by the path of a JSON file."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        source, text = path, path.read_text()
    elif f"{name_or_path}" in spec_names():
        source, text = f"spec {name_or_path!r}", (SPECS / f"{name_or_path}.json").read_text()
    else:
        raise ValueError(f"no model spec {name_or_path!r}; known specs: {spec_names()}")
    spec = json.loads(text)
    missing = [k for k in ("kind", "law") if k not in spec]
    if missing:
        raise ValueError(f"{source}: model spec lacks {missing}")
    return spec


def law_class(kind: str, law: str) -> type[BayesianFit]:
    try:
        return LAWS[(kind, law)]
    except KeyError:
        raise ValueError(f"unknown kind/law {(kind, law)}; known: {sorted(LAWS)}") from None


def from_spec(name_or_path, sampler_config: dict | None = None, **model_config) -> BayesianFit:
    """A fresh, unfitted model object from a spec: its priors count as the spec's (above
    the data-scaled and default ones, below a user's); keyword arguments override its
    model settings, ``sampler_config`` its sampler settings."""
    spec = load_spec(name_or_path)
    unknown = set(spec) - {"kind", "law", "description", "priors", "model_config", "sampler_config"}
    if unknown:
        raise ValueError(f"model spec {name_or_path!r}: unknown key(s) {sorted(unknown)}")
    cls = law_class(spec["kind"], spec["law"])
    return cls(model_config={**spec.get("model_config", {}), **model_config},
               sampler_config={**spec.get("sampler_config", {}), **(sampler_config or {})},
               spec_priors=spec.get("priors"))


def load(path) -> BayesianFit:
    """Load any registered law's fit saved with ``save``."""
    idata = read_fit_file(path)
    key = (idata.attrs["bayescale_kind"], idata.attrs["bayescale_law"])
    if key not in LAWS:
        raise FitFileError(f"{path}: a fit of law {key[0]}/{key[1]}, which is not registered (register its class first)")
    return LAWS[key].from_saved(idata, path)
