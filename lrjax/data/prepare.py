"""Prepare a tfds dataset (offline from raw files, or by download) and cache its decoded arrays.

This is the only module of lrjax that imports tensorflow-datasets, and preparing from raw files
needs TensorFlow as well (tfds's extractor and MNIST parser use ``tf.io.gfile``): install the
``prepare`` extra. Training never imports either; it reads the decoded-array cache that
:func:`prepare_dataset` writes (see :mod:`lrjax.data.cache`), so the cache alone is enough to
train on a machine without tfds (e.g. a lent GPU machine).

Offline preparation hands tfds a ``manual_dir`` holding the original distribution files; tfds
verifies each against the size and sha256 it registers for the builder. Before tfds is called,
lrjax checks the same registered checksums itself, so a missing or corrupted file is reported by
name and nothing is written. MNIST and Fashion-MNIST ship files of the same names, and tfds names
what it extracts from a manual dir after the file alone (``extracted/GZIP.<file name>``): with one
download dir for both, the second dataset prepared was built from the first one's extracted
files. Each dataset therefore gets its own download dir, and the decoded labels are checked
against the raw label files before the cache is written (:func:`raw_label_problem`).

Without raw files, tfds downloads them; when the download host cannot be reached, lrjax says
within seconds which files to download and where to put them, rather than letting tfds retry
for minutes.

Preparation prints one plain line per step (no progress bars) and silences TensorFlow's C++ log
while it runs.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import shutil
import socket
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lrjax._validation import ConfigError, check_writable_dir
from lrjax.data import catalog
from lrjax.data.cache import ERROR_PREFIX, cache_problem, write_cache

REACHABILITY_TIMEOUT_S = 3.0
"""Seconds the download host has to accept a connection before preparation gives up."""


class RawDataError(ConfigError):
    """A raw file needed for offline preparation is missing or fails its checksum."""


class DownloadUnavailableError(RawDataError):
    """No raw files were given and tfds's download host cannot be reached."""


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
        raise RawDataError(
            f"raw_dir={str(raw)!r} is not a directory: expected the folder holding {name}'s "
            f"original files ({', '.join(spec.offline_files)}), or leave raw_dir unset "
            "where the internet is reachable so tfds downloads them."
        )
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


def host_reachable(host: str, port: int, timeout: float = REACHABILITY_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds.

    The name lookup counts against the timeout too: the check runs in a daemon thread that is
    abandoned when it takes longer (a resolver without network can hang far longer).
    """
    result: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except (OSError, ValueError):  # ValueError: a host name that cannot be encoded
            result.append(False)

    thread = threading.Thread(target=connect, name=f"lrjax-reach-{host}", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _connect_target(url: str) -> tuple[str, int]:
    """The ``(host, port)`` a download of ``url`` connects to: its host, or the proxy's."""
    parts = urllib.parse.urlsplit(url)
    default_port = 443 if parts.scheme == "https" else 80
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return proxy_parts.hostname or "", proxy_parts.port or 80
    return parts.hostname or "", parts.port or default_port


def _downloads_present(files: dict[str, tuple[str, int, str]], tfds_dir: Path, name: str) -> bool:
    """Whether tfds finds every file of ``name`` under ``tfds_dir`` without downloading: in its
    default manual dir or its download cache (from an earlier, interrupted preparation)."""
    downloads = tfds_dir / "downloads"
    try:
        from tensorflow_datasets.core.download.resource import get_dl_fname
    except ImportError:  # pragma: no cover - tfds moved it: just check the network
        return False
    for filename, (url, _, sha256) in files.items():
        cached = get_dl_fname(url, sha256)
        candidates = (
            downloads / "manual" / filename,
            downloads / name / cached,
            downloads / cached,
        )
        if not any(c.is_file() for c in candidates):
            return False
    return True


def check_download_reachable(name: str, root: Path) -> None:
    """Raise :class:`DownloadUnavailableError` unless the hosts tfds downloads ``name`` from
    accept a connection within :data:`REACHABILITY_TIMEOUT_S` seconds.

    The message lists each file (URL, size, sha256) and the directory to put it in.
    """
    files = registered_files(name)
    targets = sorted({_connect_target(url) for url, _, _ in files.values()})
    unreachable = [f"{h}:{p}" for h, p in targets if not host_reachable(h, p)]
    if not unreachable:
        return
    raw = root / "raw"
    listing = "\n".join(
        f"  {url}  ({_mib(size)}, sha256 {sha256})" for url, size, sha256 in files.values()
    )
    them = "them, under these names," if len(files) > 1 else "it, under this name,"
    raise DownloadUnavailableError(
        f"cannot prepare {name}: no raw files were given (--raw-dir or $LRJAX_RAW_DIR) and the "
        f"download host {', '.join(unreachable)} did not answer within "
        f"{REACHABILITY_TIMEOUT_S:g} s (no network?).\n"
        f"Download {'these files' if len(files) > 1 else 'this file'} on a machine with "
        f"internet:\n{listing}\n"
        f"put {them} in {raw / name}/ and run:\n"
        f"  lrjax data prepare {name} --raw-dir {raw}\n"
        f"(or set LRJAX_RAW_DIR={raw}; a directory holding the files directly works too)."
    )


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.1f} KiB"


