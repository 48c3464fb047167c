"""What a user deploys: a learned learning-rate controller's config, actor, optax transform, and
its save/load format. Nothing here is RL-only (that lives in :mod:`lrjax.algos`).

Typical use::

  from lrjax.controller import load_controller, scale_by_controller

  tx = optax.chain(optax.scale_by_adam(), scale_by_controller(load_controller("ctrl/")))
  updates, opt_state = tx.update(grads, opt_state, params, value=loss)
"""

from lrjax.controller.actor import (
    Carry,
    Controller,
    LSTMActor,
    action_position,
    action_to_lr,
    action_to_momentum,
    actor_step,
    init_actor_params,
    init_controller,
    initial_carry,
    make_actor,
    reset_carry,
)
from lrjax.controller.applied_lr import current_lr
from lrjax.controller.config import ACTION_MODES, ControllerConfig
from lrjax.controller.diagnostics import (
    SKIP_WARNING_FRACTION,
    ControllerDiagnostics,
    SkippingWarning,
    diagnostics,
    skipped_steps,
    warn_if_skipping,
)
from lrjax.controller.groups import GROUP_FEATURES, Groups, layer_labels, make_groups
from lrjax.controller.io import FORMAT_VERSION, load_controller, save_controller
from lrjax.controller.layer_transform import (
    LayerControllerState,
    group_lrs,
    group_momenta,
    layer_controller_state,
    scale_by_layer_controller,
)
from lrjax.controller.nonfinite import SkipNonfiniteState, skip_nonfinite
from lrjax.controller.transform import (
    ControllerState,
    apply_gradients,
    controlled_sgd,
    controller_state,
    scale_by_controller,
)

__all__ = [
    "ACTION_MODES",
    "GROUP_FEATURES",
    "Groups",
    "LayerControllerState",
    "action_to_momentum",
    "group_lrs",
    "group_momenta",
    "layer_controller_state",
    "layer_labels",
    "make_groups",
    "scale_by_layer_controller",
    "SKIP_WARNING_FRACTION",
    "FORMAT_VERSION",
    "Carry",
    "Controller",
    "ControllerConfig",
    "ControllerDiagnostics",
    "ControllerState",
    "LSTMActor",
    "action_position",
    "action_to_lr",
    "actor_step",
    "apply_gradients",
    "controlled_sgd",
    "controller_state",
    "current_lr",
    "diagnostics",
    "init_actor_params",
    "init_controller",
    "initial_carry",
    "load_controller",
    "make_actor",
    "reset_carry",
    "save_controller",
    "scale_by_controller",
    "skip_nonfinite",
    "skipped_steps",
    "SkippingWarning",
    "warn_if_skipping",
    "SkipNonfiniteState",
]
