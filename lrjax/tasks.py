"""Trainees as pure functions: a model, its data, a minibatch loss and evaluation metrics.

A :class:`Task` is a frozen (hashable) description; its methods are pure and jittable, and they
vmap over keys (many trainees at once). Data is passed explicitly as a pytree argument
(:class:`lrjax.data.Dataset` for images, :class:`RegressionData` for the 2-D problem), never
closed over, so compiled programs stay small.

Registered tasks (:data:`TASKS`):

=================  =============  ===============================================  =====
name               dataset        model                                            batch
=================  =============  ===============================================  =====
``mnist_cnn``      mnist          paper B: TF "Deep MNIST" CNN (32, 64 conv; 1024)  50
``cifar10_cnn``    cifar10        paper B: TF CIFAR-10 CNN (64, 64 conv; 384, 192)  128
``fashion_cnn``    fashion_mnist  paper A (model unspecified): LeNet-5 style       128
``fashion_resnet`` fashion_mnist  CIFAR-style ResNet-20, GroupNorm                  128
``cifar10_resnet`` cifar10        CIFAR-style ResNet-20, GroupNorm                  128
``mlp``            fashion_mnist  MLP 256-256                                       128
``fashion_mlp``    fashion_mnist  MLP 64: lrjax's RL training task (RESULTS.md)     128
``regression_2d``  synthetic      paper B section 4.3: linear regression, w in R^2  10
=================  =============  ===============================================  =====
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from lrjax import models
from lrjax._validation import (
    ConfigError,
    check_choice,
    check_non_negative,
    check_positive,
    check_positive_int,
)
from lrjax.data import Dataset, get_spec, load_dataset, sample_indices
from lrjax.data.arrays import check_batch_size
from lrjax.models.layers import CONV_IMPLS

Params = Any
Metrics = dict[str, jax.Array]


class Task:
    """Interface of a trainee. Subclasses are frozen dataclasses (hashable: usable as static
    arguments of ``jax.jit``).

    Every task has the same API, so no caller special-cases one: ``load_data(key, **kw)`` gives
    the data pytree (real datasets ignore the key, random problems are drawn from it),
    ``init(key, data)`` the initial params, and :attr:`output_layer` names the output layer's
    weights (paper A's final-layer features observe them).
    """

    name: str
    batch_size: int
    output_layer: str

    @property
    def uses_conv(self) -> bool:
        """Whether the model has convolutions (the engine picks CPU knobs by this)."""
        return False

    def load_data(
        self, key: jax.Array | None = None, *, data_dir: str | None = None, **kwargs
    ) -> Any:
        """The task's data pytree. ``key`` draws a random problem (ignored by real datasets);
        ``data_dir`` and ``kwargs`` locate a real dataset (ignored by random problems)."""
        raise NotImplementedError

    def with_conv_impl(self, impl: str) -> Task:
        """The same task computing its convolutions with ``impl`` (same parameters, same
        outputs); a task without convolutions returns itself."""
        check_choice("conv_impl", impl, CONV_IMPLS)
        return self

    def with_grad_chunk(self, examples: int | None) -> Task:
        """The same task computing a minibatch's gradient ``examples`` at a time (None: all at
        once); a task whose minibatch is not split returns itself."""
        return self

    def init(self, key: jax.Array, data: Any) -> Params:
        """Initial params of one trainee (``data``: for problems that fix the start)."""
        raise NotImplementedError

    def output_weights(self, params: Params) -> jax.Array:
        """The output layer's weights (the leaf at :attr:`output_layer`)."""
        node = params
        for part in self.output_layer.split("/"):
            node = node[part]
        return node

    def loss(self, params: Params, data: Any, key: jax.Array) -> jax.Array:
        """Mean training loss on a minibatch of ``batch_size`` drawn with ``key``."""
        raise NotImplementedError

    def loss_and_grad(self, params: Params, data: Any, key: jax.Array) -> tuple[jax.Array, Params]:
        """:meth:`loss` and its gradient with respect to ``params`` (what a train step needs)."""
        return jax.value_and_grad(self.loss)(params, data, key)

    def example_losses(self, params: Params, data: Any, key: jax.Array) -> jax.Array:
        """The loss of each example of the minibatch :meth:`loss` draws with ``key``,
        ``[batch_size]`` (their mean is :meth:`loss`); Daniel et al.'s features use them."""
        raise NotImplementedError

    def metrics(
        self, params: Params, data: Any, split: str, max_examples: int | None = None
    ) -> Metrics:
        """``{"loss": ..., "accuracy": ...}`` on the first ``max_examples`` of ``split``."""
        raise NotImplementedError

    def predictions(self, params: Params, data: Any, split: str, num_examples: int) -> jax.Array:
        """Model outputs (class probabilities or regression values) on the first examples."""
        raise NotImplementedError

    def validation_probe(
        self, params: Params, data: Any, batch_size: int, probe_size: int
    ) -> tuple[jax.Array, jax.Array]:
        """What an RL environment observes after each action, in one call:
        ``(val_loss, predictions)``: the mean loss on the first ``batch_size`` validation
        examples (the same examples at every step: a low-noise estimate of L_val) and the
        outputs on the first ``probe_size`` of them (a fixed probe batch)."""
        raise NotImplementedError


