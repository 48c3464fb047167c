"""Hypergradient descent (SGD-HD and Adam-HD) as optax gradient transformations.

What: SGD and Adam whose single, global learning rate ``alpha`` is itself learned online by
gradient descent on the loss. With ``theta_{t-1} = theta_{t-2} + u_{t-1}``, the derivative of
``f(theta_{t-1})`` with respect to ``alpha_{t-1}`` (the "hypergradient") is
``g_t . d u_{t-1} / d alpha_{t-1}`` with ``g_t = grad f(theta_{t-1})``, available for free from
the current gradient and the previous update direction, so each step first moves ``alpha`` with
hypergradient learning rate ``beta`` and then takes the usual optimizer step with the new
``alpha``.

Why: these are established *learned-online* learning-rate baselines for the learned
learning-rate controllers of this library, and optax does not ship them.

The current learning rate is kept in the state (field ``learning_rate``) as a float32 scalar
array, so it can be logged, and so that the initial learning rate may be a traced array (e.g.
``jax.vmap`` of a whole training run over several initial learning rates).

References:
    A. G. Baydin, R. Cornish, D. Martinez Rubio, M. Schmidt, F. Wood. Online Learning Rate
    Adaptation with Hypergradient Descent. ICLR 2018, arXiv:1703.04782 (Algorithm 1: SGD-HD,
    Algorithm 3: Adam-HD). Authors' code: github.com/gbaydin/hypergradient-descent.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lrjax import _validation

__all__ = ["AdamHDState", "SGDHDState", "adam_hd", "sgd_hd"]

ScalarOrArray = float | jax.Array


class SGDHDState(NamedTuple):
    """State of :func:`sgd_hd`."""

    learning_rate: jax.Array  # shape (), float32: alpha_t, the learning rate of the last step.
    prev_grads: optax.Updates  # g_{t-1} (zeros before the first step).


class AdamHDState(NamedTuple):
    """State of :func:`adam_hd`."""

    count: jax.Array  # shape (), int32: number of updates done so far.
    learning_rate: jax.Array  # shape (), float32: alpha_t, the learning rate of the last step.
    mu: optax.Updates  # first moment m_t.
    nu: optax.Updates  # second moment v_t.


def _check(check: Any, field: str, value: Any, *args: Any, **kwargs: Any) -> None:
    """Validates ``value`` unless it is an array (possibly traced, hence not checkable)."""
    if not isinstance(value, jax.Array):
        check(field, value, *args, **kwargs)


def _check_common(learning_rate: Any, hypergrad_lr: Any) -> None:
    _check(_validation.check_positive, "learning_rate", learning_rate)
    _check(_validation.check_non_negative, "hypergrad_lr", hypergrad_lr)


def _as_scalar(value: ScalarOrArray) -> jax.Array:
    """A float32 scalar array; works on Python numbers and on (traced) arrays alike."""
    return jnp.asarray(value, dtype=jnp.float32)


def _tree_dot(tree_x: Any, tree_y: Any) -> jax.Array:
    """Inner product over a whole pytree, accumulated in (at least) float32."""

    def leaf_dot(x: jax.Array, y: jax.Array) -> jax.Array:
        dtype = jnp.promote_types(jnp.result_type(x, y), jnp.float32)
        return jnp.sum(x.astype(dtype) * y.astype(dtype))

    dots = jax.tree.leaves(jax.tree.map(leaf_dot, tree_x, tree_y))
    return sum(dots, start=jnp.zeros([], jnp.float32)).astype(jnp.float32)


def _scale(alpha: jax.Array, tree: Any, like: Any) -> Any:
    """-alpha * tree, cast to the dtypes of ``like`` (bfloat16 params get bfloat16 updates)."""
    return jax.tree.map(lambda x, ref: (-alpha * x).astype(ref.dtype), tree, like)


def sgd_hd(
    learning_rate: ScalarOrArray,
    hypergrad_lr: ScalarOrArray = 1e-3,
) -> optax.GradientTransformation:
    r"""SGD with hypergradient descent on its learning rate (SGD-HD, Baydin et al. 2018).

    Algorithm 1 of the paper, with ``g_t = grad f(theta_{t-1})`` and ``g_0 = 0``::

        h_t     = g_t . (-g_{t-1})              # d f(theta_{t-1}) / d alpha_{t-1}
        alpha_t = alpha_{t-1} - beta * h_t      # = alpha_{t-1} + beta * g_t . g_{t-1}
        u_t     = -alpha_t * g_t

    The dot product runs over the whole parameter pytree (one global learning rate). On the
    first step ``g_0 = 0``, so ``alpha_1 = alpha_0``.

    Args:
        learning_rate: Initial learning rate ``alpha_0 > 0``; a Python number or a scalar array
            (which may be traced, e.g. under ``jax.vmap``).
        hypergrad_lr: Hypergradient learning rate ``beta >= 0`` (``beta = 0`` is plain SGD).
            The default ``1e-3`` is the value of the paper's experiments for SGD-HD (with
            ``alpha_0 = 1e-3``); the authors' PyTorch code defaults to ``1e-6``.

    Returns:
        An :class:`optax.GradientTransformation` whose updates are the full steps ``u_t``
        (already multiplied by ``-alpha_t``, like ``optax.sgd``); ``state.learning_rate`` is
        ``alpha_t``.

    Raises:
        ConfigError: for a non-positive ``learning_rate`` or a negative ``hypergrad_lr`` (only
            checked when they are not arrays).
    """
    _check_common(learning_rate, hypergrad_lr)

    def init_fn(params: optax.Params) -> SGDHDState:
        return SGDHDState(
            learning_rate=_as_scalar(learning_rate),
            prev_grads=optax.tree.zeros_like(params),
        )

    def update_fn(
        updates: optax.Updates, state: SGDHDState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, SGDHDState]:
        del params
        hypergrad = -_tree_dot(updates, state.prev_grads)
        alpha = state.learning_rate - _as_scalar(hypergrad_lr) * hypergrad
        new_updates = _scale(alpha, updates, updates)
        prev_grads = optax.tree.cast_like(updates, state.prev_grads)
        return new_updates, SGDHDState(learning_rate=alpha, prev_grads=prev_grads)

    return optax.GradientTransformation(init_fn, update_fn)


def _adam_direction(mu: Any, nu: Any, count: jax.Array, b1: Any, b2: Any, eps: Any) -> Any:
    """m_hat / (sqrt(v_hat) + eps) after ``count`` steps; all zeros when ``count == 0``."""
    t = jnp.maximum(count, 1).astype(jnp.float32)  # mu = nu = 0 when count == 0.
    bc1 = 1.0 - jnp.asarray(b1, jnp.float32) ** t
    bc2 = 1.0 - jnp.asarray(b2, jnp.float32) ** t

    def leaf(m: jax.Array, v: jax.Array) -> jax.Array:
        dtype = jnp.promote_types(m.dtype, jnp.float32)
        m_hat = m.astype(dtype) / bc1
        v_hat = v.astype(dtype) / bc2
        return m_hat / (jnp.sqrt(v_hat) + eps)

    return jax.tree.map(leaf, mu, nu)


def _update_moment(grads: Any, moment: Any, decay: Any, order: int) -> Any:
    """decay * moment + (1 - decay) * g**order, computed in float32, stored in moment's dtype."""

    def leaf(g: jax.Array, m: jax.Array) -> jax.Array:
        dtype = jnp.promote_types(m.dtype, jnp.float32)
        new = decay * m.astype(dtype) + (1.0 - decay) * g.astype(dtype) ** order
        return new.astype(m.dtype)

    return jax.tree.map(leaf, grads, moment)


