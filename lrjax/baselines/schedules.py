"""The reference learning-rate schedules, each defined once, as optax schedules ``count -> LR``.

The baselines of :mod:`lrjax.baselines.registry` train with them, and the env-based evaluation
(:mod:`lrjax.evaluation.schedules`) evaluates the same functions at the action indices, so a
schedule means the same thing in both places. Their arguments may be traced (grid values inside
a vmapped program): optax's ``exponential_decay`` and ``warmup_cosine_decay_schedule`` check
theirs in Python, which traced values cannot pass.

- :func:`constant_schedule`: one LR throughout;
- :func:`step_decay_schedule`: the LR times ``factor`` at each boundary (listed, or every
  ``interval``);
- :func:`warmup_cosine_schedule`: :func:`linear_warmup` over the first :data:`WARMUP_FRACTION`
  of the run, then :func:`cosine_decay_schedule` to 0 at its end (Loshchilov and Hutter 2017;
  Goyal et al. 2017's warm-up).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp

from lrjax._validation import ConfigError

Schedule = Callable[[Any], Any]
"""``count -> LR``: ``count`` the step (an int, or an array of steps)."""

WARMUP_FRACTION = 0.1
"""The linear warm-up of every schedule that has one takes the first tenth of the run."""


def warmup_steps(total_steps: int) -> int:
    """The warm-up of a run of ``total_steps`` steps: :data:`WARMUP_FRACTION` of them, rounded,
    at least one."""
    return max(1, round(WARMUP_FRACTION * total_steps))


def constant_schedule(value) -> Schedule:
    """``value`` at every step (in ``value``'s dtype, shaped like ``count``)."""
    return lambda count: jnp.broadcast_to(jnp.asarray(value), jnp.shape(count))


def step_decay_schedule(
    init_value, factor, *, boundaries: Sequence[Any] = (), interval=None
) -> Schedule:
    """``init_value * factor ** n``, ``n`` the decays before ``count``: the ``boundaries`` that
    ``count`` has reached, or with ``interval``, ``floor(count / interval)`` (a boundary every
    ``interval`` steps, without end). Give one of the two."""
    if (interval is None) == (not boundaries):
        raise ConfigError(
            "step_decay_schedule is not allowed without exactly one of boundaries and interval."
        )

    def schedule(count):
        if interval is not None:
            decays = jnp.floor(count / interval)
        else:
            decays = sum(jnp.asarray(count >= b, jnp.result_type(float)) for b in boundaries)
        return init_value * factor**decays

    return schedule


def linear_warmup(peak_value, warmup_steps: int, then: Schedule) -> Schedule:
    """``peak_value * (count + 1) / warmup_steps`` for the first ``warmup_steps`` steps (the
    last of them at ``peak_value``), then ``then(count - warmup_steps)``."""

    def schedule(count):
        warm = peak_value * (count + 1) / warmup_steps
        return jnp.where(count < warmup_steps, warm, then(count - warmup_steps))

    return schedule


def cosine_decay_schedule(peak_value, decay_steps: int) -> Schedule:
    """Half a cosine from ``peak_value`` at step 0 to 0 at ``decay_steps`` (0 after)."""

    def schedule(count):
        progress = jnp.clip(count / max(1, decay_steps), 0, 1)
        cosine = 0.5 * peak_value * (1 + jnp.cos(jnp.pi * progress))
        return cosine

    return schedule


def warmup_cosine_schedule(peak_value, warmup_steps: int, total_steps: int) -> Schedule:
    """Linear warm-up from 0 to ``peak_value`` over ``warmup_steps``, then cosine decay to 0 at
    ``total_steps``."""
    decay = cosine_decay_schedule(peak_value, total_steps - warmup_steps)
    return linear_warmup(peak_value, warmup_steps, decay)
