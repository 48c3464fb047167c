"""Issue 26's augmentation of an image trainee (:mod:`lrjax.tasks.image`): the data variants
(permuted pixels, fixed noisy labels, a training subset) and the scale of the initial weights and
of the training loss, each what its docstring says; bad values named."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrjax import tasks
from lrjax._validation import ConfigError
from lrjax.tasks import image


@pytest.fixture(scope="module")
def base():
    return tasks.get_task("fashion_mlp", hidden=(16,))


def test_permuted_pixels_are_one_fixed_order_on_every_split(base, fashion_mnist):
    permuted = dataclasses.replace(base, variant="permuted")
    params = base.init(jax.random.key(0))
    images = fashion_mnist.test.images[:8]
    order = np.asarray(jax.random.permutation(jax.random.key(image.VARIANT_SEED), 28 * 28))
    assert sorted(order.tolist()) == list(range(784)) and (order != np.arange(784)).mean() > 0.9
    by_hand = np.asarray(images).reshape(8, -1)[:, order].reshape(images.shape)
    np.testing.assert_allclose(
        permuted.logits(params, fashion_mnist, images),
        base.logits(params, fashion_mnist, jnp.asarray(by_hand)),
        rtol=1e-6,
    )
    # metrics (validation, test) see the same order as training
    assert not np.allclose(
        permuted.metrics(params, fashion_mnist, "test", 500)["loss"],
        base.metrics(params, fashion_mnist, "test", 500)["loss"],
    )


def test_noisy_labels_are_fixed_per_example_and_about_the_fraction(base, fashion_mnist):
    noisy = dataclasses.replace(base, variant="noisy_labels")
    idx = jnp.arange(5000)
    _, labels = noisy._train_examples(fashion_mnist, idx)
    _, again = noisy._train_examples(fashion_mnist, idx[::-1])
    np.testing.assert_array_equal(labels, again[::-1])  # the example, not the batch, decides
    true = np.asarray(fashion_mnist.train.labels[:5000])
    changed = (np.asarray(labels) != true).mean()
    # 20% are redrawn, one in ten of them draws its own label again
    assert 0.15 < changed < 0.21, changed
    assert set(np.unique(labels).tolist()) == set(range(10))
    images, labels = noisy.minibatch(fashion_mnist, jax.random.key(3))
    images_b, labels_b = noisy.minibatch(fashion_mnist, jax.random.key(3))
    np.testing.assert_array_equal(labels, labels_b)
    # validation and test stay clean
    assert noisy.metrics is not None and noisy.validation_probe is not None
    params = base.init(jax.random.key(0))
    np.testing.assert_allclose(
        noisy.metrics(params, fashion_mnist, "test", 500)["loss"],
        base.metrics(params, fashion_mnist, "test", 500)["loss"],
    )


def test_subset_draws_only_the_first_tenth_of_the_training_split(base, fashion_mnist):
    subset = dataclasses.replace(base, variant="subset")
    pool = int(fashion_mnist.train.size * image.SUBSET_FRACTION)
    idx = jax.vmap(lambda k: subset._train_indices(fashion_mnist, k))(
        jax.random.split(jax.random.key(0), 200)
    )
    assert int(idx.max()) < pool and int(idx.max()) > pool * 0.9
    everything = jax.vmap(lambda k: base._train_indices(fashion_mnist, k))(
        jax.random.split(jax.random.key(0), 200)
    )
    assert int(everything.max()) > pool


def test_init_scale_scales_every_initial_weight(base):
    key = jax.random.key(4)
    scaled = dataclasses.replace(base, init_scale=2.0).init(key)
    for a, b in zip(jax.tree.leaves(base.init(key)), jax.tree.leaves(scaled), strict=True):
        np.testing.assert_allclose(b, 2.0 * a, rtol=1e-6)


@pytest.mark.parametrize("chunk", [None, 32])
def test_loss_scale_scales_the_training_loss_and_gradient_not_the_metrics(
    base, fashion_mnist, chunk
):
    base = base.with_grad_chunk(chunk)
    scaled = dataclasses.replace(base, loss_scale=3.0)
    params, key = base.init(jax.random.key(0)), jax.random.key(1)
    loss, grads = base.loss_and_grad(params, fashion_mnist, key)
    loss_s, grads_s = scaled.loss_and_grad(params, fashion_mnist, key)
    np.testing.assert_allclose(loss_s, 3.0 * loss, rtol=1e-5)
    np.testing.assert_allclose(scaled.loss(params, fashion_mnist, key), 3.0 * loss, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_s), strict=True):
        np.testing.assert_allclose(b, 3.0 * a, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(
        scaled.metrics(params, fashion_mnist, "validation", 500)["loss"],
        base.metrics(params, fashion_mnist, "validation", 500)["loss"],
    )


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("variant", "rotated", r"variant='rotated' is not allowed: expected one of 'none'"),
        ("init_scale", 0.0, r"init_scale=0.0 is not allowed: expected a finite number > 0"),
        ("loss_scale", float("inf"), r"loss_scale=inf is not allowed"),
        ("loss_scale", "2", r"loss_scale='2' is not allowed"),
    ],
)
def test_bad_variant_or_scale_is_named(base, field, value, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(base, **{field: value})
