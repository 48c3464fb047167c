"""Tests of the vSGD-l baseline (lrjax.baselines.vsgd) against hand-computed steps."""

from __future__ import annotations

import functools
from fractions import Fraction as F

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrjax._validation import ConfigError
from lrjax.baselines.vsgd import VSGDState, vsgd

# Tiny epsilon so that the hand computations below, which leave it out, are exact to ~1e-12.
EPS = 1e-12


def _run_1d(opt, a, x0, steps, **extra):
    """Runs ``opt`` on f(x) = 0.5 * a * x**2; returns the iterates and the states."""
    x = jnp.array([x0], jnp.float32)
    state = opt.init(x)
    update = jax.jit(opt.update)
    xs, states = [], []
    for _ in range(steps):
        updates, state = update(a * x, state, x, **extra)
        x = optax.apply_updates(x, updates)
        xs.append(float(x[0]))
        states.append(state)
    return xs, states


def _check_states(states, expected_states):
    for state, expected in zip(states, expected_states, strict=True):
        got = [state.grad_avg[0], state.sq_grad_avg[0], state.curv_avg[0], state.memory[0]]
        np.testing.assert_allclose(got, [float(e) for e in expected], rtol=1e-6)


def test_three_steps_by_hand_plain_secant():
    # f(x) = 0.5 * 3 * x**2, x0 = 1, slow start C = 2, first-step curvature h0 = 1.
    xs, states = _run_1d(vsgd(epsilon=EPS, noise_gate=False), a=3.0, x0=1.0, steps=3)

    # Step 1: g1 = 3; tau = 1, so the averages are the sample; then v_bar, h_bar times C = 2.
    g_bar1, v_bar1, h_bar1 = F(3), 2 * F(3) ** 2, 2 * F(1)  # 3, 18, 2
    r1 = g_bar1**2 / v_bar1  # 9 / 18 = 1/2
    x1 = 1 - (r1 / h_bar1) * 3  # eta = 1/4, x1 = 1 - 3/4 = 1/4
    tau1 = (1 - r1) * 1 + 1  # 3/2
    assert (x1, tau1) == (F(1, 4), F(3, 2))

    # Step 2: g2 = 3 * 1/4 = 3/4; secant |3/4 - 3| / |1/4 - 1| = 3; 1/tau = 2/3.
    g_bar2 = F(1, 3) * 3 + F(2, 3) * F(3, 4)  # 3/2
    v_bar2 = F(1, 3) * 18 + F(2, 3) * F(3, 4) ** 2  # 51/8
    h_bar2 = F(1, 3) * 2 + F(2, 3) * 3  # 8/3
    r2 = g_bar2**2 / v_bar2  # 6/17
    x2 = x1 - (r2 / h_bar2) * F(3, 4)  # eta = 9/68, x2 = 1/4 - 27/272 = 41/272
    tau2 = (1 - r2) * tau1 + 1  # 67/34
    assert (g_bar2, v_bar2, h_bar2, r2) == (F(3, 2), F(51, 8), F(8, 3), F(6, 17))
    assert (x2, tau2) == (F(41, 272), F(67, 34))

    # Step 3: g3 = 3 * x2; the secant is exactly 3 again (deterministic quadratic).
    g3 = 3 * x2
    assert abs(g3 - 3 * x1) / abs(x2 - x1) == 3
    w = 1 / tau2  # 34/67
    g_bar3 = (1 - w) * g_bar2 + w * g3
    v_bar3 = (1 - w) * v_bar2 + w * g3**2
    h_bar3 = (1 - w) * h_bar2 + w * 3
    r3 = g_bar3**2 / v_bar3
    x3 = x2 - (r3 / h_bar3) * g3
    tau3 = (1 - r3) * tau2 + 1

    np.testing.assert_allclose(xs, [float(x1), float(x2), float(x3)], rtol=1e-6)
    _check_states(
        states,
        [
            (g_bar1, v_bar1, h_bar1, tau1),
            (g_bar2, v_bar2, h_bar2, tau2),
            (g_bar3, v_bar3, h_bar3, tau3),
        ],
    )
    assert int(states[-1].count) == 3


