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
    spec: FeatureSpec, state: NormaliserState, raw: jax.Array, *, update: bool = True
) -> tuple[jax.Array, NormaliserState]:
    """The normalised, clipped observation of ``raw``, and the statistics after it.

    ``spec.normaliser == "frozen"``: ``obs = clip((x - mean) / sqrt(var + eps), -clip, clip)``
    with the given statistics (gathered across training episodes by :func:`accumulate`), which
    are returned unchanged; a feature with no statistics yet (count 0) passes through, clipped.

    ``spec.normaliser == "ema"``: the statistics are updated first. With
    ``a_t = max(1 - momentum, 1 / t)`` and ``d = x - mean_{t-1}``:
    ``mean_t = mean_{t-1} + a_t d``, ``var_t = (1 - a_t) (var_{t-1} + a_t d^2)`` and
    ``obs = clip((x - mean_t) / sqrt(var_t + eps), -clip, clip)``. Non-finite entries give 0 and
    keep their statistics.

    ``update=False`` normalises with the statistics as they are and returns them unchanged,
    whatever the normaliser (a look at a state the run will not observe, such as the actor-critic's
    ``s_{t+1}``).

    Args:
      spec: the features (momentum, eps, clip, which features are normalised).
      state: the statistics so far.
      raw: the raw features, shape ``(n,)``.
      update: whether an ``"ema"`` normaliser takes ``raw`` into its statistics.

    Returns:
      ``(obs, new_state)``, ``obs`` of shape ``(n,)``, float32.
    """
    raw = jnp.asarray(raw, jnp.float32)
    finite = jnp.isfinite(raw)
    x = jnp.where(finite, raw, 0.0)
    if spec.normaliser == "frozen" or not update:
        return _normalised(
            spec, state.mean, jnp.where(state.count > 0, state.var, 1.0), x, finite
        ), state
    count = jnp.where(finite, state.count + 1, state.count)
    a = jnp.maximum(1.0 - spec.momentum, 1.0 / jnp.maximum(count, 1).astype(jnp.float32))
    d = x - state.mean
    mean = jnp.where(finite, state.mean + a * d, state.mean)
    var = jnp.where(finite, (1.0 - a) * (state.var + a * d * d), state.var)
    return _normalised(spec, mean, var, x, finite), NormaliserState(mean, var, count)


def _normalised(spec: FeatureSpec, mean, var, x, finite) -> jax.Array:
    normed = (x - mean) / jnp.sqrt(var + spec.eps)
    do_norm = jnp.asarray([f.normalise and spec.normaliser != "none" for f in spec.features])
    obs = jnp.where(do_norm, normed, x)
    return jnp.where(finite, jnp.clip(obs, -spec.clip, spec.clip), 0.0)


def accumulate(state: NormaliserState, raw: jax.Array) -> NormaliserState:
    """The statistics of every observation so far: ``state`` merged with a batch ``raw[..., n]``.

    Exact count-weighted mean and variance (Chan et al.'s parallel update: with batch count
    ``m``, mean ``mu_b`` and variance ``var_b``, ``delta = mu_b - mean``,
    ``mean' = mean + delta m / (count + m)`` and ``var' = (count var + m var_b + delta^2 count m
    / (count + m)) / (count + m)``), per feature over its finite entries only. PPO gathers the
    ``"frozen"`` normaliser's statistics this way across all its training episodes, as PPO
    implementations normalise observations; the trained controller then carries them fixed.
    """
    raw = jnp.asarray(raw, jnp.float32).reshape(-1, state.mean.shape[0])
    finite = jnp.isfinite(raw)
    m = finite.sum(axis=0)
    x = jnp.where(finite, raw, 0.0)
    mf = jnp.maximum(m, 1).astype(jnp.float32)
    batch_mean = x.sum(axis=0) / mf
    batch_var = jnp.where(finite, jnp.square(x - batch_mean), 0.0).sum(axis=0) / mf
    n, nf = state.count + m, jnp.maximum(state.count + m, 1).astype(jnp.float32)
    c, mb = state.count.astype(jnp.float32), m.astype(jnp.float32)
    delta = batch_mean - state.mean
    mean = state.mean + delta * mb / nf
    var = (c * state.var + mb * batch_var + jnp.square(delta) * c * mb / nf) / nf
    return NormaliserState(mean=mean, var=var, count=n.astype(jnp.int32))


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


def observe_run(
    spec: FeatureSpec,
    agent_stats: NormaliserState,
    run_stats: NormaliserState,
    raw: jax.Array,
    *,
    update: bool = True,
) -> tuple[jax.Array, NormaliserState]:
    """A run's observation of ``raw``, as an RL agent and a deployed controller make it: the one
    place that decides whose statistics normalise.

    ``"frozen"``: the agent's statistics across all its training episodes (``agent_stats``,
    fixed within a run; a trained controller carries them); ``run_stats`` pass through unchanged.
    ``"ema"`` (and ``"none"``): the run's own statistics, restarted with every run and updated by
    ``raw`` (unless ``update=False``).

    Args:
      spec: the features; its ``normaliser`` picks whose statistics normalise, and its
        momentum, eps and clip are used as in :func:`normalise`.
      agent_stats: the agent's statistics across its training episodes, used (unchanged) only
        when ``spec.normaliser == "frozen"``.
      run_stats: the run's own statistics (restarted with every run), used and updated for
        ``"ema"`` and ``"none"``, returned unchanged for ``"frozen"``.
      raw: the raw features, shape ``(n,)``.
      update: whether ``run_stats`` take ``raw`` in (``"ema"`` and ``"none"``); ignored for
        ``"frozen"``.

    Returns:
      ``(obs, run_stats after the observation)``.
    """
    if spec.normaliser == "frozen":
        return normalise(spec, agent_stats, raw)[0], run_stats
    return normalise(spec, run_stats, raw, update=update)


def deployed_normaliser(spec: FeatureSpec, agent_stats: NormaliserState) -> NormaliserState:
    """The statistics a trained controller carries: the agent's (``"frozen"``), or fresh ones
    (a per-run normaliser starts every deployed run empty).

    Args:
      spec: the controller's features; only ``spec.normaliser`` is read.
      agent_stats: the agent's statistics gathered across its training episodes, mean of shape
        ``(n,)``; returned as they are for ``"frozen"``, else only their size ``n`` is read.

    Returns:
      ``agent_stats`` (``"frozen"``), or :func:`init_normaliser` statistics for ``n`` features.
    """
    if spec.normaliser == "frozen":
        return agent_stats
    return init_normaliser(agent_stats.mean.shape[-1])
