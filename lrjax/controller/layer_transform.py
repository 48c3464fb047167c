"""A controller per parameter group, and one that sets momentum: the sibling of
:func:`~lrjax.controller.scale_by_controller` for ``ControllerConfig.group_features`` and
``ControllerConfig.momentum_control``.

Paper B's future work (a learning rate per parameter group; other SGD variants) as an optax
transform. At each action the shared actor is stepped once per group ``g`` on
``s_t^g = [chi(inputs), chi_g]`` (the run's features, then the group's,
:mod:`lrjax.controller.groups`), each group with its own LSTM state, and sets the group's LR
``lr_t^g = action_to_lr(u_t^g, lr_{t-1}^g)`` and, with momentum control, its momentum
``beta_t^g`` (:func:`~lrjax.controller.actor.action_to_momentum`). The update of a leaf of group
``g`` is ``-lr_t^g s_t m_t`` with ``m_t = g_t + beta_t^g m_{t-1}`` (``optax.trace``'s heavy
ball; ``m_t = g_t`` without momentum control), ``s_t`` the base schedule's factor.

A single-LR controller without momentum control is the one-group case: its observation, LR and
updates are those of :func:`~lrjax.controller.scale_by_controller` (tested).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lrjax._validation import ConfigError
from lrjax.controller.actor import (
    Carry,
    Controller,
    action_to_lr,
    action_to_momentum,
    actor_step,
    initial_carry,
)
from lrjax.controller.config import ControllerConfig
from lrjax.controller.groups import (
    Groups,
    group_features,
    group_relative_change,
    make_groups,
    per_leaf,
)
from lrjax.controller.nonfinite import all_finite, zeros_unless
from lrjax.controller.transform import (
    _MISSING_INPUTS_HINT,
    _PROVIDED,
    _check_schedule_total_steps,
    _check_total_steps,
    _checked_config,
    _checked_loss,
    _scaled,
)
from lrjax.features import (
    LossHistory,
    NormaliserState,
    check_inputs,
    feature_inputs,
    init_history,
    observe,
    required_inputs,
    update_history,
)

__all__ = [
    "LayerControllerState",
    "group_lrs",
    "group_momenta",
    "group_observation",
    "group_step",
    "layer_controller_state",
    "layer_optimizer",
    "scale_by_layer_controller",
]


class LayerControllerState(NamedTuple):
    """State of :func:`scale_by_layer_controller` (G groups).

    Attributes:
      count: optimizer steps applied (skipped ones not counted), int32.
      skipped: steps skipped because the loss or an update was not finite, int32.
      learning_rate: each group's LR at the last applied step, float32 ``(G,)``.
      momentum: each group's momentum ``beta`` at the last applied step, float32 ``(G,)``
        (``initial_momentum`` throughout without momentum control, and unused then).
      trace: the momentum buffer ``m`` (params-shaped) with momentum control, else ``()``.
      carry: the actor's LSTM state, one per group (batch ``(G,)``).
      normaliser: the run-wide features' statistics (a layered controller's are unnormalised).
      obs: the last observation, float32 ``(G, obs_size)`` (for logging).
      anchor: the params at the last action (for ``group_step_vs_mean``), else ``()``.
      history: the run's loss history (:class:`~lrjax.features.LossHistory`).
      schedule_factor: the base schedule's factor at the last action, float32.
    """

    count: jax.Array
    skipped: jax.Array
    learning_rate: jax.Array
    momentum: jax.Array
    trace: Any
    carry: Carry
    normaliser: NormaliserState
    obs: jax.Array
    anchor: Any
    history: LossHistory
    schedule_factor: jax.Array


def group_observation(
    config: ControllerConfig,
    groups: Groups,
    run_features: jax.Array,
    *,
    lr: jax.Array,
    momentum: jax.Array,
    history: LossHistory,
    first: jax.Array,
    params: Any = None,
    anchor: Any = None,
) -> jax.Array:
    """``s_t^g = [run_features, chi_g]`` for every group, float32 ``(G, obs_size)``: what the
    transform and the RL environment both feed the actor.

    Args:
      config: the controller config (its ``group_features``).
      groups: the trainee's groups.
      run_features: the run-wide raw features, ``(features.size,)`` (a layered controller's
        are unnormalised: the whole observation is clipped to ``features.clip`` here, a
        non-finite entry observed as 0, as ``FeatureSpec(normaliser="none")`` does).
      lr: each group's LR before this action, ``(G,)``.
      momentum: each group's momentum before this action, ``(G,)``.
      history: the loss history after this observation.
      first: whether this is the run's first observation.
      params, anchor: the params now and at the last action (read by ``group_step_vs_mean``).
    """
    if "group_step_vs_mean" in config.group_features:
        change = group_relative_change(groups, params, anchor)
    else:
        change = jnp.zeros((groups.size,), jnp.float32)
    own = group_features(
        config.group_features,
        groups,
        lr=lr,
        start_lr=history.start_lr,
        relative_change=change,
        first=first,
        momentum=momentum,
        initial_momentum=config.initial_momentum,
    )
    shared = jnp.broadcast_to(
        jnp.asarray(run_features, jnp.float32), (groups.size, run_features.shape[-1])
    )
    obs = jnp.concatenate([shared, own], axis=-1)
    # unnormalised, as FeatureSpec(normaliser="none") observes: clipped, non-finite as 0
    clip = config.features.clip
    return jnp.where(jnp.isfinite(obs), jnp.clip(obs, -clip, clip), 0.0)


def joint(x: jax.Array, config: ControllerConfig, batch_ndim: int) -> jax.Array:
    """``x`` (per group and output) summed to its first ``batch_ndim`` axes for a layered
    controller: the log-probability or entropy of the joint action of all groups (and both
    outputs); ``x`` itself otherwise."""
    if not config.layered:
        return x
    return jnp.sum(x, axis=tuple(range(batch_ndim, x.ndim)))


def value_input(obs: jax.Array, config: ControllerConfig) -> jax.Array:
    """What a state-value critic sees of an observation: the mean over groups for a layered
    controller (a fixed size whatever the depth), the observation otherwise."""
    return jnp.mean(obs, axis=-2) if config.layered else obs


def mean_lr(lr: jax.Array) -> jax.Array:
    """The geometric mean of the groups' LRs: the ``lr`` input of the run-wide features."""
    return jnp.exp(jnp.mean(jnp.log(jnp.maximum(jnp.asarray(lr, jnp.float32), 1e-30))))