@contextlib.contextmanager
def _quiet_tfds() -> Iterator:
    """tfds, imported with TensorFlow's C++ info/warning log off and tfds's progress bars
    disabled; the previous settings come back afterwards (this may run in a user's process).

    TensorFlow reads ``TF_CPP_MIN_LOG_LEVEL`` once, at its first log line, which comes while
    tfds imports or uses it inside this context. A level the user set is left alone.
    """
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    if level is None:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    try:
        tfds = _import_tfds()
        from tensorflow_datasets.core.utils import tqdm_utils

        bars = getattr(tqdm_utils, "_active", True)
        tfds.display_progress_bar(False)
        try:
            yield tfds
        finally:
            tfds.display_progress_bar(bars)
    finally:
        if level is None:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)


def _source(name: str, builder, manual: Path | None, root: Path) -> str:
    """Where tfds will prepare ``name`` from, in words; when that is a download, check first
    that the host answers (:func:`check_download_reachable`)."""
    if builder.data_path.exists():  # tfds's own test: it reuses what is there
        return f"tfds's prepared copy in {builder.data_dir}"
    if manual is not None:
        return f"raw files in {manual} (checksums ok)"
    if _downloads_present(registered_files(name), root / "tfds", name):
        return f"files tfds downloaded before, in {root / 'tfds' / 'downloads'}"
    check_download_reachable(name, root)
    return "files tfds downloads now"


def _decode_split(tfds, builder, split: str, spec) -> tuple[np.ndarray, np.ndarray]:
    """A prepared split's images (uint8) and labels (int32), shapes checked against ``spec``.

    Batches of 10,000 rather than batch_size=-1: the same arrays, and it also works for
    datasets of unknown length (tfds's mock data, used to test CIFAR-10's path)."""
    batches = list(tfds.as_numpy(builder.as_dataset(split=split, batch_size=10_000)))
    images = np.concatenate([b["image"] for b in batches]).astype(np.uint8)
    labels = np.concatenate([b["label"] for b in batches]).astype(np.int32)
    if images.shape[1:] != spec.image_shape:
        raise RuntimeError(
            f"{spec.name} {split} images have shape {images.shape[1:]}, expected {spec.image_shape}"
        )
    return images, labels


def raw_label_counts(directory: Path) -> dict[str, np.ndarray]:
    """How many examples of each class the raw IDX label files in ``directory`` hold, per split
    (``train``: train-labels-idx1-ubyte.gz, ``test``: t10k-labels-idx1-ubyte.gz).

    Read by hand: an IDX label file is gzip, an 8-byte header, then one uint8 per example, and
    neither tfds nor numpy reads it without TensorFlow."""
    counts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        with gzip.open(directory / f"{prefix}-labels-idx1-ubyte.gz") as f:
            counts[split] = np.bincount(np.frombuffer(f.read()[8:], np.uint8), minlength=10)
    return counts


