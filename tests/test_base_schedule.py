"""ControllerConfig.base_schedule: the controller's LR applied times a schedule over the run
(lrjax.controller.transform, lrjax.env); the environment's side is pinned by
tests/test_env.py::test_saved_controller_in_a_plain_loop_applies_the_env_lrs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrjax._validation import ConfigError
from lrjax.algos.actor_critic import ActorCriticEnvConfig
from lrjax.controller import (
    ControllerConfig,
    controller_state,
    current_lr,
    init_controller,
    scale_by_controller,
)


def test_the_cosine_factor_runs_from_one_to_zero_and_constant_is_one():
    cosine = ControllerConfig.loss_only(base_schedule="cosine")
    p = jnp.array([0.0, 0.25, 0.5, 1.0, 1.5])
    np.testing.assert_allclose(
        cosine.schedule_factor(p), [1.0, 0.5 + 0.5 * np.cos(np.pi / 4), 0.5, 0.0, 0.0], atol=1e-6
    )
    np.testing.assert_array_equal(ControllerConfig.loss_only().schedule_factor(p), np.ones(5))


def test_each_update_is_the_controllers_lr_times_the_cosine_at_its_last_action():
    """k = 2 over 8 steps: the factor is set when the controller acts (steps 0, 2, 4, 6: p =
    0, 1/4, 1/2, 3/4) and held in between; the update is -lr * s(p) * g."""
    config = ControllerConfig.loss_only(base_schedule="cosine", steps_per_action=2)
    controller = init_controller(jax.random.key(0), config)
    controller = controller.replace(params=jax.tree.map(lambda x: 30 * x, controller.params))
    tx = scale_by_controller(controller, total_steps=8)
    grads = {"w": jnp.ones(3)}
    state = tx.init(grads)
    update = jax.jit(tx.update)
    factors = []
    for step in range(8):
        updates, state = update(grads, state, value=jnp.float32(2.0 - 0.1 * step))
        own = controller_state(state).learning_rate
        np.testing.assert_allclose(updates["w"], -current_lr(state) * np.ones(3), rtol=1e-6)
        factors.append(float(current_lr(state) / own))
    expected = 0.5 * (1 + np.cos(np.pi * np.repeat([0, 2, 4, 6], 2) / 8))
    np.testing.assert_allclose(factors, expected, rtol=1e-5)


def test_a_cosine_schedule_needs_the_runs_length_and_is_refused_by_the_actor_critic():
    controller = init_controller(
        jax.random.key(0), ControllerConfig.paper_a(base_schedule="cosine")
    )
    with pytest.raises(ConfigError, match="total_steps=None is not allowed.*base_schedule"):
        scale_by_controller(controller, predictions_shape=(32,))
    with pytest.raises(ConfigError, match="base_schedule='cosine' is not allowed"):
        ActorCriticEnvConfig(controller=ControllerConfig.paper_b(base_schedule="cosine"))
