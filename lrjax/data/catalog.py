"""The datasets lrjax knows, and where their files live on disk.

A :class:`DatasetSpec` names a tensorflow-datasets builder and the defaults lrjax uses for it.
Paths: the decoded-array cache lives under ``$LRJAX_DATA_DIR`` (default ``~/.cache/lrjax``);
tfds's own prepared files under ``$LRJAX_DATA_DIR/tfds``; raw distribution files for offline
preparation are looked up in the ``raw_dir`` argument or ``$LRJAX_RAW_DIR``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from lrjax._validation import ConfigError

NORMALIZATIONS = ("scale", "mean_subtract", "standardize")
"""How uint8 images become floats inside the jitted step.

- ``"scale"``: x / 255, values in [0, 1] (used for (Fashion-)MNIST).
- ``"mean_subtract"``: x / 255 minus the per-pixel mean of the training split (paper B's CIFAR-10).
- ``"standardize"``: ``mean_subtract`` then divide by the per-channel std of the training split.
"""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A dataset lrjax can load.

    Attributes:
      name: the tfds builder name.
      image_shape: (height, width, channels) of one image.
      num_classes: number of labels.
      train_size: examples in tfds's ``train`` split (before the validation hold-out).
      test_size: examples in tfds's ``test`` split.
      validation_size: default number of examples held out of the end of the train split.
      normalization: default normalisation, one of :data:`NORMALIZATIONS`.
      offline_files: file names tfds needs in a manual/raw directory to prepare offline.
    """

    name: str
    image_shape: tuple[int, int, int]
    num_classes: int
    train_size: int
    test_size: int
    validation_size: int
    normalization: str
    offline_files: tuple[str, ...]


_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("mnist", (28, 28, 1), 10, 60_000, 10_000, 5_000, "scale", _MNIST_FILES),
    "fashion_mnist": DatasetSpec(
        "fashion_mnist", (28, 28, 1), 10, 60_000, 10_000, 5_000, "scale", _MNIST_FILES
    ),
    "cifar10": DatasetSpec(
        "cifar10",
        (32, 32, 3),
        10,
        50_000,
        10_000,
        5_000,
        "mean_subtract",
        ("cifar-10-binary.tar.gz",),
    ),
}

SPLITS = ("train", "validation", "test")


def get_spec(name: str) -> DatasetSpec:
    """The spec of dataset ``name``; an unknown name raises and lists the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(
            f"dataset={name!r} is not known: expected one of {', '.join(sorted(DATASETS))}."
        ) from None


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """Root of lrjax's data: the argument, else ``$LRJAX_DATA_DIR``, else ``~/.cache/lrjax``."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("LRJAX_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/lrjax").expanduser()


def raw_dir(override: str | os.PathLike | None = None) -> Path | None:
    """Directory of raw distribution files: the argument, else ``$LRJAX_RAW_DIR``, else None."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("LRJAX_RAW_DIR")
    return Path(env).expanduser() if env else None


def cache_path(name: str, root: Path) -> Path:
    """The decoded-array cache file of dataset ``name`` under ``root``."""
    return root / "arrays" / f"{name}.npz"