def raw_label_problem(name: str, directory: Path, arrays: dict[str, np.ndarray]) -> str | None:
    """Why the decoded ``arrays`` are not ``name``'s raw files in ``directory`` (None: their
    label counts match, split by split). Only datasets shipped as IDX files are checked (MNIST,
    Fashion-MNIST: the two whose file names collide); others return None."""
    if "train-labels-idx1-ubyte.gz" not in catalog.get_spec(name).offline_files:
        return None
    for split, expected in raw_label_counts(directory).items():
        found = np.bincount(arrays[f"{split}_labels"], minlength=expected.size)
        if not np.array_equal(found, expected):
            return (
                f"tfds's {split} split has {found.tolist()} examples per class, the raw files in "
                f"{directory} have {expected.tolist()}: it was prepared from other files"
            )
    return None


def _cache_is_usable(name: str, path: Path, verbose: bool) -> bool:
    """Whether an existing cache can be kept; a truncated or wrong one is prepared again, not
    called prepared."""
    problem = cache_problem(path)
    if verbose:
        print(
            f"{name}: cache already at {path}"
            if problem is None
            else f"{name}: the cache at {path} is broken ({problem}); preparing it again"
        )
    return problem is None


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
      verbose: print one plain line per step (tfds, each split, the cache) and its time.

    Returns:
      The path of the cache file.

    Raises:
      RawDataError: a raw file is missing or fails its checksum; or, as
        :class:`DownloadUnavailableError`, no raw files were given, tfds has none at hand and
        its download host does not answer within :data:`REACHABILITY_TIMEOUT_S` seconds. The
        message says which files to download and where to put them; nothing is written.
    """
    spec = catalog.get_spec(name)
    root = catalog.data_dir(data_dir)
    out = catalog.cache_path(name, root)
    if out.exists() and not overwrite and _cache_is_usable(name, out, verbose):
        return out
    check_writable_dir("data_dir", root)  # before tfds runs for a minute
    raw = catalog.raw_dir(raw_dir)
    manual = None
    if raw is not None:
        manual = find_raw_files(name, raw)
        verify_raw_files(name, manual)

    say = print if verbose else (lambda *a, **k: None)
    start = time.perf_counter()
    with _quiet_tfds() as tfds:
        for attempt in (1, 2):
            builder = tfds.builder(name, data_dir=str(root / "tfds"))
            source = _source(name, builder, manual, root)
            say(f"{name}: preparing with tfds {tfds.__version__} from {source} ...", flush=True)
            config = tfds.download.DownloadConfig(manual_dir=str(manual)) if manual else None
            # A download dir of its own: tfds names files extracted from a manual dir after the
            # file name alone, which MNIST and Fashion-MNIST share (see the module docstring).
            downloads = str(root / "tfds" / "downloads" / name) if manual else None
            # tfds prints its own (bold) start and end lines to stdout: ours replace them.
            with contextlib.redirect_stdout(io.StringIO()):
                builder.download_and_prepare(download_dir=downloads, download_config=config)
            say(f"{name}: tfds prepared in {time.perf_counter() - start:.1f} s", flush=True)
            arrays = {}
            for split in ("train", "test"):
                split_start = time.perf_counter()
                images, labels = _decode_split(tfds, builder, split, spec)
                arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
                say(
                    f"{name}: {split} {images.shape[0]:,} examples "
                    f"{'x'.join(map(str, images.shape[1:]))} ... done "
                    f"({time.perf_counter() - split_start:.1f} s)",
                    flush=True,
                )
            problem = raw_label_problem(name, manual, arrays) if manual else None
            if problem is None:
                break
            if attempt == 2:
                raise RuntimeError(f"{name}: {problem}; nothing was written.")
            # tfds's prepared copy was built from other files (an lrjax before the fix above):
            # it goes, and tfds prepares again from the raw files.
            say(f"{name}: {problem}; removing {builder.data_path} and preparing again", flush=True)
            shutil.rmtree(builder.data_path)
    write_cache(
        out,
        name,
        arrays,
        tfds_version=tfds.__version__,
        builder_version=str(builder.info.version),
        source=str(manual) if manual else "tfds download",
    )
    say(
        f"{name}: cache {out} ({_mib(out.stat().st_size)}), "
        f"{time.perf_counter() - start:.1f} s in all",
        flush=True,
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
    try:
        prepare_dataset(
            args.name, raw_dir=args.raw_dir, data_dir=args.data_dir, overwrite=args.overwrite
        )
    except (ConfigError, FileNotFoundError) as e:
        # The loader reads what follows this prefix back into its own error.
        print(f"{ERROR_PREFIX}{e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
