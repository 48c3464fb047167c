"""Evaluation episodes: a controller (deterministic), a constant learning rate or any LR schedule,
run on a :class:`~lrjax.env.TraineeEnv` for several episodes at once, recorded per step (LR,
minibatch and validation loss, reward), and the trainees' test loss and accuracy on the whole
test split at the end and, if asked, along the way. Episodes run side by side as the
environment batches them (:meth:`~lrjax.env.VecEnv.over_episodes`)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrjax._validation import ConfigError, check_positive_int
from lrjax.controller import Controller, actor_step, initial_carry
from lrjax.distributed import global_inputs, to_host
from lrjax.env import TraineeEnv, VecEnv
from lrjax.features import Probe, init_normaliser, observe_run


@dataclasses.dataclass(frozen=True)
class Episodes:
    """Per-step records of ``E`` evaluation episodes of ``H = horizon`` environment steps.

    Steps after an episode ended early (divergence) are NaN. ``final_val_loss`` is the
    validation-minibatch loss at each episode's end (``inf`` if it diverged). The test curve
    holds the whole test split's loss and accuracy after every ``test_every`` actions (``P =
    horizon / test_every`` points, the last one the final trainee's), ``inf``/NaN from the
    point an episode diverged on.
    """

    lr: np.ndarray  # [E, H] the LR applied at each action
    train_loss: np.ndarray  # [E, H] minibatch loss of each action's last trainee step
    val_loss: np.ndarray  # [E, H]
    reward: np.ndarray  # [E, H]
    diverged: np.ndarray  # [E]
    final_val_loss: np.ndarray  # [E]
    validation_loss: np.ndarray  # [E] of the final trainee on the whole validation split
    test_loss: np.ndarray  # [E] of the final trainee on the whole test split
    test_accuracy: np.ndarray  # [E]
    test_curve_loss: np.ndarray  # [E, P]
    test_curve_accuracy: np.ndarray  # [E, P]

    def select(self, index) -> Episodes:
        """The episodes ``index`` (an int array or slice)."""
        return Episodes(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})


def run_episodes(
    env: TraineeEnv,
    policy: Controller | float,
    key: jax.Array,
    data: Any,
    num_episodes: int,
    *,
    test_every: int | None = None,
) -> Episodes:
    """Run ``num_episodes`` episodes (keys split from ``key``) with ``policy``: a
    :class:`~lrjax.controller.Controller` acting on its mean action, or a constant LR. The
    test split is measured after every ``test_every`` actions (default: at the end only).

    Args:
      env: the environment the episodes run on (its task, optimizer, horizon, steps per
        action and reward).
      policy: a :class:`~lrjax.controller.Controller` of the environment's controller config
        (:func:`run_controllers`), or a constant LR (a number, applied at every action as
        float32, :func:`run_schedules`).
      key: the episodes' root key, split into ``num_episodes`` episode keys.
      data: the task's data pytree (``task.load_data(...)``), as the environment takes it.
      num_episodes: episodes per policy, a positive int.
      test_every: measure the whole test split after every this many actions, a divisor of
        the horizon; default None: at the end only.

    Returns:
      The :class:`Episodes` of ``policy``, ``E = num_episodes``.
    """
    if isinstance(policy, Controller):
        return run_controllers(env, [policy], key, data, num_episodes, test_every=test_every)[0]
    schedule = np.full((1, env.config.horizon), float(policy), np.float32)
    return run_schedules(env, schedule, key, data, num_episodes, test_every=test_every)[0]


def _tile_keys(keys: jax.Array, count: int) -> jax.Array:
    """``count`` copies of the ``E`` episode keys along the first axis, ``[C * E, ...]``: typed
    keys (``[E]``) and legacy uint32 keys (``[E, 2]``) alike."""
    return jnp.tile(keys, (count,) + (1,) * (keys.ndim - 1))


def _without_probe(config):
    """``config`` less its declared probe: the environment's episodes observe the environment's
    own probe (:attr:`~lrjax.env.TraineeEnv.probe`), whatever a controller declares for the loops
    it is deployed in."""
    return config.replace(features=dataclasses.replace(config.features, probe=Probe()))


def run_controllers(
    env: TraineeEnv,
    controllers: Sequence[Controller],
    key: jax.Array,
    data: Any,
    num_episodes: int,
    *,
    test_every: int | None = None,
) -> list[Episodes]:
    """Run every controller (all of one config: the environment's, with their own params and
    normaliser statistics) on the same ``num_episodes`` episodes (the keys of
    :func:`run_episodes`), all ``C x E`` episodes side by side in one program.

    Args:
      env: the environment the episodes run on (its task, optimizer, horizon, steps per
        action and reward).
      controllers: the ``C`` controllers, each acting on its mean action; their configs must
        equal ``env.config.controller`` apart from the features' probe (else a
        :class:`~lrjax.ConfigError`): the episodes observe the environment's probe.
      key: the episodes' root key (``jax.random.key`` or a legacy ``PRNGKey``), split into
        ``num_episodes`` episode keys. Every controller gets the same ``E`` keys.
      data: the task's data pytree (``task.load_data(...)``), as the environment takes it.
      num_episodes: ``E``, episodes per controller, a positive int.
      test_every: measure the whole test split after every this many actions, a divisor of
        the horizon; default None: at the end only.

    Returns:
      One :class:`Episodes` per controller, in the order of ``controllers``.
    """
    check_positive_int("num_episodes", num_episodes)
    for c in controllers:
        if _without_probe(c.config) != _without_probe(env.config.controller):
            raise ConfigError(
                "controllers entry with config "
                f"{c.config.to_json()} is not allowed: expected the environment's controller "
                "config (one environment per controller config: see lrjax.evaluation.batch)."
            )
    count = len(controllers)
    actors = jax.tree.map(
        lambda *x: jnp.repeat(jnp.stack(x), num_episodes, axis=0),
        *[(c.params, c.normaliser) for c in controllers],
    )
    keys = _tile_keys(jax.random.split(key, num_episodes), count)
    every = _test_every(env, test_every)
    flat = _episodes(_run(env, _controller_episode, every, *global_inputs((keys, actors, data))))
    return [flat.select(slice(c * num_episodes, (c + 1) * num_episodes)) for c in range(count)]


def run_schedules(
    env: TraineeEnv,
    schedules: np.ndarray,
    key: jax.Array,
    data: Any,
    num_episodes: int,
    *,
    test_every: int | None = None,
) -> list[Episodes]:
    """Run every LR schedule (``schedules[c, t]``: the LR of action t) on the same
    ``num_episodes`` episodes (the keys of :func:`run_episodes`: common random numbers), all
    ``C x E`` episodes side by side in one program.

    The LRs are applied as they are, through the environment's controlled optimizer (the
    controller config's ``base_schedule`` does not multiply them).

    Args:
      env: the environment the episodes run on (its task, optimizer, horizon, steps per
        action and reward).
      schedules: the ``C`` schedules, shape ``(C, horizon)`` (taken as float32; another shape
        is a :class:`~lrjax.ConfigError`), e.g. a stack of
        :func:`~lrjax.evaluation.constant_lrs` results.
      key: the episodes' root key (``jax.random.key`` or a legacy ``PRNGKey``), split into
        ``num_episodes`` episode keys. Every schedule gets the same ``E`` keys.
      data: the task's data pytree (``task.load_data(...)``), as the environment takes it.
      num_episodes: ``E``, episodes per schedule, a positive int.
      test_every: measure the whole test split after every this many actions, a divisor of
        the horizon; default None: at the end only.

    Returns:
      One :class:`Episodes` per schedule, in the order of the rows of ``schedules``.
    """
    check_positive_int("num_episodes", num_episodes)
    schedules = np.asarray(schedules, np.float32)
    if schedules.ndim != 2 or schedules.shape[1] != env.config.horizon:
        raise ConfigError(
            f"schedules of shape {schedules.shape} is not allowed: expected (schedules, "
            f"horizon={env.config.horizon})."
        )
    count = schedules.shape[0]
    keys = _tile_keys(jax.random.split(key, num_episodes), count)
    per_episode = jnp.repeat(jnp.asarray(schedules), num_episodes, axis=0)
    every = _test_every(env, test_every)
    flat = _episodes(_run(env, _schedule_episode, every, *global_inputs((keys, per_episode, data))))
    return [flat.select(slice(c * num_episodes, (c + 1) * num_episodes)) for c in range(count)]


def _test_every(env: TraineeEnv, test_every: int | None) -> int:
    horizon = env.config.horizon
    if test_every is None:
        return horizon
    check_positive_int("test_every", test_every)
    if horizon % test_every:
        raise ConfigError(
            f"test_every={test_every} is not allowed: expected a divisor of the horizon "
            f"({horizon} actions)."
        )
    return int(test_every)


def _episodes(out) -> Episodes:
    out = to_host(out)  # gathered from every process when several run (lrjax.distributed)
    (lr, train_loss, val_loss, reward, done, diverged_step), validation, curve = out
    lr, train_loss, val_loss, reward, done, diverged_step = (
        np.asarray(x) for x in (lr, train_loss, val_loss, reward, done, diverged_step)
    )
    ended = np.cumsum(done, axis=1) - done > 0  # steps after the episode's (first) end
    mask = lambda x: np.where(ended, np.nan, x)
    diverged_at = (diverged_step & ~ended).astype(bool)
    diverged = diverged_at.any(axis=1)
    last = np.where(diverged, np.inf, val_loss[:, -1])
    # A curve point is lost once the episode diverged at or before its action.
    points = curve["loss"].shape[1]
    every = lr.shape[1] // points
    first_bad = np.where(diverged, np.argmax(diverged_at, axis=1), lr.shape[1])
    lost = (np.arange(points) + 1) * every - 1 >= first_bad[:, None]
    test_loss = np.where(diverged, np.inf, np.asarray(curve["loss"])[:, -1])
    return Episodes(
        lr=mask(lr),
        train_loss=mask(train_loss),
        val_loss=mask(val_loss),
        reward=mask(reward),
        diverged=diverged,
        final_val_loss=last,
        validation_loss=np.where(diverged, np.inf, np.asarray(validation["loss"])),
        test_loss=test_loss,
        test_accuracy=np.where(diverged, np.nan, np.asarray(curve["accuracy"])[:, -1]),
        test_curve_loss=np.where(lost, np.inf, np.asarray(curve["loss"])),
        test_curve_accuracy=np.where(lost, np.nan, np.asarray(curve["accuracy"])),
    )


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _run(env, episode, test_every, keys, policies, data):
    """``episode`` for each key and policy, side by side as the environment batches them."""
    fn = functools.partial(episode, env, test_every)
    return VecEnv(env).over_episodes(fn, 2)(keys, policies, data)


def _record(info, reward, done):
    return info["lr"], info["train_loss"], info["val_loss"], reward, done, info["diverged"]


def _scan_with_test_curve(env, step, carry, xs, test_every, data, params_of):
    """``lax.scan(step, carry, xs)`` over the horizon, in segments of ``test_every`` actions
    with the whole test split measured after each: ``(carry, outputs, test_curve)``."""
    segments = env.config.horizon // test_every
    split = jax.tree.map(lambda x: x.reshape(segments, test_every, *x.shape[1:]), xs)

    def segment(carry, seg_xs):
        carry, out = jax.lax.scan(step, carry, seg_xs)
        return carry, (out, env.eval_task.metrics(params_of(carry), data, "test"))

    carry, (out, curve) = jax.lax.scan(segment, carry, split)
    out = jax.tree.map(lambda x: x.reshape(segments * test_every, *x.shape[2:]), out)
    return carry, out, curve


def _controller_episode(env, test_every, key, actor, data):
    config = env.config.controller
    actor_params, normaliser = actor
    k_reset, k_steps = jax.random.split(key)
    raw, state = env.reset(k_reset, data)

    def step(c, k):
        raw, state, carry, run_stats = c
        # Normalised as the deployed controller does (its statistics, or the run's own).
        obs, run_stats = raw, run_stats
        if not config.layered:  # a layered controller's are unnormalised (and clipped)
            obs, run_stats = observe_run(config.features, normaliser, run_stats, raw)
        carry, mean, _ = actor_step(actor_params, carry, obs, config)
        raw, state, reward, done, info = env.step_env(k, state, mean, data)
        return (raw, state, carry, run_stats), _record(info, reward, done)

    init = (
        raw,
        state,
        initial_carry(config, raw.shape[:-1]),
        init_normaliser(config.features.size),
    )
    keys = jax.random.split(k_steps, env.config.horizon)
    (_, state, _, _), out, curve = _scan_with_test_curve(
        env, step, init, keys, test_every, data, lambda c: c[1].trainee.params
    )
    return out, env.eval_task.metrics(state.trainee.params, data, "validation"), curve


def _schedule_episode(env, test_every, key, schedule, data):
    k_reset, k_steps = jax.random.split(key)
    _, state = env.reset(k_reset, data)

    def step(state, xs):
        k, lr = xs
        _, state, reward, done, info = env.step_env_lr(k, state, lr, data)
        return state, _record(info, reward, done)

    steps = (jax.random.split(k_steps, env.config.horizon), schedule)
    state, out, curve = _scan_with_test_curve(
        env, step, state, steps, test_every, data, lambda s: s.trainee.params
    )
    return out, env.eval_task.metrics(state.trainee.params, data, "validation"), curve
