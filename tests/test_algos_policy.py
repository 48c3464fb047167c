"""Tests of the RL side of the controller's policy (lrjax.algos.policy): the Gaussian helpers and
the two critics."""

import jax
import jax.numpy as jnp
import numpy as np
from _params import numpy_params

import lrjax.controller
from lrjax.algos.policy import (
    QCritic,
    ValueCritic,
    gaussian_entropy,
    gaussian_log_prob,
    sample_action,
)

KEY = jax.random.key(0)


def test_rl_pieces_are_not_in_the_deployable_controller():
    for name in ("sample_action", "gaussian_log_prob", "gaussian_entropy"):
        assert not hasattr(lrjax.controller, name), name
    for name in ("ValueCritic", "QCritic"):
        assert not hasattr(lrjax.controller, name), name


def test_critics():
    obs = jnp.ones((4, 7))
    q, v = QCritic(), ValueCritic()
    qp, vp = numpy_params(q.init, KEY, obs, jnp.zeros(4)), numpy_params(v.init, KEY, obs)
    assert qp["params"]["hidden"]["kernel"].shape == (8, 10)  # paper B: 1 hidden layer, 10 units

    @jax.jit
    def run(qp, vp):
        dq = jax.grad(lambda a: q.apply(qp, obs[0], a))(0.3)  # Eq. 9 needs grad_a Q
        q4, q1 = q.apply(qp, obs, jnp.zeros(4)), q.apply(qp, obs[0], jnp.zeros(()))
        return q4, q1, dq, v.apply(vp, obs)

    qs, q1, dq, vs = run(qp, vp)
    assert qs.shape == (4,) and q1.shape == () and np.isfinite(dq) and vs.shape == (4,)


def test_gaussian_helpers():
    u, mean, log_std = jnp.asarray([0.3, -1.0]), jnp.asarray([0.0, 0.5]), jnp.asarray([-0.5, 0.2])

    @jax.jit
    def run():
        return (
            gaussian_log_prob(u, mean, log_std),
            jax.scipy.stats.norm.logpdf(u, mean, jnp.exp(log_std)),
            gaussian_entropy(log_std),
            sample_action(KEY, mean, log_std),
            sample_action(KEY, mean, log_std),
        )

    logp, expected, entropy, a, b = run()
    np.testing.assert_allclose(logp, expected, rtol=1e-5)
    std = np.exp(np.asarray(log_std))
    np.testing.assert_allclose(entropy, 0.5 * np.log(2 * np.pi * np.e * std**2), rtol=1e-5)
    assert a.shape == (2,) and np.all(a == b)
