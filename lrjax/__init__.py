"""lrjax: learning-rate controllers learned with reinforcement learning, as optax transforms.

The public heart is :func:`scale_by_controller`: an optax transform whose learning rate comes from
a Flax LSTM actor observing the training (see :mod:`lrjax.controller` and :mod:`lrjax.features`).
Trainees live in :mod:`lrjax.tasks`, the training engine in :mod:`lrjax.training`, baselines in
:mod:`lrjax.baselines`, datasets in :mod:`lrjax.data`.
"""

__version__ = "0.1.0"

from lrjax.controller import (
    Controller,
    ControllerConfig,
    ControllerState,
    apply_gradients,
    controlled_sgd,
    controller_state,
    current_lr,
    init_controller,
    load_controller,
    save_controller,
    scale_by_controller,
)
from lrjax.features import Feature, FeatureSpec, grads_and_feature_inputs

__all__ = [
    "Controller",
    "ControllerConfig",
    "ControllerState",
    "Feature",
    "FeatureSpec",
    "__version__",
    "apply_gradients",
    "controlled_sgd",
    "controller_state",
    "current_lr",
    "grads_and_feature_inputs",
    "init_controller",
    "load_controller",
    "save_controller",
    "scale_by_controller",
]
