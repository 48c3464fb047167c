"""Convolution and max-pooling layers that stay fast on XLA:CPU when vmapped over trainees.

lrjax trains many small networks ("trainees") at once by ``jax.vmap``-ing one train step over a
stack of parameter sets. Two stock operations behave badly under that on XLA:CPU:

* ``flax.linen.Conv`` -- vmapping a convolution over its kernel turns it into a *grouped*
  convolution (one group per trainee), and XLA:CPU runs grouped convolutions slowly: measured
  throughput at 4 vmapped trainees was below that of a single trainee. :class:`Conv2D` with
  ``impl="patches"`` instead extracts image patches with strided slices (pure data movement,
  which vmap just batches) and contracts them with the kernel in one ``dot_general``, which vmap
  turns into a batched matmul. Per-trainee cost then stays flat as the number of trainees
  grows. (``lax.conv_general_dilated_patches`` is not used: it is itself a grouped convolution.)
* ``flax.linen.max_pool`` -- its backward pass (``select_and_scatter_add``) is slow on XLA:CPU.
  :func:`max_pool_2x2` is a reshape followed by a max, which made a whole train step faster
  on XLA:CPU. Its derivative passes each window's gradient to the maximum the forward pass
  chose (a custom JVP), rather than to the entries equal to a recomputed maximum.

* A first layer (one input channel): its patches matrix is only ``kh * kw`` wide, and building
  it costs far more than its matmul; :func:`conv_single_channel` (taken by ``impl="patches"``
  whenever C = 1) stacks the shifted images on a leading axis instead.

Both keep the stock operation as ``impl="xla"``: numerically the same, it is the reference the
tests compare against, and the one to time against on accelerators. :class:`Conv2D` has exactly the
parameters of ``flax.linen.Conv`` (names, shapes, initialisers), so checkpoints and parameter
trees are interchangeable between the two implementations and with ``nn.Conv`` itself.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from lrjax._validation import check_choice, fail

Array = jax.Array
Dtype = Any

CONV_IMPLS = ("patches", "xla")
POOL_IMPLS = ("reshape", "xla")
PADDINGS = ("SAME", "VALID")

# nn.Conv's defaults, so a Conv2D initialises exactly like an nn.Conv of the same shape.
default_kernel_init = nn.initializers.lecun_normal()
default_bias_init = nn.initializers.zeros_init()

_NHWC = ("NHWC", "HWIO", "NHWC")


def _pair(value: int | Sequence[int], field: str) -> tuple[int, int]:
    """``3 -> (3, 3)``; a pair is returned as a tuple."""
    if isinstance(value, int):
        return value, value
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        fail(field, value, "expected an int or a pair of ints")
    return pair  # type: ignore[return-value]


def _window_tiles(
    x: Array,
    window: tuple[int, int],
    strides: tuple[int, int],
    padding: str,
    pad_value: float = 0.0,
) -> list[Array]:
    """One strided slice of the padded NHWC ``x`` per window offset (i, j), in row-major order.

    Tile (i, j) holds, for every output pixel, the input at offset (i, j) of its window.
    Padding has the ``lax`` meaning of "SAME" / "VALID" and is filled with ``pad_value``.
    """
    kh, kw = window
    sh, sw = strides
    pads = lax.padtype_to_pads((x.shape[-3], x.shape[-2]), window, strides, padding)
    widths = [(0, 0)] * (x.ndim - 3) + [tuple(p) for p in pads] + [(0, 0)]
    x = jnp.pad(x, widths, constant_values=pad_value)
    span_h = (x.shape[-3] - kh) // sh * sh + 1
    span_w = (x.shape[-2] - kw) // sw * sw + 1
    return [
        x[..., i : i + span_h : sh, j : j + span_w : sw, :] for i in range(kh) for j in range(kw)
    ]


def image_patches(
    x: Array, window: tuple[int, int], strides: tuple[int, int], padding: str
) -> Array:
    """Image patches of NHWC ``x``: (..., H', W', kh * kw * C), ordered (i, j, c) -- HWI order.

    The ``kh * kw`` strided slices of :func:`_window_tiles`, concatenated along channels: pure
    data movement, so it is exact on every backend and vmap just adds a leading dimension.
    ``lax.conv_general_dilated_patches`` computes the same patches (in (c, i, j) order) but as a
    convolution with ``feature_group_count=C``, i.e. a grouped convolution, which XLA:CPU runs
    slowly once C > 1 (slower than the stock convolution on the MNIST CNN, as was slicing in two
    stages, kw slices along W then kh along H).
    """
    tiles = _window_tiles(x, window, strides, padding)
    return tiles[0] if len(tiles) == 1 else jnp.concatenate(tiles, axis=-1)


def conv_patches(
    x: Array, kernel: Array, strides: tuple[int, int], padding: str, precision: Any = None
) -> Array:
    """2-D convolution of NHWC ``x`` with an HWIO ``kernel`` as image patches + one matmul.

    The patches of :func:`image_patches` are in HWI order, so the HWIO kernel flattens to the
    matching (kh * kw * cin, cout) matrix by a plain reshape. The matmul uses ``precision``,
    like ``nn.Conv``.
    """
    kh, kw, cin, cout = kernel.shape
    patches = image_patches(x, (kh, kw), strides, padding)
    kernel_matrix = kernel.reshape(kh * kw * cin, cout)
    contract_last_with_first = (((patches.ndim - 1,), (0,)), ((), ()))
    return lax.dot_general(patches, kernel_matrix, contract_last_with_first, precision=precision)


def conv_single_channel(
    x: Array, kernel: Array, strides: tuple[int, int], padding: str, precision: Any = None
) -> Array:
    """2-D convolution of a one-channel NHWC ``x`` (C = 1) with an HWIO ``kernel`` (I = 1).

    With one input channel the patches matrix of :func:`conv_patches` is only ``kh * kw`` wide,
    and building it (``kh * kw`` one-channel slices interleaved into the last axis) costs far
    more than its skinny matmul: the first layer of an image network (MNIST's,
    Fashion-MNIST's) spent about half of the whole step there. Here the ``kh * kw`` shifted
    images of :func:`_window_tiles` are stacked on a *leading* axis instead (contiguous copies)
    and contracted with the kernel rows in one matmul, ``(cout, kh kw) @ (kh kw, N H' W')``,
    whose transpose (the kernel's gradient, by plain autodiff) is the matmul of the same stack
    with the output gradient. Its output is a matmul's, so XLA stores it once rather than
    recomputing it inside every consumer (an elementwise sum of the shifted images, tried
    first, was faster alone but slower in the step: XLA fused it into the pooling that
    follows and recomputed it there). Equal to :func:`conv_patches` up to the order of the
    float additions.
    """
    kh, kw, _, cout = kernel.shape
    tiles = _window_tiles(x, (kh, kw), strides, padding)
    stacked = jnp.stack([tile[..., 0] for tile in tiles])  # (kh kw, ..., H', W')
    rows = kernel.reshape(kh * kw, cout)
    out = jnp.matmul(rows.T, stacked.reshape(kh * kw, -1), precision=precision)  # (cout, NH'W')
    return out.T.reshape(*stacked.shape[1:], cout)


def conv_xla(
    x: Array, kernel: Array, strides: tuple[int, int], padding: str, precision: Any = None
) -> Array:
    """The stock XLA convolution, exactly what ``nn.Conv`` computes (without the bias)."""
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=strides,
        padding=padding,
        dimension_numbers=_NHWC,
        precision=precision,
    )


class Conv2D(nn.Module):
    """A drop-in replacement for ``flax.linen.Conv`` (2-D, NHWC) with a vmap-friendly CPU path.

    Parameters are those of ``nn.Conv``: ``kernel`` of shape (kh, kw, cin, cout) and ``bias`` of
    shape (cout,), with the same default initialisers (LeCun normal, zeros). ``impl`` picks the
    computation only: ``"patches"`` (image patches + matmul; fast on CPU under vmap, see the
    module docstring) or ``"xla"`` (``lax.conv_general_dilated``, as ``nn.Conv``). Both give the
    same output for the same parameters. ``padding`` is ``"SAME"`` or ``"VALID"`` with the
    ``lax`` meaning of each. Input may be (N, H, W, C) or unbatched (H, W, C).
    """

    features: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] = 1
    padding: str = "SAME"
    use_bias: bool = True
    impl: str = "patches"
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    kernel_init: nn.initializers.Initializer = default_kernel_init
    bias_init: nn.initializers.Initializer = default_bias_init

    @nn.compact
    def __call__(self, x: Array) -> Array:
        check_choice("impl", self.impl, CONV_IMPLS)
        check_choice("padding", self.padding, PADDINGS)
        kh, kw = _pair(self.kernel_size, "kernel_size")
        strides = _pair(self.strides, "strides")
        unbatched = x.ndim == 3
        if unbatched:
            x = x[None]
        kernel_shape = (kh, kw, x.shape[-1], self.features)
        kernel = self.param("kernel", self.kernel_init, kernel_shape, self.param_dtype)
        bias = None
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        if self.impl == "patches" and x.shape[-1] == 1:  # a first layer: see the function
            y = conv_single_channel(x, kernel, strides, self.padding, self.precision)
        else:
            conv = conv_patches if self.impl == "patches" else conv_xla
            y = conv(x, kernel, strides, self.padding, self.precision)
        if bias is not None:
            y = y + bias
        return y[0] if unbatched else y


def max_pool_2x2(x: Array) -> Array:
    """2x2 max-pooling with stride 2 on NHWC ``x``, as a reshape followed by a max.

    Equal in value to ``nn.max_pool(x, (2, 2), (2, 2), padding="SAME")``. An odd H or W is
    padded with -inf at the end, which is where "SAME" padding puts the single pad row/column
    for a 2-wide window with stride 2. The gradient goes to the window's maximum, as
    ``nn.max_pool``'s does; on a tie it goes to the first maximum in row-major order (any tied
    entry is a valid subgradient; after a ReLU most ties are all-zero windows, whose gradient
    the ReLU discards anyway).
    """
    *lead, h, w, c = x.shape
    pad_h, pad_w = h % 2, w % 2
    if pad_h or pad_w:
        widths = [(0, 0)] * len(lead) + [(0, pad_h), (0, pad_w), (0, 0)]
        x = jnp.pad(x, widths, constant_values=-jnp.inf)
        h, w = h + pad_h, w + pad_w
    return _max_2x2_windows(x.reshape(*lead, h // 2, 2, w // 2, 2, c))


def _window_max_and_argmax(windows: Array) -> tuple[Array, Array]:
    """Each 2x2 window's maximum and which entry holds it (the first in row-major order, 0..3).

    One variadic reduction over the window's four entries (moved last), so the maximum and its
    index come from one reading of each entry: XLA fuses a cheap producer (the convolution
    before the pooling) into every consumer, and two reductions, or elementwise code over
    the window's four strided views, would each recompute it.
    """
    *lead, h2, _, w2, _, c = windows.shape
    n = len(lead)
    moved = jnp.transpose(windows, (*range(n), n, n + 2, n + 4, n + 1, n + 3))
    moved = moved.reshape(*lead, h2, w2, c, 4)
    index = lax.broadcasted_iota(jnp.int32, moved.shape, moved.ndim - 1)

    def first_max(a, b):
        (a_value, a_index), (b_value, b_index) = a, b
        take_b = (b_value > a_value) | ((b_value == a_value) & (b_index < a_index))
        return jnp.where(take_b, b_value, a_value), jnp.where(take_b, b_index, a_index)

    init = (jnp.array(-jnp.inf, windows.dtype), jnp.array(4, jnp.int32))
    maximum, argmax = lax.reduce((moved, index), init, first_max, (moved.ndim - 1,))
    return maximum, argmax.astype(jnp.int8)


@jax.custom_jvp
def _max_2x2_windows(windows: Array) -> Array:
    """The maximum over axes -4 and -2 of ``(..., H/2, 2, W/2, 2, C)`` windows.

    ``jnp.max``'s own derivative finds the maximum again by comparing the input with the output
    (``x == max``) and divides by the number of matches. When XLA recomputes the input inside
    the backward pass's fused loop (it fuses cheap producers, such as a preceding
    elementwise convolution, into every consumer) the recomputed values can round differently
    from the forward pass's, no entry matches, and the gradient is 0/0: NaN. This happened
    at ``--xla_backend_optimization_level=0`` after :func:`conv_single_channel`. The custom
    JVP picks each window's entry once, in the forward pass (an int8 index,
    :func:`_window_max_and_argmax`), and passes that entry's tangent, so the gradient does not
    depend on how the input is recomputed.
    """
    return _window_max_and_argmax(windows)[0]


@_max_2x2_windows.defjvp
def _max_2x2_jvp(primals, tangents):
    (windows,), (tangent,) = primals, tangents
    maximum, argmax = _window_max_and_argmax(windows)
    position = jnp.arange(4, dtype=jnp.int8).reshape(2, 1, 2, 1)  # row-major over axes -4, -2
    chosen = argmax[..., :, None, :, None, :] == position
    zero = jnp.zeros((), tangent.dtype)
    return maximum, jnp.sum(jnp.where(chosen, tangent, zero), (-4, -2))


def _max_pool_slices(x: Array, window: int, stride: int) -> Array:
    """SAME-padded max-pooling as the maximum of ``window**2`` strided slices (no reduce_window)."""
    tiles = _window_tiles(x, (window, window), (stride, stride), "SAME", pad_value=-jnp.inf)
    return functools.reduce(jnp.maximum, tiles)


def max_pool(x: Array, window: int = 2, stride: int = 2, impl: str = "reshape") -> Array:
    """Square max-pooling of NHWC ``x`` with "SAME" padding.

    ``impl="xla"`` is ``nn.max_pool`` (``lax.reduce_window``). ``impl="reshape"`` avoids
    ``reduce_window`` and its slow CPU backward: :func:`max_pool_2x2` when
    ``window == stride == 2``, otherwise the maximum of ``window**2`` strided slices (e.g. the
    3x3/stride-2 overlapping pooling of the TensorFlow CIFAR-10 tutorial). Values are equal;
    gradients are equal too, ties included, for the 2x2 pooling (see :func:`max_pool_2x2`), and
    except at ties for the strided slices (``jnp.maximum`` shares a tie).
    """
    check_choice("impl", impl, POOL_IMPLS)
    if impl == "xla":
        return nn.max_pool(x, (window, window), strides=(stride, stride), padding="SAME")
    if window == stride == 2:
        return max_pool_2x2(x)
    return _max_pool_slices(x, window, stride)


def pool_impl_for(conv_impl: str) -> str:
    """The pooling implementation that goes with a convolution implementation in the models.

    ``"xla"`` selects the stock flax/XLA operations throughout (the reference path);
    ``"patches"`` selects the CPU-friendly ones throughout.
    """
    check_choice("conv_impl", conv_impl, CONV_IMPLS)
    return "xla" if conv_impl == "xla" else "reshape"
