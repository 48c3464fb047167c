"""The deployable actor (Flax linen) and the pure functions around it.

* :class:`LSTMActor`: paper B's actor, a stack of LSTM layers (2 x 20 by default) over the
  observation sequence, one time step per call with an explicit carry. Its head gives the mean and
  log-std of a Gaussian over the unbounded action u (PPO samples from it, paper A; the sampling
  lives with the RL code in :mod:`lrjax.algos.policy`); the mean is the deterministic action used
  when the controller trains a model (paper B's ``a_t = pi_theta(s_t)``, Eq. 4).
* :func:`action_to_lr`: the map from u to the learning rate, bounded whatever u is.
* :class:`Controller`: a pytree bundling a :class:`ControllerConfig` (static), the actor's params
  and the feature normaliser's statistics that training left.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from lrjax._validation import ConfigError, check_less, check_positive
from lrjax.controller.config import LOG_STD_RANGE, ControllerConfig
from lrjax.features import NormaliserState, init_normaliser

__all__ = [
    "Carry",
    "Controller",
    "LSTMActor",
    "action_to_lr",
    "action_to_momentum",
    "actor_step",
    "init_actor_params",
    "init_controller",
    "initial_carry",
    "make_actor",
    "reset_carry",
]

Carry = tuple[tuple[jax.Array, jax.Array], ...]
"""The actor's recurrent state: one ``(c, h)`` pair per LSTM layer, each ``(*batch, units)``."""


def _unit_column_init(scale: float) -> nn.initializers.Initializer:
    """Initialisation of a ``(n, m)`` kernel: each column a uniformly random direction times scale.

    Same distribution as ``nn.initializers.orthogonal(scale)`` for one column, without its QR
    decomposition (slow to compile on CPU).
    """

    def init(key, shape, dtype=jnp.float32):
        v = jax.random.normal(key, shape, dtype)
        return scale * v / jnp.linalg.norm(v, axis=0, keepdims=True)

    return init


class LSTMActor(nn.Module):
    """Stacked LSTM actor with a Gaussian head over the pre-squash action u.

    ``h^l_t = LSTM_l(h^l_{t-1}, h^{l-1}_t)`` with ``h^0_t = s_t``; ``mean_t = W h^L_t + b`` and a
    learned, state-independent ``log_std`` clipped to [-5, 2].

    Attributes:
      layers: number of stacked LSTM layers.
      units: units per layer.
      mean_bias_init: initial bias of the mean head (the action of an untrained actor).
      head_init_scale: scale of the orthogonal initialisation of the mean head's kernel.
      log_std_init: initial log-std.
      outputs: actions per step: 1 (the LR; ``mean`` of the batch's shape) or more (the LR and
        the momentum, ``ControllerConfig.momentum_control``; ``mean`` of shape ``(*batch,
        outputs)``, the first one's bias ``mean_bias_init``, the others' 0).
    """

    layers: int = 2
    units: int = 20
    mean_bias_init: float = 0.0
    head_init_scale: float = 0.01
    log_std_init: float = -0.5
    outputs: int = 1

    @nn.compact
    def __call__(self, carry: Carry, obs: jax.Array) -> tuple[Carry, jax.Array, jax.Array]:
        """One time step.

        Args:
          carry: the recurrent state from :meth:`initialize_carry` or the previous step.
          obs: the observation, shape ``(*batch, obs_size)``.

        Returns:
          ``(new_carry, mean, log_std)``; ``mean`` and ``log_std`` of shape ``batch`` (``(*batch,
          outputs)`` for more than one output).
        """
        x = jnp.asarray(obs, jnp.float32)
        new_carry = []
        for i in range(self.layers):
            c, x = nn.OptimizedLSTMCell(self.units, name=f"lstm_{i}")(carry[i], x)
            new_carry.append(c)
        first_bias = lambda key, shape, dtype=jnp.float32: (
            jnp.zeros(shape, dtype).at[0].set(self.mean_bias_init)
        )
        mean = nn.Dense(
            self.outputs,
            kernel_init=_unit_column_init(self.head_init_scale),
            bias_init=first_bias,
            name="mean",
        )(x)
        shape = () if self.outputs == 1 else (self.outputs,)
        mean = mean[..., 0] if self.outputs == 1 else mean
        log_std = self.param("log_std", nn.initializers.constant(self.log_std_init), shape)
        log_std = jnp.broadcast_to(jnp.clip(log_std, *LOG_STD_RANGE), mean.shape)
        return tuple(new_carry), mean, log_std

    def initialize_carry(self, batch_shape: Sequence[int] = ()) -> Carry:
        """The zero recurrent state for a batch of shape ``batch_shape``."""
        zeros = jnp.zeros((*batch_shape, self.units), jnp.float32)
        return tuple((zeros, zeros) for _ in range(self.layers))


