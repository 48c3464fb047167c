"""Load a prepared dataset from lrjax's decoded-array cache onto the device.

Reading the cache (:mod:`lrjax.data.cache`) needs only numpy: no tfds, no TensorFlow. If the
cache is missing, the loader prepares it in a separate Python process
(``python -m lrjax.data.prepare``) so TensorFlow never enters the training process.
"""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import numpy as np

from lrjax._validation import ConfigError, check_choice, check_non_negative_int
from lrjax.data import catalog
from lrjax.data.arrays import Dataset, Split
from lrjax.data.cache import ERROR_PREFIX, read_cache


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
    """Split off the validation hold-out, compute training statistics and move to device.

    Nothing is validated here (:func:`load_dataset` checks ``validation_size`` and
    ``normalization`` before it calls this).

    Args:
      name: the dataset's name, kept as the static :attr:`Dataset.name`.
      train_images: uint8 images of the full train split, shape ``[N, H, W, C]``; the last
        ``validation_size`` become the validation split.
      train_labels: integer labels of ``train_images``, shape ``[N]`` (kept in their dtype:
        the cache holds int32).
      test_images: uint8 images of the test split, shape ``[M, H, W, C]``.
      test_labels: integer labels of ``test_images``, shape ``[M]``.
      validation_size: examples held out of the end of the train split (0: an empty
        validation split); ``pixel_mean`` and ``pixel_std`` are computed on the rest.
      normalization: ``"scale"``, ``"mean_subtract"`` or ``"standardize"``, kept as the
        static :attr:`Dataset.normalization` (see :func:`lrjax.data.normalize`).
      num_classes: number of classes, kept as the static :attr:`Dataset.num_classes`.
      device: where to put the arrays (default: jax's default device).

    Returns:
      The device-resident :class:`Dataset`; ``pixel_mean`` float32 ``[H, W, C]`` and
      ``pixel_std`` float32 ``[C]`` (plus 1e-6), in [0, 1] units.
    """
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
        if ERROR_PREFIX in result.stderr:
            message = result.stderr.split(ERROR_PREFIX, 1)[1].strip()
            raise ConfigError(f"preparing {name} failed: {message}")
        lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
        raise RuntimeError(
            f"preparing {name} failed: {lines[-1] if lines else 'no message'}\n"
            f"(command: {' '.join(cmd)})"
        )
