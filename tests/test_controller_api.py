"""What a user cannot get silently wrong: which layer the controller reads, the steps it skipped,
and moving a controller's start and bounds (issue 29's API points)."""

import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrjax
from lrjax import tasks, training
from lrjax._validation import ConfigError
from lrjax.controller import (
    ControllerConfig,
    SkippingWarning,
    controlled_sgd,
    current_lr,
    diagnostics,
    init_controller,
    scale_by_controller,
    skip_nonfinite,
    skipped_steps,
    warn_if_skipping,
)
from lrjax.features import FeatureSpec, find_last_layer
from lrjax.testing.faults import FaultyTask


def _dense(*names_and_shapes):
    return {
        "params": {
            n: {"kernel": jnp.full(shape, float(i))}
            for i, (n, shape) in enumerate(names_and_shapes)
        }
    }


# ------------------------------------------------------------------------------------------------
# The output layer: found by name, or named by the user; never a silent guess.


def test_a_layer_named_for_output_is_the_last_layer():
    # natural order alone would pick "hidden" (after "classifier"): the name says otherwise
    params = _dense(("hidden", (4, 64)), ("classifier", (64, 10)))
    assert find_last_layer(params).shape == (64, 10)


def test_flax_auto_names_take_the_last_dense_layer():
    params = _dense(
        ("Conv_0", (3, 3, 1, 8)),
        ("Conv_1", (3, 3, 8, 8)),
        ("Dense_0", (8, 32)),
        ("Dense_1", (32, 10)),
    )
    assert find_last_layer(params).shape == (32, 10)
    # lrjax's own networks name their output layer "logits"
    task = tasks.get_task("fashion_mlp")
    params = task.init(jax.random.key(0))
    assert find_last_layer(params).shape[-1] == 10


def test_names_that_do_not_tell_are_an_error_naming_the_fix():
    params = _dense(("hidden", (4, 64)), ("top", (64, 10)))
    with pytest.raises(
        ConfigError, match=r"params/hidden/kernel, params/top/kernel.*last_layer_path="
    ):
        find_last_layer(params)
    assert find_last_layer(params, "params/top/kernel").shape == (64, 10)


class _Named(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(8, name="encoder")(x))
        return nn.Dense(3, name="top")(x)


def test_scale_by_controller_takes_the_output_layer_by_path():
    config = ControllerConfig(
        features=FeatureSpec(("train_loss", "last_layer_mean"), normaliser="none")
    )
    controller = init_controller(jax.random.key(0), config)
    model = _Named()
    params = model.init(jax.random.key(1), jnp.ones((2, 5)))
    grads = jax.tree.map(jnp.ones_like, params)

    tx = scale_by_controller(controller)
    with pytest.raises(ConfigError, match="last_layer_path="):
        tx.update(grads, tx.init(params), params, value=1.0)

    for path in ("params/top/kernel", "params/encoder/kernel"):
        for tx in (
            scale_by_controller(controller, last_layer_path=path),
            controlled_sgd(controller, momentum=0.9, last_layer_path=path),
        ):
            _, state = jax.jit(lambda s, tx=tx: tx.update(grads, s, params, value=1.0))(
                tx.init(params)
            )
            obs = lrjax.controller_state(state).obs
            kernel = params["params"][path.split("/")[1]]["kernel"]
            np.testing.assert_allclose(obs[1], jnp.mean(kernel), rtol=1e-5, atol=1e-7)
    with pytest.raises(ConfigError, match="last_layer_path"):
        scale_by_controller(controller, last_layer_path="")


# ------------------------------------------------------------------------------------------------
# Skipped steps: visible where a user looks.

PARAMS = {"w": jnp.ones(3)}
GRADS = {"w": jnp.full(3, 0.5)}


def _run(tx, losses):
    state = tx.init(PARAMS)
    for loss in losses:
        _, state = tx.update(GRADS, state, PARAMS, value=jnp.asarray(loss))
    return state


