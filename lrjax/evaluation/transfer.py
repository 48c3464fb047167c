"""Baselines tuned on other trainees and applied unchanged: the fair comparison for a controller
meant for networks it never saw.

A controller trained across a task family is deployed on a held-out trainee without tuning. The
baseline that makes the same bargain is tuned on the family's *training* trainees and applied,
unchanged, to the held-out one (a *transferred* baseline: neither side tunes on the target);
the same tuning on the target itself gives an *oracle*, the best a fixed schedule could do
there. :func:`tune_across` does both: it trains every configuration of a baseline's grid
(:class:`~lrjax.baselines.registry.OptimizerSpec`) on each trainee it is given, for
``len(keys)`` tuning seeds each (one vmapped program per trainee), and picks the configuration
with the lowest mean *relative regret*::

  regret(c, i) = V(c, i) / min_c' V(c', i) - 1,   score(c) = mean_i regret(c, i)

with ``V(c, i)`` the mean final validation loss of configuration ``c`` on trainee ``i`` over the
tuning seeds (a non-finite loss counts as infinite regret). Regret relative to each trainee's
best keeps a trainee with large losses from outweighing the others, so the choice is the
configuration that is nearly best everywhere, not the one best on the hardest trainee.

Tuning reads the validation split only: its choice does not depend on the test split.

Written here rather than taken from a library: optax has the schedules, not a tuner across
trainees; learned_optimization tunes its baselines per task.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrjax import training
from lrjax._validation import ConfigError, check_positive_int
from lrjax.baselines.registry import OptimizerSpec, stack_configs
from lrjax.tasks import Task

__all__ = ["Transferred", "relative_regret", "tune_across"]


@dataclasses.dataclass(frozen=True)
class Transferred:
    """A baseline's configuration chosen across trainees.

    Attributes:
      name: the baseline (its registry name).
      config: the chosen hyperparameters (``{"learning_rate": ..., ...}``).
      configs: every configuration tried, in grid order.
      val_loss: ``[trainees, configs]`` mean final validation loss over the tuning seeds.
      scores: ``[configs]`` mean relative regret (:func:`relative_regret`); ``config`` is the
        lowest's.
      trainees: the names of the trainees tuned on.
    """

    name: str
    config: dict[str, float]
    configs: tuple[dict[str, float], ...]
    val_loss: np.ndarray
    scores: np.ndarray
    trainees: tuple[str, ...]


def relative_regret(val_loss: np.ndarray) -> np.ndarray:
    """``[configs]`` mean over trainees of ``V / min V - 1`` (module docstring) for
    ``val_loss`` of shape ``[trainees, configs]``; non-finite losses count as +inf, and a trainee
    on which every configuration failed counts for none."""
    v = np.where(np.isfinite(val_loss), val_loss, np.inf)
    best = v.min(axis=1, keepdims=True)
    usable = np.isfinite(best[:, 0])
    if not usable.any():
        return np.full(v.shape[1], np.inf)
    return (v[usable] / best[usable] - 1.0).mean(axis=0)


def tune_across(
    spec: OptimizerSpec,
    trainees: Sequence[tuple[Task, Any]],
    keys: jax.Array,
    num_steps: int,
    *,
    lrs: Sequence[float] | None = None,
) -> Transferred:
    """The configuration of ``spec`` with the lowest mean relative regret on ``trainees``.

    Args:
      spec: the baseline and its grid (``spec.grid(lrs)``).
      trainees: ``(task, data)`` pairs to tune on: a family's training trainees (a transferred
        baseline) or the target alone (an oracle).
      keys: ``[S]`` tuning seeds, the same for every trainee and configuration (paired); keep
        them disjoint from the held-out seeds.
      num_steps: steps of each tuning run (a schedule's phases scale with the run, so the
        chosen configuration applies at another budget as a fraction of it).
      lrs: the learning rates to search (default: ``spec.lr_grid``).

    Returns:
      A :class:`Transferred`.
    """
    if not trainees:
        raise ConfigError("trainees=() is not allowed: expected at least one (task, data) pair.")
    check_positive_int("num_steps", num_steps)
    keys = jnp.asarray(keys)
    configs = tuple(spec.grid(lrs))
    seeds = keys.shape[0]
    hparams = stack_configs(configs, repeat=seeds)
    tiled = keys[jnp.tile(jnp.arange(seeds), len(configs))]  # config-major, as hparams
    rows = []
    for task, data in trainees:
        r = training.train(
            task,
            spec.make_tx(num_steps),
            tiled,
            data,
            num_steps,
            hparams=hparams,
            eval_params=spec.eval_params,
            learning_rate_fn=spec.learning_rate,
        )
        final = r.val_loss[:, -1].reshape(len(configs), seeds)
        final = np.where(np.isfinite(final), final, np.inf)
        rows.append(final.mean(axis=1))
    val_loss = np.stack(rows)
    scores = relative_regret(val_loss)
    return Transferred(
        name=spec.name,
        config=dict(configs[int(np.argmin(scores))]),
        configs=configs,
        val_loss=val_loss,
        scores=scores,
        trainees=tuple(task.name for task, _ in trainees),
    )
