"""One NaN minibatch in a user's chain costs one step, not the run: skip_nonfinite keeps every
transform's state (Adam's moments, momentum, the controller's) as it was."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrjax.controller import (
    ControllerConfig,
    controller_state,
    current_lr,
    init_controller,
    scale_by_controller,
    skip_nonfinite,
)

CONTROLLER = init_controller(jax.random.key(0), ControllerConfig(steps_per_action=1))
X = jax.random.normal(jax.random.key(1), (64, 3))
Y = X @ jnp.array([1.0, -2.0, 0.5])


def _loss(params, poison):
    pred = X @ params["w"] + params["b"]
    return jnp.mean(((pred - Y) * (1.0 + poison)) ** 2)  # poison 0, or NaN: NaN loss and grads


def _chain(first):
    return optax.chain(optax.clip_by_global_norm(1.0), first, scale_by_controller(CONTROLLER))


def _assert_same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def _train(tx, poisons):
    params = {"w": jnp.zeros(3), "b": jnp.zeros(())}
    state = tx.init(params)

    @jax.jit
    def step(params, state, poison):
        loss, grads = jax.value_and_grad(_loss)(params, poison)
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state, loss

    losses = []
    for poison in poisons:
        params, state, loss = step(params, state, jnp.float32(poison))
        losses.append(float(loss))
    return params, state, losses


@pytest.mark.parametrize(
    "first", [optax.scale_by_adam(), optax.trace(decay=0.9)], ids=["adam", "momentum"]
)
def test_a_nan_minibatch_is_skipped_by_the_whole_chain(first):
    clean = [0.0] * 8
    with_nan = clean[:4] + [np.nan] + clean[4:]
    # Without the wrapper the NaN enters the first transform's state: training stops for good.
    stuck, stuck_state, _ = _train(_chain(first), with_nan)
    assert int(controller_state(stuck_state).skipped) == 5  # the bad step and all after it
    # With it, the bad step is a no-op: the run equals the run without that minibatch.
    tx = skip_nonfinite(_chain(first))
    params, state, losses = _train(tx, with_nan)
    reference, ref_state, ref_losses = _train(skip_nonfinite(_chain(first)), clean)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(reference), strict=True):
        np.testing.assert_array_equal(a, b)
    _assert_same(state.inner_state, ref_state.inner_state)  # moments, LR, LSTM carry, counts
    assert int(state.skipped) == 1 and int(ref_state.skipped) == 0
    assert losses[-1] < losses[0] and losses[-1] == ref_losses[-1]
    assert float(current_lr(state)) == float(current_lr(ref_state))


def test_a_non_finite_loss_or_output_is_skipped_too():
    tx = skip_nonfinite(optax.chain(optax.scale_by_adam(), scale_by_controller(CONTROLLER)))
    params = {"w": jnp.ones(3), "b": jnp.zeros(())}
    state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, new = tx.update(grads, state, params, value=jnp.float32(jnp.inf))
    assert all(float(jnp.abs(u).max()) == 0 for u in jax.tree.leaves(updates))
    assert int(new.skipped) == 1
    _assert_same(new.inner_state, state.inner_state)
    # An overflow inside the chain (finite input, infinite output) is caught as well.
    huge = skip_nonfinite(optax.chain(optax.scale(1e38), optax.scale(1e38)))
    out, huge_state = huge.update(grads, huge.init(params), params)
    assert int(huge_state.skipped) == 1 and all(
        float(jnp.abs(u).max()) == 0 for u in jax.tree.leaves(out)
    )
