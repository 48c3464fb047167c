"""Fault injection: a task whose minibatches sometimes go bad, to test that training survives.

Real training meets non-finite values: a corrupt example gives a NaN loss and gradient, a loss
overflows to infinity, a gradient explodes (a huge effective learning rate). :class:`FaultyTask`
wraps any :class:`~lrjax.tasks.Task` and turns a random fraction of its minibatches into such
faults, so that a test (or a user checking their own loop) can run PPO, the actor-critic or a
plain training loop under them and check what must hold: nothing non-finite reaches the
controller's params, the critic or the optimizers' statistics, healthy episodes are untouched,
and each bad episode ends with its bounded penalty (:mod:`lrjax.env`) and is counted.

The fault of a minibatch is a pure function of its key (the key the task draws the minibatch
with), so it is reproducible and every use of that minibatch agrees: the loss a controller
observes (``value``) and the gradient of the step that trains on it are faulty together, as
they are when an example is corrupt. Evaluation on the fixed validation and test examples
(:meth:`~lrjax.tasks.Task.metrics`, :meth:`~lrjax.tasks.Task.validation_probe`) is not
touched: a fault shows there only through the params it corrupted. Daniel et al.'s controller
(:mod:`lrjax.baselines.reps`), which reads the loss of each example from the image and
regression tasks' own minibatches, refuses a faulty task rather than miss its faults.

Kinds of fault (:data:`FAULT_KINDS`):

- ``"nan"``: loss and gradient NaN (a corrupt example);
- ``"inf_loss"``: the loss is +inf, the gradient finite (an overflow in the loss alone);
- ``"inf_grad"``: the gradient is +inf in every entry, the loss finite;
- ``"huge_grad"``: the gradient times ``1e8`` (the step of a learning rate 1e8 times too large:
  the trainee diverges).

Written by hand: optax, chex and flax test fault *handling* (``optax.apply_if_finite``,
``chex.assert_tree_all_finite``), not fault *injection* into a model's minibatches.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from lrjax._validation import ConfigError, check_in_range
from lrjax.tasks import Params, Task

FAULT_KINDS = ("nan", "inf_loss", "inf_grad", "huge_grad")
HUGE_GRAD_FACTOR = 1e8

_FAULT_STREAM = 0x0FA17  # folded into a minibatch key: the fault draw's own random stream


def rate_for_episodes(fraction: float, minibatches_per_episode: int) -> float:
    """The per-minibatch fault rate that hits ``fraction`` of episodes of
    ``minibatches_per_episode`` draws at least once: ``1 - (1 - fraction)^(1 / n)``."""
    check_in_range("fraction", fraction, 0.0, 1.0)
    return 1.0 - (1.0 - fraction) ** (1.0 / minibatches_per_episode)


@dataclasses.dataclass(frozen=True)
class FaultyTask(Task):
    """``task`` with a fault in each minibatch with probability ``rate`` (module docstring).

    Attributes:
      task: the task to wrap (any :class:`~lrjax.tasks.Task`).
      rate: probability that a minibatch is faulty, in [0, 1].
      kinds: the faults to draw from, uniformly (:data:`FAULT_KINDS`).
      seed: the fault stream: another seed faults other minibatches.
    """

    task: Task
    rate: float = 0.01
    kinds: tuple[str, ...] = FAULT_KINDS
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.task, Task):
            raise ConfigError(f"task={self.task!r} is not allowed: expected a lrjax Task.")
        check_in_range("rate", self.rate, 0.0, 1.0)
        unknown = [k for k in self.kinds if k not in FAULT_KINDS]
        if not self.kinds or unknown:
            raise ConfigError(
                f"kinds={self.kinds!r} is not allowed: expected a non-empty tuple of "
                f"{', '.join(FAULT_KINDS)}."
            )

    # -- what the wrapped task is -----------------------------------------------------------

    def __getattr__(self, name: str) -> Any:  # name, batch_size, output_layer, dataset, ...
        if name == "task":  # not yet set (during unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.task, name)

    @property
    def uses_conv(self) -> bool:
        return self.task.uses_conv

    def _wrap(self, task: Task) -> Task:
        return self if task is self.task else dataclasses.replace(self, task=task)

    def with_conv_impl(self, impl: str) -> Task:
        return self._wrap(self.task.with_conv_impl(impl))

    def with_grad_chunk(self, examples: int | None) -> Task:
        return self._wrap(self.task.with_grad_chunk(examples))

    def load_data(self, key=None, *, data_dir=None, **kwargs):
        return self.task.load_data(key, data_dir=data_dir, **kwargs)

    def init(self, key: jax.Array, data: Any) -> Params:
        return self.task.init(key, data)

    def output_weights(self, params: Params) -> jax.Array:
        return self.task.output_weights(params)

    def metrics(self, params, data, split, max_examples=None):
        return self.task.metrics(params, data, split, max_examples)

    def predictions(self, params, data, split, num_examples):
        return self.task.predictions(params, data, split, num_examples)

    @property
    def probe_outputs(self) -> str:
        return self.task.probe_outputs

    def validation_probe(self, params, data, batch_size, probe_size):
        return self.task.validation_probe(params, data, batch_size, probe_size)

    # -- the faults -------------------------------------------------------------------------

    def fault(self, key: jax.Array) -> jax.Array:
        """The fault of the minibatch drawn with ``key``: -1 for none, else an index into
        :attr:`kinds`."""
        k_hit, k_kind = jax.random.split(jax.random.fold_in(key, _FAULT_STREAM + self.seed))
        hit = jax.random.uniform(k_hit) < self.rate
        kind = jax.random.randint(k_kind, (), 0, len(self.kinds))
        return jnp.where(hit, kind, -1)

    def _is(self, fault: jax.Array, name: str) -> jax.Array:
        """Whether ``fault`` (from :meth:`fault`) is the kind ``name``."""
        of_kind = jnp.array([k == name for k in self.kinds])
        return (fault >= 0) & of_kind[jnp.maximum(fault, 0)]

    def _faulty_loss(self, loss: jax.Array, fault: jax.Array) -> jax.Array:
        loss = jnp.where(self._is(fault, "nan"), jnp.nan, loss)
        return jnp.where(self._is(fault, "inf_loss"), jnp.inf, loss)

    def loss(self, params, data, key):
        return self._faulty_loss(self.task.loss(params, data, key), self.fault(key))

    def loss_and_grad(self, params, data, key):
        loss, grads = self.task.loss_and_grad(params, data, key)
        fault = self.fault(key)
        nan, inf = self._is(fault, "nan"), self._is(fault, "inf_grad")
        factor = jnp.where(self._is(fault, "huge_grad"), HUGE_GRAD_FACTOR, 1.0)

        def corrupt(g):
            g = jnp.where(nan, jnp.nan, g * factor.astype(g.dtype))
            return jnp.where(inf, jnp.inf, g)

        return self._faulty_loss(loss, fault), jax.tree.map(corrupt, grads)
