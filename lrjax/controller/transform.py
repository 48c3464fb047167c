"""The controller as an optax gradient transformation.

``scale_by_controller(controller)`` observes the trainee at each step through the state function
chi (:mod:`lrjax.features`), lets the actor choose the learning rate and returns ``-lr * updates``:
paper B's ``w_{t+1} = w_t - a_t grad f_t`` (Eq. 2) with ``a_t = pi_theta(s_t)`` (Eq. 4), and paper
A's ``lr_t = clip(lr_{t-1} * scale_t, lr_min, lr_max)`` in ``"scale"`` mode.

It composes like any optax transform::

  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_adam(),
                   scale_by_controller(controller))
  updates, opt_state = tx.update(grads, opt_state, params, value=loss)

and :func:`~lrjax.controller.current_lr` reads the LR it applied from the (possibly nested)
optimizer state.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lrjax._validation import ConfigError, check_positive_int
from lrjax.controller.actor import Carry, Controller, action_to_lr, actor_step, initial_carry
from lrjax.controller.config import ControllerConfig
from lrjax.controller.io import check_params
from lrjax.controller.nonfinite import all_finite, zeros_unless
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
from lrjax.features.probe import warn_unless_probabilities

__all__ = [
    "ControllerState",
    "apply_gradients",
    "controlled_sgd",
    "controller_state",
    "scale_by_controller",
]


class ControllerState(NamedTuple):
    """State of :func:`scale_by_controller`.

    Attributes:
      count: optimizer steps applied (skipped steps not counted), int32 scalar. The controller
        acts when ``count % k == 0``, ``k = config.steps_for(total_steps)``.
      skipped: steps skipped because the loss or an update was not finite, int32 scalar.
      learning_rate: the controller's learning rate at the last applied step (``initial_lr``
        before the first), float32 scalar: the LR applied is ``learning_rate *
        schedule_factor``. Read the applied one with :func:`~lrjax.controller.current_lr` to
        log or plot it.
      carry: the actor's LSTM state.
      normaliser: running statistics of the raw features.
      obs: the last observation the actor saw, float32 ``(obs_size,)`` (for logging).
      prev_predictions: the ``predictions`` of the last observation (float32, of
        ``predictions_shape``; shape ``(0,)`` when no feature needs them).
      history: the run's memory of the losses it observed (the ``loss_history`` input,
        :class:`~lrjax.features.LossHistory`), updated when the controller acts.
      schedule_factor: the base schedule's factor ``s(p)`` set at the last action
        (``ControllerConfig.base_schedule``; 1 for ``"constant"``), float32 scalar.
    """

    count: jax.Array
    skipped: jax.Array
    learning_rate: jax.Array
    carry: Carry
    normaliser: NormaliserState
    obs: jax.Array
    prev_predictions: jax.Array
    history: LossHistory
    schedule_factor: jax.Array


def scale_by_controller(
    controller: Controller,
    *,
    predictions_shape: Sequence[int] | None = None,
    total_steps: int | None = None,
    last_layer_path: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Scale updates by ``-lr`` with the LR chosen by a learned controller at each step.

    At each ``update`` with ``count % k == 0`` (``k = config.steps_for(total_steps)``) the
    transform computes the observation ``s_t = chi(inputs)`` (:func:`lrjax.features.observe`),
    steps the actor ``(carry, mean) = pi(carry, s_t)`` and sets
    ``lr_t = action_to_lr(mean, lr_{t-1})`` and the base schedule's factor ``s_t =
    s(step / total_steps)`` (``config.base_schedule``; 1 for ``"constant"``); at other steps it
    keeps both. It returns ``-lr_t s_t * updates``, computed in float32 (or wider) and cast
    back to each leaf's dtype, so bfloat16 params keep their dtype.

    A step whose loss or any update is not finite (as received, or after scaling: an overflow in
    a low-precision dtype) is skipped: the updates are zeros, the LR, LSTM state, normaliser and
    ``count`` stay as they were, and ``skipped`` is incremented.

    The returned ``update(updates, state, params=None, *, value, **extra_args)`` needs ``value``,
    the scalar training loss on the current minibatch (the ``loss`` input of the features), and
    every other input the features declare (e.g. ``val_loss=``, ``predictions=``; see
    :mod:`lrjax.features`) as keywords; ``params`` is needed by the ``last_layer_*`` features.
    Inputs the transform provides itself (``lr``, ``step``, ``updates``, ...) take precedence
    over keywords of the same name; keywords no feature needs are ignored (so other transforms
    in a chain can take their own). The inputs are built as in training
    (:func:`lrjax.features.feature_inputs`, shared with the RL environment and the
    actor-critic).

    ``value`` is the same quantity whatever the base optimizer before the transform in the
    chain (nothing for SGD, ``optax.trace`` for momentum, ``optax.scale_by_adam`` for Adam): the
    mean training loss of the minibatch the gradients came from, a float32 scalar, before any
    loss scaling a mixed-precision loop applies. ``val_loss`` and ``predictions`` are what the
    controller's probe declares (``controller.config.features.probe``, a
    :class:`~lrjax.features.Probe`): the mean loss on the first ``probe.val_examples`` of a fixed
    validation batch, and class probabilities (or, for ``outputs="raw"``, the outputs) on its
    first ``probe.examples``, shape ``(probe.examples, num_outputs)``, passed at every step
    though read only when the controller acts; :func:`lrjax.features.probe_inputs` computes
    both. Predictions that are not probabilities where probabilities are declared raise a
    ``UserWarning`` on the host at the steps where the controller acts.

    Past ``total_steps`` the transform goes on: it acts at the same interval, its ``progress``
    feature grows past 1 (beyond anything it observed in training) and a base schedule stays at
    its final value (0 for ``"cosine"``: the updates are then zeros). Give it the run's real
    length.

    Example, Adam's direction and a loss-only pretrained controller:

    >>> import lrjax
    >>> controller = lrjax.pretrained.load("mlp_family_adam")
    >>> tx = optax.chain(optax.scale_by_adam(), scale_by_controller(controller, total_steps=1000))
    >>> params = {"w": jnp.ones(3)}
    >>> opt_state = tx.init(params)
    >>> grads, loss = {"w": jnp.ones(3)}, jnp.float32(0.5)
    >>> updates, opt_state = tx.update(grads, opt_state, params, value=loss)
    >>> updates["w"].shape, bool(jnp.all(updates["w"] < 0))
    ((3,), True)

    Args:
      controller: the :class:`~lrjax.controller.Controller` (config and actor params).
      predictions_shape: the shape of the ``predictions`` input, ``(probe.examples,
        num_outputs)`` (e.g. ``(32, 10)`` for the default probe of a 10-class classifier),
        required when a feature needs the previous predictions (``pred_change_var``), which the
        state keeps; a leading axis other than ``probe.examples`` is refused.
      total_steps: the number of optimizer steps of the run, required when a feature needs it
        (``progress``; a learned schedule, like step decay or cosine, places its phases within
        the budget), the controller acts a fixed number of times per run
        (``config.actions_per_run``: it acts every ``total_steps // actions_per_run`` steps) or
        it follows a base schedule (``config.base_schedule``).
      last_layer_path: the output layer's kernel in ``params`` for the ``last_layer_*`` features,
        as the ``/``-joined keys of its leaf (e.g. ``"params/classifier/kernel"``); overrides
        the controller's ``FeatureSpec.last_layer_path``. ``None``: found by name
        (:func:`lrjax.features.find_last_layer`), an error naming the kernels when the names
        do not tell. Ignored by a controller with no such feature.

    Returns:
      A :class:`optax.GradientTransformationExtraArgs` whose state is a :class:`ControllerState`.

    References:
      Xu et al., "Reinforcement Learning for Learning Rate Control", 2017 (paper B);
      Xu et al., "Learning an Adaptive Learning Rate Schedule", 2019 (paper A).
    """
    config = _checked_config(controller)
    if config.per_group or config.momentum_control:
        raise ConfigError(
            f"A controller with group_features={config.group_features} and momentum_control="
            f"{config.momentum_control} is not allowed in scale_by_controller, which applies "
            "one LR: deploy it with lrjax.controller.scale_by_layer_controller."
        )
    spec = config.features
    if last_layer_path is not None:
        spec = dataclasses.replace(spec, last_layer_path=last_layer_path)
    kept_shape = _checked_predictions_shape(spec, predictions_shape)
    _check_total_steps(spec, total_steps)
    _check_schedule_total_steps(config, total_steps)
    steps_per_action = config.steps_for(total_steps)

    def schedule_factor(count: jax.Array) -> jax.Array:
        if config.base_schedule == "constant":
            return jnp.ones([], jnp.float32)
        return config.schedule_factor(count.astype(jnp.float32) / total_steps)

    def init_fn(params: optax.Params) -> ControllerState:
        del params
        return ControllerState(
            count=jnp.zeros([], jnp.int32),
            skipped=jnp.zeros([], jnp.int32),
            learning_rate=jnp.asarray(config.initial_lr, jnp.float32),
            carry=initial_carry(config),
            normaliser=controller.normaliser,
            obs=jnp.zeros((spec.size,), jnp.float32),
            prev_predictions=jnp.zeros(kept_shape or (0,), jnp.float32),
            history=init_history(),
            schedule_factor=jnp.ones([], jnp.float32),
        )

    def update_fn(
        updates: optax.Updates,
        state: ControllerState,
        params: optax.Params | None = None,
        *,
        value: jax.typing.ArrayLike | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, ControllerState]:
        loss = _checked_loss(value)
        history = update_history(state.history, loss, state.learning_rate)
        inputs = feature_inputs(
            loss=loss,
            updates=updates,
            lr=state.learning_rate,
            lr_bounds=(config.lr_min, config.lr_max),
            step=state.count,
            params=params,
            total_steps=total_steps,
            prev_predictions=state.prev_predictions if kept_shape else None,
            loss_history=history,
            extra={k: v for k, v in extra_args.items() if k not in _PROVIDED},
        )
        check_inputs(spec, inputs, hint=_MISSING_INPUTS_HINT)
        predictions = _kept_predictions(inputs, kept_shape, state.prev_predictions)
        if kept_shape:  # logits passed by mistake warn, at the steps where it acts
            warn_unless_probabilities(spec.probe, predictions, state.count % steps_per_action == 0)

        obs, normaliser = observe(spec, state.normaliser, inputs)
        carry, mean, _ = actor_step(controller.params, state.carry, obs, config)
        acts_now = state.count % steps_per_action == 0
        proposed = action_to_lr(mean, state.learning_rate, config)
        lr = jnp.where(acts_now, proposed, state.learning_rate)
        factor = jnp.where(acts_now, schedule_factor(state.count), state.schedule_factor)
        scaled = jax.tree.map(lambda u: _scaled(u, lr * factor), updates)

        # Skip the step when the loss or any update is not finite, before or after scaling (an
        # overflow of a low-precision dtype counts too): nothing non-finite ever leaves here.
        finite = all_finite((loss, scaled))
        acts = finite & acts_now
        keep = functools.partial(jax.tree.map, lambda new, old: jnp.where(acts, new, old))
        new_state = ControllerState(
            count=jnp.where(finite, optax.safe_increment(state.count), state.count),
            skipped=jnp.where(finite, state.skipped, optax.safe_increment(state.skipped)),
            learning_rate=jnp.where(acts, lr, state.learning_rate),
            carry=keep(carry, state.carry),
            normaliser=keep(normaliser, state.normaliser),
            obs=keep(obs, state.obs),
            prev_predictions=keep(predictions, state.prev_predictions),
            history=keep(history, state.history),
            schedule_factor=jnp.where(acts, factor, state.schedule_factor),
        )
        return zeros_unless(finite, scaled), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


