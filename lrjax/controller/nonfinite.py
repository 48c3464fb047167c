"""Skip a non-finite step for a whole optax chain, so that one bad minibatch costs one step.

:func:`~lrjax.controller.scale_by_controller` already skips a step whose loss or updates are
not finite, but in a chain the transforms before it have updated their state by then: with
``optax.chain(clip_by_global_norm(1.0), scale_by_adam(), scale_by_controller(c))`` a NaN
gradient enters Adam's moments, every later update is NaN, every later step is skipped and the
parameters freeze. :func:`skip_nonfinite` wraps the whole chain: when the gradient, the loss
(``value=``) or the chain's output has a NaN or an Inf, the step's updates are zeros and the
state of every transform in the chain stays as it was; a counter records the skip.

``optax.apply_if_finite`` does the first half (it checks the incoming gradient only, and after
``max_consecutive_errors`` bad steps it gives up and applies them). This wrapper also checks
the loss and the output, never lets a non-finite value into the state, and never gives up: a
trainee whose every step is non-finite has diverged, which is for the training loop (or the RL
environment's divergence check) to decide. Written by hand for those two differences.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class SkipNonfiniteState(NamedTuple):
    """State of :func:`skip_nonfinite`.

    Attributes:
      inner_state: the wrapped transformation's state.
      skipped: steps skipped because something was not finite, int32 scalar.
    """

    inner_state: Any
    skipped: jax.Array


def all_finite(tree: Any) -> jax.Array:
    """Whether every entry of every leaf of ``tree`` is finite (True for an empty tree)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def zeros_unless(finite: jax.Array, updates: Any) -> Any:
    """``updates`` where ``finite``, else zeros of the same shapes and dtypes (a skipped step)."""
    return jax.tree.map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)), updates)


def skip_nonfinite(inner: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    """``inner`` (e.g. the whole chain ending in ``scale_by_controller``), made to skip a step
    with a non-finite gradient, loss or output: zero updates, ``inner``'s state unchanged.

    Extra arguments (``value=loss`` for the controller) are passed to ``inner``; ``value`` is
    checked too when given. The skip count is ``state.skipped``; :func:`current_lr` and
    :func:`controller_state` find the controller inside the wrapper.

    Example, a step with an infinite gradient is skipped and counted:

    >>> import jax.numpy as jnp, optax, lrjax
    >>> c = lrjax.pretrained.load("mlp_family_adam")
    >>> tx = skip_nonfinite(optax.chain(
    ...     optax.clip_by_global_norm(1.0), optax.scale_by_adam(),
    ...     lrjax.scale_by_controller(c, total_steps=100)))
    >>> params = {"w": jnp.ones(3)}
    >>> state = tx.init(params)
    >>> grads = {"w": jnp.full(3, jnp.inf)}
    >>> updates, state = tx.update(grads, state, params, value=jnp.float32(1.0))
    >>> updates["w"].tolist(), int(state.skipped)
    ([0.0, 0.0, 0.0], 1)
    """
    inner = optax.with_extra_args_support(inner)

    def init(params):
        return SkipNonfiniteState(inner.init(params), jnp.zeros([], jnp.int32))

    def update(updates, state, params=None, **extra_args):
        new_updates, new_inner = inner.update(updates, state.inner_state, params, **extra_args)
        finite = all_finite(updates) & all_finite(new_updates)
        if extra_args.get("value") is not None:
            finite = finite & all_finite(extra_args["value"])
        keep = lambda new, old: jnp.where(finite, new, old)
        return (
            zeros_unless(finite, new_updates),
            SkipNonfiniteState(
                inner_state=jax.tree.map(keep, new_inner, state.inner_state),
                skipped=jnp.where(finite, state.skipped, optax.safe_increment(state.skipped)),
            ),
        )

    return optax.GradientTransformationExtraArgs(init, update)
