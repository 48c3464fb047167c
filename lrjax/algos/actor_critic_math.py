"""Paper B's Eqs. 7-9 as pure functions (tested against hand computations): the TD error, the
critic's semi-gradient and the actor's deterministic policy gradient through the LR map; and the
TD target of twin critics (TD3's clipped double Q, Fujimoto et al. 2018, Eq. 10)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lrjax.controller import ControllerConfig, action_position, actor_step


def lr_position(lr: jax.Array, config: ControllerConfig) -> jax.Array:
    """The critic's action input: the LR's position in the log-LR range, in [-1, 1]."""
    lo, hi = jnp.log(config.lr_min), jnp.log(config.lr_max)
    return 2.0 * (jnp.log(jnp.asarray(lr, jnp.float32)) - lo) / (hi - lo) - 1.0


def td_error(critic, critic_params, obs, action, reward, next_obs, next_action, gamma, terminal):
    """``delta = r + gamma (1 - terminal) Q(s', a') - Q(s, a)`` (paper B, Eq. 7)."""
    q = critic.apply({"params": critic_params}, obs, action)
    return td_target(critic, (critic_params,), reward, next_obs, next_action, gamma, terminal) - q


def td_target(critic, target_params, reward, next_obs, next_action, gamma, terminal):
    """``y = r + gamma (1 - terminal) min_i Q_i(s', a')`` over the critics ``target_params`` (a
    sequence of critic params: one is paper B's Eq. 7 target, two TD3's clipped double Q)."""
    q_next = jnp.min(
        jnp.stack([critic.apply({"params": p}, next_obs, next_action) for p in target_params]),
        axis=0,
    )
    return reward + gamma * jnp.where(terminal, 0.0, q_next)


def critic_gradient(critic, critic_params, obs, action, delta):
    """``-delta grad_phi Q(s, a)``: Eq. 8 with the sign for a minimiser (the TD target held
    fixed, i.e. the gradient of ``delta^2 / 2``)."""
    q_fn = lambda p: critic.apply({"params": p}, obs, action)
    return jax.tree.map(lambda g: -delta * g, jax.grad(q_fn)(critic_params))


def actor_gradient(critic, critic_params, actor_params, carry, obs, prev_lr, config):
    """``-grad_theta pi(s) grad_a Q(s, a)|_{a = pi(s)}`` (Eq. 9, sign for a minimiser): the
    chain rule through one LSTM step from ``carry`` (held fixed) and the action's position in
    the LR range (:func:`~lrjax.controller.action_position`: through the action-to-LR map, or,
    for ``"log"`` actions, linear in the action, so the gradient does not vanish at a bound)."""

    def neg_q(theta):
        _, u, _ = actor_step(theta, carry, obs, config)
        a = action_position(u, prev_lr, config)
        return -critic.apply({"params": critic_params}, obs, a)

    return jax.grad(neg_q)(actor_params)
