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

  first observation:  start = l, start_lr = log lr, ema_i = l, best = l, last = l,
                      step_mean = step_var = 0
  afterwards:         ema_i <- d_i ema_i + (1 - d_i) l      (d = HISTORY_DECAYS)
                      best  <- min(best, ema_1)             (the middle time scale)
                      s = l - last;  last <- l             (the change since the last one)
                      step_var  <- d_1 step_var + (1 - d_1) (s - step_mean)^2
                      step_mean <- d_1 step_mean + (1 - d_1) s

``step_var`` is the spread of the loss's changes from one observation to the next about their
recent mean: a steady fall has none, a loss that jumps about (an LR too high for the trainee)
has much, on every trainee alike (a change of the log loss is a ratio of losses).

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
      last: the last observation's log loss.
      step_mean: EMA (the middle decay) of the change of the log loss between observations.
      step_var: EMA (the same decay) of the squared deviation of that change from
        ``step_mean``.
    """

    count: jax.Array
    start: jax.Array
    start_lr: jax.Array
    ema: jax.Array
    best: jax.Array
    last: jax.Array
    step_mean: jax.Array
    step_var: jax.Array


def init_history() -> LossHistory:
    """The history before the first observation (its values are set by the first one)."""
    zero = jnp.zeros((), jnp.float32)
    return LossHistory(
        count=jnp.zeros((), jnp.int32),
        start=zero,
        start_lr=zero,
        ema=jnp.zeros((len(HISTORY_DECAYS),), jnp.float32),
        best=zero,
        last=zero,
        step_mean=zero,
        step_var=zero,
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
    d = decays[1]
    change = jnp.where(first, 0.0, log_loss - history.last)
    deviation = change - history.step_mean
    return LossHistory(
        count=history.count + 1,
        start=jnp.where(first, log_loss, history.start),
        start_lr=jnp.where(first, log_lr, history.start_lr),
        ema=ema,
        best=jnp.where(first, ema[1], jnp.minimum(history.best, ema[1])),
        last=log_loss,
        step_mean=jnp.where(first, 0.0, d * history.step_mean + (1.0 - d) * change),
        step_var=jnp.where(first, 0.0, d * history.step_var + (1.0 - d) * jnp.square(deviation)),
    )
