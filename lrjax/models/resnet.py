"""CIFAR-style residual network trainee (He et al. 2016, "Deep Residual Learning for Image
Recognition", section 4.2), without batch normalisation.

Layout: a 3x3 stem conv of ``width`` channels, then 3 stages of ``blocks_per_stage`` basic
blocks with (width, 2*width, 4*width) channels (16, 32, 64 for ``width=16``), stride 2 at the
start of the second and third stages, global average pooling and a dense head. Depth is
``6 * blocks_per_stage + 2``: 3 gives ResNet-20, 5 ResNet-32, 9 ResNet-56. Where a block
changes shape its shortcut is a 1x1 strided convolution followed by normalisation (the paper's
"projection" option B) rather than zero padding (option A).

Why no BatchNorm: lrjax vmaps one train step over many trainees, and the RL controller treats a
trainee's loss as a pure function of its parameters. BatchNorm would add a mutable
``batch_stats`` collection that every step must thread through and update, make the forward pass
differ between training and evaluation, and couple the examples in a batch. GroupNorm (Wu & He
2018), which works per example and has only a learned scale and bias, keeps a trainee just
``params``. ``norm`` selects it (``"group"``), LayerNorm over (H, W, C) i.e. GroupNorm with one
group (``"layer"``), or nothing (``"none"``; the convolutions then get biases).
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from lrjax._validation import check_choice, check_positive_int
from lrjax.models.layers import Conv2D

Array = jax.Array

NORMS = ("group", "layer", "none")


def num_groups(channels: int, groups: int) -> int:
    """``min(groups, channels)``, lowered to the nearest divisor of ``channels``.

    GroupNorm needs the group count to divide the channel count; for the usual power-of-two
    widths this is just ``min(groups, channels)``.
    """
    n = max(1, min(groups, channels))
    while channels % n:
        n -= 1
    return n


def norm_layer(kind: str, channels: int, groups: int, name: str) -> nn.Module | None:
    """The normalisation layer for ``kind`` over ``channels`` channels, or None for "none"."""
    if kind == "group":
        return nn.GroupNorm(num_groups=num_groups(channels, groups), name=name)
    if kind == "layer":
        return nn.GroupNorm(num_groups=1, name=name)
    return None


class BasicBlock(nn.Module):
    """Two 3x3 convs with normalisation and ReLU, plus a shortcut (He et al. 2016, figure 2).

    ``relu(norm(conv(relu(norm(conv(x))))) + shortcut(x))``, the first conv with ``strides``.
    The shortcut is the identity, or a 1x1 strided conv + norm when the shape changes.
    """

    features: int
    strides: int = 1
    norm: str = "group"
    groups: int = 8
    conv_impl: str = "patches"

    def _conv(self, x: Array, features: int, kernel: int, strides: int, name: str) -> Array:
        conv = Conv2D(
            features,
            kernel,
            strides=strides,
            use_bias=self.norm == "none",
            impl=self.conv_impl,
            name=name,
        )
        y = conv(x)
        norm = norm_layer(self.norm, features, self.groups, f"{name}_norm")
        return y if norm is None else norm(y)

    @nn.compact
    def __call__(self, x: Array) -> Array:
        y = nn.relu(self._conv(x, self.features, 3, self.strides, "conv1"))
        y = self._conv(y, self.features, 3, 1, "conv2")
        shortcut = x
        if self.strides != 1 or x.shape[-1] != self.features:
            shortcut = self._conv(x, self.features, 1, self.strides, "shortcut")
        return nn.relu(y + shortcut)


class ResNet(nn.Module):
    """CIFAR ResNet (depth ``6 * blocks_per_stage + 2``) with GroupNorm, LayerNorm or no norm.

    Attributes: ``blocks_per_stage`` (3: ResNet-20), ``width`` (channels of the first stage;
    16 in the paper), ``num_classes``, ``conv_impl`` ("patches" or "xla", see
    :class:`~lrjax.models.layers.Conv2D`), ``norm`` ("group", "layer" or "none") and ``groups``
    (GroupNorm groups, capped at the channel count: 8 keeps at least two channels per group at
    width 16, where Wu & He's default of 32 would degenerate to one channel per group).
    Works on any NHWC input, e.g. 28x28x1 (stages at 28, 14, 7) and 32x32x3 (32, 16, 8).
    """

    blocks_per_stage: int = 3
    width: int = 16
    num_classes: int = 10
    conv_impl: str = "patches"
    norm: str = "group"
    groups: int = 8

    # The engine's CPU training convolution for this model (lrjax.tasks.Task.cpu_conv_impl):
    # XLA's, whose CPU convolution beats the patches matmuls on its 3x3 convolutions of 16-64
    # channels (BENCHMARKS.md, issue 31); not a field, so it never enters the parameters.
    cpu_conv_impl: ClassVar[str] = "xla"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        check_choice("norm", self.norm, NORMS)
        check_positive_int("blocks_per_stage", self.blocks_per_stage)
        check_positive_int("width", self.width)
        stem = Conv2D(self.width, 3, use_bias=self.norm == "none", impl=self.conv_impl, name="stem")
        x = stem(x)
        norm = norm_layer(self.norm, self.width, self.groups, "stem_norm")
        x = nn.relu(x if norm is None else norm(x))
        for stage in range(3):
            features = self.width * 2**stage
            for block in range(self.blocks_per_stage):
                strides = 2 if stage > 0 and block == 0 else 1
                x = BasicBlock(
                    features,
                    strides=strides,
                    norm=self.norm,
                    groups=self.groups,
                    conv_impl=self.conv_impl,
                    name=f"stage{stage + 1}_block{block + 1}",
                )(x)
        x = jnp.mean(x, axis=(-3, -2))
        return nn.Dense(self.num_classes, name="logits")(x)