def grad_chunks(batch_size: int, chunk: int | None) -> int:
    """How many equal chunks a minibatch of ``batch_size`` is split into for at most ``chunk``
    examples each: the fewest that divide it exactly (1 when ``chunk`` is None or at least
    the minibatch, or when equal chunks would hold fewer than ``chunk // 4`` examples, e.g. a
    prime batch size). ``grad_chunks(1000, 128) == 8`` (chunks of 125)."""
    if chunk is None or chunk >= batch_size:
        return 1
    for count in range(-(-batch_size // chunk), batch_size + 1):
        if batch_size % count == 0:
            return count if batch_size // count >= max(chunk // 4, 1) else 1
    return 1


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
        summation order, with a working set that stays in the CPU's caches (a LeNet-5 step at
        batch 1000 ran 1.5x faster in chunks of 125, ``BENCHMARKS.md``). The execution engine
        sets it (``EngineConfig.grad_chunk``).
    """

    name: str
    dataset: str
    model: nn.Module
    batch_size: int
    eval_batch_size: int = 1000
    output_layer: str = "logits/kernel"
    grad_chunk: int | None = None

    def __post_init__(self):
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("eval_batch_size", self.eval_batch_size)
        if self.grad_chunk is not None:
            check_positive_int("grad_chunk", self.grad_chunk)

    @property
    def uses_conv(self) -> bool:
        return hasattr(self.model, "conv_impl")

    def with_conv_impl(self, impl: str) -> Task:
        check_choice("conv_impl", impl, CONV_IMPLS)
        if not self.uses_conv or self.model.conv_impl == impl:
            return self
        return dataclasses.replace(self, model=self.model.clone(conv_impl=impl))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        from lrjax.data import get_spec

        return get_spec(self.dataset).image_shape

    def load_data(
        self, key: jax.Array | None = None, *, data_dir: str | None = None, **kwargs
    ) -> Dataset:
        """Load the task's dataset (``data_dir`` and ``kwargs`` go to
        :func:`lrjax.data.load_dataset`; the key is not used: real data are fixed)."""
        del key
        data = load_dataset(self.dataset, data_dir=data_dir, **kwargs)
        check_batch_size(self.batch_size, data.train.size)
        return data

    def init(self, key: jax.Array, data: Any = None) -> Params:
        del data
        x = jnp.zeros((1, *self.input_shape), jnp.float32)
        return self.model.init(key, x)["params"]

    def logits(self, params: Params, data: Dataset, images: jax.Array) -> jax.Array:
        return self.model.apply({"params": params}, data.normalize(images))

    def batch_loss(self, params: Params, data: Dataset, images, labels) -> jax.Array:
        logits = self.logits(params, data, images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    def loss(self, params: Params, data: Dataset, key: jax.Array) -> jax.Array:
        idx = sample_indices(key, data.train.size, self.batch_size)
        images = jnp.take(data.train.images, idx, axis=0)
        labels = jnp.take(data.train.labels, idx, axis=0)
        return self.batch_loss(params, data, images, labels)

    def with_grad_chunk(self, examples: int | None) -> Task:
        return (
            self if examples == self.grad_chunk else dataclasses.replace(self, grad_chunk=examples)
        )

    def loss_and_grad(self, params: Params, data: Dataset, key: jax.Array):
        chunks = grad_chunks(self.batch_size, self.grad_chunk)
        if chunks == 1:
            return super().loss_and_grad(params, data, key)
        idx = sample_indices(key, data.train.size, self.batch_size).reshape(chunks, -1)

        def chunk_loss_and_grad(chunk_idx):
            images = jnp.take(data.train.images, chunk_idx, axis=0)
            labels = jnp.take(data.train.labels, chunk_idx, axis=0)
            return jax.value_and_grad(self.batch_loss)(params, data, images, labels)

        # The sum starts from the first chunk (not from zeros, which inside a user's shard_map
        # would not vary over its axis as the chunks' gradients do).
        add = lambda total, chunk_idx: (
            jax.tree.map(jnp.add, total, chunk_loss_and_grad(chunk_idx)),
            None,
        )
        total, _ = jax.lax.scan(add, chunk_loss_and_grad(idx[0]), idx[1:])
        return jax.tree.map(lambda x: x / chunks, total)

    def example_losses(self, params: Params, data: Dataset, key: jax.Array) -> jax.Array:
        idx = sample_indices(key, data.train.size, self.batch_size)
        images = jnp.take(data.train.images, idx, axis=0)
        labels = jnp.take(data.train.labels, idx, axis=0)
        logits = self.logits(params, data, images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)

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


@struct.dataclass
class RegressionData:
    """A random 2-D linear regression problem: ``y = x . w_true + noise``.

    Inputs ``*_x`` are [N, 2], targets ``*_y`` are [N]; ``w_true`` [2] is the generating
    parameter and ``w_init`` [2] the starting point drawn with the problem.
    """

    train_x: jax.Array
    train_y: jax.Array
    validation_x: jax.Array
    validation_y: jax.Array
    test_x: jax.Array
    test_y: jax.Array
    w_true: jax.Array
    w_init: jax.Array

    def split(self, name: str) -> tuple[jax.Array, jax.Array]:
        check_choice("split", name, ("train", "validation", "test"))
        return getattr(self, f"{name}_x"), getattr(self, f"{name}_y")


@dataclasses.dataclass(frozen=True)
class Regression2DTask(Task):
    """Paper B, section 4.3: a two-dimensional linear regression problem.

    The parameters are ``w`` in R^2 (so trajectories can be drawn over the loss contours); the
    loss is ``0.5 * mean((x . w - y)^2)``. Problems are random: ``load_data(key)`` draws the
    input covariance (eigenvalues 1 and 1/condition, random rotation), ``w_true`` and the start
    ``w_init``. The full-batch gradient is available, so the paper's *gradient disagreement*
    ``|| grad_batch - grad_full ||`` can be computed (:meth:`gradient_disagreement`).

    Attributes:
      batch_size: minibatch size (small, so minibatch gradients disagree).
      num_train / num_validation / num_test: sizes of the random splits.
      noise: standard deviation of the target noise.
      max_condition: the covariance's condition number is drawn in [1, max_condition].
      init_radius: distance of ``w_init`` from ``w_true``.
    """

    name: str = "regression_2d"
    batch_size: int = 10
    num_train: int = 1000
    num_validation: int = 200
    num_test: int = 1000
    noise: float = 0.5
    max_condition: float = 10.0
    init_radius: float = 3.0
    output_layer: str = "kernel"

    def __post_init__(self):
        for f in ("batch_size", "num_train", "num_validation", "num_test"):
            check_positive_int(f, getattr(self, f))
        check_non_negative("noise", self.noise)
        check_positive("max_condition", self.max_condition)
        if self.max_condition < 1:
            raise ConfigError(
                f"max_condition={self.max_condition!r} is not allowed: expected a number >= 1."
            )
        check_positive("init_radius", self.init_radius)
        check_batch_size(self.batch_size, self.num_train)

    def load_data(
        self, key: jax.Array | None = None, *, data_dir: str | None = None, **kwargs
    ) -> RegressionData:
        """Draw a random problem from ``key`` (required: the problem *is* the key). There are
        no files: ``data_dir`` and the dataset options (``raw_dir``, ...) are ignored."""
        del data_dir, kwargs
        if key is None:
            raise ConfigError(
                "key=None is not allowed: regression_2d draws its problem from a "
                "key, e.g. task.load_data(jax.random.key(0))."
            )
        return jax.jit(self._draw_problem)(key)

    def _draw_problem(self, key: jax.Array) -> RegressionData:
        k_rot, k_cond, k_w, k_init, k_tr, k_va, k_te = jax.random.split(key, 7)
        angle = jax.random.uniform(k_rot, (), maxval=jnp.pi)
        rotation = jnp.array([[jnp.cos(angle), -jnp.sin(angle)], [jnp.sin(angle), jnp.cos(angle)]])
        cond = jax.random.uniform(k_cond, (), minval=1.0, maxval=self.max_condition)
        scales = jnp.sqrt(jnp.array([1.0, 1.0 / cond]))
        w_true = jax.random.normal(k_w, (2,))
        direction = jax.random.normal(k_init, (2,))
        w_init = w_true + self.init_radius * direction / jnp.linalg.norm(direction)

        def sample(k, n):
            kx, kn = jax.random.split(k)
            x = (jax.random.normal(kx, (n, 2)) * scales) @ rotation.T
            y = x @ w_true + self.noise * jax.random.normal(kn, (n,))
            return x, y

        (trx, tr_y), (vax, va_y), (tex, te_y) = (
            sample(k_tr, self.num_train),
            sample(k_va, self.num_validation),
            sample(k_te, self.num_test),
        )
        return RegressionData(trx, tr_y, vax, va_y, tex, te_y, w_true, w_init)

    def init(self, key: jax.Array, data: RegressionData) -> Params:
        """``{"kernel": w}`` with w the problem's start ``data.w_init`` (the key is not used:
        the start is part of the problem)."""
        del key
        return {"kernel": jnp.asarray(data.w_init, jnp.float32)}

    @staticmethod
    def mse(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
        return 0.5 * jnp.mean((x @ params["kernel"] - y) ** 2)

    def loss(self, params, data, key):
        idx = sample_indices(key, self.num_train, self.batch_size)
        return self.mse(params, data.train_x[idx], data.train_y[idx])

    def example_losses(self, params, data, key):
        idx = sample_indices(key, self.num_train, self.batch_size)
        return 0.5 * (data.train_x[idx] @ params["kernel"] - data.train_y[idx]) ** 2

    def metrics(self, params, data, split, max_examples=None):
        x, y = data.split(split)
        if max_examples is not None:
            x, y = x[:max_examples], y[:max_examples]
        loss = self.mse(params, x, y)
        return {"loss": loss, "accuracy": jnp.full((), jnp.nan, jnp.float32)}

    def predictions(self, params, data, split, num_examples):
        x, _ = data.split(split)
        return x[:num_examples] @ params["kernel"]

    def validation_probe(self, params, data, batch_size, probe_size):
        x, y = data.split("validation")
        return self.mse(params, x[:batch_size], y[:batch_size]), self.predictions(
            params, data, "validation", probe_size
        )

    def full_gradient(self, params, data) -> Params:
        return jax.grad(self.mse)(params, data.train_x, data.train_y)

    def gradient_disagreement(self, params, data, key) -> jax.Array:
        """Paper B 4.3: Euclidean distance between the minibatch gradient and the full one."""
        g_batch = jax.grad(self.loss)(params, data, key)
        g_full = self.full_gradient(params, data)
        return optax.tree_utils.tree_norm(optax.tree_utils.tree_sub(g_batch, g_full))


# --------------------------------------------------------------------------------------------
# Registry

TaskFactory = Callable[..., Task]


def _image_task(name, dataset, model_fn, batch_size):
    def factory(*, conv_impl: str | None = None, batch_size: int = batch_size, **model_kwargs):
        impl = conv_impl or "xla"
        check_choice("conv_impl", impl, CONV_IMPLS)
        spec = get_spec(dataset)  # a batch larger than the training split fails before loading
        check_batch_size(batch_size, spec.train_size - spec.validation_size)
        return ImageClassificationTask(name, dataset, model_fn(impl, **model_kwargs), batch_size)

    return factory


TASKS: dict[str, TaskFactory] = {
    "mnist_cnn": _image_task(
        "mnist_cnn", "mnist", lambda impl, **kw: models.MnistCNN(conv_impl=impl, **kw), 50
    ),
    "cifar10_cnn": _image_task(
        "cifar10_cnn", "cifar10", lambda impl, **kw: models.Cifar10CNN(conv_impl=impl, **kw), 128
    ),
    "fashion_cnn": _image_task(
        "fashion_cnn", "fashion_mnist", lambda impl, **kw: models.LeNet5(conv_impl=impl, **kw), 128
    ),
    "fashion_resnet": _image_task(
        "fashion_resnet",
        "fashion_mnist",
        lambda impl, **kw: models.ResNet(conv_impl=impl, **kw),
        128,
    ),
    "cifar10_resnet": _image_task(
        "cifar10_resnet", "cifar10", lambda impl, **kw: models.ResNet(conv_impl=impl, **kw), 128
    ),
    "mlp": _image_task("mlp", "fashion_mnist", lambda impl, **kw: models.MLP(**kw), 128),
    "fashion_mlp": _image_task(
        "fashion_mlp",
        "fashion_mnist",
        lambda impl, hidden=(64,), **kw: models.MLP(hidden=hidden, **kw),
        128,
    ),
    # MNIST with paper B's minibatch of 50 on a cheap trainee: paper B's comparison at notebook
    # scale on a CPU (mnist_cnn is the paper's own, ~20x slower here).
    "mnist_mlp": _image_task(
        "mnist_mlp",
        "mnist",
        lambda impl, hidden=(64,), **kw: models.MLP(hidden=hidden, **kw),
        50,
    ),
    "regression_2d": lambda **kw: Regression2DTask(**kw),
}


def get_task(name: str, **overrides) -> Task:
    """The registered task ``name``, with ``overrides`` (batch_size, conv_impl, model sizes).

    Raises:
      ConfigError: for an unknown name (listing the known ones) or a bad override.
    """
    if not isinstance(name, str) or name not in TASKS:
        raise ConfigError(f"task={name!r} is not known: expected one of {', '.join(TASKS)}.")
    try:
        return TASKS[name](**overrides)
    except TypeError as e:
        raise ConfigError(f"task {name!r} does not take these options: {overrides} ({e}).") from e