def make_actor(config: ControllerConfig) -> LSTMActor:
    """The :class:`LSTMActor` described by ``config``."""
    return LSTMActor(
        layers=config.lstm_layers,
        units=config.lstm_units,
        mean_bias_init=config.initial_action,
        head_init_scale=config.head_init_scale,
        log_std_init=config.log_std_init,
        outputs=config.action_size,
    )


def initial_carry(config: ControllerConfig, batch_shape: Sequence[int] = ()) -> Carry:
    """The actor's zero recurrent state (the state at an episode start).

    Args:
      config: the controller config; its ``lstm_layers`` and ``lstm_units`` fix the carry's
        structure and size.
      batch_shape: the leading batch shape of the carry, e.g. ``(num_envs,)`` for a batch of
        rollouts; default ``()``, one unbatched state.

    Returns:
      One ``(c, h)`` pair of float32 zeros per LSTM layer, each of shape
      ``(*batch_shape, lstm_units)``.
    """
    return make_actor(config).initialize_carry(batch_shape)


def reset_carry(carry: Carry, done: jax.typing.ArrayLike, config: ControllerConfig) -> Carry:
    """Reset the carry to zeros where ``done`` (episode starts in a batch of rollouts).

    Args:
      carry: the recurrent state, batch shape ``B`` (or ``B + (G,)``: a layered controller's
        groups, reset together).
      done: boolean of shape ``B``.
      config: the controller config.

    Returns:
      The carry with the entries where ``done`` set to the initial state.
    """
    done = jnp.asarray(done)
    reset = lambda c, z: jnp.where(done.reshape(done.shape + (1,) * (c.ndim - done.ndim)), z, c)
    return jax.tree.map(reset, carry, initial_carry(config))


@functools.partial(jax.jit, static_argnums=1)
def init_actor_params(key: jax.Array, config: ControllerConfig) -> dict[str, Any]:
    """Fresh actor params (the ``'params'`` collection) for ``config``."""
    actor = make_actor(config)
    obs = jnp.zeros((config.obs_size,), jnp.float32)
    return actor.init(key, actor.initialize_carry(), obs)["params"]


def _check_obs(obs: jax.Array, config: ControllerConfig) -> None:
    if obs.ndim < 1 or obs.shape[-1] != config.obs_size:
        raise ConfigError(
            f"obs of shape {obs.shape} does not fit the controller: expected (..., "
            f"{config.obs_size}) for the features {config.features.names}."
        )


def actor_step(
    params: Any, carry: Carry, obs: jax.Array, config: ControllerConfig
) -> tuple[Carry, jax.Array, jax.Array]:
    """One step of the actor: ``(carry, s_t) -> (carry', mean, log_std)`` of u's Gaussian.

    Args:
      params: the actor params (``'params'`` collection).
      carry: the recurrent state.
      obs: the observation ``s_t``, shape ``(*batch, obs_size)``.
      config: the controller config.

    Returns:
      ``(new_carry, mean, log_std)``.
    """
    obs = jnp.asarray(obs, jnp.float32)
    _check_obs(obs, config)
    return make_actor(config).apply({"params": params}, carry, obs)


