"""lrjax: learning-rate controllers learned with reinforcement learning, as optax transforms.

The public heart is :func:`scale_by_controller`: an optax transform whose learning rate comes from
a Flax LSTM actor observing the training (see :mod:`lrjax.controller` and :mod:`lrjax.features`).
Trainees live in :mod:`lrjax.tasks`, the training engine in :mod:`lrjax.training`, baselines in
:mod:`lrjax.baselines`, datasets in :mod:`lrjax.data`, RL algorithms in :mod:`lrjax.algos`.

The names below are imported on first use (PEP 562), so ``import lrjax`` (and ``lrjax --help``)
does not start jax.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Controller": "lrjax.controller",
    "ControllerConfig": "lrjax.controller",
    "ControllerState": "lrjax.controller",
    "apply_gradients": "lrjax.controller",
    "controlled_sgd": "lrjax.controller",
    "controller_state": "lrjax.controller",
    "current_lr": "lrjax.controller",
    "diagnostics": "lrjax.controller",
    "group_lrs": "lrjax.controller",
    "group_momenta": "lrjax.controller",
    "init_controller": "lrjax.controller",
    "load_controller": "lrjax.controller",
    "save_controller": "lrjax.controller",
    "scale_by_controller": "lrjax.controller",
    "scale_by_layer_controller": "lrjax.controller",
    "Feature": "lrjax.features",
    "FeatureSpec": "lrjax.features",
    "grads_and_feature_inputs": "lrjax.features",
}

__all__ = ["__version__", "pretrained", *_EXPORTS]


_SUBMODULES = ("pretrained",)


def __getattr__(name: str):
    if name in _SUBMODULES:  # lrjax.pretrained.load(...) after a plain `import lrjax`
        return importlib.import_module(f"lrjax.{name}")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lrjax' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
