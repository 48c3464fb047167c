"""lrjax.data: splits, determinism, normalisation, sampling in jit, CIFAR-10 on mock data, and
every bad input of the foundation issue."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrjax._validation import ConfigError
from lrjax.data import catalog, load_dataset, normalize, prepare, read_cache, sample_batch
from lrjax.data.prepare import RawDataError, prepare_dataset


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_split_shapes_dtypes_counts(name, request):
    ds = request.getfixturevalue(name)
    assert (ds.train.size, ds.validation.size, ds.test.size) == (55_000, 5_000, 10_000)
    assert ds.train.size + ds.validation.size == 60_000
    for split in (ds.train, ds.validation, ds.test):
        assert split.images.dtype == jnp.uint8
        assert split.images.shape[1:] == (28, 28, 1)
        assert split.labels.dtype == jnp.int32
        assert int(split.labels.min()) == 0 and int(split.labels.max()) == 9
    # every class is present in the held-out validation split
    assert len(np.unique(np.asarray(ds.validation.labels))) == 10


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_each_dataset_holds_its_own_raw_files_labels(name, request, shared_data):
    # MNIST and Fashion-MNIST ship files of the same names; an offline preparation once built
    # mnist from fashion_mnist's extracted files. Counts per class tell the two apart (MNIST's
    # are uneven, Fashion-MNIST's 6,000 and 1,000 each).
    ds = request.getfixturevalue(name)
    raw = prepare.raw_label_counts(shared_data / name)
    train = np.concatenate([np.asarray(ds.train.labels), np.asarray(ds.validation.labels)])
    np.testing.assert_array_equal(np.bincount(train, minlength=10), raw["train"])
    test = np.asarray(ds.test.labels)
    np.testing.assert_array_equal(np.bincount(test, minlength=10), raw["test"])


def test_labels_from_other_raw_files_are_named(shared_data):
    fashion = prepare.raw_label_counts(shared_data / "fashion_mnist")
    arrays = {f"{split}_labels": np.repeat(np.arange(10), c) for split, c in fashion.items()}
    problem = prepare.raw_label_problem("mnist", shared_data / "mnist", arrays)
    assert "train split has [6000, 6000" in problem and "[5923, 6742" in problem
    assert "prepared from other files" in problem
    assert prepare.raw_label_problem("fashion_mnist", shared_data / "fashion_mnist", arrays) is None
    assert prepare.raw_label_problem("cifar10", shared_data, arrays) is None  # not IDX files


def test_validation_is_the_deterministic_tail_of_train(fashion_mnist):
    cache = read_cache(catalog.cache_path("fashion_mnist", catalog.data_dir()))
    np.testing.assert_array_equal(fashion_mnist.validation.images, cache["train_images"][-5000:])
    np.testing.assert_array_equal(fashion_mnist.train.labels, cache["train_labels"][:-5000])
    again = load_dataset("fashion_mnist")
    np.testing.assert_array_equal(again.validation.labels, fashion_mnist.validation.labels)
    small = load_dataset("fashion_mnist", validation_size=1000)
    assert small.validation.size == 1000 and small.train.size == 59_000
    np.testing.assert_array_equal(small.validation.images, cache["train_images"][-1000:])


def test_normalisations(fashion_mnist):
    x = fashion_mnist.train.images[:512]
    scaled = fashion_mnist.normalize(x)
    assert scaled.dtype == jnp.float32
    assert float(scaled.min()) >= 0.0 and float(scaled.max()) <= 1.0
    np.testing.assert_allclose(scaled, np.asarray(x, np.float32) / 255.0, rtol=1e-6)
    centred = fashion_mnist.with_normalization("mean_subtract")
    full = jax.jit(centred.normalize)(centred.train.images)
    np.testing.assert_allclose(full.mean(axis=0), 0.0, atol=1e-4)
    std = fashion_mnist.with_normalization("standardize")
    np.testing.assert_allclose(jax.jit(std.normalize)(std.train.images).std(), 1.0, rtol=1e-3)
    with pytest.raises(ConfigError, match="normalization='zscore'"):
        normalize(x, fashion_mnist.pixel_mean, fashion_mnist.pixel_std, "zscore")


def test_minibatch_sampling_inside_jit(fashion_mnist):
    split = fashion_mnist.train
    draw = jax.jit(sample_batch, static_argnums=2)
    images, labels = draw(jax.random.key(0), split, 50)
    assert images.shape == (50, 28, 28, 1) and images.dtype == jnp.uint8
    assert labels.shape == (50,) and labels.dtype == jnp.int32
    again, _ = draw(jax.random.key(0), split, 50)
    np.testing.assert_array_equal(images, again)
    other, _ = draw(jax.random.key(1), split, 50)
    assert not np.array_equal(images, other)
    # each drawn example is a real example of the split with its own label
    idx = jax.random.randint(jax.random.key(0), (50,), 0, split.size)
    np.testing.assert_array_equal(labels, split.labels[idx])
    many = jax.vmap(lambda k: sample_batch(k, split, 8)[1])(jax.random.split(jax.random.key(2), 4))
    assert many.shape == (4, 8)
    with pytest.raises(ConfigError, match="batch_size=60000"):
        sample_batch(jax.random.key(0), split, 60_000)


def test_cifar10_path_on_mock_data(tmp_path, monkeypatch, capsys):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.delenv("LRJAX_RAW_DIR", raising=False)  # no raw copy: the tfds download path
    asked = []  # tfds's download host, as if reachable (mock_data downloads nothing)
    monkeypatch.setattr(prepare, "host_reachable", lambda *a: asked.append(a) or True)
    with tfds.testing.mock_data(num_examples=64):
        path = prepare_dataset("cifar10", data_dir=tmp_path)
    assert len(asked) == 1  # the check ran (before any download)
    # one plain line per step: no progress bars, no escape codes
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split(" ")[1] for ln in lines] == ["preparing", "tfds", "train", "test", "cache"]
    assert all(ln.startswith("cifar10: ") and "\x1b" not in ln and "\r" not in ln for ln in lines)
    assert "train 64 examples 32x32x3 ... done" in lines[2]
    assert lines[4].startswith(f"cifar10: cache {path} (")
    ds = load_dataset("cifar10", data_dir=tmp_path, prepare=False, validation_size=16)
    assert path.exists()
    assert (ds.train.size, ds.validation.size, ds.test.size) == (48, 16, 64)
    assert ds.train.images.shape[1:] == (32, 32, 3) and ds.train.images.dtype == jnp.uint8
    assert ds.normalization == "mean_subtract"  # paper B: per-pixel mean subtraction
    x = jax.jit(ds.normalize)(ds.train.images)
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-5)
    expected = np.asarray(ds.train.images, np.float32) / 255.0
    np.testing.assert_allclose(x, expected - expected.mean(axis=0), atol=1e-5)


def test_unknown_dataset_lists_the_known_ones(tmp_path):
    for call in (
        lambda: load_dataset("imagenet", data_dir=tmp_path),
        lambda: prepare_dataset("imagenet", data_dir=tmp_path),
    ):
        with pytest.raises(ConfigError, match="dataset='imagenet'.*cifar10, fashion_mnist, mnist"):
            call()
    assert not any(tmp_path.iterdir())


def test_unknown_split(fashion_mnist):
    with pytest.raises(ConfigError, match="split='valid'.*'train', 'validation', 'test'"):
        fashion_mnist.split("valid")


def test_missing_raw_file_is_named_and_nothing_is_written(tmp_path, shared_data):
    raw = tmp_path / "raw"
    raw.mkdir()
    for f in (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
    ):
        shutil.copy(shared_data / "mnist" / f, raw / f)
    out = tmp_path / "data"
    with pytest.raises(RawDataError, match="lacks 't10k-labels-idx1-ubyte.gz'.*download it"):
        prepare_dataset("mnist", raw_dir=raw, data_dir=out, verbose=False)
    assert not out.exists()


def test_corrupted_raw_file_fails_its_checksum_and_nothing_is_written(tmp_path, shared_data):
    raw = tmp_path / "mnist"
    shutil.copytree(shared_data / "mnist", raw)
    target = raw / "t10k-labels-idx1-ubyte.gz"
    target.chmod(0o644)
    payload = bytearray(target.read_bytes())
    payload[100] ^= 0xFF
    target.write_bytes(bytes(payload))
    out = tmp_path / "data"
    with pytest.raises(RawDataError, match="t10k-labels-idx1-ubyte.gz' failed its checksum"):
        prepare_dataset("mnist", raw_dir=tmp_path, data_dir=out, verbose=False)
    assert not out.exists()


def test_unprepared_dataset_without_prepare_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="lrjax data prepare mnist"):
        load_dataset("mnist", data_dir=tmp_path, prepare=False)


def test_bad_validation_size(tmp_path):
    with pytest.raises(ConfigError, match="validation_size=60000"):
        load_dataset("mnist", validation_size=60_000, data_dir=tmp_path)
    with pytest.raises(ConfigError, match="validation_size=-1"):
        load_dataset("mnist", validation_size=-1, data_dir=tmp_path)


@pytest.mark.slow
def test_loader_prepares_missing_cache_in_a_subprocess(tmp_path, shared_data):
    ds = load_dataset("mnist", data_dir=tmp_path, raw_dir=shared_data)
    assert ds.test.size == 10_000
    assert catalog.cache_path("mnist", tmp_path).exists()


@pytest.mark.slow
def test_mnist_prepared_after_fashion_mnist_is_mnist_and_a_wrong_tfds_copy_is_redone(
    tmp_path, shared_data, monkeypatch, capsys
):
    # The order `make data` uses, into one data dir: before each dataset had its own tfds
    # download dir, mnist came out as Fashion-MNIST here.
    prepare_dataset("fashion_mnist", raw_dir=shared_data, data_dir=tmp_path, verbose=False)
    mnist_path = prepare_dataset("mnist", raw_dir=shared_data, data_dir=tmp_path, verbose=False)
    raw = prepare.raw_label_counts(shared_data / "mnist")
    labels = read_cache(mnist_path, "mnist")["train_labels"]
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), raw["train"])
    # A tfds prepared copy that fails the check (as one built from the other files does) is
    # removed and prepared again from the raw files, saying so.
    real, calls = prepare.raw_label_problem, []

    def fails_once(*args):
        calls.append(args[0])
        return "built from other files" if len(calls) == 1 else real(*args)

    monkeypatch.setattr(prepare, "raw_label_problem", fails_once)
    prepare_dataset("mnist", raw_dir=shared_data, data_dir=tmp_path, overwrite=True)
    out = capsys.readouterr().out
    assert "from tfds's prepared copy" in out
    assert "built from other files; removing" in out and "preparing again" in out
    assert out.count("preparing with tfds") == 2 and "from raw files in" in out
    assert calls == ["mnist", "mnist"]
    labels = read_cache(mnist_path, "mnist")["train_labels"]
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), raw["train"])