def test_diagnostics_count_every_skipping_wrapper():
    controller = init_controller(jax.random.key(0))
    losses = [1.0, np.nan, 0.9, np.inf, 0.8]
    d = diagnostics(_run(scale_by_controller(controller), losses))
    assert (int(d.steps), int(d.skipped)) == (5, 2)
    np.testing.assert_allclose(d.skipped_fraction, 0.4)
    np.testing.assert_allclose(
        d.learning_rate, current_lr(_run(scale_by_controller(controller), losses))
    )

    # a NaN gradient caught by an outer wrapper never reaches the controller: counted there
    bad = {"w": jnp.full(3, jnp.nan)}
    for wrap in (skip_nonfinite, lambda tx: optax.apply_if_finite(tx, max_consecutive_errors=99)):
        tx = wrap(optax.with_extra_args_support(scale_by_controller(controller)))
        state = tx.init(PARAMS)
        for g, loss in ((GRADS, 1.0), (bad, 1.0), (GRADS, np.nan)):
            _, state = tx.update(g, state, PARAMS, value=jnp.asarray(loss))
        d = diagnostics(state)
        assert (int(d.steps), int(d.skipped)) == (3, 2), wrap
    assert int(skipped_steps(optax.sgd(0.1).init(PARAMS))) == 0
    d = diagnostics(scale_by_controller(controller).init(PARAMS))
    assert (int(d.steps), float(d.skipped_fraction)) == (0, 0.0)


def test_warn_if_skipping_warns_above_the_threshold_only():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not warn_if_skipping(np.array([0, 1]), 100)  # 1% is not above 1%
    with pytest.warns(SkippingWarning, match=r"skipped 30 of 100 steps \(30.0%\).*1 of 2"):
        assert warn_if_skipping(np.array([0, 30]), 100)
    with pytest.raises(ConfigError, match="threshold"):
        warn_if_skipping(0, 10, threshold=2.0)


def test_train_reports_and_warns_about_skipped_steps():
    task = tasks.get_task("regression_2d")
    data = task.load_data(jax.random.key(0))
    controller = init_controller(jax.random.key(0), ControllerConfig.loss_only())
    tx = scale_by_controller(controller, total_steps=40)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippingWarning)
        healthy = training.train_one(task, tx, jax.random.key(1), data, 40)
    assert healthy.skipped.tolist() == [0]
    faulty = FaultyTask(task, rate=0.5, kinds=("nan",))
    with pytest.warns(SkippingWarning, match="of 40 steps"):
        result = training.train_one(faulty, tx, jax.random.key(1), data, 40)
    assert 5 < int(result.skipped[0]) < 35
    assert result.select(0).skipped == result.skipped[0]


# ------------------------------------------------------------------------------------------------
# Moving a controller's start and narrowing its bounds: one call each.


def test_with_initial_lr_moves_the_bounds_with_the_start():
    controller = lrjax.pretrained.load("mlp_family_sgd")
    moved = controller.with_initial_lr(0.01)
    c, m = controller.config, moved.config
    assert m.initial_lr == 0.01
    np.testing.assert_allclose([m.lr_min / c.lr_min, m.lr_max / c.lr_max], [0.1, 0.1])
    assert moved.params is controller.params


def test_with_lr_bounds_keeps_the_applied_lr_inside_them():
    controller = lrjax.pretrained.load("mlp_family_sgd")
    narrowed = controller.with_lr_bounds(0.02, 0.05)
    assert (narrowed.config.lr_min, narrowed.config.lr_max) == (0.02, 0.05)
    assert narrowed.config.initial_lr == 0.05  # its start, 0.1, clipped into the new range
    assert controller.with_lr_bounds(1e-3, 1.0).config.initial_lr == controller.config.initial_lr
    task = tasks.get_task("regression_2d")
    data = task.load_data(jax.random.key(0))
    tx = scale_by_controller(narrowed, total_steps=200)
    result = training.train_one(task, tx, jax.random.key(2), data, 200)
    lr = result.learning_rate[0]  # the controller's LR (before its base schedule's factor)
    assert np.all((lr >= 0.02 * (1 - 1e-6)) & (lr <= 0.05 * (1 + 1e-6)))
    np.testing.assert_allclose(lr.max(), 0.05, rtol=1e-6)  # it rises, and the cap holds it


@pytest.mark.parametrize(
    "low, high, message",
    [(0.0, 1.0, "lr_min=0.0"), (0.1, 0.01, "lr_min"), (1e-3, float("nan"), "lr_max=nan")],
)
def test_bad_bounds_are_named(low, high, message):
    controller = lrjax.pretrained.load("mlp_family_adam")
    with pytest.raises(ConfigError, match=message):
        controller.with_lr_bounds(low, high)


def test_absolute_controllers_refuse_new_bounds():
    controller = init_controller(jax.random.key(0), ControllerConfig.paper_b())
    with pytest.raises(ConfigError, match="action_mode='absolute'"):
        controller.with_lr_bounds(1e-3, 0.1)
