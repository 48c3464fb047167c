"""Saving and loading controllers: a versioned directory of JSON metadata and msgpack params.

A saved controller is a directory holding

* ``metadata.json``: ``format`` (``"lrjax.controller"``), ``format_version`` (an int, see
  :data:`FORMAT_VERSION`), the ``lrjax_version`` that wrote it, the ``config``
  (:meth:`ControllerConfig.to_json`: features, action mode, LR bounds, initial LR, steps per
  action, network sizes), the ``normaliser`` statistics the controller starts from (``mean``,
  ``var``, ``count`` per feature), a summary of the params (path -> shape, dtype) and the
  SHA-256 of the params file;
* ``params.msgpack``: the actor params, ``flax.serialization.msgpack_serialize``.

Nothing is pickled: loading never runs code from the file. User-defined features are saved as
their declaration (name, inputs, log, normalise); their code is passed again when loading.

Format history: version 1 had no normaliser statistics and called the steps per action
``act_every``; it is still read (fresh statistics).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import pathlib
import tempfile
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization, traverse_util

from lrjax._validation import ConfigError
from lrjax.controller.actor import Controller, init_actor_params
from lrjax.controller.config import ControllerConfig
from lrjax.features import Feature, NormaliserState, init_normaliser

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "load_controller", "save_controller"]

FORMAT_NAME = "lrjax.controller"
READABLE_VERSIONS = (1, 2)
FORMAT_VERSION = 2
"""Version of the on-disk format this lrjax writes and reads. Bump it when the layout, the config
schema or the params tree changes incompatibly."""

METADATA_FILE = "metadata.json"
PARAMS_FILE = "params.msgpack"


def _lrjax_version() -> str:
    try:
        return importlib.metadata.version("lrjax")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _flat(tree: Any) -> dict[str, Any]:
    return traverse_util.flatten_dict(serialization.to_state_dict(tree), sep="/")


def _write_atomic(path: pathlib.Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def save_controller(
    path: str | os.PathLike, controller: Controller, *, overwrite: bool = False
) -> pathlib.Path:
    """Save a controller to the directory ``path``.

    Args:
      path: the directory to write (created if missing).
      controller: the controller to save.
      overwrite: replace a controller already saved at ``path``; otherwise that is an error.

    Returns:
      The directory's path.

    Example, a round trip through a directory:

    >>> import os, tempfile, jax, lrjax
    >>> c = lrjax.init_controller(jax.random.key(0), lrjax.ControllerConfig.loss_only())
    >>> path = save_controller(os.path.join(tempfile.mkdtemp(), "controller"), c)
    >>> sorted(os.listdir(path))
    ['metadata.json', 'params.msgpack']
    >>> load_controller(path).config == c.config
    True
    """
    if not isinstance(controller, Controller):
        raise ConfigError(
            f"controller of type {type(controller).__name__} is not allowed: expected a lrjax "
            "Controller."
        )
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"path={str(path)!r} is not allowed: it is a file, expected a directory.")
    if (path / METADATA_FILE).exists() and not overwrite:
        raise FileExistsError(
            f"A controller is already saved at {str(path)!r}; pass overwrite=True to replace it."
        )
    check_params(controller.params, controller.config)
    params = jax.tree.map(np.asarray, controller.params)
    blob = serialization.msgpack_serialize(serialization.to_state_dict(params))
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "lrjax_version": _lrjax_version(),
        "config": controller.config.to_json(),
        "normaliser": {
            k: np.asarray(v).tolist() for k, v in controller.normaliser._asdict().items()
        },
        "params": {
            k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in _flat(params).items()
        },
        "params_sha256": hashlib.sha256(blob).hexdigest(),
    }
    _normaliser_from_json(metadata["normaliser"], controller.config)  # shapes fit the config
    path.mkdir(parents=True, exist_ok=True)
    _write_atomic(path / PARAMS_FILE, blob)
    _write_atomic(path / METADATA_FILE, json.dumps(metadata, indent=2).encode())
    return path


def load_controller(
    path: str | os.PathLike, *, custom_features: Sequence[Feature] = ()
) -> Controller:
    """Load a controller saved by :func:`save_controller`.

    Args:
      path: the directory.
      custom_features: the user-defined :class:`~lrjax.features.Feature` objects the saved
        config names (their code is not saved).

    Returns:
      The :class:`Controller`, with params as jax arrays.

    Raises:
      FileNotFoundError: no saved controller at ``path``.
      ConfigError: the files are of another format version, corrupted, or the params do not fit
        the config (the message names the first mismatching path).
    """
    path = pathlib.Path(path)
    meta_file = path / METADATA_FILE
    if not meta_file.is_file():
        raise FileNotFoundError(
            f"No saved controller at {str(path)!r}: {METADATA_FILE} is missing (save one with "
            "lrjax.save_controller)."
        )
    try:
        metadata = json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{str(meta_file)!r} is not valid JSON: {e}.") from e
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        found = metadata.get("format") if isinstance(metadata, dict) else None
        raise ConfigError(
            f"{str(meta_file)!r} is not a saved lrjax controller: format={found!r}, expected "
            f"{FORMAT_NAME!r}."
        )
    version = metadata.get("format_version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        advice = (
            "upgrade lrjax to read it"
            if isinstance(version, int) and version > FORMAT_VERSION
            else "re-save it with the lrjax version that wrote it, or convert it"
        )
        raise ConfigError(
            f"The controller at {str(path)!r} has format_version={version!r} (written by lrjax "
            f"{metadata.get('lrjax_version', 'unknown')}); this lrjax ({_lrjax_version()}) reads "
            f"format_version {', '.join(map(str, READABLE_VERSIONS))}: {advice}."
        )
    config = _config_from_metadata(metadata, version, custom_features, meta_file)
    params_file = path / PARAMS_FILE
    if not params_file.is_file():
        raise FileNotFoundError(f"The controller at {str(path)!r} lacks {PARAMS_FILE}.")
    blob = params_file.read_bytes()
    digest = metadata.get("params_sha256")
    if digest is not None and hashlib.sha256(blob).hexdigest() != digest:
        raise ConfigError(
            f"{str(params_file)!r} does not match the checksum in {METADATA_FILE}: the file is "
            "corrupted or was replaced."
        )
    try:
        restored = serialization.msgpack_restore(blob)
    except Exception as e:  # msgpack raises several types on garbage
        raise ConfigError(f"{str(params_file)!r} is not a msgpack params file: {e}.") from e
    try:
        check_params(restored, config)
    except ConfigError as e:
        raise ConfigError(
            f"The controller at {str(path)!r} is broken: {e} Its {PARAMS_FILE} and "
            f"{METADATA_FILE} come from different controllers (or the metadata was edited): "
            "save the controller again with lrjax.save_controller."
        ) from e
    flat = {k: jnp.asarray(v) for k, v in _flat(restored).items()}
    params = traverse_util.unflatten_dict(flat, sep="/")
    normaliser = (
        init_normaliser(config.features.size)
        if version == 1
        else _normaliser_from_json(metadata.get("normaliser"), config)
    )
    return Controller(config=config, params=params, normaliser=normaliser)


def _config_from_metadata(metadata, version, custom_features, meta_file) -> ControllerConfig:
    """The saved config (version 1's ``act_every`` read as ``steps_per_action``); any field of
    the wrong shape is a :class:`ConfigError` naming the file."""
    config_json = metadata.get("config")
    if version == 1 and isinstance(config_json, dict) and "act_every" in config_json:
        config_json = dict(config_json)
        config_json["steps_per_action"] = config_json.pop("act_every")
    try:
        return ControllerConfig.from_json(config_json, custom_features)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise ConfigError(
            f"The saved controller config in {str(meta_file)!r} is malformed ({type(e).__name__}: "
            f"{e}); re-save the controller with lrjax.save_controller."
        ) from e


def _normaliser_from_json(data: Any, config: ControllerConfig) -> NormaliserState:
    """The saved statistics, checked against the config's number of features."""
    fields = NormaliserState._fields
    if not isinstance(data, dict) or sorted(data) != sorted(fields):
        raise ConfigError(
            f"The saved normaliser is {data!r}: expected an object with the keys {list(fields)}."
        )
    dtypes = {"mean": np.float32, "var": np.float32, "count": np.int32}
    arrays = {}
    for name in fields:
        try:
            raw = np.asarray(data[name], np.float64)
        except (TypeError, ValueError, OverflowError) as e:
            raise ConfigError(f"The saved normaliser's {name!r} is not numeric: {e}.") from e
        if raw.shape != (config.features.size,):
            raise ConfigError(
                f"The saved normaliser's {name!r} has shape {raw.shape}: expected "
                f"({config.features.size},), one entry per feature."
            )
        valid = {
            "mean": np.isfinite(raw),
            "var": np.isfinite(raw) & (raw >= 0),
            "count": (raw >= 0) & (raw == np.round(raw)) & (raw < 2**31),
        }[name]
        if not valid.all():
            allowed = {
                "mean": "finite numbers",
                "var": "finite numbers >= 0",
                "count": "integers in [0, 2**31)",
            }[name]
            raise ConfigError(
                f"The saved normaliser's {name!r} is {data[name]!r}: expected {allowed}."
            )
        arrays[name] = jnp.asarray(raw.astype(dtypes[name]))
    return NormaliserState(**arrays)


def check_params(params: Any, config: ControllerConfig) -> None:
    """Raise a ConfigError naming the first path where ``params`` does not fit ``config`` (the
    actor of another feature spec or LSTM size)."""
    template = _flat(jax.eval_shape(init_actor_params, jax.random.key(0), config))
    try:
        given = _flat(params)
    except Exception as e:
        raise ConfigError(f"The params are not a tree of arrays: {e}.") from e
    inputs = f"{config.features.size} features"
    if config.group_features:
        inputs += f" and {len(config.group_features)} group features"
    what = (
        f"the config (lstm_layers={config.lstm_layers}, lstm_units={config.lstm_units}, "
        f"{inputs}, {config.action_size} outputs)"
    )
    for key in sorted(set(template) | set(given)):
        if key not in given:
            raise ConfigError(f"The params do not fit {what}: {key!r} is missing.")
        if key not in template:
            raise ConfigError(f"The params do not fit {what}: {key!r} is not expected.")
        want, got = template[key], given[key]
        shape = tuple(np.shape(got))
        if shape != tuple(want.shape):
            raise ConfigError(
                f"The params do not fit {what}: {key!r} has shape {shape}, expected "
                f"{tuple(want.shape)}."
            )
        dtype = np.asarray(got).dtype if not hasattr(got, "dtype") else got.dtype
        if jnp.dtype(dtype) != jnp.dtype(want.dtype):
            raise ConfigError(
                f"The params do not fit {what}: {key!r} has dtype {dtype}, expected {want.dtype}."
            )
