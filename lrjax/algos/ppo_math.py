"""The pure pieces of PPO (Schulman et al. 2017, "Proximal Policy Optimization Algorithms").

Every function here is pure and jittable; the trainer (``lrjax.algos``' PPO, PureJaxRL-style)
composes them. Conventions:

* **Time-major.** Rollout arrays are ``[T, *batch]`` (``batch`` is usually ``[num_envs]``);
  :func:`gae` scans over the leading axis.
* **Done semantics.** ``dones[t] = 1`` when the episode ended *at* step t, i.e. after action
  ``a_t`` was taken and ``r_t`` received; the next row (t + 1) then belongs to a new episode, so
  nothing is bootstrapped across ``t -> t + 1``. This is what ``env.step`` returns for the
  transition it just made (PureJaxRL's ``Transition.done``). A time-limit truncation marked as
  done is treated as a terminal state (no bootstrap), as PureJaxRL does.
* **Validation.** Hyperparameters given as Python numbers are checked and raise
  :class:`~lrjax._validation.ConfigError`; arrays and tracers are not (so the functions still jit
  with traced hyperparameters). Shapes are static and always checked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from lrjax._validation import (
    ConfigError,
    check_in_range,
    check_non_negative,
    check_positive,
    check_positive_int,
)

__all__ = [
    "clipped_surrogate_loss",
    "explained_variance",
    "gae",
    "minibatch_indices",
    "normalize_advantages",
    "value_loss",
]


def _is_python_number(value: Any) -> bool:
    # bool is an int: it is passed on to the check helpers, which reject it.
    return isinstance(value, int | float)


def _check_if_number(check: Callable[..., None], field: str, value: Any, *args: Any) -> None:
    """Run ``check`` on ``value`` only if it is a Python number (arrays and tracers pass)."""
    if _is_python_number(value):
        check(field, value, *args)


def _as_float(x: jax.typing.ArrayLike) -> jax.Array:
    """``x`` as a JAX array, float32 unless it is already floating point."""
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def gae(
    rewards: jax.typing.ArrayLike,
    values: jax.typing.ArrayLike,
    dones: jax.typing.ArrayLike,
    last_value: jax.typing.ArrayLike,
    gamma: float | jax.Array,
    lam: float | jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation (Schulman et al. 2016, eqs. 11-16) with episode ends.

    With ``V_T = last_value`` and ``m_t = 1 - done_t``::

        delta_t = r_t + gamma * V_{t+1} * m_t - V_t
        A_t     = delta_t + gamma * lam * m_t * A_{t+1},        A_T = 0
        R_t     = A_t + V_t                                     (eq. 16, the value target)

    computed right to left with ``jax.lax.scan(reverse=True)``. ``lam = 1`` gives the discounted
    Monte-Carlo return (bootstrapped with ``last_value`` at the end of the rollout) minus
    ``V_t``; ``lam = 0`` gives the one-step TD error ``delta_t``.

    Args:
      rewards: ``r_t``, time-major ``[T, *batch]``.
      values: ``V(s_t)`` under the rollout policy's critic, ``[T, *batch]``.
      dones: ``[T, *batch]``, 1 (or True) where the episode ended at step t (after action t).
      last_value: ``V(s_T)``, the value of the observation after the last step, ``batch``.
      gamma: discount in [0, 1].
      lam: the GAE lambda in [0, 1].

    Returns:
      ``(advantages, returns)``, both ``[T, *batch]`` in the dtype of ``rewards``/``values``.
    """
    _check_if_number(check_in_range, "gamma", gamma, 0.0, 1.0)
    _check_if_number(check_in_range, "lam", lam, 0.0, 1.0)
    rewards, values, last_value = _as_float(rewards), _as_float(values), _as_float(last_value)
    dones = jnp.asarray(dones)
    if values.ndim < 1:
        raise ConfigError(f"values of shape {values.shape} is not allowed: expected [T, *batch].")
    for name, arr in (("rewards", rewards), ("dones", dones)):
        if arr.shape != values.shape:
            raise ConfigError(
                f"{name} of shape {arr.shape} is not allowed: expected the shape of values, "
                f"{values.shape}."
            )
    if last_value.shape != values.shape[1:]:
        raise ConfigError(
            f"last_value of shape {last_value.shape} is not allowed: expected values.shape[1:] = "
            f"{values.shape[1:]}."
        )
    dtype = jnp.result_type(rewards, values, last_value)
    rewards, values, last_value = (
        rewards.astype(dtype),
        values.astype(dtype),
        last_value.astype(dtype),
    )
    not_done = 1.0 - dones.astype(dtype)

    def step(carry, xs):
        next_adv, next_value = carry
        r, v, m = xs
        delta = r + gamma * next_value * m - v
        adv = delta + gamma * lam * m * next_adv
        return (adv, v), adv

    init = (jnp.zeros_like(last_value), last_value)
    _, advantages = jax.lax.scan(step, init, (rewards, values, not_done), reverse=True)
    advantages = advantages.astype(dtype)
    return advantages, advantages + values


