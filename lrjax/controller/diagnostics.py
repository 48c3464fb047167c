"""What a run's optimizer state says about how the run went: the LR applied and the steps
skipped as not finite, read where a user looks (:func:`diagnostics`), and a warning when a run
skipped many (:func:`warn_if_skipping`).

A step whose loss or updates are not finite is skipped by
:func:`~lrjax.controller.scale_by_controller` and :func:`~lrjax.controller.skip_nonfinite` (and
by ``optax.apply_if_finite``): the params
stay where they were, so a run that skips most of its steps still shows a finite, steady loss.
These helpers make that visible.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrjax._validation import check_in_range
from lrjax.controller.nonfinite import SkipNonfiniteState
from lrjax.controller.transform import ControllerState, controller_state

__all__ = [
    "SKIP_WARNING_FRACTION",
    "ControllerDiagnostics",
    "SkippingWarning",
    "diagnostics",
    "skipped_steps",
    "warn_if_skipping",
]

SKIP_WARNING_FRACTION = 0.01
"""Default share of skipped steps above which :func:`warn_if_skipping` warns (1%)."""


class SkippingWarning(UserWarning):
    """A run skipped a notable share of its steps because the loss or updates were not finite."""


class ControllerDiagnostics(NamedTuple):
    """How a controlled run went, read from its optimizer state (batched if the state is).

    Attributes:
      learning_rate: the LR applied at the last step (:func:`~lrjax.controller.current_lr`).
      steps: ``update`` calls so far, applied and skipped.
      skipped: steps skipped because the loss or an update was not finite (every skipping
        wrapper in the state counted: the controller, ``skip_nonfinite``,
        ``optax.apply_if_finite``).
      skipped_fraction: ``skipped / steps`` (0 before the first step).
    """

    learning_rate: jax.Array
    steps: jax.Array
    skipped: jax.Array
    skipped_fraction: jax.Array


def _skipping_states(opt_state: Any) -> list[Any]:
    """Every state in ``opt_state`` that counts skipped steps, wrappers' inner states included."""
    kinds = (ControllerState, SkipNonfiniteState, optax.ApplyIfFiniteState)
    is_counter = lambda x: isinstance(x, kinds)
    found = [x for x in jax.tree.leaves(opt_state, is_leaf=is_counter) if is_counter(x)]
    for wrapper in [x for x in found if not isinstance(x, ControllerState)]:
        found.extend(_skipping_states(wrapper.inner_state))
    return found


def _skip_count(state: Any) -> jax.Array:
    count = state.total_notfinite if isinstance(state, optax.ApplyIfFiniteState) else state.skipped
    # nnx.Optimizer keeps its state leaves in nnx.Variable boxes.
    return jnp.asarray(count.get_value() if hasattr(count, "get_value") else count)


def skipped_steps(opt_state: Any) -> jax.Array:
    """Steps skipped as not finite by every skipping transform in ``opt_state`` (int32; 0 when
    it holds none). The wrappers skip disjoint steps (an outer one skips before the inner ones
    see the step), so their counts add up."""
    counts = [_skip_count(x) for x in _skipping_states(opt_state)]
    if not counts:
        return jnp.zeros([], jnp.int32)
    return sum(counts[1:], counts[0]).astype(jnp.int32)


def diagnostics(opt_state: Any) -> ControllerDiagnostics:
    """The applied LR and the skipped steps of a run with one controller.

    Args:
      opt_state: an optimizer state holding exactly one
        :func:`~lrjax.controller.scale_by_controller` state (in any chain or wrapper, an
        ``nnx.Optimizer``'s ``opt_state`` included).

    Returns:
      A :class:`ControllerDiagnostics`.

    Example, a run whose second step had a NaN gradient:

    >>> import jax.numpy as jnp, lrjax
    >>> tx = lrjax.scale_by_controller(lrjax.pretrained.load("mlp_family_sgd"), total_steps=100)
    >>> params = {"w": jnp.ones(3)}
    >>> state = tx.init(params)
    >>> _, state = tx.update({"w": jnp.ones(3)}, state, params, value=jnp.float32(1.0))
    >>> _, state = tx.update({"w": jnp.full(3, jnp.nan)}, state, params, value=jnp.float32(1.0))
    >>> d = diagnostics(state)
    >>> int(d.steps), int(d.skipped), float(d.skipped_fraction)
    (2, 1, 0.5)
    """
    state = controller_state(opt_state)
    skipped = skipped_steps(opt_state)
    steps = state.count + skipped
    fraction = jnp.where(steps > 0, skipped / jnp.maximum(steps, 1), 0.0)
    return ControllerDiagnostics(
        learning_rate=state.learning_rate * state.schedule_factor,
        steps=steps,
        skipped=skipped,
        skipped_fraction=fraction.astype(jnp.float32),
    )


def warn_if_skipping(
    skipped: Any, steps: int, *, threshold: float = SKIP_WARNING_FRACTION, what: str = "the run"
) -> bool:
    """Warn (:class:`SkippingWarning`) when more than ``threshold`` of ``steps`` were skipped.

    Args:
      skipped: skipped steps, a scalar or one per trainee (:func:`skipped_steps`,
        ``TrainResult.skipped``).
      steps: the steps each trainee ran.
      threshold: the share of skipped steps above which to warn, in [0, 1].
      what: what the message calls the run.

    Returns:
      Whether it warned (on the host; call it outside ``jit``).
    """
    check_in_range("threshold", threshold, 0.0, 1.0)
    skipped = np.atleast_1d(np.asarray(skipped))
    fraction = skipped / max(int(steps), 1)
    bad = fraction > threshold
    if not bad.any():
        return False
    warnings.warn(
        f"{what} skipped {int(skipped.max())} of {int(steps)} steps "
        f"({fraction.max():.1%}) as not finite, in {int(bad.sum())} of {skipped.size} "
        "trainee(s): the params stayed put on those steps, so the loss looks steady while "
        "nothing trains. Lower the LR (Controller.with_initial_lr / with_lr_bounds) or find "
        "the non-finite loss.",
        SkippingWarning,
        stacklevel=2,
    )
    return True