def split_action(config: ControllerConfig, mean: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(u_lr, u_momentum)`` of the actor's output (``u_momentum`` zeros without momentum
    control)."""
    if config.momentum_control:
        return mean[..., 0], mean[..., 1]
    return mean, jnp.zeros_like(mean)


def group_step(
    groups: Groups, updates: Any, trace: Any, lr: jax.Array, momentum: jax.Array | None
) -> tuple[Any, Any]:
    """``(-lr_g m, m)`` with ``m = u + beta_g trace`` (``momentum`` given) or ``m = u``: one step
    of a per-group LR and momentum, in float32 (or wider) and cast back to each leaf's dtype. The
    transform and the RL environment's trainee both step here."""
    direction = updates
    if momentum is not None:
        direction = jax.tree.map(
            lambda g, t, b: g + b.astype(t.dtype) * t, updates, trace, per_leaf(groups, momentum)
        )
        trace = direction
    return jax.tree.map(_scaled, direction, per_leaf(groups, lr)), trace


def layer_optimizer(
    base: str, groups: Groups, lr: jax.Array, momentum: jax.Array | None
) -> optax.GradientTransformationExtraArgs:
    """The trainee's optimizer under a per-group controller, at LRs ``lr`` ``(G,)`` (traced):
    ``chain(base, scale(-lr_g))`` per group, or, with ``momentum`` ``(G,)``, the heavy ball of
    :func:`group_step` (``base`` must then be ``"momentum"``, whose buffer it replaces: its
    state is ``optax.trace``'s, so a trainee keeps it from one action to the next)."""
    if momentum is not None:
        if base != "momentum":
            raise ConfigError(
                f"optimizer={base!r} is not allowed with momentum_control: expected 'momentum' "
                "(the controller sets SGD's heavy-ball coefficient)."
            )
        inner = optax.trace(decay=0.0)

        def update(updates, state, params=None, **extra):
            del params, extra
            scaled, trace = group_step(groups, updates, state.trace, lr, momentum)
            return scaled, optax.TraceState(trace=trace)

        return optax.GradientTransformationExtraArgs(inner.init, update)
    first = {"sgd": optax.identity(), "momentum": optax.trace(decay=0.9)}.get(base)
    first = optax.scale_by_adam() if base == "adam" else first

    def scale(updates, state, params=None, **extra):
        del params, extra
        return group_step(groups, updates, (), lr, None)[0], state

    tail = optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), scale)
    return optax.with_extra_args_support(optax.chain(first, tail))


