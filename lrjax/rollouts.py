"""Evaluation episodes: a controller (deterministic) or a constant learning rate, run on a
:class:`~lrjax.env.TraineeEnv` for several episodes at once, recorded per step, and
the final trainees' test loss and accuracy (whole test split). Episodes run side by side as the
environment batches them (:meth:`~lrjax.env.TraineeEnv.over_episodes`)."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrjax._validation import check_positive_int
from lrjax.controller import Controller, actor_step, initial_carry
from lrjax.env import TraineeEnv


@dataclasses.dataclass(frozen=True)
class Episodes:
    """Per-step records of ``E`` evaluation episodes of ``H = horizon`` environment steps.

    Steps after an episode ended early (divergence) are NaN. ``final_val_loss`` is the
    validation-minibatch loss at each episode's end (``inf`` if it diverged).
    """

    lr: np.ndarray  # [E, H]
    val_loss: np.ndarray  # [E, H]
    reward: np.ndarray  # [E, H]
    diverged: np.ndarray  # [E]
    final_val_loss: np.ndarray  # [E]
    test_loss: np.ndarray  # [E] of the final trainee on the whole test split
    test_accuracy: np.ndarray  # [E]

    @property
    def returns(self) -> np.ndarray:
        return np.nansum(self.reward, axis=1)


def run_episodes(
    env: TraineeEnv, policy: Controller | float, key: jax.Array, data: Any, num_episodes: int
) -> Episodes:
    """Run ``num_episodes`` episodes (keys split from ``key``) with ``policy``: a
    :class:`~lrjax.controller.Controller` acting on its mean action, or a constant LR."""
    check_positive_int("num_episodes", num_episodes)
    keys = jax.random.split(key, num_episodes)
    if isinstance(policy, Controller):
        out = _run(env, _controller_episode, keys, policy.params, data)
    else:
        out = _run(env, _constant_episode, keys, jnp.float32(policy), data)
    (lr, val_loss, reward, done, diverged_step), test = out
    lr, val_loss, reward, done, diverged_step = (
        np.asarray(x) for x in (lr, val_loss, reward, done, diverged_step)
    )
    ended = np.cumsum(done, axis=1) - done > 0  # steps after the episode's (first) end
    mask = lambda x: np.where(ended, np.nan, x)
    diverged = (diverged_step & ~ended).any(axis=1)
    last = np.where(diverged, np.inf, val_loss[:, -1])
    return Episodes(
        lr=mask(lr),
        val_loss=mask(val_loss),
        reward=mask(reward),
        diverged=diverged,
        final_val_loss=last,
        test_loss=np.where(diverged, np.inf, np.asarray(test["loss"])),
        test_accuracy=np.where(diverged, np.nan, np.asarray(test["accuracy"])),
    )


@functools.partial(jax.jit, static_argnums=(0, 1))
def _run(env, episode, keys, policy_params, data):
    """``episode`` for each key, side by side as the environment batches its episodes."""
    return env.over_episodes(functools.partial(episode, env), 1)(keys, policy_params, data)


def _controller_episode(env, key, actor_params, data):
    config = env.config.controller
    k_reset, k_steps = jax.random.split(key)
    obs, state = env.reset(k_reset, data)

    def step(c, k):
        obs, state, carry = c
        carry, mean, _ = actor_step(actor_params, carry, obs, config)
        obs, state, reward, done, info = env.step(k, state, mean, data, auto_reset=False)
        return (obs, state, carry), (info["lr"], info["val_loss"], reward, done, info["diverged"])

    init = (obs, state, initial_carry(config))
    (_, state, _), out = jax.lax.scan(step, init, jax.random.split(k_steps, env.config.horizon))
    return out, env.eval_task.metrics(state.trainee.params, data, "test")


def _constant_episode(env, key, lr, data):
    k_reset, k_steps = jax.random.split(key)
    _, state = env.reset(k_reset, data)

    def step(state, k):
        _, state, reward, done, info = env.step_lr(k, state, lr, data, auto_reset=False)
        return state, (info["lr"], info["val_loss"], reward, done, info["diverged"])

    state, out = jax.lax.scan(step, state, jax.random.split(k_steps, env.config.horizon))
    return out, env.eval_task.metrics(state.trainee.params, data, "test")
