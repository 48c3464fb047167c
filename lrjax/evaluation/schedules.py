"""The reference schedules of the env-based evaluation, as the LR of each action.

An episode of ``horizon`` actions holds the LR for each action's trainee steps, so a schedule
over an episode is its optax schedule (:mod:`lrjax.baselines.schedules`, the one definition the
``lrjax baselines`` optimizers train with too) over ``horizon`` steps, evaluated at the action
indices ``0 .. horizon - 1``:

- ``constant``: the LR throughout;
- ``step_decay``: the LR times :data:`STEP_DECAY_FACTOR` after half the episode and again
  after three quarters (:data:`STEP_DECAY_AT`; the classic step schedule, paper A does not give
  its own);
- ``cosine_warmup``: a linear warm-up to the LR over the first
  :data:`~lrjax.baselines.schedules.WARMUP_FRACTION` of the actions, then a cosine decay
  towards 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import numpy as np

from lrjax.baselines.schedules import (
    Schedule,
    constant_schedule,
    step_decay_schedule,
    warmup_cosine_schedule,
    warmup_steps,
)

STEP_DECAY_FACTOR = 0.1
STEP_DECAY_AT = (0.5, 0.75)
"""The step-decay schedule of the evaluation: the LR times 0.1 after half the episode and again
after three quarters (at the actions ``round(0.5 * horizon)`` and ``round(0.75 * horizon)``)."""


def action_lrs(schedule: Schedule, horizon: int) -> np.ndarray:
    """``schedule`` at each action ``0 .. horizon - 1``: ``[horizon]`` float32.

    It is computed in float64 and rounded to float32 once, as the environment takes it, so
    that an LR does not depend on the float32 rounding of each operation of the formula."""
    with jax.enable_x64(True):
        lrs = schedule(np.arange(horizon, dtype=np.float64))
        return np.asarray(np.broadcast_to(np.asarray(lrs, np.float64), (horizon,)), np.float32)


def constant_lrs(lr: float, horizon: int) -> np.ndarray:
    """``lr`` at every action.

    Args:
      lr: the LR, taken as a Python float.
      horizon: actions per episode (``EnvConfig.horizon``), the length of the result.

    Returns:
      ``[horizon]`` float32, every entry ``lr`` (rounded to float32).
    """
    return action_lrs(constant_schedule(float(lr)), horizon)


def step_decay_boundaries(horizon: int) -> tuple[int, ...]:
    """The actions at which the evaluation's step decay multiplies the LR by
    :data:`STEP_DECAY_FACTOR`."""
    return tuple(round(f * horizon) for f in STEP_DECAY_AT)


def step_decay_lrs(lr: float, horizon: int) -> np.ndarray:
    """The evaluation's step decay from ``lr`` (:data:`STEP_DECAY_AT`).

    Args:
      lr: the LR before the first decay, taken as a Python float.
      horizon: actions per episode (``EnvConfig.horizon``), the length of the result. The
        decays come at the actions :func:`step_decay_boundaries` gives for it.

    Returns:
      ``[horizon]`` float32, the LR of each action.
    """
    schedule = step_decay_schedule(
        float(lr), STEP_DECAY_FACTOR, boundaries=step_decay_boundaries(horizon)
    )
    return action_lrs(schedule, horizon)


def cosine_warmup_lrs(lr: float, horizon: int) -> np.ndarray:
    """Linear warm-up to ``lr`` over the first
    :data:`~lrjax.baselines.schedules.WARMUP_FRACTION` of the actions, then a cosine decay
    towards 0.

    Args:
      lr: the peak LR, reached at the end of the warm-up, taken as a Python float.
      horizon: actions per episode (``EnvConfig.horizon``), the length of the result. The
        warm-up lasts :func:`~lrjax.baselines.schedules.warmup_steps` of it (at least one
        action).

    Returns:
      ``[horizon]`` float32, the LR of each action.
    """
    return action_lrs(warmup_cosine_schedule(float(lr), warmup_steps(horizon), horizon), horizon)


SHAPES: Mapping[str, Callable[[float, int], np.ndarray]] = {
    "constant": constant_lrs,
    "step_decay": step_decay_lrs,
    "cosine_warmup": cosine_warmup_lrs,
}
"""The schedule shapes of the evaluation's baselines, by name: ``(lr, horizon) -> [horizon]``."""


def shape_lrs(shape: str, lr: float, horizon: int) -> np.ndarray:
    """The LR of each action of the schedule ``shape`` (of :data:`SHAPES`) from ``lr``."""
    return SHAPES[shape](lr, horizon)
