"""Image classification trainees: a Flax classifier on a tfds dataset, cross-entropy loss,
the minibatch gradient optionally in chunks (:func:`~lrjax.tasks.base.grad_chunks`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from lrjax._validation import check_choice, check_positive, check_positive_int
from lrjax.data import Dataset, get_spec, load_dataset, sample_indices
from lrjax.data.arrays import check_batch_size
from lrjax.models.layers import CONV_IMPLS
from lrjax.tasks.base import Metrics, Params, Task, grad_chunks

DATA_VARIANTS = ("none", "permuted", "noisy_labels", "subset")
"""Cheap variants of a dataset that keep its arrays and shapes (one compiled program each):

- ``"none"``: the dataset as it is.
- ``"permuted"``: every image's pixels in one fixed random order (all splits alike; key
  :data:`VARIANT_SEED`): the same examples without the spatial structure a CNN relies on.
- ``"noisy_labels"``: :data:`NOISY_LABEL_FRACTION` of the training examples carry a fixed random
  label (the same examples and labels every step and every run; validation and test are clean).
- ``"subset"``: training draws only from the first :data:`SUBSET_FRACTION` of the training
  split (it overfits sooner; validation and test are whole).
"""

VARIANT_SEED = 20261206
"""The key of the fixed pixel order and of the noisy labels: a variant is a dataset, not a draw."""

NOISY_LABEL_FRACTION = 0.2
SUBSET_FRACTION = 0.1


@dataclasses.dataclass(frozen=True)
class ImageClassificationTask(Task):
    """A Flax classifier on a tfds image dataset, cross-entropy loss.

    Attributes:
      name: registry name.
      dataset: tfds dataset name (see :data:`lrjax.data.DATASETS`).
      model: the Flax module (logits out).
      batch_size: training minibatch size.
      eval_batch_size: examples per chunk when evaluating (bounds memory, esp. under vmap).
      output_layer: the output layer's weights in the params (every lrjax model names its
        last layer ``logits``).
      grad_chunk: examples per forward/backward pass of a training step (None: the whole
        minibatch at once). The minibatch is split into equal chunks (see
        :func:`grad_chunks`) and the gradient is the mean of theirs: the same value up to float
        summation order, with a working set that stays in the CPU's caches (faster for a
        LeNet-5 step at batch 1000, ``BENCHMARKS.md``). The execution engine
        sets it (``EngineConfig.grad_chunk``).
      variant: one of :data:`DATA_VARIANTS`, how the dataset is changed.
      init_scale: every initial parameter is multiplied by it (> 0): a trainee whose weights
        start larger or smaller than its initialiser's, scale augmentation for a controller
        trained across a family (issue 26).
      loss_scale: the training loss (and so its gradient) is multiplied by it (> 0); metrics
        report the true loss. Under SGD it is the LR times ``loss_scale``; under Adam it cancels
        (up to Adam's eps).
    """

    name: str
    dataset: str
    model: nn.Module
    batch_size: int
    eval_batch_size: int = 1000
    output_layer: str = "logits/kernel"
    grad_chunk: int | None = None
    variant: str = "none"
    init_scale: float = 1.0
    loss_scale: float = 1.0

    def __post_init__(self):
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("eval_batch_size", self.eval_batch_size)
        if self.grad_chunk is not None:
            check_positive_int("grad_chunk", self.grad_chunk)
        check_choice("variant", self.variant, DATA_VARIANTS)
        check_positive("init_scale", self.init_scale)
        check_positive("loss_scale", self.loss_scale)

    @property
    def uses_conv(self) -> bool:
        return hasattr(self.model, "conv_impl")

    @property
    def cpu_conv_impl(self) -> str:
        return getattr(self.model, "cpu_conv_impl", "patches")

    def with_conv_impl(self, impl: str) -> Task:
        check_choice("conv_impl", impl, CONV_IMPLS)
        if not self.uses_conv or self.model.conv_impl == impl:
            return self
        return dataclasses.replace(self, model=self.model.clone(conv_impl=impl))

    @property
    def input_shape(self) -> tuple[int, int, int]:

        return get_spec(self.dataset).image_shape

    def load_data(
        self, key: jax.Array | None = None, *, data_dir: str | None = None, **kwargs
    ) -> Dataset:
        """Load the task's dataset (``data_dir`` and ``kwargs`` go to
        :func:`lrjax.data.load_dataset`; the key is not used: real data are fixed)."""
        del key
        data = load_dataset(self.dataset, data_dir=data_dir, **kwargs)
        check_batch_size(self.batch_size, self._train_pool(data.train.size))
        return data

    def init(self, key: jax.Array, data: Any = None) -> Params:
        del data
        x = jnp.zeros((1, *self.input_shape), jnp.float32)
        params = self.model.init(key, x)["params"]
        if self.init_scale == 1.0:
            return params
        return jax.tree.map(lambda p: p * jnp.asarray(self.init_scale, p.dtype), params)

    def logits(self, params: Params, data: Dataset, images: jax.Array) -> jax.Array:
        if self.variant == "permuted":
            flat = images.reshape(images.shape[0], -1)
            order = jax.random.permutation(jax.random.key(VARIANT_SEED), flat.shape[1])
            images = jnp.take(flat, order, axis=1).reshape(images.shape)
        return self.model.apply({"params": params}, data.normalize(images))

    def batch_loss(self, params: Params, data: Dataset, images, labels) -> jax.Array:
        logits = self.logits(params, data, images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    def _train_pool(self, train_size: int) -> int:
        """How many training examples minibatches draw from (the first ones)."""
        if self.variant == "subset":
            return max(1, int(train_size * SUBSET_FRACTION))
        return train_size

    def _train_examples(self, data: Dataset, idx: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The training examples at ``idx``, with the variant's fixed noisy labels."""
        images = jnp.take(data.train.images, idx, axis=0)
        labels = jnp.take(data.train.labels, idx, axis=0)
        if self.variant == "noisy_labels":
            # Per example, from the variant's key and the example's index: fixed across steps.
            keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(VARIANT_SEED), idx)
            noisy = jax.vmap(lambda k: jax.random.uniform(k) < NOISY_LABEL_FRACTION)(keys)
            draw = lambda k: jax.random.randint(jax.random.fold_in(k, 1), (), 0, data.num_classes)
            labels = jnp.where(noisy, jax.vmap(draw)(keys).astype(labels.dtype), labels)
        return images, labels

    def _train_indices(self, data: Dataset, key: jax.Array) -> jax.Array:
        return sample_indices(key, self._train_pool(data.train.size), self.batch_size)

    def minibatch(self, data: Dataset, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(images, labels)`` of the training minibatch drawn with ``key``: the examples
        :meth:`loss` and :meth:`loss_and_grad` train on (an observer of single examples, e.g.
        Daniel et al.'s per-example losses, draws them here)."""
        return self._train_examples(data, self._train_indices(data, key))

    def loss(self, params: Params, data: Dataset, key: jax.Array) -> jax.Array:
        return self.batch_loss(params, data, *self.minibatch(data, key)) * self.loss_scale

    def with_grad_chunk(self, examples: int | None) -> Task:
        return (
            self if examples == self.grad_chunk else dataclasses.replace(self, grad_chunk=examples)
        )

    def loss_and_grad(self, params: Params, data: Dataset, key: jax.Array):
        chunks = grad_chunks(self.batch_size, self.grad_chunk)
        if chunks == 1:
            return super().loss_and_grad(params, data, key)
        idx = self._train_indices(data, key).reshape(chunks, -1)

        def chunk_loss_and_grad(chunk_idx):
            images, labels = self._train_examples(data, chunk_idx)
            scaled = lambda p: self.batch_loss(p, data, images, labels) * self.loss_scale
            return jax.value_and_grad(scaled)(params)

        # The sum starts from the first chunk (not from zeros, which inside a user's shard_map
        # would not vary over its axis as the chunks' gradients do).
        add = lambda total, chunk_idx: (
            jax.tree.map(jnp.add, total, chunk_loss_and_grad(chunk_idx)),
            None,
        )
        total, _ = jax.lax.scan(add, chunk_loss_and_grad(idx[0]), idx[1:])
        return jax.tree.map(lambda x: x / chunks, total)

    def metrics(
        self, params: Params, data: Dataset, split: str, max_examples: int | None = None
    ) -> Metrics:
        s = data.split(split)
        n = s.size if max_examples is None else min(max_examples, s.size)
        chunk = min(self.eval_batch_size, n)
        n_chunks = n // chunk  # whole chunks only: static shapes; remainder evaluated apart
        images, labels = s.images[:n], s.labels[:n]

        def chunk_sums(args):
            x, y = args
            logits = self.logits(params, data, x)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).sum()
            correct = (jnp.argmax(logits, -1) == y).sum()
            return loss, correct

        main = n_chunks * chunk
        xs = images[:main].reshape(n_chunks, chunk, *images.shape[1:])
        ys = labels[:main].reshape(n_chunks, chunk)
        losses, corrects = jax.lax.map(chunk_sums, (xs, ys))
        loss, correct = losses.sum(), corrects.sum()
        if main < n:
            rest_loss, rest_correct = chunk_sums((images[main:], labels[main:]))
            loss, correct = loss + rest_loss, correct + rest_correct
        return {"loss": loss / n, "accuracy": correct.astype(jnp.float32) / n}

    def predictions(self, params, data, split, num_examples):
        s = data.split(split)
        return jax.nn.softmax(self.logits(params, data, s.images[:num_examples]))

    def validation_probe(self, params, data, batch_size, probe_size):
        """One forward pass over the first ``max(batch_size, probe_size)`` validation
        examples: the probe is a prefix of the loss batch."""
        val = data.validation
        batch_size, probe_size = min(batch_size, val.size), min(probe_size, val.size)
        n = max(batch_size, probe_size)
        logits = self.logits(params, data, val.images[:n])
        loss = optax.softmax_cross_entropy_with_integer_labels(
            logits[:batch_size], val.labels[:batch_size]
        )
        return loss.mean(), jax.nn.softmax(logits[:probe_size])