def test_two_steps_by_hand_noise_gated_secant():
    # Same problem with the default noise gate; step 1 is identical (no secant yet).
    xs, states = _run_1d(vsgd(epsilon=EPS), a=3.0, x0=1.0, steps=2)
    # Step 2: secant sample 3 (as above), but v_bar1 - g_bar1**2 = 18 - 9 = 9 counts as noise:
    # s = (h_bar1 * |x1 - x0|)**2 = (2 * 3/4)**2 = 9/4, gain K = (9/4) / (9/4 + 2 * 9) = 1/9,
    # h2 = 2 + (1/9) * (3 - 2) = 19/9, h_bar2 = (1/3) * 2 + (2/3) * (19/9) = 56/27.
    # g_bar2 = 3/2, v_bar2 = 51/8, r2 = 6/17 as above; eta = (6/17) / (56/27) = 81/476,
    # x2 = 1/4 - (81/476) * (3/4) = 233/1904, tau2 = 67/34.
    np.testing.assert_allclose(xs, [0.25, 233 / 1904], rtol=1e-6)
    _check_states(states, [(3, 18, 2, 1.5), (F(3, 2), F(51, 8), F(56, 27), F(67, 34))])


def test_two_steps_by_hand_with_hessian_diag():
    # f(x) = 0.5 * 4 * x**2, x0 = 1, curvature passed as the extra argument (its absolute value
    # is used, as the paper does with bbprop, so -4 acts as 4).
    xs, states = _run_1d(vsgd(epsilon=EPS), a=4.0, x0=1.0, steps=2, hessian_diag=jnp.array([-4.0]))
    # Step 1: g = 4; g_bar = 4, v_bar = 2 * 16 = 32, h_bar = 2 * 4 = 8.
    # r = 16 / 32 = 1/2, eta = 1/16, x1 = 1 - 4/16 = 3/4, tau = 1/2 + 1 = 3/2.
    # Step 2: g = 3; 1/tau = 2/3: g_bar = 4/3 + 2 = 10/3, v_bar = 32/3 + 6 = 50/3,
    # h_bar = 8/3 + 8/3 = 16/3; r = (100/9) / (50/3) = 2/3, eta = (2/3) / (16/3) = 1/8,
    # x2 = 3/4 - 3/8 = 3/8, tau = (1/3) * (3/2) + 1 = 3/2.
    np.testing.assert_allclose(xs, [0.75, 0.375], rtol=1e-6)
    _check_states(states, [(4, 32, 8, 1.5), (F(10, 3), F(50, 3), F(16, 3), 1.5)])


def test_elements_are_independent():
    # A diagonal quadratic in 2-D equals two 1-D runs: the learning rates are per element.
    opt = vsgd()
    a = jnp.array([2.0, 0.5])
    x = jnp.array([1.0, -3.0])
    state = opt.init(x)
    update = jax.jit(opt.update)
    for _ in range(4):
        updates, state = update(a * x, state, x)
        x = optax.apply_updates(x, updates)
    x_first, _ = _run_1d(vsgd(), a=2.0, x0=1.0, steps=4)
    x_second, _ = _run_1d(vsgd(), a=0.5, x0=-3.0, steps=4)
    np.testing.assert_allclose(x, [x_first[-1], x_second[-1]], rtol=1e-6)


@functools.cache
def _noisy_quadratic_losses(noise_gate, exact_curvature, steps=200, sigma=0.5):
    """Runs vSGD on a noisy 10-d diagonal quadratic (cached: several tests share the runs)."""
    opt = vsgd(noise_gate=noise_gate)
    curvature = jnp.linspace(0.5, 5.0, 10)
    x0 = jnp.full((10,), 3.0)

    def step(carry, key):
        x, state = carry
        grads = curvature * x + sigma * jax.random.normal(key, x.shape)
        extra = {"hessian_diag": curvature} if exact_curvature else {}
        updates, state = opt.update(grads, state, x, **extra)
        x = optax.apply_updates(x, updates)
        return (x, state), 0.5 * jnp.sum(curvature * x**2)

    keys = jax.random.split(jax.random.PRNGKey(0), steps)
    (_, state), losses = jax.jit(lambda: jax.lax.scan(step, (x0, opt.init(x0)), keys))()
    return float(0.5 * jnp.sum(curvature * x0**2)), losses, state


@pytest.mark.parametrize("exact_curvature", [False, True])
def test_noisy_quadratic_loss_decreases(exact_curvature):
    initial, losses, state = _noisy_quadratic_losses(True, exact_curvature)
    assert bool(jnp.all(jnp.isfinite(losses)))
    assert float(jnp.mean(losses[-50:])) < 1e-3 * initial
    assert float(jnp.mean(losses[-50:])) < 0.01 * float(jnp.mean(losses[:10]))
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(state))


