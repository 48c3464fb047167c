"""Load a prepared dataset from lrjax's decoded-array cache onto the device.

Reading the cache needs only numpy: no tfds, no TensorFlow. If the cache is missing, the loader
prepares it in a separate Python process (``python -m lrjax.data.prepare``) so TensorFlow never
enters the training process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import jax
import numpy as np

from lrjax._validation import ConfigError, check_choice, check_non_negative_int
from lrjax.data import catalog
from lrjax.data.arrays import Dataset, Split

SUPPORTED_CACHE_VERSION = 1


def load_dataset(
    name: str,
    *,
    validation_size: int | None = None,
    normalization: str | None = None,
    data_dir: str | os.PathLike | None = None,
    raw_dir: str | os.PathLike | None = None,
    prepare: bool = True,
    device: jax.Device | None = None,
) -> Dataset:
    """Load ``name`` as a device-resident :class:`Dataset`.

    The validation split is the last ``validation_size`` examples of tfds's train split in tfds
    order (the same examples as tfds's ``train[-validation_size:]``): deterministic, and the
    same on every machine. The test split is tfds's ``test``.

    Args:
      name: ``"mnist"``, ``"fashion_mnist"`` or ``"cifar10"``.
      validation_size: examples held out of the train split (default: the dataset's, 5,000).
      normalization: ``"scale"``, ``"mean_subtract"`` or ``"standardize"`` (default: the
        dataset's: scale for the MNISTs, mean_subtract for CIFAR-10).
      data_dir: lrjax's data root (default ``$LRJAX_DATA_DIR`` or ``~/.cache/lrjax``).
      raw_dir: raw files for offline preparation if the cache is missing
        (default ``$LRJAX_RAW_DIR``; unset: tfds downloads).
      prepare: prepare the dataset (in a subprocess) if its cache is missing; if False, raise.
      device: where to put the arrays (default: jax's default device).
    """
    spec = catalog.get_spec(name)
    validation_size = spec.validation_size if validation_size is None else validation_size
    normalization = spec.normalization if normalization is None else normalization
    check_non_negative_int("validation_size", validation_size)
    if validation_size >= spec.train_size:
        raise ConfigError(
            f"validation_size={validation_size} leaves no training data: the train split "
            f"has {spec.train_size} examples."
        )
    check_choice("normalization", normalization, catalog.NORMALIZATIONS)

    root = catalog.data_dir(data_dir)
    path = catalog.cache_path(name, root)
    if not path.exists():
        if not prepare:
            raise FileNotFoundError(
                f"{name} is not prepared (no {path}). Run: lrjax data prepare {name} "
                "--raw-dir DIR (or without --raw-dir where the internet is reachable)."
            )
        _prepare_in_subprocess(name, root, raw_dir)

    arrays = read_cache(path, name)
    count = len(arrays["train_images"])
    if validation_size >= count:
        raise ConfigError(
            f"validation_size={validation_size} leaves no training data: the cache {path} holds "
            f"{count} training examples ({spec.train_size} when prepared by lrjax); choose a "
            f"smaller validation_size, or re-run: lrjax data prepare {name} --overwrite."
        )
    return make_dataset(
        name,
        arrays["train_images"],
        arrays["train_labels"],
        arrays["test_images"],
        arrays["test_labels"],
        validation_size=validation_size,
        normalization=normalization,
        num_classes=spec.num_classes,
        device=device,
    )


def read_cache(path: os.PathLike, name: str | None = None) -> dict[str, np.ndarray]:
    """The arrays of a cache file, checked: its format version, that it is the cache of
    ``name`` (when given), and (for a dataset lrjax knows) that it holds uint8 images of the
    dataset's shape and one label in range per image. A truncated, foreign or wrong-array file is
    a :class:`ConfigError` saying how to prepare it again, not a ``BadZipFile`` or ``KeyError`` or
    a model that trains to NaN on out-of-range labels."""
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
    if version != SUPPORTED_CACHE_VERSION:
        raise ConfigError(
            f"cache {path} has format_version={version!r}; this lrjax reads version "
            f"{SUPPORTED_CACHE_VERSION}. {redo[0].upper()}{redo[1:]}."
        )
    if found != name:
        raise ConfigError(f"cache {path} holds the dataset {found!r}, not {name!r}; {redo}.")
    if name in catalog.DATASETS:
        _check_cache_arrays(arrays, catalog.get_spec(name), redo)
    return arrays


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


def make_dataset(
    name: str,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    *,
    validation_size: int,
    normalization: str,
    num_classes: int,
    device: jax.Device | None = None,
) -> Dataset:
    """Split off the validation hold-out, compute training statistics and move to device."""
    n_train = train_images.shape[0] - validation_size
    train = Split(train_images[:n_train], train_labels[:n_train])
    validation = Split(train_images[n_train:], train_labels[n_train:])
    pixels = train.images.astype(np.float32) / 255.0
    pixel_mean = pixels.mean(axis=0)
    # per-channel std of the mean-subtracted pixels, so "standardize" gives unit variance
    pixel_std = np.sqrt(((pixels - pixel_mean) ** 2).mean(axis=(0, 1, 2))) + 1e-6
    dataset = Dataset(
        train=train,
        validation=validation,
        test=Split(test_images, test_labels),
        pixel_mean=pixel_mean.astype(np.float32),
        pixel_std=pixel_std.astype(np.float32),
        name=name,
        num_classes=num_classes,
        normalization=normalization,
    )
    return jax.device_put(dataset, device)


def _prepare_in_subprocess(name: str, root, raw_dir) -> None:
    cmd = [sys.executable, "-m", "lrjax.data.prepare", name, "--data-dir", str(root)]
    raw = catalog.raw_dir(raw_dir)
    if raw is not None:
        cmd += ["--raw-dir", str(raw)]
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no TensorFlow C++ log in the subprocess
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        # A user error (missing raw files, no network...) comes back whole, as a ConfigError
        from lrjax.data.prepare import ERROR_PREFIX

        if ERROR_PREFIX in result.stderr:
            message = result.stderr.split(ERROR_PREFIX, 1)[1].strip()
            raise ConfigError(f"preparing {name} failed: {message}")
        lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
        raise RuntimeError(
            f"preparing {name} failed: {lines[-1] if lines else 'no message'}\n"
            f"(command: {' '.join(cmd)})"
        )
