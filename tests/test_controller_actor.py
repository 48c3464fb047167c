"""Tests of the deployable actor (lrjax.controller.actor): LSTMActor, actor_step, action_to_lr,
carries, init_controller and the Controller pytree."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _params import numpy_params
from hypothesis import given, settings
from hypothesis import strategies as st

from lrjax._validation import ConfigError
from lrjax.controller import (
    Controller,
    ControllerConfig,
    LSTMActor,
    action_to_lr,
    actor_step,
    init_actor_params,
    init_controller,
    initial_carry,
    reset_carry,
)
from lrjax.features import NormaliserState, init_normaliser

KEY = jax.random.key(0)


def _untrained(config):
    """Like ``init_controller(key, config)``: numpy-drawn LSTM weights, and a mean head that
    outputs ``config.initial_action``."""
    params = numpy_params(init_actor_params, KEY, config)
    head = {
        "kernel": jnp.zeros_like(params["mean"]["kernel"]),
        "bias": jnp.full((1,), config.initial_action, jnp.float32),
    }
    params = {**params, "mean": head, "log_std": jnp.float32(config.log_std_init)}
    return Controller(config=config, params=params, normaliser=init_normaliser(config.obs_size))


CTRL = _untrained(ControllerConfig())  # the default config, untrained


# ------------------------------------------------------------------------------------------------
# action_to_lr.

_actions = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0.0, 1e30, -1e30, float("inf"), float("-inf"), float("nan")]),
)


@settings(max_examples=60, deadline=None)
@given(
    u=_actions,
    log_lo=st.floats(-12.0, 1.0),
    span=st.floats(1e-3, 12.0),
    alpha=st.floats(1.0001, 100.0),
    pos=st.floats(0.0, 1.0),
    mode=st.sampled_from(["absolute", "scale"]),
)
def test_action_to_lr_always_within_bounds(u, log_lo, span, alpha, pos, mode):
    lo, hi = 10.0**log_lo, 10.0 ** (log_lo + span)
    config = ControllerConfig(
        action_mode=mode, lr_min=lo, lr_max=hi, alpha=alpha, initial_lr=math.sqrt(lo * hi)
    )
    prev = np.float32(np.clip(lo * (hi / lo) ** pos, lo, hi))
    lr = action_to_lr(jnp.float32(u), prev, config)
    assert lr.dtype == jnp.float32 and lr.shape == ()
    assert np.float32(lo) <= lr <= np.float32(hi), (u, lo, hi, float(lr))


def test_action_to_lr_formulas():
    cfg = ControllerConfig(lr_min=1e-4, lr_max=1e-2, initial_lr=1e-3)
    np.testing.assert_allclose(action_to_lr(0.0, 0.5, cfg), 1e-3, rtol=1e-5)
    np.testing.assert_allclose(action_to_lr(jnp.inf, 0.5, cfg), 1e-2, rtol=1e-6)
    np.testing.assert_allclose(action_to_lr(-jnp.inf, 0.5, cfg), 1e-4, rtol=1e-6)
    np.testing.assert_allclose(action_to_lr(jnp.nan, 0.5, cfg), 1e-3, rtol=1e-5)
    u0 = cfg.replace(initial_lr=3e-3).initial_action
    np.testing.assert_allclose(action_to_lr(u0, 0.5, cfg), 3e-3, rtol=1e-5)
    sc = cfg.replace(action_mode="scale", alpha=1.05)
    np.testing.assert_allclose(action_to_lr(jnp.inf, 1e-3, sc), 1.05e-3, rtol=1e-6)
    np.testing.assert_allclose(action_to_lr(-jnp.inf, 1e-3, sc), 1e-3 / 1.05, rtol=1e-6)
    np.testing.assert_allclose(action_to_lr(0.5, 1e-3, sc), 1e-3 * 1.05 ** np.tanh(0.5), rtol=1e-6)
    np.testing.assert_allclose(action_to_lr(10.0, 1e-2, sc), 1e-2, rtol=1e-6)  # clipped
    np.testing.assert_allclose(action_to_lr(jnp.nan, 2e-3, sc), 2e-3, rtol=1e-6)  # NaN = keep
    assert action_to_lr(jnp.zeros((4, 2)), 1e-3, sc).shape == (4, 2)


# ------------------------------------------------------------------------------------------------
# The actor, its carry and the Controller.


def test_actor_shapes_and_carry():
    cfg = CTRL.config
    carry = initial_carry(cfg)
    assert len(carry) == 2 and carry[0][0].shape == (20,)
    done = jnp.asarray([True, False, True, False, False])

    @jax.jit
    def run(params):
        one = actor_step(params, initial_carry(cfg), jnp.ones(1), cfg)
        batched = actor_step(params, initial_carry(cfg, (5,)), jnp.ones((5, 1)), cfg)
        return one, batched, reset_carry(batched[0], done, cfg)

    (_, mean, log_std), (batched, bmean, blog_std), reset = run(CTRL.params)
    assert mean.shape == () and log_std.shape == ()
    np.testing.assert_allclose(log_std, cfg.log_std_init)
    assert bmean.shape == (5,) and blog_std.shape == (5,) and batched[1][1].shape == (5, 20)
    assert any(np.abs(np.asarray(h)).sum() > 0 for pair in batched for h in pair)
    assert np.all(np.asarray(reset[0][0][0]) == 0) and np.all(reset[0][0][1] == batched[0][0][1])
    with pytest.raises(ConfigError, match=r"expected \(\.\.\., 1\)"):
        actor_step(CTRL.params, carry, jnp.ones(3), cfg)
    assert isinstance(LSTMActor(), nn.Module) and LSTMActor().layers == 2


def test_init_controller_structure():
    cfg = ControllerConfig.paper_a(lstm_layers=3, lstm_units=5)
    ctrl = jax.eval_shape(lambda k: init_controller(k, cfg), KEY)  # traced, nothing compiled
    assert isinstance(ctrl, Controller) and ctrl.config == cfg
    p = ctrl.params
    assert set(p) == {"lstm_0", "lstm_1", "lstm_2", "mean", "log_std"}
    assert p["lstm_0"]["ii"]["kernel"].shape == (7, 5) and p["lstm_2"]["hi"]["kernel"].shape == (
        5,
        5,
    )
    assert p["mean"]["kernel"].shape == (5, 1) and p["log_std"].shape == ()
    with pytest.raises(ConfigError, match="expected a ControllerConfig"):
        init_controller(KEY, {"lstm_units": 5})


def test_init_controller_has_fresh_normaliser_statistics():
    cfg = ControllerConfig(lstm_layers=1, lstm_units=4, features=("train_loss", "log_lr"))
    ctrl = init_controller(KEY, cfg)  # a tiny actor: its initialisers compile in seconds
    assert isinstance(ctrl.normaliser, NormaliserState)
    for leaf, dtype in zip(ctrl.normaliser, (jnp.float32, jnp.float32, jnp.int32), strict=True):
        assert leaf.shape == (cfg.obs_size,) == (2,) and leaf.dtype == dtype
        assert np.all(np.asarray(leaf) == 0)


def test_controller_is_a_pytree():
    leaves = jax.tree.leaves(CTRL)
    # The params' leaves and the normaliser's mean, var and count; the config is static.
    assert (
        len(leaves)
        == len(jax.tree.leaves(CTRL.params)) + len(CTRL.normaliser)
        == (len(jax.tree.leaves(CTRL.params)) + 3)
    )

    @jax.jit
    def act(c):
        carry, mean, _ = actor_step(c.params, initial_carry(c.config), jnp.zeros(1), c.config)
        return carry, action_to_lr(mean, 1e-3, c.config)

    carry, lr = act(CTRL)
    np.testing.assert_allclose(lr, 1e-3, rtol=0.05)
    assert jax.tree.structure(carry) == jax.tree.structure(initial_carry(CTRL.config))
    for name in ("step", "act", "initial_carry"):  # removed: use the functions instead
        assert not hasattr(CTRL, name), name
    moved = jax.tree.map(lambda x: x + 1, CTRL)
    assert moved.config == CTRL.config and isinstance(moved.normaliser, NormaliserState)
    np.testing.assert_array_equal(moved.normaliser.count, CTRL.normaliser.count + 1)
