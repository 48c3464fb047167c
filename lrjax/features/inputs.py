"""The one builder of chi's inputs: what a loop knows at a step -> the named inputs the features
read (:data:`~lrjax.features.INPUTS`).

Three loops observe a trainee: PPO's environment (:mod:`lrjax.env`), paper B's actor-critic
(:mod:`lrjax.algos.actor_critic`) and the optax transform a user deploys
(:func:`lrjax.controller.scale_by_controller`). A controller acts in a user's loop as it did in
training only if all three name the same quantities the same way, so all three build their
inputs here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax


def feature_inputs(
    *,
    loss: jax.typing.ArrayLike,
    lr: jax.typing.ArrayLike,
    lr_bounds: tuple[float, float],
    step: jax.typing.ArrayLike,
    params: Any = None,
    last_layer: Any = None,
    total_steps: int | None = None,
    val_loss: jax.typing.ArrayLike | None = None,
    predictions: jax.typing.ArrayLike | None = None,
    prev_predictions: jax.typing.ArrayLike | None = None,
    updates: Any = None,
    loss_history: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The inputs of the state function at a step, by name; those given as None are left out
    (a feature that needs one then raises, naming it: :func:`~lrjax.features.check_inputs`).

    Args:
      loss: the training loss on the minibatch the step trains on (``"loss"``).
      lr: the learning rate applied at the previous step.
      lr_bounds: ``(lr_min, lr_max)`` of the controller.
      step: optimizer steps applied so far.
      params: the trainee's params.
      last_layer: the output layer's weights, when the loop knows them (a task declares its
        output layer); else they are found in ``params`` (:func:`~lrjax.features.find_last_layer`).
      total_steps: optimizer steps of the run.
      val_loss: the loss on the fixed validation examples.
      predictions: the model's outputs on the fixed probe examples.
      prev_predictions: ``predictions`` at the previous observation.
      updates: the updates the controller transform receives.
      loss_history: the run's :class:`~lrjax.features.LossHistory` after this observation.
      extra: other inputs by name (a user's keywords for their own features); the named
        arguments above take precedence over entries of the same name.

    Returns:
      A dict of the inputs that are not None.
    """
    named = {
        "loss": loss,
        "val_loss": val_loss,
        "predictions": predictions,
        "prev_predictions": prev_predictions,
        "params": params,
        "last_layer": last_layer,
        "updates": updates,
        "lr": lr,
        "lr_bounds": lr_bounds,
        "step": step,
        "total_steps": total_steps,
        "loss_history": loss_history,
    }
    inputs = {k: v for k, v in (extra or {}).items() if v is not None}
    inputs.update({k: v for k, v in named.items() if v is not None})
    return inputs
