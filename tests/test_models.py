"""Tests for lrjax.models: conv/pool implementations agree with flax, models are pure params."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

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
# Cifar10CNN shares MnistCNN's body (cnn.conv_pool_body), so it is only shape-checked.
SMALL_MODELS = {
    "mnist_cnn": lambda impl: MnistCNN(features=(4, 8), hidden=16, kernel_size=3, conv_impl=impl),
    "lenet5": lambda impl: LeNet5(features=(3, 4), hidden=(8, 8), kernel_size=3, conv_impl=impl),
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


# Random numbers come from numpy, and the one real init uses the "rbg" key implementation:
# compiling threefry-based initialisers costs seconds per model on XLA:CPU.


def _numpy_normal(seed: int, shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def _normal(seed: int, shape: tuple[int, ...], scale: float = 1.0) -> jax.Array:
    return jnp.asarray(_numpy_normal(seed, shape, scale))


def _plain_dicts(tree) -> bool:
    """Whether ``tree`` is nested plain dicts with array leaves (or their abstract shapes)."""
    if isinstance(tree, dict):
        return type(tree) is dict and all(_plain_dicts(v) for v in tree.values())
    return isinstance(tree, jax.Array | jax.ShapeDtypeStruct)


def _fake_stacked_params(model: nn.Module, x: jax.Array, n: int) -> dict:
    """Params of ``n`` trainees of ``model``, stacked (leading axis ``n``), as numpy arrays.

    They have init's structure and shapes, filled with fan-in scaled noise: no device work, so
    nothing to compile (which also means no eager op-by-op compiles when slicing them).
    """
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)["params"]

    def fill(path, leaf, i):
        name = path[-1].key
        if name == "scale":
            return np.ones((n, *leaf.shape), np.float32)
        scale = 0.1 if name == "bias" else 1.0 / np.sqrt(np.prod(leaf.shape[:-1]))
        return _numpy_normal(i, (n, *leaf.shape), scale)

    leaves = jax.tree_util.tree_leaves_with_path(shapes)
    filled = [fill(path, leaf, i) for i, (path, leaf) in enumerate(leaves)]
    return jax.tree.unflatten(jax.tree.structure(shapes), filled)


# The tests check values, not speed: on CPU, compile without LLVM optimisation (about 3x faster
# compiles; the models' patch convolutions are slow to optimise).
_FAST_COMPILE = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else {}


def _jit(fun: Callable) -> Callable:
    """``jax.jit(fun)``, compiled with :data:`_FAST_COMPILE` once per argument signature."""
    jitted, compiled = jax.jit(fun), {}

    def call(*args):
        leaves, treedef = jax.tree.flatten(args)
        key = (treedef, tuple((leaf.shape, leaf.dtype) for leaf in leaves))
        if key not in compiled:
            compiled[key] = jitted.lower(*args).compile(compiler_options=_FAST_COMPILE)
        return compiled[key](*args)

    return call


def _close(a, b, tol: float = 1e-5) -> None:
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


# --- Conv2D ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel_size", [3, (3, 2)])
def test_conv2d_params_match_nn_conv(kernel_size):
    x = _normal(0, (1, 6, 6, 3))
    # nn.Conv reads an int kernel_size as 1-D; Conv2D reads it as square.
    pair = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    key = jax.random.key(1, impl="rbg")
    ours = _jit(Conv2D(5, kernel_size).init)(key, x)
    ref = _jit(nn.Conv(5, pair).init)(key, x)
    assert jax.tree.structure(ours) == jax.tree.structure(ref)
    jax.tree.map(np.testing.assert_array_equal, ours, ref)
    assert ours["params"]["kernel"].shape == (*pair, 3, 5)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("strides", [1, 2])
def test_conv2d_impls_equal_nn_conv(strides, padding):
    # Odd, non-square input and kernel, cin > 1 and a non-zero bias catch any ordering mistake.
    x = _normal(0, (2, 9, 8, 3))
    ref = nn.Conv(5, (3, 4), strides=strides, padding=padding)
    variables = {"params": {"kernel": _normal(1, (3, 4, 3, 5)), "bias": _normal(2, (5,))}}

    @_jit
    def outputs(variables, x):
        convs = {
            impl: Conv2D(5, (3, 4), strides=strides, padding=padding, impl=impl)
            for impl in ("patches", "xla")
        }
        return ref.apply(variables, x), {k: c.apply(variables, x) for k, c in convs.items()}

    expected, ours = outputs(variables, x)
    for out in ours.values():
        assert out.shape == expected.shape
        _close(out, expected)
    _close(ours["patches"], ours["xla"])


def test_conv2d_impls_equal_gradients():
    x = _normal(0, (2, 7, 7, 2))
    variables = {"params": {"kernel": _normal(1, (5, 5, 2, 3)), "bias": _normal(2, (3,))}}

    @_jit
    def grads(variables, x):
        def loss(v, x, impl):
            return jnp.sum(jnp.sin(Conv2D(3, 5, strides=2, impl=impl).apply(v, x)))

        return {i: jax.grad(loss, argnums=(0, 1))(variables, x, i) for i in ("patches", "xla")}

    result = grads(variables, x)
    jax.tree.map(_close, result["patches"], result["xla"])


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("strides", [1, 2])
def test_single_channel_conv_equals_nn_conv_in_value_and_gradients(strides, padding):
    """A one-channel input takes conv_single_channel (shifted images stacked, one matmul):
    the same outputs and gradients (kernel, bias and input) as nn.Conv, also vmapped over
    trainees, and the same forward-mode derivative."""
    from lrjax.models.layers import conv_single_channel

    x = _normal(0, (3, 9, 8, 1))
    variables = {"params": {"kernel": _normal(1, (3, 4, 1, 5)), "bias": _normal(2, (5,))}}
    ref = nn.Conv(5, (3, 4), strides=strides, padding=padding)
    ours = Conv2D(5, (3, 4), strides=strides, padding=padding, impl="patches")

    def grads_of(module):
        return jax.grad(lambda v, x: jnp.sum(jnp.sin(module.apply(v, x))), argnums=(0, 1))

    _close(_jit(ours.apply)(variables, x), _jit(ref.apply)(variables, x))
    expected = _jit(grads_of(ref))
    jax.tree.map(_close, _jit(grads_of(ours))(variables, x), expected(variables, x))
    stacked = jax.tree.map(lambda a: jnp.stack([a, 2 * a]), variables)
    vmapped = _jit(jax.vmap(grads_of(ours)))(stacked, jnp.stack([x, -x]))
    for i, sign in enumerate((1, -1)):
        one = jax.tree.map(lambda a, i=i: a[i], stacked)
        jax.tree.map(lambda a, b, i=i: _close(a[i], b), vmapped, expected(one, sign * x))
    kernel = variables["params"]["kernel"]
    direct = conv_single_channel(x, kernel, (strides, strides), padding)
    _close(direct, ref.apply({"params": {**variables["params"], "bias": jnp.zeros(5)}}, x))
    # forward mode too (the REPS baseline's features take a jvp through the trainee)
    tangents = (jax.tree.map(lambda a: jnp.cos(a), variables), jnp.sin(x))
    jvp_of = lambda module: _jit(lambda v, x: jax.jvp(module.apply, (v, x), tangents)[1])
    _close(jvp_of(ours)(variables, x), jvp_of(ref)(variables, x))


def test_first_conv_block_gradient_equals_the_stock_block():
    """conv_single_channel -> ReLU -> max_pool_2x2 against nn.Conv -> ReLU -> nn.max_pool, at the
    suite's XLA optimisation level: the pooling's derivative must not depend on how XLA
    recomputes the fused convolution (jnp.max's own derivative gave 0/0 = NaN here at level 0)."""
    x = _normal(0, (16, 12, 12, 1))
    variables = {"params": {"kernel": _normal(1, (5, 5, 1, 6)), "bias": _normal(2, (6,))}}

    def block_grads(impl):
        conv = Conv2D(6, 5, padding="SAME", impl=impl)
        pool = "xla" if impl == "xla" else "reshape"
        block = lambda v: max_pool(nn.relu(conv.apply(v, x)), 2, 2, impl=pool)
        return _jit(jax.grad(lambda v: jnp.sum(jnp.sin(block(v)))))(variables)

    ours, ref = block_grads("patches"), block_grads("xla")
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(ours))
    jax.tree.map(_close, ours, ref)


