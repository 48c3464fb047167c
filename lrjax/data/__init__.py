"""Datasets: tfds preparation (offline from raw files), a decoded-array cache, and
device-resident splits sampled inside jit. Importing this package does not import tfds."""

from lrjax.data.arrays import Dataset, Split, normalize, sample_batch, sample_indices
from lrjax.data.cache import read_cache
from lrjax.data.catalog import DATASETS, NORMALIZATIONS, SPLITS, DatasetSpec, get_spec
from lrjax.data.loader import load_dataset, make_dataset

__all__ = [
    "DATASETS",
    "NORMALIZATIONS",
    "SPLITS",
    "Dataset",
    "DatasetSpec",
    "Split",
    "get_spec",
    "load_dataset",
    "make_dataset",
    "normalize",
    "read_cache",
    "sample_batch",
    "sample_indices",
]
