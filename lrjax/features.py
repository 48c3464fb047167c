"""The state function chi: what the trainee exposes at a step -> a fixed-size observation vector.

Paper B (Xu et al., "Reinforcement Learning for Learning Rate Control", Eq. 3) writes the state as
``s_t = chi(w_t, X_i)`` and uses the average loss on the current minibatch. Paper A ("Learning an
Adaptive Learning Rate Schedule") observes the training and validation losses, the variance of the
predictions and of their change, the mean and variance of the final layer's weights and the previous
learning rate. Both are expressed here as a :class:`FeatureSpec`: a tuple of named :class:`Feature`
objects, each a small pure function of the *inputs* it declares.

Inputs are named values a training loop provides at a step. The controller transform
(:func:`lrjax.controller.scale_by_controller`) provides some itself and takes the others as keyword
arguments of ``update``:

* ``value``: the training loss on the current minibatch (``update(..., value=loss)``);
* ``val_loss``: a validation loss (``update(..., val_loss=...)``);
* ``predictions``: the model's outputs on a *fixed* probe batch (``update(..., predictions=...)``);
* ``prev_predictions``: the ``predictions`` of the previous observation, kept in the transform
  state;
* ``params``: the ``params`` argument of ``update``;
* ``updates``: the updates the transform receives (e.g. Adam's direction in a chain);
* ``lr``: the learning rate applied at the previous step (float32 scalar);
* ``lr_bounds``: ``(lr_min, lr_max)`` of the controller;
* ``step``: the number of optimizer steps applied so far (int32 scalar);
* ``last_layer``: computed from ``params``, the final layer's weights (see
  :func:`find_last_layer` and ``FeatureSpec.last_layer_path``).

Any other name a user-defined feature declares must be passed as a keyword to ``update``. A feature
whose inputs are missing raises a :class:`~lrjax._validation.ConfigError` at trace time that lists
what is missing and what was given: a loop that cannot provide a validation loss is told so, it
never gets a silent zero.

Each raw feature x is turned into an observation entry by

1. ``log(max(x, 1e-12))`` when the feature is marked ``log`` (losses, variances: scale-free, so a
   controller transfers across tasks whose losses differ by orders of magnitude);
2. a running normalisation ``(x - mean_t) / sqrt(var_t + eps)`` with an exponentially weighted
   mean and variance kept in :class:`NormaliserState` (weight ``a_t = max(1 - momentum, 1 / t)``:
   an exact running average (Welford) for the first ``1 / (1 - momentum)`` observations, an EMA
   afterwards), skipped for features marked ``normalise=False``;
3. clipping to ``[-clip, clip]``.

A non-finite raw feature (e.g. the change of predictions at the first step, or a diverged validation
loss) gives the entry 0 and leaves that feature's statistics unchanged.
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lrjax._validation import ConfigError, check_choice, check_in_range, check_positive

__all__ = [
    "BUILTIN_FEATURES",
    "DERIVED_INPUTS",
    "PAPER_A_FEATURES",
    "PAPER_B_FEATURES",
    "PROVIDED_INPUTS",
    "Feature",
    "FeatureSpec",
    "NormaliserState",
    "check_inputs",
    "find_last_layer",
    "grads_and_feature_inputs",
    "init_normaliser",
    "normalise",
    "observe",
    "raw_features",
    "required_inputs",
]

LOG_FLOOR = 1e-12
"""Raw values of ``log`` features are floored here before the log (losses and variances >= 0)."""

PROVIDED_INPUTS = ("params", "updates", "lr", "lr_bounds", "step", "prev_predictions")
"""Inputs the controller transform provides itself (``params`` only when ``update`` gets them)."""

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
                "of input names, e.g. ('value',)."
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
    return jnp.asarray(inputs["value"], jnp.float32)


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


def _update_norm(inputs: Mapping[str, Any]) -> jax.Array:
    leaves = jax.tree.leaves(inputs["updates"])
    sq = [jnp.sum(jnp.square(jnp.asarray(x, jnp.float32))) for x in leaves]
    return jnp.sqrt(sum(sq, jnp.zeros((), jnp.float32)))


_BUILTINS = (
    Feature(
        "train_loss",
        ("value",),
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

PAPER_B_FEATURES = ("train_loss",)
"""Paper B's state: the average loss on the current minibatch."""


