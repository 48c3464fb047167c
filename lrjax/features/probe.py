"""What a controller's ``val_loss`` and ``predictions`` inputs hold: the probe it was trained on.

Paper A's controller observes the trainee on fixed validation examples: the mean loss on the
first ``val_examples`` of them (``val_loss``) and the model's outputs on the first ``examples``
of the same batch (``predictions``: class probabilities for a classifier, the outputs
themselves for a regression). :class:`Probe` declares those three facts; training records the
probe its environment observed (:class:`lrjax.env.EnvConfig`'s ``val_batch_size`` and
``probe_size``, and the task's kind of output) in the controller it saves, and
:func:`probe_inputs` computes exactly that from a user's model outputs, so a user's loop feeds
the controller what it saw in training. :func:`~lrjax.controller.scale_by_controller` refuses
predictions of another number of examples and warns when probabilities are expected and the
predictions are not (logits passed by mistake).
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrjax._validation import ConfigError, check_choice, check_positive_int

PROBE_OUTPUTS = ("probabilities", "raw")
"""``"probabilities"``: ``softmax`` of a classifier's logits; ``"raw"``: the outputs as they are
(a regression's predictions)."""


@dataclasses.dataclass(frozen=True)
class Probe:
    """The fixed validation examples a controller observes, and what it reads from them.

    Attributes:
      val_examples: the ``val_loss`` input is the mean loss on the first this many examples of a
        fixed validation batch (the same examples at every step). Default 128 (paper A's setup
        in :class:`lrjax.env.EnvConfig`).
      examples: the ``predictions`` input is the model's outputs on the first this many of
        them, shape ``(examples, num_outputs)``. Default 32.
      outputs: what ``predictions`` holds, one of :data:`PROBE_OUTPUTS`. Default
        ``"probabilities"`` (a classifier's softmax).
    """

    val_examples: int = 128
    examples: int = 32
    outputs: str = "probabilities"

    def __post_init__(self):
        check_positive_int("val_examples", self.val_examples)
        check_positive_int("examples", self.examples)
        check_choice("outputs", self.outputs, PROBE_OUTPUTS)

    @property
    def needed(self) -> int:
        """The validation examples the probe reads: ``max(val_examples, examples)``."""
        return max(self.val_examples, self.examples)

    def describe(self) -> str:
        probabilities = self.outputs == "probabilities"
        kind = "class probabilities (softmax of the logits)" if probabilities else "raw outputs"
        return (
            f"val_loss = the mean loss on the first {self.val_examples} examples of a fixed "
            f"validation batch; predictions = {kind} on its first {self.examples}"
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Probe:
        """Inverse of :meth:`to_json`; ``None`` (a controller saved before probes were recorded)
        is the default probe, the one every such controller was trained with."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping) or set(data) != {f.name for f in dataclasses.fields(cls)}:
            raise ConfigError(
                f"The saved probe is {data!r}: expected an object with the keys "
                f"{[f.name for f in dataclasses.fields(cls)]}."
            )
        return cls(**data)


def probe_inputs(
    probe: Probe,
    outputs: jax.Array,
    labels: Any,
    loss_fn: Callable[[jax.Array, Any], jax.Array],
) -> dict[str, jax.Array]:
    """``val_loss`` and ``predictions`` as the controller observed them in training.

    Args:
      probe: the controller's probe (``controller.config.features.probe``).
      outputs: the model's outputs (a classifier's logits) on a fixed validation batch, the same
        examples at every step, at least ``probe.needed`` of them: ``(n, num_outputs)``.
      labels: the batch's targets (leading axis ``n``).
      loss_fn: ``loss_fn(outputs, labels) -> scalar`` mean loss.

    Returns:
      ``{"val_loss": ..., "predictions": ...}``, keywords for the transform's ``update``.

    Example, the default probe of a 10-class classifier that has learned nothing yet:

    >>> import optax
    >>> loss_fn = lambda out, y: optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
    >>> logits, labels = jnp.zeros((128, 10)), jnp.zeros(128, jnp.int32)
    >>> inputs = probe_inputs(Probe(), logits, labels, loss_fn)
    >>> inputs["predictions"].shape, round(float(inputs["val_loss"]), 4)  # ln 10
    ((32, 10), 2.3026)
    """
    outputs = jnp.asarray(outputs)
    if outputs.ndim < 1 or outputs.shape[0] < probe.needed:
        raise ConfigError(
            f"The validation outputs have shape {outputs.shape}: the controller observes "
            f"{probe.describe()}, so it needs at least {probe.needed} examples (a leading axis "
            f"of {probe.needed} or more)."
        )
    val_loss = loss_fn(outputs[: probe.val_examples], _head(labels, probe.val_examples))
    head = jax.lax.stop_gradient(outputs[: probe.examples])
    predictions = jax.nn.softmax(head, axis=-1) if probe.outputs == "probabilities" else head
    return {"val_loss": val_loss, "predictions": predictions}


def _head(labels: Any, n: int) -> Any:
    return jax.tree.map(lambda x: x[:n], labels)


def looks_like_probabilities(predictions: jax.Array, tol: float = 1e-3) -> jax.Array:
    """Whether every row of ``predictions`` is a probability vector (entries in [0, 1], each row
    summing to 1 within ``tol``): a traced bool scalar."""
    p = jnp.asarray(predictions, jnp.float32)
    rows = jnp.sum(p, axis=-1)
    return jnp.all((p >= -tol) & (p <= 1 + tol)) & jnp.all(jnp.abs(rows - 1.0) <= tol)


def warn_unless_probabilities(probe: Probe, predictions: jax.Array, acting: jax.Array) -> None:
    """Inside jit: a ``UserWarning`` on the host when ``probe`` declares probabilities,
    ``acting`` (a traced bool: the controller reads its inputs at this step) and
    ``predictions`` are not probabilities (logits passed by mistake). A value cannot raise
    inside jit, hence a callback; ``lax.cond`` keeps it off the steps that are fine."""
    if probe.outputs != "probabilities":
        return
    bad = acting & ~looks_like_probabilities(predictions)
    warn = functools.partial(_warn_not_probabilities, probe=probe)
    jax.lax.cond(bad, lambda b: jax.debug.callback(warn, b), lambda b: None, bad)


def _warn_not_probabilities(bad: jax.Array, probe: Probe) -> None:
    # ``bad`` is batched under vmap (the cond becomes a select that runs this branch too).
    if bool(np.any(bad)):
        warnings.warn(
            "The predictions passed to the controller are not probabilities (a row outside "
            f"[0, 1] or not summing to 1): it observes {probe.describe()}. Logits passed by "
            "mistake make it act on statistics it never saw in training; compute the inputs "
            "with lrjax.features.probe_inputs.",
            UserWarning,
            stacklevel=2,
        )
