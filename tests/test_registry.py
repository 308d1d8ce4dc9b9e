"""The law registry, specs and the settings of the fit contract."""

import inspect
import json

import numpy as np
import pandas as pd
import pytest
from pymc_extras.prior import Prior

from bayescale import registry
from bayescale.core.fit import BayesianFit
from bayescale.core.sampling import SAMPLER_DEFAULTS
from bayescale.curves.annealing import AnnealingLaw
from bayescale.sweep.surface import SurfaceFit


def test_every_law_is_registered_once_by_name():
    assert sorted(registry.LAWS) == [("bound", "2d"), ("bound", "curve"), ("bound", "final"), ("curves", "annealing"),
                                     ("curves", "multipower"), ("loss", "chinchilla"), ("sweep", "surface")]
    assert registry.from_spec("annealing").__class__ is AnnealingLaw


def test_a_subclass_is_not_registered_and_cannot_take_its_parents_name():
    class Tweak(AnnealingLaw):
        pass

    assert registry.LAWS[("curves", "annealing")] is AnnealingLaw
    with pytest.raises(ValueError, match="taken by bayescale.curves.annealing.AnnealingLaw"):
        registry.register(Tweak)


def test_a_user_law_registers_under_its_own_name():
    class Tweak(AnnealingLaw):
        law = "annealing_tweak"

    try:
        assert registry.register(Tweak) is Tweak
        assert registry.law_class("curves", "annealing_tweak") is Tweak
    finally:
        del registry.LAWS[("curves", "annealing_tweak")]
    with pytest.raises(ValueError, match="set the class attributes"):
        registry.register(type("Nameless", (BayesianFit,), {}))


@pytest.mark.parametrize("name", registry.spec_names())
def test_a_spec_holds_only_what_differs_from_the_code(name):
    spec = registry.load_spec(name)
    model = registry.from_spec(name)
    defaults = type(model)()
    for prior, value in spec.get("priors", {}).items():
        assert Prior.from_dict(value).to_dict() != defaults.default_priors()[prior].to_dict(), prior
    for key, value in spec.get("model_config", {}).items():
        assert value != defaults.model_config[key], key
    for key, value in spec.get("sampler_config", {}).items():
        assert value != defaults.sampler_config[key], key


def test_spec_priors_rank_between_the_data_and_the_user(tmp_path):
    path = tmp_path / "mine.json"
    sigma = {"dist": "HalfNormal", "kwargs": {"sigma": 0.01}}
    l0 = {"dist": "Normal", "kwargs": {"mu": 3.0, "sigma": 0.5}}
    path.write_text(json.dumps({"kind": "curves", "law": "annealing", "priors": {"sigma": sigma, "L0": l0},
                                "sampler_config": {"draws": 123}}))
    model = registry.from_spec(path)
    model.y = np.log([3.0, 2.9])  # what scaled_priors reads of the data
    priors = model.resolve_priors()
    assert model.prior_sources["sigma"] == "spec" and priors["sigma"].to_dict() == sigma
    assert model.prior_sources["L0"] == "spec"  # the spec's prior beats the one scaled to the data
    assert model.prior_sources["A"] == "default"
    assert model.sampler_config["draws"] == 123 and model.sampler_config["target_accept"] == 0.95
    mine = AnnealingLaw(priors={"L0": l0})
    mine.y = model.y
    mine.resolve_priors()
    assert mine.prior_sources["L0"] == "user"
    plain = AnnealingLaw()
    plain.y = model.y
    plain.resolve_priors()
    assert plain.prior_sources["L0"] == "scaled"


def test_settings_are_checked_and_kept_apart(tmp_path):
    with pytest.raises(ValueError, match="sampler settings go in sampler_config"):
        AnnealingLaw(model_config={"target_accept": 0.9})
    with pytest.raises(TypeError, match="no sampler setting"):
        AnnealingLaw(sampler_config={"warmup_steps": 10})
    with pytest.raises(TypeError, match="no sampler setting"):
        AnnealingLaw().fit(pd.DataFrame(), depth=3)
    assert SurfaceFit().sampler_config == {"sampler": "auto", "draws": 500, "tune": 500, "chains": 4, "target_accept": 0.95}
    old = tmp_path / "old.json"  # a spec in the old form: its "config" would be silently ignored
    old.write_text(json.dumps({"kind": "sweep", "law": "surface", "config": {"window": 0.02}}))
    with pytest.raises(ValueError, match="unknown key"):
        registry.from_spec(old)


def test_seq_len_of_the_spec_reaches_the_sweep_reader():
    rows = pd.DataFrame([{"N": 1e8, "D": 1e9, "lr": 2.0**-k, "bs": 64, "loss": 2.0 + 0.004 * (k - 9) ** 2}
                         for k in range(5, 14)])
    for seq_len in (2048, 1024):
        model = registry.from_spec("sweep", seq_len=seq_len)
        model.prepare(rows)
        assert (model.data["batch_tokens"] == 64 * seq_len).all()


def leading_parameters(function, n: int) -> list:
    return [(p.name, p.default) for p in list(inspect.signature(function).parameters.values())[:n]]


@pytest.mark.parametrize("key", sorted(registry.LAWS))
def test_every_law_has_the_one_fit_contract(key):
    cls, empty = registry.LAWS[key], inspect.Parameter.empty
    assert leading_parameters(cls.predict, 4) == [("self", empty), ("data", empty), ("prob", 0.9), ("kind", "mean")]
    assert leading_parameters(cls.summary, 2) == [("self", empty), ("prob", 0.9)]
    assert leading_parameters(cls.fit, 2) == [("self", empty), ("data", empty)]
    assert cls.predict is not BayesianFit.predict or cls.predict_draws is not BayesianFit.predict_draws
    assert isinstance(cls.version, int) and cls.version >= 1
    assert set(cls().sampler_config) == set(SAMPLER_DEFAULTS)
