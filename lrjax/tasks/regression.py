"""Paper B's 2-D linear regression trainee (section 4.3): random problems drawn from a key,
with the full-batch gradient for the paper's gradient disagreement."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import struct

from lrjax._validation import (
    ConfigError,
    check_choice,
    check_non_negative,
    check_positive,
    check_positive_int,
)
from lrjax.data import sample_indices
from lrjax.data.arrays import check_batch_size
from lrjax.tasks.base import Params, Task


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

    def minibatch(self, data: RegressionData, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(x, y)`` of the training minibatch drawn with ``key``: the examples :meth:`loss`
        trains on (an observer of single examples, e.g. Daniel et al.'s per-example losses,
        draws them here)."""
        idx = sample_indices(key, self.num_train, self.batch_size)
        return data.train_x[idx], data.train_y[idx]

    def loss(self, params, data, key):
        return self.mse(params, *self.minibatch(data, key))

    def metrics(self, params, data, split, max_examples=None):
        x, y = data.split(split)
        if max_examples is not None:
            x, y = x[:max_examples], y[:max_examples]
        loss = self.mse(params, x, y)
        return {"loss": loss, "accuracy": jnp.full((), jnp.nan, jnp.float32)}

    def predictions(self, params, data, split, num_examples):
        x, _ = data.split(split)
        return x[:num_examples] @ params["kernel"]

    @property
    def probe_outputs(self) -> str:
        """The probe's predictions are the regression's outputs themselves."""
        return "raw"

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