_PROVIDED = ("params", "prev_predictions", "loss_history")
"""Inputs only the transform gives (from ``update``'s ``params`` and its state), never a keyword."""

_MISSING_INPUTS_HINT = (
    "Pass the inputs you provide as keywords, update(updates, state, params, value=loss, "
    "val_loss=..., predictions=...); lrjax.features.grads_and_feature_inputs computes them for "
    "a Flax model."
)


def _checked_config(controller: Any) -> ControllerConfig:
    """The controller's config, once its type and params are checked."""
    if not isinstance(controller, Controller):
        raise ConfigError(
            f"controller of type {type(controller).__name__} is not allowed: expected a lrjax "
            "Controller (init_controller(key, config) or load_controller(path))."
        )
    try:
        check_params(controller.params, controller.config)
    except ConfigError as e:
        raise ConfigError(
            f"{e} The controller's params are not those of its config (features, LSTM size): "
            "build it with init_controller(key, config) or load it with load_controller(path)."
        ) from e
    return controller.config


def _checked_predictions_shape(spec, predictions_shape) -> tuple[int, ...] | None:
    """The shape of the predictions the state keeps, or None when no feature needs them."""
    if "prev_predictions" not in required_inputs(spec):
        return None
    if predictions_shape is None:
        raise ConfigError(
            "predictions_shape=None is not allowed: the features "
            f"{[f.name for f in spec.features if 'prev_predictions' in f.inputs]} keep the "
            "previous predictions in the state; pass predictions_shape=predictions.shape."
        )
    shape = tuple(predictions_shape)
    for d in shape:
        check_positive_int("predictions_shape entry", d)
    if shape[:1] != (spec.probe.examples,):
        raise ConfigError(
            f"predictions_shape={shape} is not allowed: the controller observes "
            f"{spec.probe.describe()} (its FeatureSpec.probe), so predictions have a leading axis "
            f"of {spec.probe.examples}; lrjax.features.probe_inputs(controller.config.features."
            "probe, outputs, labels, loss_fn) computes them."
        )
    return shape


