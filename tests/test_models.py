"""Tests for lrjax.models: conv/pool implementations agree with flax, models are pure params."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrjax._validation import ConfigError
from lrjax.models import (
    MLP,
    Cifar10CNN,
    Conv2D,
    LeNet5,
    MnistCNN,
    ResNet,
    max_pool,
    max_pool_2x2,
)
from lrjax.models.resnet import num_groups

INPUT_SHAPES = [(2, 28, 28, 1), (2, 32, 32, 3)]

# Small variants keep compile times short; full-size shapes are checked with eval_shape.
SMALL_MODELS = {
    "mnist_cnn": lambda impl: MnistCNN(features=(4, 8), hidden=16, conv_impl=impl),
    "cifar10_cnn": lambda impl: Cifar10CNN(features=(4, 8), hidden=(16, 8), conv_impl=impl),
    "lenet5": lambda impl: LeNet5(features=(3, 4), hidden=(8, 8), conv_impl=impl),
    "resnet": lambda impl: ResNet(blocks_per_stage=1, width=4, conv_impl=impl),
    "mlp": lambda impl: MLP(hidden=(16,)),
}
FULL_MODELS = {
    "mnist_cnn": MnistCNN(),
    "cifar10_cnn": Cifar10CNN(),
    "lenet5": LeNet5(),
    "resnet20": ResNet(),
    "resnet20_layer": ResNet(norm="layer"),
    "resnet20_none": ResNet(norm="none"),
    "mlp": MLP(),
}


def _normal(seed: int, shape: tuple[int, ...]) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def _close(a, b, tol: float = 1e-5) -> None:
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


# --- Conv2D ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel_size", [3, (3, 2)])
def test_conv2d_params_match_nn_conv(kernel_size):
    x = _normal(0, (1, 6, 6, 3))
    ours = Conv2D(5, kernel_size).init(jax.random.key(1), x)
    # nn.Conv reads an int kernel_size as 1-D; Conv2D reads it as square.
    pair = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    ref = nn.Conv(5, pair).init(jax.random.key(1), x)
    assert jax.tree.structure(ours) == jax.tree.structure(ref)
    jax.tree.map(np.testing.assert_array_equal, ours, ref)
    assert ours["params"]["kernel"].shape == (*pair, 3, 5)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("strides", [1, 2])
def test_conv2d_impls_equal_nn_conv(strides, padding):
    # Odd, non-square input and kernel, cin > 1 and a non-zero bias catch any ordering mistake.
    x = _normal(0, (2, 9, 8, 3))
    variables = nn.Conv(5, (3, 4), strides=strides, padding=padding).init(jax.random.key(1), x)
    variables = jax.tree.map(lambda p: p + 0.1, variables)
    expected = nn.Conv(5, (3, 4), strides=strides, padding=padding).apply(variables, x)
    outputs = {}
    for impl in ("patches", "xla"):
        conv = Conv2D(5, (3, 4), strides=strides, padding=padding, impl=impl)
        outputs[impl] = conv.apply(variables, x)
        assert outputs[impl].shape == expected.shape
        _close(outputs[impl], expected)
    _close(outputs["patches"], outputs["xla"])


def test_conv2d_impls_equal_gradients():
    x = _normal(0, (2, 7, 7, 2))
    variables = Conv2D(3, 5, strides=2).init(jax.random.key(1), x)

    def loss(v, x, impl):
        return jnp.sum(jnp.sin(Conv2D(3, 5, strides=2, impl=impl).apply(v, x)))

    grads = {impl: jax.grad(loss, argnums=(0, 1))(variables, x, impl) for impl in ("patches", "xla")}
    jax.tree.map(_close, grads["patches"], grads["xla"])


def test_conv2d_unbatched_input_and_bad_impl():
    x = _normal(0, (6, 6, 2))
    conv = Conv2D(4, 3)
    variables = conv.init(jax.random.key(0), x)
    assert conv.apply(variables, x).shape == (6, 6, 4)
    with pytest.raises(ConfigError):
        Conv2D(4, 3, impl="cudnn").init(jax.random.key(0), x)
    with pytest.raises(ConfigError):
        Conv2D(4, 3, padding="CIRCULAR").init(jax.random.key(0), x)


# --- pooling --------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 8, 6, 3), (2, 7, 9, 3), (5, 5, 1)])
def test_max_pool_2x2_equals_nn_max_pool(shape):
    x = _normal(0, shape)  # continuous values: no ties, so the gradients are unique

    def ref(x):
        return nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")

    _close(max_pool_2x2(x), ref(x), 0.0)
    _close(max_pool(x, 2, 2, impl="xla"), ref(x), 0.0)
    weights = _normal(1, ref(x).shape)
    grad_ours = jax.grad(lambda x: jnp.sum(max_pool_2x2(x) * weights))(x)
    grad_ref = jax.grad(lambda x: jnp.sum(ref(x) * weights))(x)
    _close(grad_ours, grad_ref, 0.0)


@pytest.mark.parametrize("shape", [(2, 8, 8, 2), (1, 7, 10, 2)])
def test_max_pool_3x3_stride2_equals_nn_max_pool(shape):
    x = _normal(0, shape)

    def ref(x):
        return nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")

    _close(max_pool(x, 3, 2), ref(x), 0.0)
    weights = _normal(1, ref(x).shape)
    grad_ours = jax.grad(lambda x: jnp.sum(max_pool(x, 3, 2) * weights))(x)
    grad_ref = jax.grad(lambda x: jnp.sum(ref(x) * weights))(x)
    _close(grad_ours, grad_ref, 0.0)
    with pytest.raises(ConfigError):
        max_pool(x, 2, 2, impl="fast")


# --- models ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", INPUT_SHAPES)
@pytest.mark.parametrize("name", sorted(FULL_MODELS))
def test_full_model_output_shape_and_pure_params(name, shape):
    model = FULL_MODELS[name]
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    assert set(variables) == {"params"}
    out = jax.eval_shape(model.apply, variables, x)
    assert out.shape == (shape[0], 10)
    assert out.dtype == jnp.float32


def test_resnet20_depth_and_size():
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    params = jax.eval_shape(ResNet().init, jax.random.key(0), x)["params"]
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    weight_layers = [p for p in paths if p.endswith("['kernel']") and "shortcut" not in p]
    assert len(weight_layers) == 6 * 3 + 2  # ResNet-20
    n_params = sum(leaf.size for leaf in jax.tree.leaves(params))
    assert 0.26e6 < n_params < 0.28e6  # He et al. 2016, table 6: 0.27M


def test_num_groups():
    assert num_groups(16, 8) == 8
    assert num_groups(4, 8) == 4
    assert num_groups(12, 8) == 6


def _plain_dicts(tree) -> bool:
    if isinstance(tree, dict):
        return type(tree) is dict and all(_plain_dicts(v) for v in tree.values())
    return isinstance(tree, jax.Array)


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_small_model_shapes_impls_and_pure_params(name):
    for shape in INPUT_SHAPES:
        x = _normal(0, shape)
        model = SMALL_MODELS[name]("patches")
        variables = model.init(jax.random.key(1), x)
        assert type(variables) is dict and set(variables) == {"params"}
        assert _plain_dicts(variables["params"])
        logits = model.apply(variables, x)
        assert logits.shape == (shape[0], 10)
        # The reference implementation takes the same params and gives the same logits.
        _close(SMALL_MODELS[name]("xla").apply(variables, x), logits, 1e-4)


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_vmapped_forward_equals_separate_forwards(name):
    model = SMALL_MODELS[name]("patches")
    x = _normal(0, (4, 28, 28, 1))
    keys = jax.random.split(jax.random.key(1), 3)
    stacked = jax.vmap(lambda k: model.init(k, x)["params"])(keys)
    batched = jax.jit(jax.vmap(lambda p: model.apply({"params": p}, x)))(stacked)
    for i in range(3):
        params = jax.tree.map(lambda leaf, i=i: leaf[i], stacked)
        _close(batched[i], model.apply({"params": params}, x), 1e-4)


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_bfloat16_runs(name):
    model = SMALL_MODELS[name]("patches")
    x = _normal(0, (2, 32, 32, 3))
    params = model.init(jax.random.key(1), x)["params"]
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
    logits = model.apply({"params": params}, x.astype(jnp.bfloat16))
    assert logits.dtype == jnp.bfloat16
    assert bool(jnp.all(jnp.isfinite(logits)))


def test_model_config_errors():
    x = _normal(0, (1, 28, 28, 1))
    with pytest.raises(ConfigError):
        ResNet(norm="batch").init(jax.random.key(0), x)
    with pytest.raises(ConfigError):
        MLP(activation="swish2").init(jax.random.key(0), x)
    with pytest.raises(ConfigError):
        LeNet5(conv_impl="fft").init(jax.random.key(0), x)
