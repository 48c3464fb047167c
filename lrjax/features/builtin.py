"""The named features: :class:`Feature`, the built-in ones and each paper's state."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from lrjax._validation import ConfigError

LOG_FLOOR = 1e-12
"""Raw values of ``log`` features are floored here before the log (losses and variances >= 0)."""

INPUTS: Mapping[str, str] = types.MappingProxyType(
    {
        "loss": "the training loss on the current minibatch (the transform's value=)",
        "val_loss": "a validation loss (the same examples at every step)",
        "predictions": "the model's outputs on a fixed probe batch",
        "prev_predictions": "the predictions of the previous observation",
        "params": "the trainee's params",
        "updates": "the updates the controller transform receives (e.g. Adam's direction)",
        "lr": "the learning rate applied at the previous step",
        "lr_bounds": "(lr_min, lr_max) of the controller",
        "step": "the number of optimizer steps applied so far",
        "total_steps": "the number of optimizer steps the run will take",
        "loss_history": "the run's memory of its losses (lrjax.features.LossHistory), kept by "
        "the loop and updated at each observation",
    }
)
"""The one list of feature inputs a training loop can provide, with what each means. Any other
name a user-defined feature declares is passed to ``update`` as a keyword."""

TRANSFORM_INPUTS = (
    "params",
    "updates",
    "lr",
    "lr_bounds",
    "step",
    "total_steps",
    "prev_predictions",
    "loss_history",
)
"""The inputs the controller transform provides itself (``params`` when ``update`` gets them);
the rest come as keywords of ``update``."""

DERIVED_INPUTS: Mapping[str, str] = types.MappingProxyType({"last_layer": "params"})
"""Inputs computed from another input: name -> the input it is computed from."""

FeatureFn = Callable[[Mapping[str, Any]], jax.typing.ArrayLike]


@dataclasses.dataclass(frozen=True)
class Feature:
    """One named entry of the observation vector.

    Attributes:
      name: unique name of the feature (used in saved controllers and error messages).
      inputs: names of the inputs the feature needs (see the module docstring); ``fn`` receives a
        mapping holding exactly these.
      fn: pure function ``fn(inputs) -> scalar`` computing the raw value; it runs under ``jit``.
      log: take ``log(max(x, 1e-12))`` of the raw value (for non-negative, scale-like quantities).
      normalise: pass the value through the running mean/variance normaliser.
      description: one line for humans.
    """

    name: str
    inputs: tuple[str, ...]
    fn: FeatureFn
    log: bool = False
    normalise: bool = True
    description: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(
                f"Feature name={self.name!r} is not allowed: expected a non-empty str."
            )
        if isinstance(self.inputs, str) or not isinstance(self.inputs, Iterable):
            raise ConfigError(
                f"Feature {self.name!r}: inputs={self.inputs!r} is not allowed: expected a tuple "
                "of input names, e.g. ('loss',)."
            )
        inputs = tuple(self.inputs)
        if not all(isinstance(i, str) and i for i in inputs):
            raise ConfigError(
                f"Feature {self.name!r}: inputs={inputs!r} is not allowed: every input name must "
                "be a non-empty str."
            )
        object.__setattr__(self, "inputs", inputs)
        if not callable(self.fn):
            raise ConfigError(
                f"Feature {self.name!r}: fn={self.fn!r} is not allowed: expected a callable "
                "fn(inputs) -> scalar."
            )

    @property
    def builtin(self) -> bool:
        """Whether this is one of :data:`BUILTIN_FEATURES` (saved by name only)."""
        return BUILTIN_FEATURES.get(self.name) is self


# ----------------------------------------------------------------------------------------------
# Built-in features.


def _train_loss(inputs: Mapping[str, Any]) -> jax.Array:
    return jnp.asarray(inputs["loss"], jnp.float32)


def _val_loss(inputs: Mapping[str, Any]) -> jax.Array:
    return jnp.asarray(inputs["val_loss"], jnp.float32)


def _pred_var(inputs: Mapping[str, Any]) -> jax.Array:
    return jnp.var(jnp.asarray(inputs["predictions"], jnp.float32))


def _pred_change_var(inputs: Mapping[str, Any]) -> jax.Array:
    preds = jnp.asarray(inputs["predictions"], jnp.float32)
    prev = jnp.asarray(inputs["prev_predictions"], jnp.float32)
    if preds.shape != prev.shape:
        raise ConfigError(
            f"Feature 'pred_change_var': predictions of shape {preds.shape} do not match the "
            f"predictions_shape={prev.shape} given to scale_by_controller; predictions must come "
            "from the same fixed probe batch at every step."
        )
    # The first observation has no previous predictions: NaN marks the entry as missing (0).
    return jnp.where(inputs["step"] > 0, jnp.var(preds - prev), jnp.nan)


def _last_layer_mean(inputs: Mapping[str, Any]) -> jax.Array:
    return jnp.mean(jnp.asarray(inputs["last_layer"], jnp.float32))


def _last_layer_var(inputs: Mapping[str, Any]) -> jax.Array:
    return jnp.var(jnp.asarray(inputs["last_layer"], jnp.float32))


def _log_lr(inputs: Mapping[str, Any]) -> jax.Array:
    lr = jnp.asarray(inputs["lr"], jnp.float32)
    lo, hi = (jnp.asarray(b, jnp.float32) for b in inputs["lr_bounds"])
    return 2.0 * (jnp.log(lr) - jnp.log(lo)) / (jnp.log(hi) - jnp.log(lo)) - 1.0


def _progress(inputs: Mapping[str, Any]) -> jax.Array:
    step = jnp.asarray(inputs["step"], jnp.float32)
    return step / jnp.asarray(inputs["total_steps"], jnp.float32)


def _history(inputs: Mapping[str, Any]) -> Any:
    return inputs["loss_history"]


def _loss_vs_start_fast(inputs: Mapping[str, Any]) -> jax.Array:
    h = _history(inputs)
    return h.ema[0] - h.start


def _loss_vs_start_slow(inputs: Mapping[str, Any]) -> jax.Array:
    h = _history(inputs)
    return h.ema[-1] - h.start


def _loss_vs_best(inputs: Mapping[str, Any]) -> jax.Array:
    h = _history(inputs)
    return h.ema[0] - h.best


def _loss_trend(inputs: Mapping[str, Any]) -> jax.Array:
    h = _history(inputs)
    return h.ema[0] - h.ema[-1]


def _loss_noise(inputs: Mapping[str, Any]) -> jax.Array:
    return jnp.sqrt(_history(inputs).step_var)


def _lr_vs_start(inputs: Mapping[str, Any]) -> jax.Array:
    log_lr = jnp.log(jnp.maximum(jnp.asarray(inputs["lr"], jnp.float32), 1e-12))
    return (log_lr - _history(inputs).start_lr) / jnp.log(10.0)


def _update_norm(inputs: Mapping[str, Any]) -> jax.Array:
    leaves = jax.tree.leaves(inputs["updates"])
    sq = [jnp.sum(jnp.square(jnp.asarray(x, jnp.float32))) for x in leaves]
    return jnp.sqrt(sum(sq, jnp.zeros((), jnp.float32)))


_BUILTINS = (
    Feature(
        "train_loss",
        ("loss",),
        _train_loss,
        log=True,
        description="log of the loss on the current minibatch (papers A and B)",
    ),
    Feature(
        "val_loss",
        ("val_loss",),
        _val_loss,
        log=True,
        description="log of the validation loss (paper A)",
    ),
    Feature(
        "pred_var",
        ("predictions",),
        _pred_var,
        log=True,
        description="log of the variance of the predictions on the probe batch (paper A)",
    ),
    Feature(
        "pred_change_var",
        ("predictions", "prev_predictions", "step"),
        _pred_change_var,
        log=True,
        description="log of the variance of the change of predictions since the last "
        "observation (paper A; missing at the first observation)",
    ),
    Feature(
        "last_layer_mean",
        ("last_layer",),
        _last_layer_mean,
        description="mean of the final layer's weights (paper A)",
    ),
    Feature(
        "last_layer_var",
        ("last_layer",),
        _last_layer_var,
        log=True,
        description="log of the variance of the final layer's weights (paper A)",
    ),
    Feature(
        "log_lr",
        ("lr", "lr_bounds"),
        _log_lr,
        normalise=False,
        description="previous LR's position in [lr_min, lr_max] on a log scale, in [-1, 1] "
        "(paper A)",
    ),
    Feature(
        "progress",
        ("step", "total_steps"),
        _progress,
        normalise=False,
        description="the fraction of the run done, step / total_steps, in [0, 1] (lrjax: a "
        "finite budget's schedule depends on it, as step decay and cosine do)",
    ),
    Feature(
        "loss_vs_start_fast",
        ("loss_history",),
        _loss_vs_start_fast,
        normalise=False,
        description="log of the fast loss EMA over the run's first loss (VeLO/Celo: relative "
        "to the run's own start, the same on every trainee)",
    ),
    Feature(
        "loss_vs_start_slow",
        ("loss_history",),
        _loss_vs_start_slow,
        normalise=False,
        description="log of the slow loss EMA over the run's first loss",
    ),
    Feature(
        "loss_vs_best",
        ("loss_history",),
        _loss_vs_best,
        normalise=False,
        description="log of the fast loss EMA over the lowest the middle EMA reached (>= 0 "
        "after a rise: a plateau or an LR too high)",
    ),
    Feature(
        "loss_trend",
        ("loss_history",),
        _loss_trend,
        normalise=False,
        description="log of the fast over the slow loss EMA (< 0 while the loss falls)",
    ),
    Feature(
        "loss_noise",
        ("loss_history",),
        _loss_noise,
        normalise=False,
        description="spread of the log loss's changes between observations about their "
        "recent mean (a loss jumping about)",
    ),
    Feature(
        "lr_vs_start",
        ("lr", "loss_history"),
        _lr_vs_start,
        normalise=False,
        description="decades of the previous LR over the run's starting LR",
    ),
    Feature(
        "update_norm",
        ("updates",),
        _update_norm,
        log=True,
        description="log of the global norm of the incoming updates",
    ),
)

BUILTIN_FEATURES: Mapping[str, Feature] = types.MappingProxyType({f.name: f for f in _BUILTINS})
"""The built-in features by name."""

PAPER_A_FEATURES = (
    "train_loss",
    "val_loss",
    "pred_var",
    "pred_change_var",
    "last_layer_mean",
    "last_layer_var",
    "log_lr",
)
"""Paper A's state: losses, prediction variances, final-layer statistics, previous LR."""

LRJAX_FEATURES = (*PAPER_A_FEATURES, "progress")
"""lrjax's default state: paper A's plus the run's progress, so that a controller can place its
warm-up and decay within a known budget (``scale_by_controller(..., total_steps=...)``)."""

LOSS_ONLY_FEATURES = (
    "loss_vs_start_fast",
    "loss_vs_start_slow",
    "loss_vs_best",
    "loss_trend",
    "lr_vs_start",
    "progress",
)
"""lrjax's trainee-independent state: the minibatch loss relative to the run's own start and
best over three time scales, the LR relative to its start, the fraction of the run done. It needs
only ``value=loss`` and ``total_steps`` from a user's loop, and means the same on every trainee
(no raw magnitude), so a controller trained across a task family can act on networks it never
saw (VeLO's and Celo's recipe)."""

PAPER_B_FEATURES = ("train_loss",)
"""Paper B's state: the average loss on the current minibatch."""