# ----------------------------------------------------------------------------------------------
# The spec.


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """Which features make the observation, and how they are normalised.

    Attributes:
      features: the features, in observation order: names of :data:`BUILTIN_FEATURES` and/or
        :class:`Feature` objects (user-defined); stored as a tuple of :class:`Feature`. Default:
        paper B's ``("train_loss",)``.
      clip: observations are clipped to ``[-clip, clip]`` after normalisation. Default 5 (the
        usual observation clip of PPO implementations).
      normaliser: ``"ema"``: running mean/variance normalisation kept in the transform state;
        ``"none"``: raw (logged) values, only clipped.
      momentum: the EMA's momentum in [0, 1): about ``1 / (1 - momentum)`` observations are
        averaged. Default 0.99 (the last ~100 observations).
      eps: added to the running variance before the square root. Default 1e-8.
      last_layer_path: the final layer's weights for ``last_layer_*`` features, as the
        ``/``-joined keys of its leaf (e.g. ``"params/Dense_2/kernel"``). Default ``None``: the
        last leaf named ``kernel`` in the params, numbered names compared as numbers
        (``Dense_10`` after ``Dense_9``).
    """

    features: tuple[str | Feature, ...] = PAPER_B_FEATURES
    clip: float = 5.0
    normaliser: str = "ema"
    momentum: float = 0.99
    eps: float = 1e-8
    last_layer_path: str | None = None

    def __post_init__(self):
        feats = self.features
        if isinstance(feats, str | Feature) or not isinstance(feats, Iterable):
            feats = (feats,)
        resolved = []
        for f in feats:
            if isinstance(f, Feature):
                resolved.append(f)
            elif isinstance(f, str):
                check_choice("features", f, BUILTIN_FEATURES)
                resolved.append(BUILTIN_FEATURES[f])
            else:
                raise ConfigError(
                    f"features entry {f!r} is not allowed: expected a built-in feature name "
                    f"({', '.join(BUILTIN_FEATURES)}) or a lrjax.features.Feature."
                )
        if not resolved:
            raise ConfigError("features=() is not allowed: expected at least one feature.")
        names = [f.name for f in resolved]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"features={tuple(names)!r} is not allowed: duplicate names {dupes}.")
        object.__setattr__(self, "features", tuple(resolved))
        check_positive("clip", self.clip)
        check_choice("normaliser", self.normaliser, ("ema", "none"))
        check_in_range("momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_positive("eps", self.eps)
        if self.last_layer_path is not None and (
            not isinstance(self.last_layer_path, str) or not self.last_layer_path
        ):
            raise ConfigError(
                f"last_layer_path={self.last_layer_path!r} is not allowed: expected None or the "
                "'/'-joined keys of a params leaf, e.g. 'params/Dense_2/kernel'."
            )

    @property
    def names(self) -> tuple[str, ...]:
        """The feature names, in observation order."""
        return tuple(f.name for f in self.features)

    @property
    def size(self) -> int:
        """Length of the observation vector."""
        return len(self.features)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able description; user-defined features are described, their code is not."""
        feats = [
            f.name
            if f.builtin
            else {"name": f.name, "inputs": list(f.inputs), "log": f.log, "normalise": f.normalise}
            for f in self.features
        ]
        return {
            "features": feats,
            "clip": self.clip,
            "normaliser": self.normaliser,
            "momentum": self.momentum,
            "eps": self.eps,
            "last_layer_path": self.last_layer_path,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], custom_features: Sequence[Feature] = ()):
        """Inverse of :meth:`to_json`.

        Args:
          data: the output of :meth:`to_json`.
          custom_features: the user-defined :class:`Feature` objects the description names; each
            must declare the same inputs, ``log`` and ``normalise`` as the saved one.

        Returns:
          The :class:`FeatureSpec`.
        """
        data = dict(data)
        _check_keys("feature spec", data, [f.name for f in dataclasses.fields(cls)])
        custom = {f.name: f for f in custom_features}
        feats = []
        for entry in data.pop("features"):
            if isinstance(entry, str):
                feats.append(entry)
                continue
            name = entry["name"]
            if name not in custom:
                raise ConfigError(
                    f"The saved features include the user-defined feature {name!r}, whose code is "
                    "not saved: pass custom_features=(Feature(name="
                    f"{name!r}, inputs={tuple(entry['inputs'])!r}, fn=...),) when loading."
                )
            f = custom[name]
            saved = (tuple(entry["inputs"]), bool(entry["log"]), bool(entry["normalise"]))
            if (f.inputs, f.log, f.normalise) != saved:
                raise ConfigError(
                    f"custom feature {name!r} declares (inputs, log, normalise)="
                    f"{(f.inputs, f.log, f.normalise)!r} but the saved controller was trained "
                    f"with {saved!r}."
                )
            feats.append(f)
        return cls(features=tuple(feats), **data)


def _check_keys(what: str, data: Mapping[str, Any], expected: Sequence[str]) -> None:
    missing = [k for k in expected if k not in data]
    unknown = [k for k in data if k not in expected]
    if missing or unknown:
        raise ConfigError(
            f"The saved {what} does not match this version of lrjax: missing keys {missing}, "
            f"unknown keys {unknown}; expected {list(expected)}."
        )


def required_inputs(spec: FeatureSpec) -> tuple[str, ...]:
    """The names of all inputs the features of ``spec`` need, in first-use order."""
    seen: dict[str, None] = {}
    for f in spec.features:
        for i in f.inputs:
            seen.setdefault(i, None)
    return tuple(seen)


def check_inputs(spec: FeatureSpec, available: Iterable[str], *, hint: str = "") -> None:
    """Raise a :class:`ConfigError` when an input some feature needs is not available.

    Args:
      spec: the features.
      available: the names of the inputs that are given.
      hint: appended to the message (how to pass the missing inputs).
    """
    available = set(available)
    missing = {}
    for f in spec.features:
        for i in f.inputs:
            if i not in available and DERIVED_INPUTS.get(i) not in available:
                missing.setdefault(i, []).append(f.name)
    if missing:

        def name(i):
            src = DERIVED_INPUTS.get(i)
            return f"{i!r}" + (f" (computed from {src!r})" if src else "")

        what = "; ".join(f"{name(i)} needed by {', '.join(fs)}" for i, fs in missing.items())
        raise ConfigError(
            f"Missing feature inputs: {what}. Given: {', '.join(sorted(available)) or 'nothing'}."
            + (f" {hint}" if hint else "")
        )


# ----------------------------------------------------------------------------------------------
# The final layer.


def _key_str(k: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _natural(s: str) -> tuple[Any, ...]:
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", s) if t)


def _leaf_paths(params: Any) -> list[tuple[str, Any]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return [("/".join(_key_str(k) for k in path), leaf) for path, leaf in flat]


def find_last_layer(params: Any, path: str | None = None) -> jax.Array:
    """The final layer's weights in a params pytree.

    Args:
      params: any params pytree (linen ``{'params': ...}``, an ``nnx.State`` of arrays, ...).
      path: the ``/``-joined keys of the leaf; ``None``: the last leaf named ``kernel``, with the
        paths compared in natural order (digits as numbers, so ``Dense_10`` comes after
        ``Dense_9``).

    Returns:
      The leaf.
    """
    leaves = _leaf_paths(params)
    if path is not None:
        for p, leaf in leaves:
            if p == path:
                return leaf
        raise ConfigError(
            f"last_layer_path={path!r} is not a leaf of the params; leaves: "
            f"{', '.join(p for p, _ in leaves) or 'none'}."
        )
    kernels = [(p, leaf) for p, leaf in leaves if p.split("/")[-1] == "kernel"]
    if not kernels:
        raise ConfigError(
            "The last_layer_* features look for the final layer's weights, but no params leaf is "
            f"named 'kernel' (leaves: {', '.join(p for p, _ in leaves) or 'none'}); set "
            "FeatureSpec(last_layer_path=...) to one of them."
        )
    return max(kernels, key=lambda pl: tuple(_natural(c) for c in pl[0].split("/")))[1]


# ----------------------------------------------------------------------------------------------
# Raw features, normaliser, observation.


def raw_features(spec: FeatureSpec, inputs: Mapping[str, Any]) -> jax.Array:
    """The raw (logged where marked, not normalised) features, shape ``(spec.size,)``, float32.

    Args:
      spec: the features.
      inputs: the available inputs by name; must hold every input the features need.

    Returns:
      The vector ``x`` with ``x_i = log(max(f_i(inputs), 1e-12))`` for ``log`` features and
      ``f_i(inputs)`` otherwise.
    """
    check_inputs(spec, inputs)
    inputs = dict(inputs)
    if "last_layer" in required_inputs(spec) and "last_layer" not in inputs:
        inputs["last_layer"] = find_last_layer(inputs["params"], spec.last_layer_path)
    values = []
    for f in spec.features:
        x = jnp.asarray(f.fn({i: inputs[i] for i in f.inputs}), jnp.float32)
        if x.shape != ():
            raise ConfigError(
                f"Feature {f.name!r} returned shape {x.shape}: a feature must be a scalar (for a "
                "per-example loss, pass its mean)."
            )
        if f.log:
            x = jnp.log(jnp.maximum(x, LOG_FLOOR))
        values.append(x)
    return jnp.stack(values)


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
    spec: FeatureSpec, state: NormaliserState, raw: jax.Array
) -> tuple[jax.Array, NormaliserState]:
    """Update the running statistics with ``raw`` and return the normalised, clipped observation.

    With ``a_t = max(1 - momentum, 1 / t)`` and ``d = x - mean_{t-1}``:
    ``mean_t = mean_{t-1} + a_t d``, ``var_t = (1 - a_t) (var_{t-1} + a_t d^2)`` and
    ``obs = clip((x - mean_t) / sqrt(var_t + eps), -clip, clip)``. Non-finite entries give 0 and
    keep their statistics.

    Args:
      spec: the features (momentum, eps, clip, which features are normalised).
      state: the statistics so far.
      raw: the raw features, shape ``(n,)``.

    Returns:
      ``(obs, new_state)``, ``obs`` of shape ``(n,)``, float32.
    """
    raw = jnp.asarray(raw, jnp.float32)
    finite = jnp.isfinite(raw)
    x = jnp.where(finite, raw, 0.0)
    count = jnp.where(finite, state.count + 1, state.count)
    a = jnp.maximum(1.0 - spec.momentum, 1.0 / jnp.maximum(count, 1).astype(jnp.float32))
    d = x - state.mean
    mean = jnp.where(finite, state.mean + a * d, state.mean)
    var = jnp.where(finite, (1.0 - a) * (state.var + a * d * d), state.var)
    normed = (x - mean) / jnp.sqrt(var + spec.eps)
    do_norm = jnp.asarray([f.normalise and spec.normaliser == "ema" for f in spec.features])
    obs = jnp.where(do_norm, normed, x)
    obs = jnp.where(finite, jnp.clip(obs, -spec.clip, spec.clip), 0.0)
    return obs, NormaliserState(mean=mean, var=var, count=count)


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


# ----------------------------------------------------------------------------------------------
# Computing the inputs from a Flax model.


def grads_and_feature_inputs(
    apply_fn: Callable[..., Any],
    params: Any,
    batch: tuple[Any, Any],
    loss_fn: Callable[[Any, Any], jax.Array],
    val_batch: tuple[Any, Any] | None = None,
    *,
    has_aux: bool = False,
) -> tuple[Any, dict[str, jax.Array]]:
    """Gradients and every built-in feature input, for a train step, in one call.

    Example::

      grads, inputs = grads_and_feature_inputs(model.apply, params, (x, y), loss_fn, (xv, yv))
      updates, opt_state = tx.update(grads, opt_state, params, **inputs)

    Args:
      apply_fn: ``apply_fn(params, x) -> outputs`` (a linen ``model.apply``, or any function).
      params: the model's params (what ``apply_fn`` takes first).
      batch: ``(x, y)`` of the current training minibatch.
      loss_fn: ``loss_fn(outputs, y) -> scalar`` mean loss.
      val_batch: ``(x, y)`` of a validation batch. Keep it fixed across steps: its outputs are the
        ``predictions`` (so their change between steps reflects the model, not the data). If
        ``None``, there is no ``val_loss`` and ``predictions`` are the training batch's outputs.
      has_aux: ``apply_fn`` returns ``(outputs, aux)``; ``aux`` is dropped (e.g. batch stats).

    Returns:
      ``(grads, inputs)``: ``grads`` of the training loss w.r.t. ``params``; ``inputs`` holds
      ``value`` (the training loss), and ``val_loss`` and ``predictions``.
    """

    def outputs(p, x):
        out = apply_fn(p, x)
        return out[0] if has_aux else out

    def train_loss(p):
        out = outputs(p, batch[0])
        return loss_fn(out, batch[1]), out

    (value, train_out), grads = jax.value_and_grad(train_loss, has_aux=True)(params)
    inputs = {"value": value}
    if val_batch is None:
        inputs["predictions"] = jax.lax.stop_gradient(train_out)
    else:
        val_out = outputs(params, val_batch[0])
        inputs["val_loss"] = loss_fn(val_out, val_batch[1])
        inputs["predictions"] = val_out
    return grads, inputs
