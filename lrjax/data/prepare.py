"""Prepare a tfds dataset (offline from raw files, or by download) and cache its decoded arrays.

This is the only module of lrjax that imports tensorflow-datasets, and preparing from raw files
needs TensorFlow as well (tfds's extractor and MNIST parser use ``tf.io.gfile``): install the
``prepare`` extra. Training never imports either; it reads the decoded-array cache that
:func:`prepare_dataset` writes (see :mod:`lrjax.data.cache`), so the cache alone is enough to
train on a machine without tfds (e.g. a lent GPU machine).

Offline preparation hands tfds a ``manual_dir`` holding the original distribution files; tfds
verifies each against the size and sha256 it registers for the builder. Before tfds is called,
lrjax checks the same registered checksums itself, so a missing or corrupted file is reported by
name and nothing is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from lrjax._validation import ConfigError
from lrjax.data import catalog

CACHE_FORMAT_VERSION = 1


class RawDataError(ConfigError):
    """A raw file needed for offline preparation is missing or fails its checksum."""


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "Preparing a dataset needs tensorflow-datasets (and TensorFlow for raw files): "
            "pip install 'lrjax[prepare]'. Training only needs the prepared cache."
        ) from e
    return tfds


def registered_files(name: str) -> dict[str, tuple[str, int, str]]:
    """tfds's registered checksums for ``name``: file name -> (url, size in bytes, sha256)."""
    tfds = _import_tfds()
    infos = tfds.builder_cls(name).url_infos or {}
    return {
        (info.filename or url.rsplit("/", 1)[-1]): (url, int(info.size), info.checksum)
        for url, info in infos.items()
    }


def find_raw_files(name: str, raw: Path) -> Path:
    """The directory under ``raw`` holding ``name``'s files: ``raw`` itself or ``raw/name``.

    Raises:
      RawDataError: naming the first missing file and where to download it.
    """
    spec = catalog.get_spec(name)
    for candidate in (raw, raw / name):
        if all((candidate / f).is_file() for f in spec.offline_files):
            return candidate
    if not raw.is_dir():
        raise RawDataError(f"raw_dir={str(raw)!r} is not a directory.")
    where = raw / name if (raw / name).is_dir() else raw
    files = registered_files(name)
    missing = next(f for f in spec.offline_files if not (where / f).is_file())
    url = files.get(missing, ("its official distribution site",))[0]
    raise RawDataError(
        f"raw_dir={str(raw)!r} lacks {missing!r} (looked in {str(where)!r}): download it from "
        f"{url}, or leave raw_dir unset where the internet is reachable so tfds downloads it."
    )


def verify_raw_files(name: str, directory: Path) -> None:
    """Check every raw file of ``name`` in ``directory`` against tfds's registered checksums."""
    for filename, (_, size, sha256) in registered_files(name).items():
        path = directory / filename
        actual_size = path.stat().st_size
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual_size != size or digest != sha256:
            raise RawDataError(
                f"{str(path)!r} failed its checksum: tfds registers {size} bytes with sha256 "
                f"{sha256}, the file has {actual_size} bytes with sha256 {digest}. It is "
                "corrupted or a different version: download it again."
            )


def prepare_dataset(
    name: str,
    *,
    raw_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    verbose: bool = True,
) -> Path:
    """Prepare ``name`` with tfds and write its decoded uint8 arrays to the lrjax cache.

    Args:
      name: a dataset in :data:`lrjax.data.catalog.DATASETS`.
      raw_dir: directory with the original distribution files (or a parent with a ``name``
        folder); defaults to ``$LRJAX_RAW_DIR``; if neither is set tfds downloads the files.
      data_dir: lrjax's data root (default ``$LRJAX_DATA_DIR`` or ``~/.cache/lrjax``).
      overwrite: rebuild the cache even if it exists.
      verbose: print what happens and how long it took.

    Returns:
      The path of the cache file.
    """
    spec = catalog.get_spec(name)
    root = catalog.data_dir(data_dir)
    out = catalog.cache_path(name, root)
    if out.exists() and not overwrite:
        if verbose:
            print(f"{name}: cache already at {out}")
        return out
    raw = catalog.raw_dir(raw_dir)
    manual = None
    if raw is not None:
        manual = find_raw_files(name, raw)
        verify_raw_files(name, manual)

    tfds = _import_tfds()
    start = time.perf_counter()
    builder = tfds.builder(name, data_dir=str(root / "tfds"))
    config = tfds.download.DownloadConfig(manual_dir=str(manual)) if manual else None
    builder.download_and_prepare(download_config=config)
    prepared = time.perf_counter()
    arrays = {}
    for split in ("train", "test"):
        # Batches of 10,000 rather than batch_size=-1: the same arrays, and it also works for
        # datasets of unknown length (tfds's mock data, used to test the CIFAR-10 path).
        batches = list(tfds.as_numpy(builder.as_dataset(split=split, batch_size=10_000)))
        arrays[f"{split}_images"] = np.concatenate([b["image"] for b in batches]).astype(np.uint8)
        arrays[f"{split}_labels"] = np.concatenate([b["label"] for b in batches]).astype(np.int32)
    for split in ("train", "test"):
        images = arrays[f"{split}_images"]
        if images.shape[1:] != spec.image_shape:
            raise RuntimeError(
                f"{name} {split} images have shape {images.shape[1:]}, expected {spec.image_shape}"
            )
    meta = {
        "format_version": CACHE_FORMAT_VERSION,
        "name": name,
        "tfds_version": tfds.__version__,
        "builder_version": str(builder.info.version),
        "source": str(manual) if manual else "tfds download",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
    os.replace(tmp, out)
    if verbose:
        print(
            f"{name}: tfds prepare {prepared - start:.1f} s, decode+cache "
            f"{time.perf_counter() - prepared:.1f} s -> {out} "
            f"({out.stat().st_size / 2**20:.1f} MiB)"
        )
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m lrjax.data.prepare NAME [--raw-dir D] [--data-dir D]`` (used by the loader)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--raw-dir")
    parser.add_argument("--data-dir")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    prepare_dataset(
        args.name, raw_dir=args.raw_dir, data_dir=args.data_dir, overwrite=args.overwrite
    )


if __name__ == "__main__":
    main()
