"""The small convolutional trainees of the two papers lrjax reproduces.

* :class:`MnistCNN` -- paper B's MNIST network, the TensorFlow "Deep MNIST for Experts" tutorial.
* :class:`Cifar10CNN` -- paper B's CIFAR-10 network, the TensorFlow CIFAR-10 tutorial
  ("2 conv layers each with max-pooling, 2 fully connected layers"), simplified (see class).
* :class:`LeNet5` -- paper A's Fashion-MNIST CNN. Paper A does not specify its CNN; a
  LeNet-5-style network (LeCun et al. 1998) is the documented choice.

All take float32 NHWC input that is already normalised, return logits, and are pure functions of
their ``params`` (no dropout, no batch statistics), so a train step can be vmapped over many
trainees. ``conv_impl`` selects :class:`~lrjax.models.layers.Conv2D`'s implementation and the
matching pooling (``"patches"``: CPU-friendly reshape pooling; ``"xla"``: ``nn.max_pool``); the
parameters are the same for both. Widths and the kernel size are attributes so tests and
benchmarks can use small variants; the defaults are the papers' networks.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from lrjax.models.layers import Conv2D, max_pool, pool_impl_for

Array = jax.Array


def _flatten(x: Array) -> Array:
    """(N, H, W, C) -> (N, H*W*C)."""
    return x.reshape(x.shape[0], -1)


def conv_pool_body(
    x: Array,
    *,
    features: Sequence[int],
    paddings: Sequence[str],
    hidden: Sequence[int],
    num_classes: int,
    conv_impl: str,
    kernel_size: int = 5,
) -> Array:
    """conv -> ReLU -> 2x2 max-pool per entry of ``features``, ReLU dense layers, then logits.

    The shared body of the CNNs below. It is a function, called inside a compact
    ``__call__``, so its layers are named directly in the caller's params: ``conv1``, ``conv2``,
    ..., ``dense1``, ..., ``logits``.
    """
    pool_impl = pool_impl_for(conv_impl)
    for i, (width, padding) in enumerate(zip(features, paddings, strict=True)):
        conv = Conv2D(width, kernel_size, padding=padding, impl=conv_impl, name=f"conv{i + 1}")
        x = max_pool(nn.relu(conv(x)), 2, 2, impl=pool_impl)
    x = _flatten(x)
    for i, width in enumerate(hidden):
        x = nn.relu(nn.Dense(width, name=f"dense{i + 1}")(x))
    return nn.Dense(num_classes, name="logits")(x)


class MnistCNN(nn.Module):
    """Paper B's MNIST CNN: the TensorFlow "Deep MNIST for Experts" tutorial network.

    conv 5x5 x32 SAME, ReLU, 2x2 max-pool; conv 5x5 x64 SAME, ReLU, 2x2 max-pool;
    dense 1024 ReLU; dense ``num_classes``. On 28x28x1 input the flattened features are 7*7*64.

    Departure: the tutorial applies dropout before the last layer. It is left out, because it
    would need a fresh rng every step of every trainee, and the papers' comparison of learning
    rate controllers does not depend on it.
    """

    num_classes: int = 10
    features: Sequence[int] = (32, 64)
    hidden: int = 1024
    kernel_size: int = 5
    conv_impl: str = "patches"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        return conv_pool_body(
            x,
            features=self.features,
            paddings=("SAME",) * len(self.features),
            hidden=(self.hidden,),
            num_classes=self.num_classes,
            conv_impl=self.conv_impl,
            kernel_size=self.kernel_size,
        )


class Cifar10CNN(nn.Module):
    """Paper B's CIFAR-10 CNN, after the TensorFlow CIFAR-10 tutorial ("2 conv layers each with
    max-pooling, 2 fully connected layers").

    conv 5x5 x64 SAME, ReLU, pool; conv 5x5 x64 SAME, ReLU, pool; dense 384 ReLU;
    dense 192 ReLU; dense ``num_classes``.

    Departures from the tutorial: it pools 3x3 with stride 2 (overlapping) and applies local
    response normalisation after each pooling/conv. Here pooling is 2x2 with stride 2 (same
    output size for even inputs; reshape pooling is much faster on CPU, see
    :mod:`lrjax.models.layers`) and there is no LRN (obsolete, and it adds cost without changing
    what the papers compare). The tutorial's weight decay on the dense layers belongs to the
    loss, not the model.
    """

    num_classes: int = 10
    features: Sequence[int] = (64, 64)
    hidden: Sequence[int] = (384, 192)
    kernel_size: int = 5
    conv_impl: str = "patches"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        return conv_pool_body(
            x,
            features=self.features,
            paddings=("SAME",) * len(self.features),
            hidden=tuple(self.hidden),
            num_classes=self.num_classes,
            conv_impl=self.conv_impl,
            kernel_size=self.kernel_size,
        )


class LeNet5(nn.Module):
    """Paper A's Fashion-MNIST CNN: a LeNet-5-style network (LeCun et al. 1998).

    conv 5x5 x6 SAME, ReLU, 2x2 max-pool; conv 5x5 x16 VALID, ReLU, 2x2 max-pool; dense 120 ReLU;
    dense 84 ReLU; dense ``num_classes``. On 28x28 input the SAME first conv plays the role of
    LeNet-5's padding to 32x32, giving the classic 5x5x16 = 400 flattened features. Paper A
    does not specify its CNN; this is the documented choice. ReLU and max-pooling replace the
    original's scaled tanh and trainable subsampling, as in modern LeNet-5 reimplementations.
    """

    num_classes: int = 10
    features: Sequence[int] = (6, 16)
    hidden: Sequence[int] = (120, 84)
    kernel_size: int = 5
    conv_impl: str = "patches"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        first, second = self.features
        return conv_pool_body(
            x,
            features=(first, second),
            paddings=("SAME", "VALID"),
            hidden=tuple(self.hidden),
            num_classes=self.num_classes,
            conv_impl=self.conv_impl,
            kernel_size=self.kernel_size,
        )
