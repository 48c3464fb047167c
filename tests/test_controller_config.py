"""Tests of the controller's config (lrjax.controller.config)."""

import pytest

from lrjax._validation import ConfigError
from lrjax.controller import ControllerConfig
from lrjax.features import PAPER_A_FEATURES


def test_config_defaults():
    c = ControllerConfig()
    assert (c.lstm_layers, c.lstm_units, c.steps_per_action) == (2, 20, 1)
    assert (c.lr_min, c.lr_max, c.alpha, c.initial_lr) == (1e-5, 1e-1, 1.05, 1e-3)
    assert c.action_mode == "absolute" and c.features.names == ("train_loss",)
    a = ControllerConfig.paper_a()
    assert a.action_mode == "scale" and a.features.names == PAPER_A_FEATURES and a.alpha == 1.05
    b = ControllerConfig.paper_b(lstm_units=8)
    assert b.action_mode == "absolute" and (b.lr_min, b.lr_max) == (1e-4, 1.0)
    assert b.lstm_units == 8
    assert hash(c) == hash(ControllerConfig()) and c == ControllerConfig()
    assert c.replace(steps_per_action=3).steps_per_action == 3


def test_paper_steps_per_action():
    # Paper A acts every 10 optimizer steps unless told otherwise; paper B at every step.
    assert ControllerConfig.paper_a().steps_per_action == 10
    assert ControllerConfig.paper_a(steps_per_action=4).steps_per_action == 4
    assert ControllerConfig.paper_b().steps_per_action == 1
    assert not hasattr(ControllerConfig(), "act_every")
    with pytest.raises(TypeError):
        ControllerConfig(act_every=2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lr_min": 0.1, "lr_max": 0.1}, "lr_min=0.1 must be smaller than lr_max=0.1"),
        ({"lr_min": 1.0, "lr_max": 0.5, "initial_lr": 0.7}, "lr_min=1.0 must be smaller"),
        ({"lr_min": 0.0}, "lr_min=0.0"),
        ({"lr_max": float("nan")}, "lr_max=nan"),
        ({"alpha": 1.0}, "alpha=1.0"),
        ({"alpha": 0.5}, "alpha=0.5"),
        ({"alpha": float("inf")}, "alpha=inf"),
        ({"alpha": True}, "alpha=True"),
        ({"action_mode": "logit"}, "action_mode='logit'"),
        ({"base_schedule": "linear"}, "base_schedule='linear'"),
        ({"initial_lr": 1.0}, "initial_lr=1.0"),
        ({"steps_per_action": 0}, "steps_per_action=0"),
        ({"steps_per_action": 1.5}, "steps_per_action=1.5"),
        ({"actions_per_run": 0}, "actions_per_run=0"),
        ({"lstm_layers": 0}, "lstm_layers=0"),
        ({"lstm_units": -3}, "lstm_units=-3"),
        ({"log_std_init": 10.0}, "log_std_init=10.0"),
        ({"features": ("train_loss", "nope")}, "features='nope'"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match.replace("(", r"\(")) as info:
        ControllerConfig(**kwargs)
    assert isinstance(info.value, ValueError)


def test_actions_per_run_sets_the_interval_from_the_runs_length():
    fixed = ControllerConfig(steps_per_action=3)
    assert fixed.actions_per_run is None and fixed.steps_for(1000) == fixed.steps_for(None) == 3
    per_run = ControllerConfig(steps_per_action=3, actions_per_run=40)
    assert [per_run.steps_for(n) for n in (400, 1000, 3000, 41, 7)] == [10, 25, 75, 1, 1]
    with pytest.raises(ConfigError, match="total_steps=None"):
        per_run.steps_for(None)
    assert ControllerConfig.from_json(per_run.to_json()) == per_run
    old = {k: v for k, v in fixed.to_json().items() if k != "actions_per_run"}
    assert ControllerConfig.from_json(old) == fixed  # saved before the field existed


def test_config_json_round_trip():
    c = ControllerConfig.paper_a(steps_per_action=2, features=("train_loss", "log_lr"))
    assert ControllerConfig.from_json(c.to_json()) == c
    assert c.to_json()["steps_per_action"] == 2 and "act_every" not in c.to_json()
    with pytest.raises(ConfigError, match="unknown keys"):
        ControllerConfig.from_json({**c.to_json(), "gamma": 0.9})


@pytest.mark.parametrize("data", [None, [], "config", 3])
def test_config_from_json_needs_an_object(data):
    with pytest.raises(ConfigError, match="expected an object"):
        ControllerConfig.from_json(data)
