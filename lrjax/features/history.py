"""The run's memory of its own loss: what trainee-independent features are relative to.

A raw loss means different things on different trainees (2.3 is chance on ten classes, a good
loss on another task); its ratio to the run's own start, or to the best the run has reached, means
the same everywhere. VeLO (Metz et al. 2022) and Celo (Moudgil et al. 2025) feed their learned
optimizers exactly such quantities: losses relative to the run's start and to its running
minimum, smoothed over several time scales. :class:`LossHistory` keeps them, in log space, and is
updated at each *observation* (each action of the controller, every ``steps_per_action`` steps),
the same way by the RL environment (:mod:`lrjax.env`) and the deployed transform
(:func:`lrjax.controller.scale_by_controller`), so that a controller sees in a user's loop what
it saw in training.

The update (one observation of loss ``L`` with ``l = log L``, at learning rate ``lr``)::

  first observation:  start = l, start_lr = log lr, ema_i = l, best = l
  afterwards:         ema_i <- d_i ema_i + (1 - d_i) l      (d = HISTORY_DECAYS)
                      best  <- min(best, ema_1)             (the middle time scale)

EMAs start at the first value (no bias correction is needed). A loss that is not finite counts
as ``MAX_LOG_LOSS`` (a diverging run reads as very bad, never as NaN).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

HISTORY_DECAYS = (0.5, 0.8, 0.95)
"""Per-observation decays of the three loss EMAs: about 2, 5 and 20 observations (at one action
every 10 steps: the last 20, 50 and 200 optimizer steps)."""

MAX_LOG_LOSS = 30.0
"""A non-finite or huge loss is recorded as ``exp(30)``: bad, bounded, finite."""


class LossHistory(NamedTuple):
    """What a run remembers of its losses (all float32; logs of losses and LRs).

    Attributes:
      count: observations so far (int32).
      start: log of the first observed loss.
      start_lr: log of the learning rate at the first observation.
      ema: ``(len(HISTORY_DECAYS),)`` EMAs of the log loss, fastest first.
      best: the lowest value the middle EMA has taken.
    """

    count: jax.Array
    start: jax.Array
    start_lr: jax.Array
    ema: jax.Array
    best: jax.Array


def init_history() -> LossHistory:
    """The history before the first observation (its values are set by the first one)."""
    zero = jnp.zeros((), jnp.float32)
    return LossHistory(
        count=jnp.zeros((), jnp.int32),
        start=zero,
        start_lr=zero,
        ema=jnp.zeros((len(HISTORY_DECAYS),), jnp.float32),
        best=zero,
    )


def update_history(
    history: LossHistory, loss: jax.typing.ArrayLike, lr: jax.typing.ArrayLike
) -> LossHistory:
    """``history`` after observing ``loss`` at learning rate ``lr`` (module docstring)."""
    log_loss = jnp.log(jnp.maximum(jnp.asarray(loss, jnp.float32), 1e-12))
    log_loss = jnp.where(jnp.isfinite(log_loss), jnp.minimum(log_loss, MAX_LOG_LOSS), MAX_LOG_LOSS)
    log_lr = jnp.log(jnp.maximum(jnp.asarray(lr, jnp.float32), 1e-12))
    first = history.count == 0
    decays = jnp.asarray(HISTORY_DECAYS, jnp.float32)
    ema = jnp.where(first, log_loss, decays * history.ema + (1.0 - decays) * log_loss)
    return LossHistory(
        count=history.count + 1,
        start=jnp.where(first, log_loss, history.start),
        start_lr=jnp.where(first, log_lr, history.start_lr),
        ema=ema,
        best=jnp.where(first, ema[1], jnp.minimum(history.best, ema[1])),
    )
