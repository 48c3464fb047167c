"""The learning rate a controller applied, read from any optimizer state that holds one.

Its own module because it reads both transforms' states (the single-LR ``ControllerState`` of
:mod:`lrjax.controller.transform` and the per-group ``LayerControllerState`` of
:mod:`lrjax.controller.layer_transform`), which import in one direction only.
"""

from __future__ import annotations

from typing import Any

import jax

from lrjax.controller.layer_transform import LayerControllerState, group_lrs, mean_lr
from lrjax.controller.transform import controller_state


def current_lr(opt_state: Any) -> jax.Array:
    """The learning rate the controller applied at the last step (float32 scalar).

    Args:
      opt_state: an optimizer state holding exactly one
        :func:`~lrjax.controller.scale_by_controller` or
        :func:`~lrjax.controller.scale_by_layer_controller` state.

    Returns:
      ``learning_rate * schedule_factor`` of its ``ControllerState`` (batched if the state is);
      for a :func:`~lrjax.controller.scale_by_layer_controller` state, the geometric mean of
      its groups' LRs (:func:`~lrjax.controller.group_lrs` gives each).

    Example, before any step a controller's LR is its starting LR:

    >>> import jax.numpy as jnp, lrjax
    >>> tx = lrjax.scale_by_controller(lrjax.pretrained.load("mlp_family_adam"), total_steps=100)
    >>> round(float(lrjax.current_lr(tx.init({"w": jnp.ones(3)}))), 6)
    0.001
    """
    is_layered = lambda x: isinstance(x, LayerControllerState)
    if any(is_layered(x) for x in jax.tree.leaves(opt_state, is_leaf=is_layered)):
        return mean_lr(group_lrs(opt_state))
    state = controller_state(opt_state)
    return state.learning_rate * state.schedule_factor
