"""Evaluation episodes: a controller (deterministic), a constant learning rate or any LR schedule,
run on a :class:`~lrjax.env.TraineeEnv` for several episodes at once, recorded per step, and
the final trainees' test loss and accuracy (whole test split). Episodes run side by side as the
environment batches them (:meth:`~lrjax.env.TraineeEnv.over_episodes`)."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrjax._validation import ConfigError, check_positive_int
from lrjax.controller import Controller, actor_step, initial_carry
from lrjax.env import TraineeEnv
from lrjax.features import normalise


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
    validation_loss: np.ndarray  # [E] of the final trainee on the whole validation split
    test_loss: np.ndarray  # [E] of the final trainee on the whole test split
    test_accuracy: np.ndarray  # [E]

    def select(self, index) -> Episodes:
        """The episodes ``index`` (an int array or slice)."""
        return Episodes(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})


def run_episodes(
    env: TraineeEnv, policy: Controller | float, key: jax.Array, data: Any, num_episodes: int
) -> Episodes:
    """Run ``num_episodes`` episodes (keys split from ``key``) with ``policy``: a
    :class:`~lrjax.controller.Controller` acting on its mean action, or a constant LR."""
    if isinstance(policy, Controller):
        check_positive_int("num_episodes", num_episodes)
        keys = jax.random.split(key, num_episodes)
        actor = (policy.params, policy.normaliser)
        return _episodes(_run(env, _controller_episode, 1, keys, actor, data))
    schedule = np.full((1, env.config.horizon), float(policy), np.float32)
    return run_schedules(env, schedule, key, data, num_episodes)[0]


def run_schedules(
    env: TraineeEnv, schedules: np.ndarray, key: jax.Array, data: Any, num_episodes: int
) -> list[Episodes]:
    """Run every LR schedule (``schedules[c, t]``: the LR of action t) on the same
    ``num_episodes`` episodes (the keys of :func:`run_episodes`: common random numbers), all
    ``C x E`` episodes side by side in one program."""
    check_positive_int("num_episodes", num_episodes)
    schedules = np.asarray(schedules, np.float32)
    if schedules.ndim != 2 or schedules.shape[1] != env.config.horizon:
        raise ConfigError(
            f"schedules of shape {schedules.shape} is not allowed: expected (schedules, "
            f"horizon={env.config.horizon})."
        )
    count = schedules.shape[0]
    keys = jnp.tile(jax.random.split(key, num_episodes), count)
    per_episode = jnp.repeat(jnp.asarray(schedules), num_episodes, axis=0)
    out = _run(env, _schedule_episode, 2, keys, per_episode, data)
    flat = _episodes(out)
    return [flat.select(slice(c * num_episodes, (c + 1) * num_episodes)) for c in range(count)]


def _episodes(out) -> Episodes:
    (lr, val_loss, reward, done, diverged_step), (validation, test) = out
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
        validation_loss=np.where(diverged, np.inf, np.asarray(validation["loss"])),
        test_loss=np.where(diverged, np.inf, np.asarray(test["loss"])),
        test_accuracy=np.where(diverged, np.nan, np.asarray(test["accuracy"])),
    )


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _run(env, episode, num_batched, keys, policy, data):
    """``episode`` for each key (and each policy, if ``num_batched`` is 2), side by side as the
    environment batches its episodes."""
    return env.over_episodes(functools.partial(episode, env), num_batched)(keys, policy, data)


def _final_metrics(env, params, data):
    """The final trainee on the whole validation split (for tuning) and test split."""
    task = env.eval_task
    return task.metrics(params, data, "validation"), task.metrics(params, data, "test")


def _controller_episode(env, key, actor, data):
    config = env.config.controller
    actor_params, normaliser = actor
    k_reset, k_steps = jax.random.split(key)
    obs, state = env.reset(k_reset, data)

    def step(c, k):
        obs, state, carry = c
        if config.features.normaliser == "frozen":  # the controller's statistics, as deployed
            obs = normalise(config.features, normaliser, obs)[0]
        carry, mean, _ = actor_step(actor_params, carry, obs, config)
        obs, state, reward, done, info = env.step(k, state, mean, data, auto_reset=False)
        return (obs, state, carry), (info["lr"], info["val_loss"], reward, done, info["diverged"])

    init = (obs, state, initial_carry(config))
    (_, state, _), out = jax.lax.scan(step, init, jax.random.split(k_steps, env.config.horizon))
    return out, _final_metrics(env, state.trainee.params, data)


def _schedule_episode(env, key, schedule, data):
    k_reset, k_steps = jax.random.split(key)
    _, state = env.reset(k_reset, data)

    def step(state, xs):
        k, lr = xs
        _, state, reward, done, info = env.step_lr(k, state, lr, data, auto_reset=False)
        return state, (info["lr"], info["val_loss"], reward, done, info["diverged"])

    steps = (jax.random.split(k_steps, env.config.horizon), schedule)
    state, out = jax.lax.scan(step, state, steps)
    return out, _final_metrics(env, state.trainee.params, data)
