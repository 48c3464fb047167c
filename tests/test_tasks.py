"""Every registered task trains (its loss falls) on real data, small and fast; the 2-D problem's
gradient disagreement; bad inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrjax import tasks, training
from lrjax._validation import ConfigError
from lrjax.data import make_dataset
from lrjax.engine import EngineConfig

# Small widths keep each test to seconds on a 2-core CPU; the architecture is the registered one.
SMALL = {
    "mnist_cnn": dict(features=(8, 16), hidden=64),
    "fashion_cnn": dict(),
    "fashion_resnet": dict(blocks_per_stage=1, width=8),
    "mlp": dict(hidden=(64,)),
    "cifar10_cnn": dict(features=(8, 16), hidden=(32, 16)),
    "cifar10_resnet": dict(blocks_per_stage=1, width=8),
}


def synthetic_cifar(n_train=512, n_test=128, seed=0):
    """CIFAR-shaped data whose label is learnable (the brightest of 10 horizontal bands)."""
    rng = np.random.default_rng(seed)

    def make(n):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 120, (n, 32, 32, 3))
        for i, y in enumerate(labels):
            images[i, 3 * y : 3 * y + 3] += 120
        return images.astype(np.uint8), labels.astype(np.int32)

    (tr_x, tr_y), (te_x, te_y) = make(n_train), make(n_test)
    return make_dataset(
        "cifar10",
        tr_x,
        tr_y,
        te_x,
        te_y,
        validation_size=128,
        normalization="mean_subtract",
        num_classes=10,
    )


def fit(task, data, steps, lr, seed=0):
    return training.train_one(
        task,
        optax.sgd(lr),
        jax.random.key(seed),
        data,
        steps,
        eval_examples=500,
        engine=EngineConfig(devices=1, unroll=1),
    )


@pytest.mark.parametrize(
    "name",
    ["mnist_cnn", "fashion_cnn", pytest.param("fashion_resnet", marks=pytest.mark.slow), "mlp"],
)
def test_task_loss_falls_on_real_data(name, request):
    dataset = "mnist" if name == "mnist_cnn" else "fashion_mnist"
    data = request.getfixturevalue(dataset).subset(validation=500, test=1000)
    task = tasks.get_task(name, batch_size=32, **SMALL[name])
    result = fit(task, data, steps=80, lr=0.1)
    losses = result.train_loss[0]
    assert np.isfinite(losses).all()
    assert losses[-10:].mean() < 0.85 * losses[:5].mean(), losses
    # the final evaluation is on the full splits and beats chance
    assert result.test_accuracy[0, -1] > 0.3


@pytest.mark.parametrize(
    "name", ["cifar10_cnn", pytest.param("cifar10_resnet", marks=pytest.mark.slow)]
)
def test_cifar_tasks_train_on_cifar_shaped_data(name):
    task = tasks.get_task(name, batch_size=32, **SMALL[name])
    result = fit(task, synthetic_cifar(), steps=60, lr=0.05)
    losses = result.train_loss[0]
    assert losses[-10:].mean() < 0.85 * losses[:5].mean(), losses


def test_regression_2d_problem_and_gradient_disagreement():
    task = tasks.get_task("regression_2d")
    data = task.load_data(jax.random.key(3))
    again = task.load_data(jax.random.key(3))
    np.testing.assert_array_equal(data.train_x, again.train_x)  # same key, same problem
    assert data.train_x.shape == (1000, 2) and data.w_true.shape == (2,)
    np.testing.assert_allclose(jnp.linalg.norm(data.w_init - data.w_true), 3.0, rtol=1e-5)
    result = fit(task, data, steps=300, lr=0.1)
    assert result.val_loss[0, -1] < 0.2 * task.mse(
        task.init(None, data), data.validation_x, data.validation_y
    )
    # the full gradient is the mean of the per-example gradients; a minibatch one differs
    params = task.init(None, data)
    full = task.full_gradient(params, data)["kernel"]
    per_example = jax.vmap(lambda x, y: jax.grad(task.mse)(params, x[None], y[None])["kernel"])(
        data.train_x, data.train_y
    )
    np.testing.assert_allclose(full, per_example.mean(axis=0), rtol=1e-4, atol=1e-6)
    d = task.gradient_disagreement(params, data, jax.random.key(0))
    assert float(d) > 0
    full_batch = tasks.Regression2DTask(batch_size=1000)
    # sampling with replacement: even a full-size batch is not the full gradient, but close
    assert float(full_batch.gradient_disagreement(params, data, jax.random.key(0))) < float(d)


@pytest.mark.parametrize("name", sorted(tasks.TASKS))
def test_every_task_declares_its_output_layer(name):
    """``output_layer`` is the layer that makes the outputs (paper A's final-layer features
    observe it): zeroing it (and its bias) zeroes the logits; for regression it is w."""
    task = tasks.get_task(name)
    if name == "regression_2d":
        data = task.load_data(jax.random.key(0))
        params = task.init(jax.random.key(1), data)
        assert task.output_weights(params) is params["kernel"]
        return
    params = jax.jit(task.init)(jax.random.key(1))
    kernel = task.output_weights(params)
    assert kernel.ndim == 2 and kernel.shape[-1] == 10
    layer = task.output_layer.split("/")[0]
    zeroed = {**params, layer: jax.tree.map(jnp.zeros_like, params[layer])}
    x = jnp.ones((2, *task.input_shape), jnp.float32)
    logits = task.model.apply({"params": zeroed}, x)
    np.testing.assert_array_equal(logits, 0.0)
    assert np.abs(task.model.apply({"params": params}, x)).max() > 0


def test_load_data_and_init_have_one_signature_for_every_task(fashion_mnist):
    """No caller special-cases a task: ``load_data(key, data_dir=..., raw_dir=...)`` and
    ``init(key, data)`` work for real datasets and random problems alike."""
    for name in ("mlp", "regression_2d"):
        task = tasks.get_task(name)
        data = task.load_data(jax.random.key(0), data_dir=None, raw_dir=None)
        params = task.init(jax.random.key(1), data)
        assert np.isfinite(float(task.loss(params, data, jax.random.key(2))))


def test_unknown_task_and_bad_options():
    with pytest.raises(ConfigError, match="task='imagenet_vit' is not known.*mnist_cnn"):
        tasks.get_task("imagenet_vit")
    with pytest.raises(ConfigError, match="batch_size=0"):
        tasks.get_task("fashion_cnn", batch_size=0)
    with pytest.raises(ConfigError, match="conv_impl='fft'"):
        tasks.get_task("mnist_cnn", conv_impl="fft")
    with pytest.raises(ConfigError, match="batch_size=2000 is larger than the split"):
        tasks.get_task("regression_2d", batch_size=2000)
    with pytest.raises(ConfigError, match="does not take these options"):
        tasks.get_task("mlp", depth=3)


def test_batch_size_larger_than_split(fashion_mnist):
    # refused by the task before any data is loaded (the default split: 55,000 examples) ...
    with pytest.raises(ConfigError, match=r"batch_size=60000 is larger .* \(55000 examples\)"):
        tasks.get_task("fashion_cnn", batch_size=60_000)
    # ... and checked against the split actually loaded (here with a larger validation split)
    task = tasks.get_task("fashion_cnn", batch_size=50_000)
    with pytest.raises(ConfigError, match="batch_size=50000 is larger than the split"):
        task.load_data(validation_size=20_000)


@pytest.mark.parametrize(
    ("batch", "chunk", "count"),
    [
        (1000, 128, 8),
        (128, 128, 1),
        (256, 128, 2),
        (50, 128, 1),
        (1000, None, 1),
        (97, 16, 1),
        (96, 40, 3),
    ],
)
def test_grad_chunks_are_equal_and_at_most_the_chunk(batch, chunk, count):
    assert tasks.grad_chunks(batch, chunk) == count


def test_chunked_gradient_equals_the_whole_minibatch(fashion_mnist):
    """The minibatch's gradient computed 25 examples at a time is the whole minibatch's (up to
    float summation order), on the same examples; the chunked step trains the same."""
    data = fashion_mnist.subset(validation=100, test=100)
    whole = tasks.get_task("fashion_cnn", batch_size=100)
    chunked = whole.with_grad_chunk(25)
    params = whole.init(jax.random.key(0))
    key = jax.random.key(1)
    loss, grads = jax.jit(whole.loss_and_grad)(params, data, key)
    loss_c, grads_c = jax.jit(chunked.loss_and_grad)(params, data, key)
    np.testing.assert_allclose(loss_c, whole.loss(params, data, key), rtol=1e-5)
    np.testing.assert_allclose(loss_c, loss, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_c), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert chunked.with_grad_chunk(25) is chunked
    # Inside a user's shard_map (default checks), one trainee per device.
    mesh = jax.sharding.Mesh(jax.devices()[:1], ("i",))
    spec = jax.sharding.PartitionSpec
    per_device = jax.shard_map(
        lambda p: chunked.loss_and_grad(jax.tree.map(lambda x: x[0], p), data, key)[0][None],
        mesh=mesh,
        in_specs=spec("i"),
        out_specs=spec("i"),
    )
    np.testing.assert_allclose(
        jax.jit(per_device)(jax.tree.map(lambda x: x[None], params))[0], loss, rtol=1e-5
    )
    with pytest.raises(ConfigError, match="grad_chunk"):
        whole.with_grad_chunk(0)
