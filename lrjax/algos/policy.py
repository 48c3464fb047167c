"""The RL side of a controller's policy, which a deployed controller does not need: the Gaussian
over the actor's action u that PPO samples from (paper A), PPO's state-value critic V(s), and
paper B's action-value critic Q(s, a) trained with TD targets.

The actor itself, whose mean head is the deterministic action, is :mod:`lrjax.controller.actor`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["QCritic", "ValueCritic", "gaussian_entropy", "gaussian_log_prob", "sample_action"]


def sample_action(key: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """Sample ``u ~ N(mean, exp(log_std)^2)``."""
    return mean + jnp.exp(log_std) * jax.random.normal(key, jnp.shape(mean), jnp.float32)


def gaussian_log_prob(u: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """``log N(u; mean, exp(log_std)^2)``, elementwise (PPO's ratio uses it on the raw u)."""
    z = (u - mean) * jnp.exp(-log_std)
    return -0.5 * z * z - log_std - 0.5 * jnp.log(2.0 * jnp.pi)


def gaussian_entropy(log_std: jax.Array) -> jax.Array:
    """Entropy of ``N(., exp(log_std)^2)``: ``log_std + 0.5 log(2 pi e)``."""
    return log_std + 0.5 * jnp.log(2.0 * jnp.pi * jnp.e)


class ValueCritic(nn.Module):
    """State-value network V(s) for PPO: an MLP from the observation to a scalar.

    Attributes:
      hidden: sizes of the hidden layers. Default (64, 64) (PureJaxRL's PPO).
      activation: hidden activation. Default tanh.
    """

    hidden: Sequence[int] = (64, 64)
    activation: Callable[[jax.Array], jax.Array] = nn.tanh

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        """V(s); ``obs`` of shape ``(*batch, obs_size)``, result of shape ``batch``."""
        x = jnp.asarray(obs, jnp.float32)
        for i, n in enumerate(self.hidden):
            x = self.activation(
                nn.Dense(n, kernel_init=nn.initializers.orthogonal(jnp.sqrt(2.0)), name=f"h{i}")(x)
            )
        return nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0), name="out")(x)[..., 0]


class QCritic(nn.Module):
    """Paper B's critic Q(s, a): one hidden layer of 10 units over the concatenated ``[s, a]``.

    Trained with the TD error ``delta_t = r_t + gamma Q(s_{t+1}, pi(s_{t+1})) - Q(s_t, a_t)``
    (paper B, Eq. 7); the actor follows ``grad_theta pi(s) grad_a Q(s, a)`` (Eq. 9).

    Attributes:
      hidden: hidden units. Default 10 (paper B).
      activation: hidden activation; the paper does not name one. Default relu.
    """

    hidden: int = 10
    activation: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        """Q(s, a); ``obs`` ``(*batch, obs_size)``, ``action`` ``batch`` (the action u or a
        representation of the LR such as its log). Returns shape ``batch``."""
        obs = jnp.asarray(obs, jnp.float32)
        action = jnp.asarray(action, jnp.float32)
        x = jnp.concatenate([obs, jnp.broadcast_to(action, obs.shape[:-1])[..., None]], axis=-1)
        x = self.activation(nn.Dense(self.hidden, name="hidden")(x))
        return nn.Dense(1, name="out")(x)[..., 0]
