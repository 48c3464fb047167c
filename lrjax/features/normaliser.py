"""The running normaliser of raw features, and chi = normalise(raw_features(inputs))."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lrjax.features.spec import FeatureSpec, raw_features


class NormaliserState(NamedTuple):
    """Running statistics of the raw features.

    Attributes:
      mean: running mean per feature, shape ``(n,)``, float32.
      var: running variance per feature, shape ``(n,)``, float32.
      count: number of finite observations per feature, shape ``(n,)``, int32.
    """

    mean: jax.Array
    var: jax.Array
    count: jax.Array


def init_normaliser(size: int) -> NormaliserState:
    """Empty statistics for ``size`` features."""
    return NormaliserState(
        mean=jnp.zeros((size,), jnp.float32),
        var=jnp.zeros((size,), jnp.float32),
        count=jnp.zeros((size,), jnp.int32),
    )


def normalise(
    spec: FeatureSpec, state: NormaliserState, raw: jax.Array
) -> tuple[jax.Array, NormaliserState]:
    """Update the running statistics with ``raw`` and return the normalised, clipped observation.

    With ``a_t = max(1 - momentum, 1 / t)`` and ``d = x - mean_{t-1}``:
    ``mean_t = mean_{t-1} + a_t d``, ``var_t = (1 - a_t) (var_{t-1} + a_t d^2)`` and
    ``obs = clip((x - mean_t) / sqrt(var_t + eps), -clip, clip)``. Non-finite entries give 0 and
    keep their statistics.

    Args:
      spec: the features (momentum, eps, clip, which features are normalised).
      state: the statistics so far.
      raw: the raw features, shape ``(n,)``.

    Returns:
      ``(obs, new_state)``, ``obs`` of shape ``(n,)``, float32.
    """
    raw = jnp.asarray(raw, jnp.float32)
    finite = jnp.isfinite(raw)
    x = jnp.where(finite, raw, 0.0)
    count = jnp.where(finite, state.count + 1, state.count)
    a = jnp.maximum(1.0 - spec.momentum, 1.0 / jnp.maximum(count, 1).astype(jnp.float32))
    d = x - state.mean
    mean = jnp.where(finite, state.mean + a * d, state.mean)
    var = jnp.where(finite, (1.0 - a) * (state.var + a * d * d), state.var)
    normed = (x - mean) / jnp.sqrt(var + spec.eps)
    do_norm = jnp.asarray([f.normalise and spec.normaliser == "ema" for f in spec.features])
    obs = jnp.where(do_norm, normed, x)
    obs = jnp.where(finite, jnp.clip(obs, -spec.clip, spec.clip), 0.0)
    return obs, NormaliserState(mean=mean, var=var, count=count)


def observe(
    spec: FeatureSpec, state: NormaliserState, inputs: Mapping[str, Any]
) -> tuple[jax.Array, NormaliserState]:
    """chi: inputs -> observation, ``normalise(spec, state, raw_features(spec, inputs))``.

    Args:
      spec: the features.
      state: the normaliser's statistics.
      inputs: the available inputs by name.

    Returns:
      ``(obs, new_state)``.
    """
    return normalise(spec, state, raw_features(spec, inputs))
