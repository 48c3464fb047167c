"""The trainee interface: what every task gives (data, initial params, a minibatch loss and
its gradient, evaluation metrics, the probe an RL environment observes).

A :class:`Task` is a frozen (hashable) description; its methods are pure and jittable, and they
vmap over keys (many trainees at once). Data is passed explicitly as a pytree argument, never
closed over, so compiled programs stay small.
"""

from __future__ import annotations

from typing import Any

import jax

from lrjax._validation import check_choice
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

    @property
    def cpu_conv_impl(self) -> str:
        """The convolution (one of :data:`lrjax.models.layers.CONV_IMPLS`) the engine trains this
        task with on CPU when :class:`~lrjax.engine.EngineConfig` names none and trainees run
        one after another on a device: the faster of the two for the task's model there
        (``BENCHMARKS.md``). A task without convolutions never uses it."""
        return "patches"

    @property
    def probe_outputs(self) -> str:
        """What :meth:`validation_probe`'s predictions hold, one of
        :data:`lrjax.features.PROBE_OUTPUTS`: ``"probabilities"`` (a classifier's softmax, the
        default) or ``"raw"`` (a regression's outputs). Training records it in the controller's
        :class:`~lrjax.features.Probe`."""
        return "probabilities"

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