def adam_hd(
    learning_rate: ScalarOrArray,
    hypergrad_lr: ScalarOrArray = 1e-7,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> optax.GradientTransformation:
    r"""Adam with hypergradient descent on its learning rate (Adam-HD, Baydin et al. 2018).

    The paper's Adam-HD algorithm, with ``g_t = grad f(theta_{t-1})``, ``m_0 = v_0 = 0`` and
    the Adam direction ``d_t = m_hat_t / (sqrt(v_hat_t) + eps)`` (``d_0 = 0``)::

        h_t     = g_t . (-d_{t-1})              # d f(theta_{t-1}) / d alpha_{t-1}
        alpha_t = alpha_{t-1} - beta * h_t      # = alpha_{t-1} + beta * g_t . d_{t-1}
        m_t     = b1 * m_{t-1} + (1 - b1) * g_t
        v_t     = b2 * v_{t-1} + (1 - b2) * g_t**2
        m_hat_t = m_t / (1 - b1**t),  v_hat_t = v_t / (1 - b2**t)
        u_t     = -alpha_t * m_hat_t / (sqrt(v_hat_t) + eps)

    The dot product runs over the whole parameter pytree (one global learning rate). On the
    first step ``d_0 = 0``, so ``alpha_1 = alpha_0``. The previous direction ``d_{t-1}`` is
    recomputed from ``m_{t-1}``, ``v_{t-1}`` rather than stored.

    Args:
        learning_rate: Initial learning rate ``alpha_0 > 0``; a Python number or a scalar array
            (which may be traced, e.g. under ``jax.vmap``).
        hypergrad_lr: Hypergradient learning rate ``beta >= 0`` (``beta = 0`` is plain Adam).
            The default ``1e-7`` is the value of the paper's experiments for Adam-HD on
            logistic regression and the MLP (with ``alpha_0 = 1e-3``; ``1e-8`` for VGG Net);
            the authors' PyTorch code defaults to ``1e-8``.
        b1: Decay of the first moment, in ``[0, 1)``.
        b2: Decay of the second moment, in ``[0, 1)``.
        eps: Positive constant added to the denominator.

    Returns:
        An :class:`optax.GradientTransformation` whose updates are the full steps ``u_t``
        (already multiplied by ``-alpha_t``, like ``optax.adam``); ``state.learning_rate`` is
        ``alpha_t``.

    Raises:
        ConfigError: for a non-positive ``learning_rate`` or ``eps``, a negative
            ``hypergrad_lr`` or ``b1``/``b2`` outside ``[0, 1)`` (only checked when they are not
            arrays).
    """
    _check_common(learning_rate, hypergrad_lr)
    _check(_validation.check_in_range, "b1", b1, 0.0, 1.0, high_open=True)
    _check(_validation.check_in_range, "b2", b2, 0.0, 1.0, high_open=True)
    _check(_validation.check_positive, "eps", eps)

    def init_fn(params: optax.Params) -> AdamHDState:
        return AdamHDState(
            count=jnp.zeros([], jnp.int32),
            learning_rate=_as_scalar(learning_rate),
            mu=optax.tree.zeros_like(params),
            nu=optax.tree.zeros_like(params),
        )

    def update_fn(
        updates: optax.Updates, state: AdamHDState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, AdamHDState]:
        del params
        prev_direction = _adam_direction(state.mu, state.nu, state.count, b1, b2, eps)
        hypergrad = -_tree_dot(updates, prev_direction)
        alpha = state.learning_rate - _as_scalar(hypergrad_lr) * hypergrad
        mu = _update_moment(updates, state.mu, b1, 1)
        nu = _update_moment(updates, state.nu, b2, 2)
        count = optax.safe_increment(state.count)
        direction = _adam_direction(mu, nu, count, b1, b2, eps)
        new_updates = _scale(alpha, direction, updates)
        return new_updates, AdamHDState(count=count, learning_rate=alpha, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)