def test_conv2d_unbatched_input_and_config_errors():
    x = _normal(0, (6, 6, 2))
    conv = Conv2D(4, 3)
    out = jax.eval_shape(lambda x: conv.init_with_output(jax.random.key(0), x)[0], x)
    assert out.shape == (6, 6, 4)
    with pytest.raises(ConfigError):
        jax.eval_shape(Conv2D(4, 3, impl="cudnn").init, jax.random.key(0), x)
    with pytest.raises(ConfigError):
        jax.eval_shape(Conv2D(4, 3, padding="CIRCULAR").init, jax.random.key(0), x)


# --- pooling --------------------------------------------------------------------------------


@_jit
def _pool_values_and_grads(x: jax.Array, weights: jax.Array) -> dict:
    """Values and weighted-sum gradients of 2x2/2 pooling: ours, the dispatcher, nn.max_pool."""
    pools = {
        "ours": max_pool_2x2,
        "dispatch_xla": lambda x: max_pool(x, 2, 2, impl="xla"),
        "ref": lambda x: nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME"),
    }
    return {
        k: (f(x), jax.grad(lambda x, f=f: jnp.sum(f(x) * weights))(x)) for k, f in pools.items()
    }


@pytest.mark.parametrize("shape", [(2, 8, 6, 3), (2, 7, 9, 3), (5, 5, 1)])
def test_max_pool_2x2_equals_nn_max_pool(shape):
    x = _normal(0, shape)  # continuous values: no ties, so the gradients are unique
    out_shape = (*shape[:-3], -(-shape[-3] // 2), -(-shape[-2] // 2), shape[-1])
    result = _pool_values_and_grads(x, _normal(1, out_shape))
    value_ref, grad_ref = result["ref"]
    assert value_ref.shape == out_shape
    for name in ("ours", "dispatch_xla"):
        value, grad = result[name]
        _close(value, value_ref, 0.0)
        _close(grad, grad_ref, 0.0)


def test_max_pool_2x2_gives_a_tie_to_the_first_maximum_as_nn_max_pool_does():
    """Integer values tie often (all-zero windows after a ReLU are the common case): the whole
    gradient goes to the first maximum in row-major order, as nn.max_pool's does."""
    x = jnp.round(_normal(0, (2, 8, 6, 3)))
    x = x.at[0, :2, :2, 0].set(0.0)  # one all-zero window
    result = _pool_values_and_grads(x, _normal(1, (2, 4, 3, 3)))
    value_ref, grad_ref = result["ref"]
    value, grad = result["ours"]
    _close(value, value_ref, 0.0)
    _close(grad, grad_ref, 0.0)
    windows = np.asarray(grad != 0).reshape(2, 4, 2, 3, 2, 3).sum(axis=(2, 4))
    assert windows.max() == 1  # never shared between tied entries


@pytest.mark.parametrize("shape", [(2, 8, 8, 2), (1, 7, 10, 2)])
def test_max_pool_3x3_stride2_equals_nn_max_pool(shape):
    x = _normal(0, shape)

    @_jit
    def values_and_grads(x, weights):
        def ours(x):
            return max_pool(x, 3, 2)

        def ref(x):
            return nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")

        return [(f(x), jax.grad(lambda x, f=f: jnp.sum(f(x) * weights))(x)) for f in (ours, ref)]

    out_shape = (shape[0], -(-shape[1] // 2), -(-shape[2] // 2), shape[3])
    (value, grad), (value_ref, grad_ref) = values_and_grads(x, _normal(1, out_shape))
    _close(value, value_ref, 0.0)
    _close(grad, grad_ref, 0.0)
    with pytest.raises(ConfigError):
        max_pool(x, 2, 2, impl="fast")


# --- models ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", INPUT_SHAPES)
@pytest.mark.parametrize("name", sorted(FULL_MODELS))
def test_full_model_output_shape_and_pure_params(name, shape):
    model = FULL_MODELS[name]
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    # Only params (no batch_stats or other mutable collections), as plain nested dicts.
    assert type(variables) is dict and set(variables) == {"params"}
    assert _plain_dicts(variables["params"])
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


class SmallCase(NamedTuple):
    """A small model, its stacked params for 3 trainees and jitted apply functions."""

    x: np.ndarray
    stacked: dict  # 3 trainees' params, stacked: every leaf has a leading 3
    apply: Callable  # (params, x) -> logits, conv_impl="patches"
    apply_xla: Callable  # the same with conv_impl="xla"
    apply_vmapped: Callable  # (stacked params, x) -> (3, N, classes), conv_impl="patches"


@pytest.fixture(scope="module", params=sorted(SMALL_MODELS))
def small(request) -> SmallCase:
    model, model_xla = SMALL_MODELS[request.param]("patches"), SMALL_MODELS[request.param]("xla")
    x = _numpy_normal(0, (2, 32, 32, 3))
    stacked = _fake_stacked_params(model, x, 3)

    def apply(params, x):
        return model.apply({"params": params}, x)

    def apply_xla(params, x):
        return model_xla.apply({"params": params}, x)

    vmapped = jax.vmap(apply, in_axes=(0, None))
    return SmallCase(x, stacked, _jit(apply), _jit(apply_xla), _jit(vmapped))


def _trainee(stacked: dict, i: int) -> dict:
    return jax.tree.map(lambda leaf: leaf[i], stacked)


def test_small_model_runs_and_impls_agree(small):
    params = _trainee(small.stacked, 0)
    logits = small.apply(params, small.x)
    assert logits.shape == (2, 10)
    # The reference implementation takes the same params and gives the same logits.
    _close(small.apply_xla(params, small.x), logits, 1e-4)


def test_vmapped_forward_equals_separate_forwards(small):
    batched = small.apply_vmapped(small.stacked, small.x)
    assert batched.shape == (3, 2, 10)
    for i in range(3):
        _close(batched[i], small.apply(_trainee(small.stacked, i), small.x), 1e-4)


def test_bfloat16_runs(small):
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), _trainee(small.stacked, 0))
    logits = small.apply(params, small.x.astype(jnp.bfloat16))
    assert logits.dtype == jnp.bfloat16
    assert np.isfinite(np.asarray(logits, np.float32)).all()


@pytest.mark.parametrize(
    "model", [ResNet(norm="batch"), MLP(activation="swish2"), LeNet5(conv_impl="fft")]
)
def test_model_config_errors(model):
    x = jax.ShapeDtypeStruct((1, 28, 28, 1), jnp.float32)
    with pytest.raises(ConfigError):
        jax.eval_shape(model.init, jax.random.key(0), x)
