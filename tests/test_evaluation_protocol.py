"""The held-out protocol (lrjax.evaluation.protocol): controllers of one config in one program,
the baseline families (schedule shapes over the environment's controlled optimizers), tuning
that extends a grid past an edge winner and refines around the winner."""

import dataclasses
import math

import jax
import numpy as np
import pytest
from _rl_problem import CONTROLLER, make_env, regression_problem

from lrjax import evaluation
from lrjax._validation import ConfigError
from lrjax.controller import init_controller
from lrjax.evaluation import BASELINES, Baseline, protocol, schedules
from lrjax.training import CONTROLLED_OPTIMIZERS

SCALE = CONTROLLER.replace(action_mode="scale", alpha=1.5, initial_lr=0.05)


def _controllers():
    return {
        "a": init_controller(jax.random.key(0), CONTROLLER),
        "b": init_controller(jax.random.key(1), SCALE),  # another config: its own environment
        "c": init_controller(jax.random.key(2), CONTROLLER),  # shares a's program
    }


def test_protocol_runs_controllers_of_one_config_in_one_program():
    task, data = regression_problem()
    env = make_env(task, horizon=3)
    cs = _controllers()
    methods = protocol.evaluate_methods(env, cs, [], jax.random.key(3), data, 2)
    assert [m.name for m in methods] == ["a", "b", "c"]
    assert not np.allclose(methods[0].episodes.lr, methods[2].episodes.lr)  # own params


def test_a_momentum_controller_runs_under_the_momentum_it_sets():
    """A controller that sets the momentum is evaluated under SGD with momentum whatever the
    environment's optimizer (it is that optimizer's momentum), as its own environment runs it."""
    from lrjax.evaluation import run_controllers
    from lrjax.features import FeatureSpec

    task, data = regression_problem()
    features = FeatureSpec(features=("train_loss", "log_lr"), normaliser="none")
    config = CONTROLLER.replace(features=features, momentum_control=True)
    controller = init_controller(jax.random.key(5), config)
    key = jax.random.key(6)
    env = make_env(task, horizon=3)  # SGD: not a momentum the controller could set
    with pytest.raises(ConfigError, match="momentum_control"):
        run_controllers(make_env(task, config, horizon=3), [controller], key, data, 2)
    (method,) = protocol.evaluate_methods(env, {"m": controller}, [], key, data, 2)
    momentum_env = make_env(task, config, horizon=3, optimizer="momentum")
    (alone,) = run_controllers(momentum_env, [controller], key, data, 2)
    np.testing.assert_allclose(method.episodes.val_loss, alone.val_loss, rtol=1e-5)


def test_baseline_families_are_schedules_of_the_controlled_optimizers():
    assert set(BASELINES) == {"constant", "step_decay", "cosine_warmup", "adam", "momentum"}
    for name, b in BASELINES.items():
        assert b.name == name and b.shape in schedules.SHAPES
        assert b.optimizer in CONTROLLED_OPTIMIZERS
        np.testing.assert_array_equal(b.schedule(0.3, 40), schedules.shape_lrs(b.shape, 0.3, 40))
    np.testing.assert_array_equal(
        BASELINES["step_decay"].schedule(1.0, 8), schedules.step_decay_lrs(1.0, 8)
    )
    with pytest.raises(ConfigError, match="shape='cosine'"):
        Baseline("x", "cosine", "sgd", (0.1,))
    with pytest.raises(ConfigError, match="optimizer='rmsprop'"):
        Baseline("x", "constant", "rmsprop", (0.1,))


def test_tuning_extends_an_edge_winner_and_refines_around_the_best():
    task, data = regression_problem()
    env = make_env(task, horizon=4)
    # 1e-3 and 3e-3 are far too small on this problem: the winner is the grid's top end.
    small = dataclasses.replace(BASELINES["constant"], grid=(1e-3, 3e-3))
    (tuned,) = evaluation.tune_baselines(env, [small], jax.random.key(4), data, 2)
    assert len(tuned.lrs) > 2 and max(tuned.lrs) > 3e-3  # grown past the edge
    best = tuned.best_lr
    assert tuned.validation_loss[tuned.lrs.index(best)] == min(tuned.validation_loss)
    # refined at a quarter decade on both sides of the winner before refinement, which is
    # the best or the best's neighbour at a quarter decade
    quarter = 10.0**0.25
    has = lambda lr: any(math.isclose(lr, x, rel_tol=1e-9) for x in tuned.lrs)
    centres = [c for c in tuned.lrs if has(c / quarter) and has(c * quarter)]
    assert any(
        math.isclose(best, c * q, rel_tol=1e-9) for c in centres for q in (1, quarter, 1 / quarter)
    )
    assert tuned.to_json()["best_lr"] == best
