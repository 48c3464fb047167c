"""lrjax.data.cache: a cache written is read back as written with its provenance; a cache of
another format version, a truncated one or one with wrong arrays is a clear error naming the
command that prepares it again; ``lrjax data info`` calls such a cache broken."""

import json

import numpy as np
import pytest

from lrjax._validation import ConfigError
from lrjax.data import cache, catalog, load_dataset


def test_a_written_cache_reads_back_with_its_meta(tmp_path):
    arrays = {
        "train_images": np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28, 1),
        "train_labels": np.array([3, 9], np.int32),
        "test_images": np.zeros((1, 28, 28, 1), np.uint8),
        "test_labels": np.array([0], np.int32),
    }
    path = cache.write_cache(tmp_path / "sub" / "mnist.npz", "mnist", arrays, source="by hand")
    assert sorted(p.name for p in path.parent.iterdir()) == ["mnist.npz"]  # no temporary left
    back = cache.read_cache(path, "mnist")
    assert sorted(back) == sorted(arrays)
    for k, v in arrays.items():
        np.testing.assert_array_equal(back[k], v)
        assert back[k].dtype == v.dtype
    with np.load(path) as f:
        meta = json.loads(str(f["meta"]))
    assert meta == {"format_version": cache.FORMAT_VERSION, "name": "mnist", "source": "by hand"}
    assert cache.cache_problem(path) is None


def test_the_cache_of_another_dataset_is_refused(tmp_path):
    path = _fake_cache(tmp_path)
    with pytest.raises(ConfigError, match="holds the dataset 'mnist', not 'fashion_mnist'"):
        cache.read_cache(path, "fashion_mnist")


def test_cache_of_another_version_is_refused(tmp_path):
    path = catalog.cache_path("mnist", tmp_path)
    path.parent.mkdir(parents=True)
    np.savez(path, meta=np.array('{"format_version": 99, "name": "mnist"}'))
    with pytest.raises(ConfigError, match="format_version=99"):
        load_dataset("mnist", data_dir=tmp_path, prepare=False)


def _fake_cache(tmp_path, **arrays):
    path = catalog.cache_path("mnist", tmp_path)
    good = {
        "train_images": np.zeros((20, 28, 28, 1), np.uint8),
        "train_labels": np.arange(20, dtype=np.int32) % 10,
        "test_images": np.zeros((10, 28, 28, 1), np.uint8),
        "test_labels": np.arange(10, dtype=np.int32),
    }
    good.update(arrays)
    return cache.write_cache(path, "mnist", {k: v for k, v in good.items() if v is not None})


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"test_labels": None}, "lacks its test_images or test_labels"),
        ({"train_images": np.zeros((20, 32, 32, 3), np.float32)}, "expected uint8 \\(examples, 28"),
        ({"train_labels": np.arange(19, dtype=np.int32) % 10}, "one per image"),
        (
            {"test_labels": np.arange(10, dtype=np.int32) + 5},
            r"in \[5, 14\]: expected 0 .. 9",
        ),
        ({"test_labels": np.full(10, 0.5)}, "expected integers"),
    ],
)
def test_a_wrong_cache_is_a_clear_error(tmp_path, arrays, match):
    """Found by an outside user: these were a KeyError, a flax shape error, or a silent NaN
    training (labels out of range)."""
    _fake_cache(tmp_path, **arrays)
    with pytest.raises(ConfigError, match=match) as info:
        load_dataset("mnist", data_dir=tmp_path, prepare=False, validation_size=5)
    assert "lrjax data prepare mnist --overwrite" in str(info.value)


def test_a_truncated_cache_is_a_clear_error(tmp_path):
    path = _fake_cache(tmp_path)
    path.write_bytes(path.read_bytes()[:200])  # a download or copy cut short
    with pytest.raises(ConfigError, match="unreadable .* truncated or not an lrjax cache"):
        load_dataset("mnist", data_dir=tmp_path, prepare=False, validation_size=5)


def test_data_info_calls_a_broken_cache_broken(tmp_path, capsys):
    from lrjax import cli

    path = _fake_cache(tmp_path, test_labels=np.arange(10, dtype=np.int32) + 5)
    assert cache.cache_problem(path).startswith("cache of mnist holds test_labels in [5, 14]")
    assert cli.main(["data", "info", "--data-dir", str(tmp_path)]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("mnist "))
    assert "broken" in line and "lrjax data prepare mnist --overwrite" in line
    assert cache.cache_problem(_fake_cache(tmp_path)) is None
