"""The MDP's rules, defined once for PPO's environment and the actor-critic: rewards, the
divergence rule and its bounded penalty, and the shared config's validation."""

import jax.numpy as jnp
import numpy as np
import pytest

from lrjax import mdp
from lrjax._validation import ConfigError
from lrjax.algos.actor_critic import ActorCriticEnvConfig
from lrjax.env import EnvConfig

L0 = jnp.float32(2.0)


@pytest.mark.parametrize(
    ("kind", "t", "expected"),
    [
        ("val_loss", 3, -1.5 / 2.0),
        ("loss_decrement", 3, (1.8 - 1.5) / 2.0),
        ("final", 3, 0.0),  # not the last step of a horizon of 5
        ("final", 5, -1.5 / 2.0),
    ],
)
def test_reward_of_each_kind_in_units_of_the_initial_loss(kind, t, expected):
    r = mdp.reward(kind, jnp.float32(1.8), jnp.float32(1.5), L0, jnp.int32(t), 5)
    np.testing.assert_allclose(r, expected, rtol=1e-6)


def test_diverged_above_the_factor_or_not_finite():
    finite = jnp.float32(1.0)
    assert not bool(mdp.diverged(jnp.float32(5.9), L0, 3.0, finite))  # below 3 * 2
    assert bool(mdp.diverged(jnp.float32(6.1), L0, 3.0, finite))
    assert bool(mdp.diverged(jnp.float32(jnp.nan), L0, 3.0, finite))
    assert bool(mdp.diverged(jnp.float32(jnp.inf), L0, 3.0, finite))
    # A step that trained on a non-finite loss diverged, whatever the loss after it.
    assert bool(mdp.diverged(jnp.float32(1.0), L0, 3.0, jnp.float32(jnp.inf)))


def test_penalty_is_the_reward_of_staying_at_the_limit_and_bounded():
    factor, horizon = 3.0, 10
    # val_loss: -factor for this step and each of the steps left (t steps taken, t <= horizon).
    for t in (1, 4, 10):
        p = mdp.divergence_penalty("val_loss", L0, L0, factor, jnp.int32(t), horizon)
        np.testing.assert_allclose(p, -factor * (horizon - t + 1), rtol=1e-6)
    # loss_decrement: from the previous level to the limit; the return then sums to 1 - factor.
    p = mdp.divergence_penalty("loss_decrement", jnp.float32(1.0), L0, factor, None, None)
    np.testing.assert_allclose(p, 0.5 - factor, rtol=1e-6)
    # A previous level above the limit is capped, a non-finite one read as L_0: never below
    # -factor, never NaN.
    for prev, expected in [(100.0, 0.0), (jnp.inf, 1.0 - factor), (jnp.nan, 1.0 - factor)]:
        p = mdp.divergence_penalty("loss_decrement", jnp.float32(prev), L0, factor, None, None)
        np.testing.assert_allclose(p, expected, rtol=1e-6)
    np.testing.assert_allclose(
        mdp.divergence_penalty("final", L0, L0, factor, jnp.int32(3), horizon), -factor
    )


def test_step_outcome_replaces_the_reward_only_where_diverged():
    args = ("loss_decrement", jnp.float32(1.8))
    r, d = mdp.step_outcome(*args, jnp.float32(1.5), jnp.float32(1.8), L0, 3.0, None, None)
    assert not bool(d) and r.dtype == jnp.float32
    np.testing.assert_allclose(r, 0.15, rtol=1e-5)
    r, d = mdp.step_outcome(*args, jnp.float32(jnp.nan), jnp.float32(1.8), L0, 3.0, None, None)
    assert bool(d)
    np.testing.assert_allclose(r, 0.9 - 3.0, rtol=1e-6)


def test_both_algorithms_share_one_config_base():
    """PPO's EnvConfig and the actor-critic's ActorCriticEnvConfig are MDPConfigs: the fields
    they share are validated once, with the same message."""
    for cls in (EnvConfig, ActorCriticEnvConfig):
        assert issubclass(cls, mdp.MDPConfig)
        with pytest.raises(ConfigError, match="divergence_factor=1.0 is not allowed"):
            cls(divergence_factor=1.0)
        with pytest.raises(ConfigError, match="optimizer='lion'"):
            cls(optimizer="lion")
    with pytest.raises(ConfigError, match="reward='accuracy'"):
        mdp.reward("accuracy", L0, L0, L0, 0, 1)
