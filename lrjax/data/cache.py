"""lrjax's decoded-array cache of a dataset: its format, and writing, reading and checking it.

A cache file (``DATA_DIR/NAME.npz``, see :func:`lrjax.data.catalog.cache_path`) holds the
dataset's ``train_images``, ``train_labels``, ``test_images`` and ``test_labels`` as numpy
arrays, and a JSON ``meta`` entry naming the dataset and :data:`FORMAT_VERSION`. The preparer
(:mod:`lrjax.data.prepare`) writes it, the loader (:mod:`lrjax.data.loader`) reads it: both go
through this module, which needs only numpy, so neither imports the other.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from lrjax._validation import ConfigError
from lrjax.data import catalog

FORMAT_VERSION = 2
"""The cache format this lrjax writes and reads; a cache of another version is refused.

Version 2 (same arrays) marks caches whose labels were checked against the raw files: a version-1
``mnist`` cache prepared offline after ``fashion_mnist`` holds Fashion-MNIST (see
:mod:`lrjax.data.prepare`), so every version-1 cache is prepared again."""

ERROR_PREFIX = "lrjax: error: "
"""Starts the user-error line ``python -m lrjax.data.prepare`` prints to stderr; the loader,
which runs it in a subprocess, reads what follows back into its own error."""


def write_cache(path: os.PathLike, name: str, arrays: dict[str, np.ndarray], **meta) -> Path:
    """Write ``arrays`` as the cache of ``name`` at ``path``, with ``meta`` (JSON values, e.g.
    where the data came from) beside the format version and the name.

    The file is written next to ``path`` and then renamed onto it, so an interrupted write never
    leaves a truncated cache under the cache's name.
    """
    path = Path(path)
    meta = {"format_version": FORMAT_VERSION, "name": name, **meta}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
    os.replace(tmp, path)
    return path


def read_cache(path: os.PathLike, name: str | None = None) -> dict[str, np.ndarray]:
    """The arrays of a cache file, checked: its format version, that it is the cache of
    ``name`` (when given), and (for a dataset lrjax knows) that it holds uint8 images of the
    dataset's shape and one label in range per image. A truncated, foreign or wrong-array file is
    a :class:`ConfigError` saying how to prepare it again, not a ``BadZipFile`` or ``KeyError`` or
    a model that trains to NaN on out-of-range labels.

    Args:
      path: the cache file (``DATA_DIR/NAME.npz``, :func:`lrjax.data.catalog.cache_path`).
      name: the dataset the file must hold (its ``meta`` name must equal it); default None:
        the name in the file's ``meta`` is taken as it is.

    Returns:
      The file's arrays by name, every entry but ``meta`` (for a dataset lrjax knows, checked
      to include ``train_images``, ``train_labels``, ``test_images`` and ``test_labels``).
    """
    # The dataset's name: asked for, else the file's metadata, else the file name (NAME.npz).
    redo = f"re-run: lrjax data prepare NAME --overwrite (the cache is {path})"
    try:
        with np.load(path) as f:
            meta = json.loads(str(f["meta"]))
            arrays = {k: f[k] for k in f.files if k != "meta"}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise ConfigError(
            f"cache {path} is unreadable ({type(e).__name__}: {e}): it is truncated or not an "
            f"lrjax cache; {redo.replace('NAME', name or Path(path).stem)}."
        ) from e
    found = meta.get("name") if isinstance(meta, dict) else None
    name = name or (found if isinstance(found, str) else None)
    redo = redo.replace("NAME", name or Path(path).stem)
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version != FORMAT_VERSION:
        raise ConfigError(
            f"cache {path} has format_version={version!r}; this lrjax reads version "
            f"{FORMAT_VERSION}. {redo[0].upper()}{redo[1:]}."
        )
    if found != name:
        raise ConfigError(f"cache {path} holds the dataset {found!r}, not {name!r}; {redo}.")
    if name in catalog.DATASETS:
        _check_cache_arrays(arrays, catalog.get_spec(name), redo)
    return arrays


def cache_problem(path: os.PathLike) -> str | None:
    """What is wrong with the cache at ``path`` (None: it reads and checks out)."""
    try:
        read_cache(path)
    except ConfigError as e:
        return str(e).split(";")[0]
    return None


def _check_cache_arrays(arrays: dict[str, np.ndarray], spec, redo: str) -> None:
    """The four arrays of a cache against the dataset's spec."""
    for split in ("train", "test"):
        images, labels = arrays.get(f"{split}_images"), arrays.get(f"{split}_labels")
        if images is None or labels is None:
            raise ConfigError(
                f"cache of {spec.name} lacks its {split}_images or {split}_labels array "
                f"(it has {sorted(arrays)}); {redo}."
            )
        if images.dtype != np.uint8 or images.shape[1:] != spec.image_shape:
            raise ConfigError(
                f"cache of {spec.name} holds {split}_images of {images.dtype} {images.shape}: "
                f"expected uint8 (examples, {', '.join(map(str, spec.image_shape))}); {redo}."
            )
        count = images.shape[0]
        if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
            raise ConfigError(
                f"cache of {spec.name} holds {split}_labels of {labels.dtype} {labels.shape}: "
                f"expected integers of shape ({count},), one per image; {redo}."
            )
        if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
            raise ConfigError(
                f"cache of {spec.name} holds {split}_labels in [{labels.min()}, {labels.max()}]: "
                f"expected 0 .. {spec.num_classes - 1}; {redo}."
            )