def test_noise_gate_beats_plain_secant_on_noisy_quadratic():
    # The plain secant decreases the loss too, but its noise-inflated curvature freezes some
    # coordinates early; the gated estimate does not.
    initial, plain, _ = _noisy_quadratic_losses(False, False)
    _, gated, _ = _noisy_quadratic_losses(True, False)
    assert float(jnp.mean(plain[-50:])) < 0.1 * initial
    assert float(jnp.mean(gated[-50:])) < 0.1 * float(jnp.mean(plain[-50:]))


def test_state_and_update_shapes_and_dtypes_on_a_pytree():
    params = {
        "w": jnp.ones((3, 4), jnp.float32),
        "b": jnp.full((4,), 0.5, jnp.bfloat16),
        "nested": {"s": jnp.array(2.0, jnp.float32)},
    }
    opt = vsgd()
    state = opt.init(params)
    assert isinstance(state, VSGDState)
    assert state.count.shape == () and state.count.dtype == jnp.int32

    def check_like_params(tree):
        for leaf, ref in zip(jax.tree.leaves(tree), jax.tree.leaves(params), strict=True):
            assert leaf.shape == ref.shape and leaf.dtype == ref.dtype

    for tree in state[1:]:
        check_like_params(tree)

    update = jax.jit(opt.update)
    for _ in range(3):
        grads = jax.tree.map(lambda p: 0.3 * p + 0.1, params)
        updates, state = update(grads, state, params)
        check_like_params(updates)
        for tree in state[1:]:
            check_like_params(tree)
        params = optax.apply_updates(params, updates)
    check_like_params(params)
    assert int(state.count) == 3
    # float32 gradients for bfloat16 params leave the state dtypes alone (a stable scan carry).
    grads32 = jax.tree.map(lambda p: jnp.ones(p.shape, jnp.float32), params)
    _, state32 = jax.eval_shape(opt.update, grads32, state, params)
    for tree in state32[1:]:
        check_like_params(tree)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(updates))


def test_jit_matches_eager():
    opt = vsgd()
    x = jnp.array([1.0, -2.0, 0.5])
    a = jnp.array([1.0, 3.0, 0.2])
    s_eager = s_jit = opt.init(x)
    x_eager = x_jit = x
    update = jax.jit(opt.update)
    for _ in range(2):  # The first step (prior curvature) and one secant step.
        u_eager, s_eager = opt.update(a * x_eager, s_eager, x_eager)
        u_jit, s_jit = update(a * x_jit, s_jit, x_jit)
        x_eager = x_eager + u_eager
        x_jit = x_jit + u_jit
    np.testing.assert_allclose(x_jit, x_eager, rtol=1e-5)


def test_zero_gradients_give_zero_updates_and_finite_state():
    opt = vsgd()
    x = jnp.zeros((3,))
    state = opt.init(x)
    update = jax.jit(opt.update)
    for _ in range(3):
        updates, state = update(jnp.zeros((3,)), state, x)
        np.testing.assert_array_equal(updates, 0.0)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(state))


def test_update_without_params_raises():
    opt = vsgd()
    x = jnp.ones((2,))
    with pytest.raises(ValueError, match="params"):
        opt.update(x, opt.init(x))


def test_works_inside_optax_chain():
    # optax.chain forwards params and the extra argument; tracing (no compile) is enough here.
    opt = optax.chain(optax.clip_by_global_norm(10.0), vsgd(), optax.scale(0.5))
    x = jnp.ones((2,), jnp.float32)
    updates, state = jax.eval_shape(opt.update, x, opt.init(x), x)
    assert updates.shape == (2,) and updates.dtype == jnp.float32
    updates, _ = jax.eval_shape(lambda g, s, p: opt.update(g, s, p, hessian_diag=g), x, state, x)
    assert updates.shape == (2,)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"epsilon": 0.0},
        {"epsilon": -1e-8},
        {"epsilon": float("nan")},
        {"init_scale": 0.5},
        {"init_curvature": 0.0},
        {"init_curvature": -1.0},
    ],
)
def test_invalid_arguments_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        vsgd(**kwargs)


def test_array_arguments_are_not_validated():
    # Arrays may be traced, so they are accepted as they are.
    vsgd(epsilon=jnp.array(1e-8), init_scale=jnp.array(2.0), init_curvature=jnp.array(1.0))
