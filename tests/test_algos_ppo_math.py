"""Tests of lrjax.algos.ppo_math: every expected value is worked out by hand in the test."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrjax._validation import ConfigError
from lrjax.algos.ppo_math import (
    clipped_surrogate_loss,
    explained_variance,
    gae,
    minibatch_indices,
    normalize_advantages,
    value_loss,
)

# The 4-step, 1-env rollout used by the GAE tests. The episode ends at step 1 (after action 1):
# step 2 starts a new episode, so V_2 must not be bootstrapped into step 1.
REWARDS = [1.0, 2.0, 0.5, -1.0]
VALUES = [0.5, 1.0, 2.0, 1.5]
DONES = [0.0, 1.0, 0.0, 0.0]
LAST_VALUE = 3.0
GAMMA, LAM = 0.9, 0.8


def _gae(rewards, values, dones, last_value, gamma=GAMMA, lam=LAM):
    return gae(jnp.array(rewards), jnp.array(values), jnp.array(dones), last_value, gamma, lam)


def test_gae_by_hand_with_episode_end():
    # delta_t = r_t + gamma V_{t+1} (1 - done_t) - V_t, with V_4 = last_value = 3.
    d3 = -1.0 + 0.9 * 3.0 - 1.5  # = 0.2
    d2 = 0.5 + 0.9 * 1.5 - 2.0  # = -0.15
    d1 = 2.0 + 0.9 * 1.0 * 0.0 - 1.0  # = 1.0 (done: V_2 is not used)
    d0 = 1.0 + 0.9 * 1.0 - 0.5  # = 1.4
    assert (d3, d2, d1, d0) == pytest.approx((0.2, -0.15, 1.0, 1.4))
    # A_t = delta_t + gamma lam (1 - done_t) A_{t+1}; gamma lam = 0.72.
    a3 = d3  # = 0.2
    a2 = d2 + 0.72 * a3  # = -0.15 + 0.144 = -0.006
    a1 = d1 + 0.72 * 0.0 * a2  # = 1.0 (done)
    a0 = d0 + 0.72 * a1  # = 1.4 + 0.72 = 2.12
    assert (a3, a2, a1, a0) == pytest.approx((0.2, -0.006, 1.0, 2.12))

    adv, ret = _gae(REWARDS, VALUES, DONES, LAST_VALUE)
    np.testing.assert_allclose(adv, [2.12, 1.0, -0.006, 0.2], rtol=1e-6, atol=1e-6)
    # returns = A + V = [2.12 + 0.5, 1.0 + 1.0, -0.006 + 2.0, 0.2 + 1.5]
    np.testing.assert_allclose(ret, [2.62, 2.0, 1.994, 1.7], rtol=1e-6, atol=1e-6)
    assert adv.shape == ret.shape == (4,)
    assert adv.dtype == jnp.float32


def test_gae_lambda_one_is_monte_carlo_return_minus_value():
    # G_t = r_t + gamma (1 - done_t) G_{t+1}, G_4 = last_value = 3.
    g3 = -1.0 + 0.9 * 3.0  # = 1.7
    g2 = 0.5 + 0.9 * g3  # = 2.03
    g1 = 2.0  # episode ends: nothing after
    g0 = 1.0 + 0.9 * g1  # = 2.8
    adv, ret = _gae(REWARDS, VALUES, DONES, LAST_VALUE, lam=1.0)
    np.testing.assert_allclose(ret, [2.8, 2.0, 2.03, 1.7], rtol=1e-6)
    np.testing.assert_allclose(
        adv, [g0 - 0.5, g1 - 1.0, g2 - 2.0, g3 - 1.5], rtol=1e-5, atol=1e-6
    )  # = [2.3, 1.0, 0.03, 0.2]


def test_gae_lambda_zero_is_one_step_td_error():
    adv, ret = _gae(REWARDS, VALUES, DONES, LAST_VALUE, lam=0.0)
    # The deltas of test_gae_by_hand_with_episode_end.
    np.testing.assert_allclose(adv, [1.4, 1.0, -0.15, 0.2], rtol=1e-6, atol=1e-6)
    # The TD(0) target r_t + gamma V_{t+1} (1 - done_t).
    np.testing.assert_allclose(ret, [1.9, 2.0, 1.85, 1.7], rtol=1e-6, atol=1e-6)


def test_gae_done_at_last_step_ignores_last_value():
    # One step, done: A = r - V = 1 - 0.5, whatever last_value is.
    for last_value in (0.0, 100.0):
        adv, ret = _gae([1.0], [0.5], [True], last_value)
        np.testing.assert_allclose(adv, [0.5])
        np.testing.assert_allclose(ret, [1.0])


def test_gae_batch_equals_per_env_calls_and_jits():
    k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
    t, n = 6, 2
    rewards = jax.random.normal(k1, (t, n))
    values = jax.random.normal(k2, (t, n))
    dones = jax.random.bernoulli(k3, 0.3, (t, n))
    last = jax.random.normal(k4, (n,))
    jitted = jax.jit(gae)
    adv, ret = jitted(rewards, values, dones, last, 0.9, 0.8)
    assert adv.shape == ret.shape == (t, n)
    for i in range(n):
        a_i, r_i = jitted(rewards[:, i], values[:, i], dones[:, i], last[i], 0.9, 0.8)
        np.testing.assert_allclose(adv[:, i], a_i, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(ret[:, i], r_i, rtol=1e-6, atol=1e-6)


def test_gae_validates():
    r = jnp.zeros((3, 2))
    with pytest.raises(ConfigError, match="gamma"):
        gae(r, r, r, jnp.zeros(2), 1.5, 0.9)
    with pytest.raises(ConfigError, match="lam"):
        gae(r, r, r, jnp.zeros(2), 0.9, -0.1)
    with pytest.raises(ConfigError, match="dones"):
        gae(r, r, jnp.zeros((3,)), jnp.zeros(2), 0.9, 0.9)
    with pytest.raises(ConfigError, match="last_value"):
        gae(r, r, r, jnp.zeros(3), 0.9, 0.9)


def test_normalize_advantages():
    # mean 2.5; population variance ((1.5^2 + 0.5^2) * 2) / 4 = 1.25.
    out = normalize_advantages(jnp.array([1.0, 2.0, 3.0, 4.0]), eps=0.0)
    s = math.sqrt(1.25)
    np.testing.assert_allclose(out, [-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s], rtol=1e-6)
    # Constant advantages: 0 / (0 + eps) = 0, not NaN.
    np.testing.assert_allclose(normalize_advantages(jnp.full((2, 3), 7.0)), 0.0)


# Three samples, eps = 0.2: ratio 1.5 with A = +2 (clipped above), ratio 0.5 with A = -1
# (clipped below), ratio 1.1 with A = +3 (inside the clip range).
RATIOS = [1.5, 0.5, 1.1]
ADV = [2.0, -1.0, 3.0]
OLD = [0.0, -1.0, 0.3]


def _new_log_probs():
    return jnp.array([o + math.log(r) for o, r in zip(OLD, RATIOS, strict=True)])


def test_clipped_surrogate_by_hand():
    loss, aux = clipped_surrogate_loss(_new_log_probs(), jnp.array(OLD), jnp.array(ADV), 0.2)
    # min(r A, clip(r, 0.8, 1.2) A) per sample:
    s0 = min(1.5 * 2.0, 1.2 * 2.0)  # = 2.4 (clipped)
    s1 = min(0.5 * -1.0, 0.8 * -1.0)  # = -0.8 (clipped)
    s2 = min(1.1 * 3.0, 1.1 * 3.0)  # = 3.3
    assert (s0, s1, s2) == pytest.approx((2.4, -0.8, 3.3))
    assert float(loss) == pytest.approx(-(2.4 - 0.8 + 3.3) / 3, rel=1e-6)  # -4.9 / 3
    kl = ((0.5 - math.log(1.5)) + (-0.5 - math.log(0.5)) + (0.1 - math.log(1.1))) / 3
    assert float(aux["approx_kl"]) == pytest.approx(kl, rel=1e-5)
    assert float(aux["clip_fraction"]) == pytest.approx(2 / 3)


def test_clipped_surrogate_gradient_is_zero_for_clipped_samples():
    old, adv = jnp.array(OLD), jnp.array(ADV)
    grad = jax.grad(lambda lp: clipped_surrogate_loss(lp, old, adv, 0.2)[0])(_new_log_probs())
    # d/d logp_new of -(r A) / 3 = -(r A) / 3 for the unclipped sample: -(1.1 * 3) / 3 = -1.1.
    np.testing.assert_allclose(grad, [0.0, 0.0, -1.1], rtol=1e-6, atol=1e-7)


def test_clipped_surrogate_keeps_the_pessimistic_unclipped_term():
    # ratio 1.5 with A = -2: min(-3, -2.4) = -3 is the unclipped term, so it has a gradient
    # (-(1.5 * -2) / 1 = 3), although the ratio is outside the range (it counts as clipped).
    old = jnp.array([0.0])
    new = jnp.array([math.log(1.5)])
    adv = jnp.array([-2.0])
    loss, aux = clipped_surrogate_loss(new, old, adv, 0.2)
    assert float(loss) == pytest.approx(3.0, rel=1e-6)
    assert float(aux["clip_fraction"]) == 1.0
    grad = jax.grad(lambda lp: clipped_surrogate_loss(lp, old, adv, 0.2)[0])(new)
    np.testing.assert_allclose(grad, [3.0], rtol=1e-6)


def test_clipped_surrogate_validates():
    x = jnp.zeros(3)
    with pytest.raises(ConfigError, match="clip_eps"):
        clipped_surrogate_loss(x, x, x, 0.0)
    with pytest.raises(ConfigError, match="shapes"):
        clipped_surrogate_loss(x, x, jnp.zeros(2), 0.2)


def test_value_loss_by_hand():
    v = jnp.array([1.0, 2.0, 3.0])
    v_old = jnp.array([1.5, 0.5, 3.1])
    r = jnp.array([2.0, 1.5, 2.0])
    # (V - R)^2 = [1, 0.25, 1]; 0.5 * mean = 0.5 * 2.25 / 3 = 0.375.
    assert float(value_loss(v, v_old, r)) == pytest.approx(0.375, rel=1e-6)
    # V_clip = V_old + clip(V - V_old, -0.2, 0.2):
    #   [1.5 + clip(-0.5), 0.5 + clip(1.5), 3.1 + clip(-0.1)] = [1.3, 0.7, 3.0]
    #   (V_clip - R)^2 = [0.49, 0.64, 1.0]; max with [1, 0.25, 1] = [1, 0.64, 1]
    #   0.5 * (1 + 0.64 + 1) / 3 = 0.44.
    assert float(value_loss(v, v_old, r, clip_eps=0.2)) == pytest.approx(0.44, rel=1e-6)
    with pytest.raises(ConfigError, match="clip_eps"):
        value_loss(v, v_old, r, clip_eps=-1.0)


def test_minibatch_indices_is_a_permutation():
    idx = jax.jit(minibatch_indices, static_argnums=(1, 2))(jax.random.key(3), 12, 3)
    assert idx.shape == (3, 4)
    np.testing.assert_array_equal(np.sort(np.asarray(idx).ravel()), np.arange(12))
    other = minibatch_indices(jax.random.key(4), 12, 3)
    assert not np.array_equal(np.asarray(idx), np.asarray(other))  # shuffled by the key
    with pytest.raises(ConfigError, match="multiple"):
        minibatch_indices(jax.random.key(0), 10, 3)
    with pytest.raises(ConfigError, match="num_minibatches"):
        minibatch_indices(jax.random.key(0), 10, 0)


def test_explained_variance():
    returns = jnp.array([1.0, 2.0, 3.0, 4.0])
    assert float(explained_variance(returns, returns)) == pytest.approx(1.0)
    assert float(explained_variance(jnp.full(4, 2.5), returns)) == pytest.approx(0.0)
    worse = explained_variance(-returns, returns)  # Var[2R] / Var[R] = 4
    assert float(worse) == pytest.approx(-3.0)
    assert np.isnan(float(explained_variance(returns, jnp.ones(4))))