def _check_total_steps(spec, total_steps) -> None:
    if "total_steps" not in required_inputs(spec):
        return
    if total_steps is None:
        raise ConfigError(
            "total_steps=None is not allowed: the features "
            f"{[f.name for f in spec.features if 'total_steps' in f.inputs]} need the run's "
            "length; pass total_steps=<optimizer steps of the run>."
        )
    check_positive_int("total_steps", total_steps)


def _check_schedule_total_steps(config: ControllerConfig, total_steps) -> None:
    if config.base_schedule == "constant":
        return
    if total_steps is None:
        raise ConfigError(
            f"total_steps=None is not allowed: this controller follows a {config.base_schedule} "
            "base schedule (base_schedule), so it needs the run's length; pass "
            "total_steps=<optimizer steps of the run>."
        )
    check_positive_int("total_steps", total_steps)


def _kept_predictions(inputs, kept_shape, previous) -> jax.Array:
    """The predictions the state keeps for the next observation (``previous`` when none are)."""
    if kept_shape is None:
        return previous
    predictions = jnp.asarray(inputs["predictions"], jnp.float32)
    if predictions.shape != kept_shape:
        raise ConfigError(
            f"predictions of shape {predictions.shape} do not match "
            f"predictions_shape={kept_shape} given to scale_by_controller."
        )
    return predictions