def action_to_lr(
    u: jax.typing.ArrayLike,
    prev_lr: jax.typing.ArrayLike,
    config: ControllerConfig,
    bounds_factor: jax.typing.ArrayLike = 1.0,
) -> jax.Array:
    """Map the unbounded action u to the learning rate, in float32.

    * absolute (paper B): ``lr = exp(log lr_min + sigmoid(u) (log lr_max - log lr_min))``;
    * scale (paper A): ``lr = clip(prev_lr * alpha ** tanh(u), lr_min, lr_max)``;
    * log: ``lr = clip(initial_lr * exp(u), lr_min, lr_max)``.

    The result is always within ``[lr_min, lr_max]`` (as float32 numbers): NaN actions count as
    u = 0, infinite ones saturate.

    Args:
      u: the action (any shape).
      prev_lr: the previous LR (used in ``"scale"`` mode), broadcastable to ``u``.
      config: the controller config (mode and bounds).
      bounds_factor: ``lr_min``, ``lr_max`` and ``initial_lr`` times this (may be traced): the
        config moved to another start as :meth:`ControllerConfig.with_initial_lr` moves it, for
        an environment whose episodes start at drawn LRs (``EnvConfig.bounds_follow_start``).

    Returns:
      The LR, float32, of ``u``'s shape broadcast with ``prev_lr``'s.
    """
    u = jnp.asarray(u, jnp.float32)
    u = jnp.where(jnp.isnan(u), 0.0, u)
    moved = jnp.asarray(bounds_factor, jnp.float32)
    lo = jnp.asarray(config.lr_min, jnp.float32) * moved
    hi = jnp.asarray(config.lr_max, jnp.float32) * moved
    if config.action_mode == "absolute":
        log_lo, log_hi = jnp.log(lo), jnp.log(hi)
        lr = jnp.exp(log_lo + jax.nn.sigmoid(u) * (log_hi - log_lo))
        lr = jnp.broadcast_to(lr, jnp.broadcast_shapes(lr.shape, jnp.shape(prev_lr)))
    elif config.action_mode == "log":
        lr = jnp.exp(jnp.log(jnp.float32(config.initial_lr) * moved) + u)
        lr = jnp.broadcast_to(lr, jnp.broadcast_shapes(lr.shape, jnp.shape(prev_lr)))
    else:
        prev = jnp.asarray(prev_lr, jnp.float32)
        log_alpha = jnp.log(jnp.asarray(config.alpha, jnp.float32))
        lr = prev * jnp.exp(log_alpha * jnp.tanh(u))
        lr = jnp.where(jnp.isnan(lr), lo, lr)
    return jnp.clip(lr, lo, hi)


def action_to_momentum(u: jax.typing.ArrayLike, config: ControllerConfig) -> jax.Array:
    """Map the actor's second output to the momentum ``beta`` (``momentum_control``), float32:
    ``1 - beta = clip((1 - initial_momentum) exp(u), 1 - momentum_max, 1)``, so ``u = 0`` keeps
    ``initial_momentum``, each unit of ``u`` scales the momentum's horizon ``1 / (1 - beta)``
    by e, and ``beta`` stays in ``[0, momentum_max]`` whatever ``u`` is (NaN counts as 0).

    Example:

    >>> config = ControllerConfig.loss_only(momentum_control=True)
    >>> [round(float(action_to_momentum(u, config)), 3) for u in (0.0, -10.0, 10.0)]
    [0.9, 0.99, 0.0]
    """
    u = jnp.asarray(u, jnp.float32)
    u = jnp.where(jnp.isnan(u), 0.0, u)
    gap = jnp.float32(1.0 - config.initial_momentum) * jnp.exp(u)
    gap = jnp.clip(gap, jnp.float32(1.0 - config.momentum_max), 1.0)
    return 1.0 - gap


def action_position(
    u: jax.typing.ArrayLike, prev_lr: jax.typing.ArrayLike, config: ControllerConfig
) -> jax.Array:
    """Where the action ``u`` puts the LR in the log-LR range, ``2 (log lr - log lr_min) /
    (log lr_max - log lr_min) - 1``: in ``[-1, 1]`` for the LR :func:`action_to_lr` applies.

    In ``"log"`` mode the position is of the LR *before* the clip, ``log initial_lr + u``, and
    may leave ``[-1, 1]``: it is linear in ``u``, so a critic's slope reaches an actor whose
    output is past a bound (the applied LR is clipped; the gradient is not). In the other modes
    it is the applied LR's position (paper B's sigmoid then saturates at the bounds).

    Args:
      u: the action (any shape); NaN entries count as u = 0.
      prev_lr: the previous LR, broadcastable to ``u``. Its value is read only in ``"scale"``
        mode (through :func:`action_to_lr`); in ``"absolute"`` mode only its shape is (the
        result broadcasts with it); in ``"log"`` mode it is unused.
      config: the controller config: ``action_mode``, ``lr_min``, ``lr_max`` and (in ``"log"``
        mode) ``initial_lr``. The position is against these bounds as they are
        (:func:`action_to_lr`'s ``bounds_factor`` is 1 here).

    Returns:
      The position, float32: of ``u``'s shape in ``"log"`` mode, of ``u``'s shape broadcast with
      ``prev_lr``'s in the other modes.
    """
    lo, hi = jnp.log(jnp.float32(config.lr_min)), jnp.log(jnp.float32(config.lr_max))
    if config.action_mode == "log":
        u = jnp.asarray(u, jnp.float32)
        log_lr = jnp.log(jnp.float32(config.initial_lr)) + jnp.where(jnp.isnan(u), 0.0, u)
    else:
        log_lr = jnp.log(action_to_lr(u, prev_lr, config))
    return 2.0 * (log_lr - lo) / (hi - lo) - 1.0


