"""Device-resident datasets as pytrees, normalisation and minibatch sampling inside jit.

Images stay ``uint8`` on the device (4x less memory and transfer than float32) and become floats
only inside the jitted step (:func:`normalize`). Minibatches are drawn by index inside jit
(:func:`sample_batch`), so no host input pipeline runs in the hot loop. Pass a :class:`Dataset`
to jitted functions as an argument rather than closing over it: closed-over arrays become
compile-time constants, which makes compilation slow and the executable huge.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from lrjax._validation import ConfigError, check_choice, check_positive_int
from lrjax.data.catalog import NORMALIZATIONS, SPLITS


@struct.dataclass
class Split:
    """One split: ``images`` uint8 [N, H, W, C] and ``labels`` int32 [N]."""

    images: jax.Array
    labels: jax.Array

    @property
    def size(self) -> int:
        return self.images.shape[-4]

    def take(self, n: int) -> Split:
        """The first ``n`` examples (for quick experiments and tests)."""
        check_positive_int("n", n)
        if n > self.size:
            raise ConfigError(f"n={n} is larger than the split ({self.size} examples).")
        return Split(self.images[..., :n, :, :, :], self.labels[..., :n])


@struct.dataclass
class Dataset:
    """Train / validation / test splits plus the training-split statistics for normalisation.

    ``pixel_mean`` [H, W, C] (per pixel) and ``pixel_std`` [C] (per channel, of the
    mean-subtracted pixels) are computed on the training split (after the validation hold-out),
    in [0, 1] units. ``name``, ``num_classes`` and ``normalization`` are
    static (not traced).
    """

    train: Split
    validation: Split
    test: Split
    pixel_mean: jax.Array
    pixel_std: jax.Array
    name: str = struct.field(pytree_node=False)
    num_classes: int = struct.field(pytree_node=False)
    normalization: str = struct.field(pytree_node=False, default="scale")

    def split(self, name: str) -> Split:
        """The split called ``name``; an unknown name raises and lists the splits."""
        check_choice("split", name, SPLITS)
        return getattr(self, name)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[-3:])

    def normalize(self, images: jax.Array) -> jax.Array:
        """uint8 images -> float32 inputs, according to ``self.normalization``."""
        return normalize(images, self.pixel_mean, self.pixel_std, self.normalization)

    def subset(
        self, train: int | None = None, validation: int | None = None, test: int | None = None
    ) -> Dataset:
        """The same dataset with each split cut to its first ``n`` examples (None: whole).

        Normalisation statistics stay those of the full training split. For quick
        experiments and tests.
        """
        cut = lambda split, n: split if n is None else split.take(n)
        return self.replace(
            train=cut(self.train, train),
            validation=cut(self.validation, validation),
            test=cut(self.test, test),
        )

    def with_normalization(self, normalization: str) -> Dataset:
        check_choice("normalization", normalization, NORMALIZATIONS)
        return self.replace(normalization=normalization)


def normalize(
    images: jax.Array, pixel_mean: jax.Array, pixel_std: jax.Array, normalization: str
) -> jax.Array:
    """Turn uint8 images into float32 network inputs (inside jit).

    - ``"scale"``: x / 255.
    - ``"mean_subtract"``: x / 255 - mean, with the per-pixel training mean (paper B, CIFAR-10).
    - ``"standardize"``: (x / 255 - mean) / std, with the per-channel training std.

    Args:
      images: uint8 images, shape ``[..., H, W, C]``.
      pixel_mean: the per-pixel training mean, float32 ``[H, W, C]`` in [0, 1] units
        (:attr:`Dataset.pixel_mean`); read by ``"mean_subtract"`` and ``"standardize"``.
      pixel_std: the per-channel training std of the mean-subtracted pixels, float32 ``[C]``
        (:attr:`Dataset.pixel_std`); read by ``"standardize"`` only.
      normalization: ``"scale"``, ``"mean_subtract"`` or ``"standardize"``; another value
        raises a :class:`~lrjax.ConfigError`.

    Returns:
      float32 inputs of ``images``' shape.
    """
    check_choice("normalization", normalization, NORMALIZATIONS)
    x = images.astype(jnp.float32) / 255.0
    if normalization == "scale":
        return x
    x = x - pixel_mean
    if normalization == "standardize":
        x = x / pixel_std
    return x


def sample_indices(key: jax.Array, split_size: int, batch_size: int) -> jax.Array:
    """``batch_size`` example indices drawn uniformly with replacement (i.i.d. minibatches).

    I.i.d. sampling is the textbook SGD assumption and costs O(batch) per step; a per-epoch
    permutation would cost a sort of the whole split.

    Args:
      key: the PRNG key of this minibatch.
      split_size: examples in the split sampled from; a Python int (checked on the host, not
        traced).
      batch_size: examples in the minibatch, a positive Python int at most ``split_size``
        (else a :class:`~lrjax.ConfigError`).

    Returns:
      int32 indices in ``[0, split_size)``, shape ``(batch_size,)``.
    """
    check_batch_size(batch_size, split_size)
    return jax.random.randint(key, (batch_size,), 0, split_size)


def sample_batch(key: jax.Array, split: Split, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """A random minibatch ``(images uint8 [B, H, W, C], labels int32 [B])`` drawn inside jit.

    Args:
      key: the PRNG key of this minibatch (:func:`sample_indices`).
      split: the split to draw from, unbatched: images ``[N, H, W, C]``, labels ``[N]``.
      batch_size: ``B``, examples drawn uniformly with replacement, at most ``split.size``.

    Returns:
      ``(images, labels)`` of the drawn examples, in the split's dtypes.
    """
    idx = sample_indices(key, split.size, batch_size)
    return jnp.take(split.images, idx, axis=0), jnp.take(split.labels, idx, axis=0)


def check_batch_size(batch_size: int, split_size: int) -> None:
    """Refuse a minibatch size that is not a positive int or exceeds the split's size."""
    check_positive_int("batch_size", batch_size)
    if batch_size > split_size:
        raise ConfigError(
            f"batch_size={batch_size} is larger than the split it samples from "
            f"({split_size} examples): choose a batch_size of at most {split_size}."
        )
