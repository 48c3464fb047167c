"""Feature inputs of a Flax model's train step, with its gradients, in one call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from lrjax._validation import ConfigError
from lrjax.features.probe import Probe, probe_inputs

# ----------------------------------------------------------------------------------------------
# Computing the inputs from a Flax model.


def grads_and_feature_inputs(
    apply_fn: Callable[..., Any],
    params: Any,
    batch: tuple[Any, Any],
    loss_fn: Callable[[Any, Any], jax.Array],
    val_batch: tuple[Any, Any] | None = None,
    *,
    has_aux: bool = False,
    probe: Probe | None = None,
) -> tuple[Any, dict[str, jax.Array]]:
    """Gradients and every built-in feature input, for a train step, in one call.

    Example, for a controller trained on a probe (paper A's features; with a controller ``c``,
    ``probe = c.config.features.probe``, then ``tx.update(grads, opt_state, params, **inputs)``):

    >>> import jax, jax.numpy as jnp, optax, flax.linen as nn
    >>> from lrjax.features import Probe
    >>> model = nn.Dense(10)
    >>> params = model.init(jax.random.key(0), jnp.ones((1, 4)))
    >>> def loss_fn(logits, y):
    ...     return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    >>> train = (jnp.ones((8, 4)), jnp.arange(8))
    >>> val = (jnp.ones((128, 4)), jnp.arange(128) % 10)  # fixed across steps
    >>> grads, inputs = grads_and_feature_inputs(
    ...     model.apply, params, train, loss_fn, val, probe=Probe())
    >>> sorted(inputs), inputs["predictions"].shape  # softmax of the first 32 examples
    (['predictions', 'val_loss', 'value'], (32, 10))

    Args:
      apply_fn: ``apply_fn(params, x) -> outputs`` (a linen ``model.apply``, or any function).
      params: the model's params (what ``apply_fn`` takes first).
      batch: ``(x, y)`` of the current training minibatch.
      loss_fn: ``loss_fn(outputs, y) -> scalar`` mean loss.
      val_batch: ``(x, y)`` of a validation batch. Keep it fixed across steps: its outputs are the
        ``predictions`` (so their change between steps reflects the model, not the data). If
        ``None``, there is no ``val_loss`` and ``predictions`` are the training batch's outputs.
      has_aux: ``apply_fn`` returns ``(outputs, aux)``; ``aux`` is dropped (e.g. batch stats).
      probe: the controller's :class:`~lrjax.features.Probe`
        (``controller.config.features.probe``): ``val_loss`` and ``predictions`` are then what the
        controller observed in training (the loss on the first ``probe.val_examples`` of
        ``val_batch``, the softmax, or raw outputs, on its first ``probe.examples``;
        :func:`~lrjax.features.probe_inputs`), and ``val_batch`` is required. Without it,
        ``val_loss`` is the loss on the whole ``val_batch`` and ``predictions`` its raw outputs,
        for controllers of your own that read them so.

    Returns:
      ``(grads, inputs)``: ``grads`` of the training loss w.r.t. ``params``; ``inputs`` are the
      keywords of the transform's ``update``: ``value`` (the training loss, optax's name; the
      features' ``loss`` input), ``val_loss`` and ``predictions``.
    """

    def outputs(p, x):
        out = apply_fn(p, x)
        return out[0] if has_aux else out

    def train_loss(p):
        out = outputs(p, batch[0])
        return loss_fn(out, batch[1]), out

    (value, train_out), grads = jax.value_and_grad(train_loss, has_aux=True)(params)
    inputs = {"value": value}
    if probe is not None:
        if val_batch is None:
            raise ConfigError(
                f"probe={probe!r} needs val_batch: the controller observes {probe.describe()}; "
                "pass a fixed validation batch (x_val, y_val) of at least "
                f"{probe.needed} examples."
            )
        inputs.update(probe_inputs(probe, outputs(params, val_batch[0]), val_batch[1], loss_fn))
        return grads, inputs
    if val_batch is None:
        inputs["predictions"] = jax.lax.stop_gradient(train_out)
    else:
        val_out = outputs(params, val_batch[0])
        inputs["val_loss"] = loss_fn(val_out, val_batch[1])
        inputs["predictions"] = val_out
    return grads, inputs