@struct.dataclass
class Controller:
    """A learned LR controller: everything that fixes its behaviour in a training loop.

    Attributes:
      config: the :class:`ControllerConfig` (static): features, action map, LR bounds, initial
        LR, steps per action, network sizes.
      params: the actor's params (``'params'`` collection of :class:`LSTMActor`).
      normaliser: the feature normaliser's statistics a run starts from (what training used;
        fresh statistics for an untrained controller).
    """

    config: ControllerConfig = struct.field(pytree_node=False)
    params: Any
    normaliser: NormaliserState

    def with_initial_lr(self, initial_lr: float) -> Controller:
        """This controller started at ``initial_lr`` instead of its own start, its LR bounds
        moved by the same factor (:meth:`ControllerConfig.with_initial_lr`): a controller whose
        features are relative to its start acts the same from any start. What a user reaches for
        when their network wants another LR than the controller's default:

        >>> import lrjax
        >>> controller = lrjax.pretrained.load("mlp_family_adam").with_initial_lr(3e-3)
        >>> controller.config.initial_lr, controller.config.lr_min, controller.config.lr_max
        (0.003, 3e-06, 0.09)
        """
        return self.replace(config=self.config.with_initial_lr(initial_lr))

    def with_lr_bounds(self, lr_min: float, lr_max: float) -> Controller:
        """This controller with its LR kept within ``[lr_min, lr_max]``, its start moved into
        that range if it lies outside (clipped to the nearer bound); its actor is unchanged.

        For a controller that diverges or stalls on a network: ``lr_max`` below the LR where it
        diverged caps it, ``lr_min`` keeps it from annealing to nothing:

        >>> import lrjax
        >>> controller = lrjax.pretrained.load("mlp_family_adam").with_lr_bounds(1e-4, 2e-3)
        >>> controller.config.initial_lr, controller.config.lr_min, controller.config.lr_max
        (0.001, 0.0001, 0.002)

        Refused (a :class:`~lrjax.ConfigError`) for ``action_mode="absolute"``, whose action is a
        position between the bounds (new bounds would change every LR it chooses). A controller
        observing ``log_lr`` (paper A's LR position within the bounds) sees that position
        against the new bounds.
        """
        if self.config.action_mode == "absolute":
            raise ConfigError(
                "with_lr_bounds is not allowed for action_mode='absolute': its actions are "
                "positions between lr_min and lr_max, so other bounds change every LR it "
                "chooses. Retrain it with the bounds you want (ControllerConfig(lr_min=..., "
                "lr_max=...))."
            )
        check_positive("lr_min", lr_min)
        check_positive("lr_max", lr_max)
        check_less("lr_min", lr_min, "lr_max", lr_max)
        start = min(max(self.config.initial_lr, float(lr_min)), float(lr_max))
        config = self.config.replace(lr_min=float(lr_min), lr_max=float(lr_max), initial_lr=start)
        return self.replace(config=config)


def init_controller(key: jax.Array, config: ControllerConfig | None = None) -> Controller:
    """A fresh (untrained) controller: it applies about ``initial_lr`` until trained.

    Args:
      key: PRNG key for the actor's params.
      config: the config; default ``ControllerConfig()``.

    Returns:
      The :class:`Controller`.

    Example, an untrained loss-only controller starting at 0.05 (train it with
    :class:`lrjax.algos.PPO` or ``lrjax train``):

    >>> import jax, lrjax
    >>> c = init_controller(jax.random.key(0), lrjax.ControllerConfig.loss_only(initial_lr=0.05))
    >>> c.config.initial_lr, c.config.features.names[:2]
    (0.05, ('loss_vs_start_fast', 'loss_vs_start_slow'))
    """
    config = ControllerConfig() if config is None else config
    if not isinstance(config, ControllerConfig):
        raise ConfigError(
            f"config of type {type(config).__name__} is not allowed: expected a ControllerConfig."
        )
    return Controller(
        config=config,
        params=init_actor_params(key, config),
        normaliser=init_normaliser(config.features.size),
    )