def normalize_advantages(adv: jax.typing.ArrayLike, eps: float = 1e-8) -> jax.Array:
    """Standardise advantages over all elements: ``(A - mean(A)) / (std(A) + eps)``.

    ``std`` is the population standard deviation (``ddof = 0``), as in PPO implementations.
    Apply it per minibatch (PureJaxRL, openai baselines) or per rollout, as the trainer chooses.
    """
    _check_if_number(check_non_negative, "eps", eps)
    adv = _as_float(adv)
    return (adv - jnp.mean(adv)) / (jnp.std(adv) + eps)


def clipped_surrogate_loss(
    log_prob_new: jax.typing.ArrayLike,
    log_prob_old: jax.typing.ArrayLike,
    advantages: jax.typing.ArrayLike,
    clip_eps: float | jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """PPO's clipped surrogate objective as a loss to minimise (Schulman et al. 2017, eq. 7).

    With ``r_t = pi_new(a_t|s_t) / pi_old(a_t|s_t) = exp(log_prob_new - log_prob_old)``::

        L^CLIP = -mean( min( r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t ) )

    The gradient is zero for samples where the clipped term is the smaller one (``r > 1 + eps``
    with ``A > 0``, ``r < 1 - eps`` with ``A < 0``). ``log_prob_old`` and ``advantages`` are
    treated as data: pass them through ``jax.lax.stop_gradient`` if they come out of a
    differentiated computation.

    Args:
      log_prob_new: ``log pi_new(a_t|s_t)`` under the params being optimised, any shape.
      log_prob_old: ``log pi_old(a_t|s_t)`` from the rollout, same shape.
      advantages: ``A_t`` (normalised or not), same shape.
      clip_eps: the clipping range eps > 0 (0.2 in the paper).

    Returns:
      ``(loss, aux)`` with ``aux["approx_kl"] = mean((r - 1) - log r)`` (the non-negative,
      low-variance estimator of KL(pi_old || pi_new), Schulman 2020, "Approximating KL
      divergence") and ``aux["clip_fraction"] = mean(|r - 1| > eps)``; both without gradient.
    """
    _check_if_number(check_positive, "clip_eps", clip_eps)
    log_prob_new, log_prob_old = _as_float(log_prob_new), _as_float(log_prob_old)
    advantages = _as_float(advantages)
    if log_prob_old.shape != log_prob_new.shape or advantages.shape != log_prob_new.shape:
        raise ConfigError(
            f"log_prob_new, log_prob_old and advantages of shapes {log_prob_new.shape}, "
            f"{log_prob_old.shape}, {advantages.shape} are not allowed: expected one shape."
        )
    log_ratio = log_prob_new - log_prob_old
    ratio = jnp.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    loss = -jnp.mean(jnp.minimum(unclipped, clipped))
    ratio_sg, log_ratio_sg = jax.lax.stop_gradient(ratio), jax.lax.stop_gradient(log_ratio)
    aux = {
        "approx_kl": jnp.mean((ratio_sg - 1.0) - log_ratio_sg),
        "clip_fraction": jnp.mean((jnp.abs(ratio_sg - 1.0) > clip_eps).astype(ratio.dtype)),
    }
    return loss, aux


def value_loss(
    values_new: jax.typing.ArrayLike,
    values_old: jax.typing.ArrayLike,
    returns: jax.typing.ArrayLike,
    clip_eps: float | jax.Array | None = None,
) -> jax.Array:
    """The critic's loss, optionally with PPO2-style value clipping.

    Unclipped (``clip_eps=None``)::

        L^V = 0.5 * mean( (V - R)^2 )

    Clipped (openai baselines ppo2, PureJaxRL)::

        V_clip = V_old + clip(V - V_old, -eps, eps)
        L^V    = 0.5 * mean( max( (V - R)^2, (V_clip - R)^2 ) )

    Args:
      values_new: ``V(s_t)`` under the params being optimised, any shape.
      values_old: ``V(s_t)`` from the rollout (used only when clipping), same shape.
      returns: the targets ``R_t`` (e.g. :func:`gae`'s returns), same shape.
      clip_eps: ``None`` for no clipping, or the clipping range eps > 0.

    Returns:
      The scalar loss.
    """
    if clip_eps is not None:
        _check_if_number(check_positive, "clip_eps", clip_eps)
    values_new, values_old, returns = (
        _as_float(values_new),
        _as_float(values_old),
        _as_float(returns),
    )
    if values_old.shape != values_new.shape or returns.shape != values_new.shape:
        raise ConfigError(
            f"values_new, values_old and returns of shapes {values_new.shape}, "
            f"{values_old.shape}, {returns.shape} are not allowed: expected one shape."
        )
    sq = jnp.square(values_new - returns)
    if clip_eps is None:
        return 0.5 * jnp.mean(sq)
    v_clipped = values_old + jnp.clip(values_new - values_old, -clip_eps, clip_eps)
    return 0.5 * jnp.mean(jnp.maximum(sq, jnp.square(v_clipped - returns)))


def explained_variance(values: jax.typing.ArrayLike, returns: jax.typing.ArrayLike) -> jax.Array:
    """``1 - Var[R - V] / Var[R]``: how much of the value targets' variance the critic
    explains (1: perfectly; 0: no better than a constant; negative: worse). NaN when the
    targets do not vary."""
    values, returns = _as_float(values), _as_float(returns)
    var = jnp.var(returns)
    return jnp.where(var > 0, 1.0 - jnp.var(returns - values) / var, jnp.nan)


def minibatch_indices(key: jax.Array, num_items: int, num_minibatches: int) -> jax.Array:
    """A random permutation of ``range(num_items)`` split into equal minibatches.

    ``jax.random.permutation(key, num_items).reshape(num_minibatches, num_items //
    num_minibatches)``: every index appears exactly once. Take minibatch ``i`` of a flattened
    rollout ``x`` (``[num_items, ...]``) as ``x[idx[i]]`` or ``jnp.take(x, idx, axis=0)``.
    ``num_items`` and ``num_minibatches`` are Python ints (static under jit).

    Raises:
      ConfigError: if either is not a positive int or ``num_items`` is not divisible by
        ``num_minibatches``.
    """
    check_positive_int("num_items", num_items)
    check_positive_int("num_minibatches", num_minibatches)
    num_items, num_minibatches = int(num_items), int(num_minibatches)
    if num_items % num_minibatches:
        raise ConfigError(
            f"num_items={num_items!r} is not allowed: expected a multiple of "
            f"num_minibatches={num_minibatches!r}."
        )
    perm = jax.random.permutation(key, num_items)
    return perm.reshape(num_minibatches, num_items // num_minibatches)