def scale_by_layer_controller(
    controller: Controller,
    *,
    labels: Any = None,
    total_steps: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Scale updates by ``-lr_g`` per parameter group, the LRs (and, with momentum control, the
    momentum of each group) chosen by a learned controller (module docstring).

    With momentum control the transform is the momentum: chain it after what transforms the
    gradient (clipping, weight decay), not after another momentum or Adam. It needs
    ``value=loss`` and the ``params`` in ``update``, as :func:`scale_by_controller` does; its
    state's ``learning_rate`` and ``momentum`` are per group (:func:`group_lrs`). Features
    that keep the previous predictions (``pred_change_var``) are not supported here.

    Example, an untrained per-layer controller with momentum on a two-layer model:

    >>> import jax, jax.numpy as jnp, lrjax
    >>> from lrjax.controller import ControllerConfig, init_controller
    >>> config = ControllerConfig.loss_only(
    ...     group_features=("group_lr_vs_start", "group_step_vs_mean", "group_depth"),
    ...     momentum_control=True)
    >>> tx = scale_by_layer_controller(init_controller(jax.random.key(0), config), total_steps=100)
    >>> params = {"dense1": {"kernel": jnp.ones((3, 4))}, "logits": {"kernel": jnp.ones((4, 2))}}
    >>> state = tx.init(params)
    >>> grads = jax.tree.map(jnp.ones_like, params)
    >>> updates, state = tx.update(grads, state, params, value=jnp.float32(2.3))
    >>> state.learning_rate.shape, [round(float(b), 2) for b in state.momentum]
    ((2,), [0.9, 0.9])

    Args:
      controller: the controller (any config; a per-group one acts per group).
      labels: the parameter groups of a per-group controller: ``None`` (each layer), or a
        pytree of labels or a function ``params -> labels`` as ``optax.multi_transform`` takes
        (:func:`lrjax.controller.groups.make_groups`). Ignored (one group) when the controller
        is not per group.
      total_steps: the run's optimizer steps (needed by ``progress``, ``actions_per_run`` and a
        base schedule, as for :func:`scale_by_controller`).

    Returns:
      A :class:`optax.GradientTransformationExtraArgs` whose state is a
      :class:`LayerControllerState`.
    """
    config = _checked_config(controller)
    spec = config.features
    if "prev_predictions" in required_inputs(spec):
        raise ConfigError(
            f"features {spec.names} are not allowed in scale_by_layer_controller: "
            "pred_change_var keeps the previous predictions, which only scale_by_controller "
            "supports."
        )
    _check_total_steps(spec, total_steps)
    _check_schedule_total_steps(config, total_steps)
    steps_per_action = config.steps_for(total_steps)
    needs_anchor = "group_step_vs_mean" in config.group_features

    def groups_of(tree) -> Groups:
        if not config.per_group:
            return make_groups(tree, jax.tree.map(lambda _: 0, tree))
        return make_groups(tree, labels)

    def init_fn(params: optax.Params) -> LayerControllerState:
        if params is None:
            raise ConfigError("scale_by_layer_controller needs the params in init(params).")
        g = groups_of(params).size
        zeros = lambda: jax.tree.map(lambda p: jnp.zeros_like(p), params)
        return LayerControllerState(
            count=jnp.zeros([], jnp.int32),
            skipped=jnp.zeros([], jnp.int32),
            learning_rate=jnp.full((g,), config.initial_lr, jnp.float32),
            momentum=jnp.full((g,), config.initial_momentum, jnp.float32),
            trace=zeros() if config.momentum_control else (),
            carry=initial_carry(config, (g,)),
            normaliser=controller.normaliser,
            obs=jnp.zeros((g, config.obs_size), jnp.float32),
            anchor=jax.tree.map(jnp.asarray, params) if needs_anchor else (),
            history=init_history(),
            schedule_factor=jnp.ones([], jnp.float32),
        )

    def update_fn(updates, state: LayerControllerState, params=None, *, value=None, **extra):
        loss = _checked_loss(value)
        if params is None and (needs_anchor or "params" in required_inputs(spec)):
            raise ConfigError(
                "scale_by_layer_controller needs the params: update(updates, state, params, "
                "value=loss)."
            )
        groups = groups_of(updates)
        history = update_history(state.history, loss, mean_lr(state.learning_rate))
        inputs = feature_inputs(
            loss=loss,
            updates=updates,
            lr=mean_lr(state.learning_rate),
            lr_bounds=(config.lr_min, config.lr_max),
            step=state.count,
            params=params,
            total_steps=total_steps,
            loss_history=history,
            extra={k: v for k, v in extra.items() if k not in _PROVIDED},
        )
        check_inputs(spec, inputs, hint=_MISSING_INPUTS_HINT)
        # (a layered controller's are unnormalised, observe only clips them; a single-LR one's
        # are normalised as scale_by_controller does)
        run_features, normaliser = observe(spec, state.normaliser, inputs)
        obs = group_observation(
            config,
            groups,
            run_features,
            lr=state.learning_rate,
            momentum=state.momentum,
            history=history,
            first=state.history.count == 0,
            params=params,
            anchor=state.anchor if needs_anchor else None,
        )
        carry, mean, _ = actor_step(controller.params, state.carry, obs, config)
        u_lr, u_momentum = split_action(config, mean)
        acts_now = state.count % steps_per_action == 0
        lr = jnp.where(
            acts_now, action_to_lr(u_lr, state.learning_rate, config), state.learning_rate
        )
        beta = state.momentum
        if config.momentum_control:
            beta = jnp.where(acts_now, action_to_momentum(u_momentum, config), state.momentum)
        factor = jnp.where(
            acts_now, _schedule_factor(config, state.count, total_steps), state.schedule_factor
        )

        scaled, trace = group_step(
            groups, updates, state.trace, lr * factor, beta if config.momentum_control else None
        )

        finite = all_finite((loss, scaled))
        acts = finite & acts_now
        keep = functools.partial(jax.tree.map, lambda new, old: jnp.where(acts, new, old))
        new_state = LayerControllerState(
            count=jnp.where(finite, optax.safe_increment(state.count), state.count),
            skipped=jnp.where(finite, state.skipped, optax.safe_increment(state.skipped)),
            learning_rate=jnp.where(acts, lr, state.learning_rate),
            momentum=jnp.where(acts, beta, state.momentum),
            trace=jax.tree.map(lambda new, old: jnp.where(finite, new, old), trace, state.trace),
            carry=keep(carry, state.carry),
            normaliser=keep(normaliser, state.normaliser),
            obs=keep(obs, state.obs),
            anchor=keep(params, state.anchor) if needs_anchor else (),
            history=keep(history, state.history),
            schedule_factor=jnp.where(acts, factor, state.schedule_factor),
        )
        return zeros_unless(finite, scaled), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _schedule_factor(config: ControllerConfig, count: jax.Array, total_steps) -> jax.Array:
    if config.base_schedule == "constant":
        return jnp.ones([], jnp.float32)
    return config.schedule_factor(count.astype(jnp.float32) / total_steps)


def layer_controller_state(opt_state: Any) -> LayerControllerState:
    """The :class:`LayerControllerState` inside an optimizer state.

    Args:
      opt_state: an optimizer state holding exactly one :func:`scale_by_layer_controller` state
        (at any depth of a chain, ``inject_hyperparams`` or ``multi_transform``).

    Returns:
      That state; raises ``ConfigError`` if there is none or more than one.
    """
    is_state = lambda x: isinstance(x, LayerControllerState)
    found = [x for x in jax.tree.leaves(opt_state, is_leaf=is_state) if is_state(x)]
    if len(found) != 1:
        raise ConfigError(
            f"Found {len(found)} scale_by_layer_controller states in the optimizer state: "
            "expected exactly one."
        )
    return found[0]


def group_lrs(opt_state: Any) -> jax.Array:
    """Each group's LR applied at the last step (``learning_rate * schedule_factor``).

    Args:
      opt_state: an optimizer state holding exactly one :func:`scale_by_layer_controller` state.

    Returns:
      float32 ``(G,)``, one LR per parameter group in depth order.
    """
    state = layer_controller_state(opt_state)
    return state.learning_rate * state.schedule_factor


def group_momenta(opt_state: Any) -> jax.Array:
    """Each group's momentum ``beta`` at the last step.

    Args:
      opt_state: an optimizer state holding exactly one :func:`scale_by_layer_controller` state.

    Returns:
      float32 ``(G,)``; the configured ``initial_momentum`` for every group when the
      controller does not control momentum.
    """
    return layer_controller_state(opt_state).momentum