def _scaled(u: jax.Array, lr: jax.Array) -> jax.Array:
    """``-lr * u`` in float32 (or wider), cast back to ``u``'s dtype."""
    dtype = jnp.promote_types(u.dtype, jnp.float32)
    return (u.astype(dtype) * (-lr).astype(dtype)).astype(u.dtype)


def _checked_loss(value: jax.typing.ArrayLike | None) -> jax.Array:
    """The ``value=`` keyword of ``update``: the scalar training loss, or a clear error."""
    if value is None:
        raise ConfigError(
            "scale_by_controller needs the training loss: call "
            "update(updates, state, params, value=loss) (nnx: optimizer.update(model, grads, "
            "value=loss); flax TrainState: lrjax.controller.apply_gradients(state, grads, "
            "value=loss))."
        )
    value = jnp.asarray(value)
    if value.shape != ():
        raise ConfigError(
            f"value of shape {value.shape} is not allowed: expected the scalar mean loss of "
            "the minibatch (take the mean of per-example losses)."
        )
    return value


def controlled_sgd(
    controller: Controller,
    *,
    momentum: float | None = None,
    nesterov: bool = False,
    predictions_shape: Sequence[int] | None = None,
    total_steps: int | None = None,
    last_layer_path: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    """SGD (optionally with momentum) whose learning rate comes from ``controller``.

    ``optax.sgd`` with :func:`scale_by_controller` in place of its fixed LR: the update is
    ``-lr_t * g_t`` (paper B's Eq. 2), or ``-lr_t * m_t`` with ``m_t = g_t + momentum m_{t-1}``.

    Args:
      controller: the controller.
      momentum: momentum decay, or ``None`` for plain SGD.
      nesterov: use Nesterov momentum.
      predictions_shape: see :func:`scale_by_controller`.
      total_steps: see :func:`scale_by_controller`.
      last_layer_path: see :func:`scale_by_controller`.

    Returns:
      A :class:`optax.GradientTransformationExtraArgs`; its ``update`` needs ``value=loss``.

    Example, SGD with momentum 0.9 from the shipped SGD controller (it starts at 0.1):

    >>> import jax.numpy as jnp, lrjax
    >>> tx = controlled_sgd(lrjax.pretrained.load("mlp_family_sgd"), momentum=0.9, total_steps=500)
    >>> params = {"w": jnp.ones(3)}
    >>> opt_state = tx.init(params)
    >>> grads, loss = {"w": jnp.ones(3)}, jnp.float32(2.3)
    >>> updates, opt_state = tx.update(grads, opt_state, params, value=loss)
    >>> round(float(lrjax.current_lr(opt_state)), 2)
    0.1
    """
    return optax.chain(
        optax.trace(decay=momentum, nesterov=nesterov)
        if momentum is not None
        else optax.identity(),
        scale_by_controller(
            controller,
            predictions_shape=predictions_shape,
            total_steps=total_steps,
            last_layer_path=last_layer_path,
        ),
    )


def _unwrap(x: Any) -> Any:
    # nnx.Optimizer keeps its state leaves in nnx.Variable boxes.
    return x.get_value() if hasattr(x, "get_value") else x


def controller_state(opt_state: Any) -> ControllerState:
    """The :class:`ControllerState` inside an optimizer state (chains, wrappers, nnx).

    Args:
      opt_state: the state of a transformation holding exactly one :func:`scale_by_controller`.

    Returns:
      Its state, with ``nnx.Variable`` boxes (``nnx.Optimizer.opt_state``) removed.

    Example, found inside a chain:

    >>> import jax.numpy as jnp, optax, lrjax
    >>> c = lrjax.pretrained.load("mlp_family_sgd")
    >>> tx = optax.chain(optax.clip_by_global_norm(1.0), scale_by_controller(c, total_steps=100))
    >>> params = {"w": jnp.ones(3)}
    >>> opt_state = tx.init(params)
    >>> _, opt_state = tx.update({"w": jnp.ones(3)}, opt_state, params, value=jnp.float32(1.0))
    >>> int(controller_state(opt_state).count)
    1
    """
    is_state = lambda x: isinstance(x, ControllerState)
    found = [x for x in jax.tree.leaves(opt_state, is_leaf=is_state) if is_state(x)]
    if len(found) != 1:
        raise ConfigError(
            f"Found {len(found)} scale_by_controller states in the optimizer state: expected "
            "exactly one (pass the state of the transformation that holds it)."
        )
    return jax.tree.map(_unwrap, found[0], is_leaf=lambda x: hasattr(x, "get_value"))


def apply_gradients(train_state: Any, grads: Any, **extra_args: Any) -> Any:
    """``flax.training.train_state.TrainState.apply_gradients`` that passes ``value=`` etc. on.

    ``TrainState.apply_gradients`` calls ``tx.update(grads, opt_state, params)`` without extra
    arguments; this does the same step with them::

      state = apply_gradients(state, grads, value=loss)

    Args:
      train_state: a ``TrainState`` (or subclass) whose ``tx`` contains the controller.
      grads: gradients with the structure of ``train_state.params``.
      **extra_args: passed to ``tx.update`` (``value=loss``, other feature inputs).

    Returns:
      The new state, with ``step`` incremented and ``params`` and ``opt_state`` updated.

    Example:

    >>> import jax.numpy as jnp, lrjax
    >>> from flax.training import train_state
    >>> tx = lrjax.controlled_sgd(lrjax.pretrained.load("mlp_family_sgd"), total_steps=100)
    >>> state = train_state.TrainState.create(
    ...     apply_fn=lambda p, x: x @ p["w"], params={"w": jnp.ones(3)}, tx=tx)
    >>> state = apply_gradients(state, {"w": jnp.ones(3)}, value=jnp.float32(1.0))
    >>> int(state.step), [round(float(w), 2) for w in state.params["w"]]
    (1, [0.9, 0.9, 0.9])
    """
    updates, opt_state = train_state.tx.update(
        grads, train_state.opt_state, train_state.params, **extra_args
    )
    return train_state.replace(
        step=train_state.step + 1,
        params=optax.apply_updates(train_state.params, updates),
        opt_state=opt_state,
    )
