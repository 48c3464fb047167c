"""Tests of the hypergradient-descent baselines (lrjax.baselines.hypergradient)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrjax._validation import ConfigError
from lrjax.baselines.hypergradient import AdamHDState, SGDHDState, adam_hd, sgd_hd


def _run_1d(opt, a, x0, steps, jit=True):
    """Runs ``opt`` on f(x) = 0.5 * a * x**2; returns the iterates and the learning rates."""
    x = jnp.array([x0], jnp.float32)
    state = opt.init(x)
    update = jax.jit(opt.update) if jit else opt.update
    xs, lrs = [], []
    for _ in range(steps):
        updates, state = update(a * x, state, x)
        x = optax.apply_updates(x, updates)
        xs.append(float(x[0]))
        lrs.append(float(state.learning_rate))
    return xs, lrs


def test_sgd_hd_three_steps_by_hand():
    # f(x) = 0.5 * 2 * x**2, x0 = 1, alpha0 = 0.1, beta = 0.01.
    xs, lrs = _run_1d(sgd_hd(0.1, hypergrad_lr=0.01), a=2.0, x0=1.0, steps=3)
    # Step 1: g1 = 2, g0 = 0 so alpha1 = 0.1; x1 = 1 - 0.1 * 2 = 0.8.
    # Step 2: g2 = 1.6; alpha2 = 0.1 + 0.01 * (1.6 * 2) = 0.132; x2 = 0.8 - 0.132 * 1.6 = 0.5888.
    # Step 3: g3 = 1.1776; alpha3 = 0.132 + 0.01 * (1.1776 * 1.6) = 0.1508416;
    #         x3 = 0.5888 - 0.1508416 * 1.1776 = 0.41116...
    alpha = [0.1, 0.132, 0.132 + 0.01 * 1.1776 * 1.6]
    x3 = 0.5888 - alpha[2] * 1.1776
    np.testing.assert_allclose(lrs, alpha, rtol=1e-6)
    np.testing.assert_allclose(xs, [0.8, 0.5888, x3], rtol=1e-6)


def test_sgd_hd_dot_product_runs_over_the_whole_pytree():
    opt = sgd_hd(0.5, hypergrad_lr=0.1)
    params = {"u": jnp.array([1.0, 2.0]), "v": jnp.array(3.0)}
    g1 = {"u": jnp.array([1.0, -1.0]), "v": jnp.array(2.0)}
    g2 = {"u": jnp.array([3.0, 1.0]), "v": jnp.array(-0.5)}
    state = opt.init(params)
    _, state = opt.update(g1, state, params)
    updates, state = opt.update(g2, state, params)
    # g2 . g1 = 3 - 1 - 1 = 1, so alpha2 = 0.5 + 0.1 * 1 = 0.6 and u2 = -0.6 * g2.
    np.testing.assert_allclose(state.learning_rate, 0.6, rtol=1e-6)
    np.testing.assert_allclose(updates["u"], [-1.8, -0.6], rtol=1e-6)
    np.testing.assert_allclose(updates["v"], 0.3, rtol=1e-6)


def test_adam_hd_two_steps_by_hand():
    # f(x) = 0.5 * 2 * x**2, x0 = 1, alpha0 = 0.1, beta = 0.01, b1 = 0.9, b2 = 0.999.
    eps = 1e-8
    xs, lrs = _run_1d(adam_hd(0.1, hypergrad_lr=0.01, eps=eps), a=2.0, x0=1.0, steps=2)
    # Step 1: g1 = 2, d0 = 0 so alpha1 = 0.1. m1 = 0.1 * 2 = 0.2, v1 = 0.001 * 4 = 0.004,
    # m_hat = 0.2 / 0.1 = 2, v_hat = 0.004 / 0.001 = 4, d1 = 2 / (2 + eps).
    d1 = 2 / (2 + eps)
    x1 = 1 - 0.1 * d1
    # Step 2: g2 = 2 * x1; alpha2 = alpha1 + beta * g2 * d1.
    g2 = 2 * x1
    alpha2 = 0.1 + 0.01 * g2 * d1
    m2 = 0.9 * 0.2 + 0.1 * g2
    v2 = 0.999 * 0.004 + 0.001 * g2**2
    m_hat2 = m2 / (1 - 0.9**2)
    v_hat2 = v2 / (1 - 0.999**2)
    x2 = x1 - alpha2 * m_hat2 / (math.sqrt(v_hat2) + eps)
    # With x1 = 0.9: g2 = 1.8, alpha2 = 0.118, m2 = 0.36, v2 = 0.007236.
    assert abs(alpha2 - 0.118) < 1e-7 and abs(m2 - 0.36) < 1e-7 and abs(v2 - 0.007236) < 1e-9
    np.testing.assert_allclose(lrs, [0.1, alpha2], rtol=1e-6)
    # float32 bias corrections with b2 = 0.999 (1 - b2 is not exact) cost about 1e-6 relative.
    np.testing.assert_allclose(xs, [x1, x2], rtol=1e-5)


@pytest.mark.parametrize("make", [lambda b: sgd_hd(0.05, hypergrad_lr=b), None])
def test_zero_hypergrad_lr_recovers_the_base_optimizer(make):
    if make is None:
        ours, base = adam_hd(0.05, hypergrad_lr=0.0), optax.adam(0.05)
    else:
        ours, base = make(0.0), optax.sgd(0.05)
    params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array(0.5)}
    s_ours, s_base = ours.init(params), base.init(params)
    for step in range(3):
        grads = jax.tree.map(lambda p, step=step: p * (step + 1.0), params)
        u_ours, s_ours = ours.update(grads, s_ours, params)
        u_base, s_base = base.update(grads, s_base, params)
        for a, b in zip(jax.tree.leaves(u_ours), jax.tree.leaves(u_base), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(s_ours.learning_rate, 0.05)


@pytest.mark.parametrize("opt", [sgd_hd(0.1, hypergrad_lr=0.01), adam_hd(0.1, hypergrad_lr=0.01)])
def test_bfloat16_params_get_bfloat16_updates(opt):
    params = {"w": jnp.ones((3,), jnp.bfloat16), "b": jnp.zeros((2,), jnp.float32)}
    state = opt.init(params)
    update = jax.jit(opt.update)
    for _ in range(2):
        grads = jax.tree.map(lambda p: (0.5 * p + 0.25).astype(p.dtype), params)
        updates, state = update(grads, state, params)
        assert updates["w"].dtype == jnp.bfloat16 and updates["b"].dtype == jnp.float32
        params = optax.apply_updates(params, updates)
    assert params["w"].dtype == jnp.bfloat16
    assert state.learning_rate.dtype == jnp.float32 and state.learning_rate.shape == ()
    for tree in state[1:] if isinstance(state, SGDHDState) else state[2:]:
        assert jax.tree.map(lambda x: x.dtype, tree) == {"w": jnp.bfloat16, "b": jnp.float32}
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(state))


@pytest.mark.parametrize("make", [sgd_hd, adam_hd])
def test_jit_matches_eager(make):
    opt = make(0.1, hypergrad_lr=0.01)
    xs_eager, lrs_eager = _run_1d(opt, a=2.0, x0=1.0, steps=3, jit=False)
    xs_jit, lrs_jit = _run_1d(opt, a=2.0, x0=1.0, steps=3, jit=True)
    np.testing.assert_allclose(xs_jit, xs_eager, rtol=1e-6)
    np.testing.assert_allclose(lrs_jit, lrs_eager, rtol=1e-6)


@pytest.mark.parametrize("make", [sgd_hd, adam_hd])
def test_vmap_over_initial_learning_rates(make):
    initial_lrs = [0.01, 0.1, 0.3]

    def train(lr0):
        opt = make(lr0, hypergrad_lr=0.01)
        x = jnp.array([1.0, -0.5])
        state = opt.init(x)

        def step(carry, _):
            x, state = carry
            updates, state = opt.update(2.0 * x, state, x)
            return (optax.apply_updates(x, updates), state), None

        (x, state), _ = jax.lax.scan(step, (x, state), None, length=3)
        return x, state.learning_rate

    xs, lrs = jax.jit(jax.vmap(train))(jnp.array(initial_lrs))
    assert xs.shape == (3, 2) and lrs.shape == (3,)
    for i, lr0 in enumerate(initial_lrs):
        x_i, lr_i = train(lr0)  # Python float: the same run, one learning rate at a time.
        np.testing.assert_allclose(xs[i], x_i, rtol=1e-5)
        np.testing.assert_allclose(lrs[i], lr_i, rtol=1e-5)
    assert len(set(np.asarray(lrs).tolist())) == 3


def test_state_types():
    x = jnp.ones((2,))
    sgd_state = sgd_hd(0.1).init(x)
    adam_state = adam_hd(jnp.array(0.1)).init(x)
    assert isinstance(sgd_state, SGDHDState) and isinstance(adam_state, AdamHDState)
    for state in (sgd_state, adam_state):
        assert state.learning_rate.dtype == jnp.float32 and state.learning_rate.shape == ()
    assert adam_state.count.dtype == jnp.int32


@pytest.mark.parametrize(
    "make",
    [
        lambda: sgd_hd(0.0),
        lambda: sgd_hd(-0.1),
        lambda: sgd_hd(float("inf")),
        lambda: sgd_hd(0.1, hypergrad_lr=-1e-3),
        lambda: adam_hd(0.0),
        lambda: adam_hd(0.1, hypergrad_lr=-1e-7),
        lambda: adam_hd(0.1, b1=1.0),
        lambda: adam_hd(0.1, b1=-0.1),
        lambda: adam_hd(0.1, b2=1.0),
        lambda: adam_hd(0.1, b2=1.5),
        lambda: adam_hd(0.1, eps=0.0),
        lambda: adam_hd(0.1, eps=-1e-8),
    ],
)
def test_invalid_arguments_raise_config_error(make):
    with pytest.raises(ConfigError):
        make()


def test_array_arguments_are_not_validated():
    # Arrays may be traced, so they are accepted as they are; zero hypergrad_lr and b1 = 0 are
    # valid numbers.
    sgd_hd(jnp.array(0.1), hypergrad_lr=jnp.array(1e-3))
    adam_hd(jnp.array(0.1), hypergrad_lr=0.0, b1=0.0, b2=jnp.array(0.999), eps=jnp.array(1e-8))
