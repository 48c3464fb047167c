"""Which features make the observation (:class:`FeatureSpec`), the inputs they need, the final
layer's weights, and the raw feature vector."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from lrjax._validation import ConfigError, check_choice, check_in_range, check_positive
from lrjax.features.builtin import (
    BUILTIN_FEATURES,
    DERIVED_INPUTS,
    LOG_FLOOR,
    PAPER_B_FEATURES,
    Feature,
)
from lrjax.features.probe import Probe

# ----------------------------------------------------------------------------------------------
# The spec.

NORMALISERS = ("ema", "frozen", "none")
"""How raw features are normalised (see ``FeatureSpec.normaliser``)."""


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """Which features make the observation, and how they are normalised.

    Attributes:
      features: the features, in observation order: names of :data:`BUILTIN_FEATURES` and/or
        :class:`Feature` objects (user-defined); stored as a tuple of :class:`Feature`. Default:
        paper B's ``("train_loss",)``.
      clip: observations are clipped to ``[-clip, clip]`` after normalisation. Default 5 (the
        usual observation clip of PPO implementations).
      normaliser: ``"ema"``: running mean/variance normalisation kept in the transform state,
        restarted with every run (each episode normalises itself); ``"frozen"``: fixed
        statistics gathered across the training episodes and carried by the trained controller
        (:func:`~lrjax.features.accumulate`), so absolute magnitudes stay visible; ``"none"``:
        raw (logged) values, only clipped.
      momentum: the EMA's momentum in [0, 1): about ``1 / (1 - momentum)`` observations are
        averaged. Default 0.99 (the last ~100 observations).
      eps: added to the running variance before the square root. Default 1e-8.
      last_layer_path: the final layer's weights for ``last_layer_*`` features, as the
        ``/``-joined keys of its leaf (e.g. ``"params/Dense_2/kernel"``). Default ``None``: the
        last leaf named ``kernel`` in the params, numbered names compared as numbers
        (``Dense_10`` after ``Dense_9``).
      probe: what the ``val_loss`` and ``predictions`` inputs hold (:class:`~lrjax.features.Probe`:
        which validation examples, probabilities or raw outputs); training records its
        environment's probe here, so a deployed controller declares what to feed it. Default
        ``Probe()``: the loss on the first 128 examples of a fixed validation batch, class
        probabilities on its first 32.
    """

    features: tuple[str | Feature, ...] = PAPER_B_FEATURES
    clip: float = 5.0
    normaliser: str = "ema"
    momentum: float = 0.99
    eps: float = 1e-8
    last_layer_path: str | None = None
    probe: Probe = Probe()

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
        check_choice("normaliser", self.normaliser, NORMALISERS)
        check_in_range("momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_positive("eps", self.eps)
        if self.last_layer_path is not None and (
            not isinstance(self.last_layer_path, str) or not self.last_layer_path
        ):
            raise ConfigError(
                f"last_layer_path={self.last_layer_path!r} is not allowed: expected None or the "
                "'/'-joined keys of a params leaf, e.g. 'params/Dense_2/kernel'."
            )
        if not isinstance(self.probe, Probe):
            raise ConfigError(
                f"probe={self.probe!r} is not allowed: expected a lrjax.features.Probe."
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
            "probe": self.probe.to_json(),
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
        expected = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"The saved feature spec is {data!r}: expected an object with the keys {expected}."
            )
        data = {"probe": None, **data}  # saved before probes were recorded: the default one
        _check_keys("feature spec", data, expected)
        data["probe"] = Probe.from_json(data["probe"])
        if not isinstance(data["features"], list | tuple):
            raise ConfigError(
                f"The saved feature list is {data['features']!r}: expected a list of feature "
                "names (or user-defined feature descriptions)."
            )
        custom = {f.name: f for f in custom_features}
        feats = []
        for entry in data.pop("features"):
            if isinstance(entry, str):
                feats.append(entry)
                continue
            keys = ("name", "inputs", "log", "normalise")
            if not isinstance(entry, Mapping) or any(k not in entry for k in keys):
                raise ConfigError(
                    f"The saved feature {entry!r} is neither a feature name nor a user-defined "
                    f"feature's description (an object with the keys {list(keys)})."
                )
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


OUTPUT_LAYER_NAMES = ("logits", "output", "out", "head", "classifier", "final", "last")
"""Module names that mark a kernel as the output layer's for :func:`find_last_layer`
(compared case-insensitively with each path component, digits and ``_`` removed)."""


def find_last_layer(params: Any, path: str | None = None) -> jax.Array:
    """The final layer's weights in a params pytree.

    Without ``path`` the kernel is found by names, never by a guess between differently named
    layers:

    1. a kernel under a module named for an output layer (:data:`OUTPUT_LAYER_NAMES`, e.g.
       ``logits``, ``classifier``, ``head``), if exactly one is;
    2. else, when every kernel's path differs from the others only in its numbers (Flax's
       ``Dense_0 ... Dense_10``, ``layers_3``), the last in natural order (``Dense_10`` after
       ``Dense_9``);
    3. else the same among the 2-D (dense) kernels (of ``Conv_0, Conv_1, Dense_0, Dense_1``:
       ``Dense_1``).

    Any other tree (``nn.Dense(64, name="hidden")`` beside ``nn.Dense(10, name="top")``) is an
    error that lists the kernels: name the output layer with ``path`` (``last_layer_path=`` of
    :func:`~lrjax.controller.scale_by_controller`, ``controlled_sgd`` or :class:`FeatureSpec`).

    Args:
      params: any params pytree (linen ``{'params': ...}``, an ``nnx.State`` of arrays, ...).
      path: the ``/``-joined keys of the leaf, e.g. ``"params/classifier/kernel"``.

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
            "last_layer_path= to one of them."
        )
    named = [pl for pl in kernels if _names_output_layer(pl[0])]
    if len(named) == 1:
        return named[0][1]
    for candidates in (kernels, [pl for pl in kernels if jnp.ndim(pl[1]) == 2]):
        if candidates and len({re.sub(r"\d+", "#", p) for p, _ in candidates}) == 1:
            return max(candidates, key=lambda pl: tuple(_natural(c) for c in pl[0].split("/")))[1]
    raise ConfigError(
        "The last_layer_* features need the output layer's kernel, and the params do not say "
        f"which it is (kernels: {', '.join(p for p, _ in kernels)}): pass last_layer_path= "
        "(scale_by_controller, controlled_sgd or FeatureSpec) naming it, e.g. "
        f"last_layer_path={kernels[-1][0]!r}."
    )


def _names_output_layer(path: str) -> bool:
    parts = path.split("/")[:-1]
    return any(re.sub(r"[\d_]+", "", c).lower() in OUTPUT_LAYER_NAMES for c in parts)


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
