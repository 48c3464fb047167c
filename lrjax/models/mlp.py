"""A multilayer perceptron trainee.

The simplest trainee: it flattens its input (any trailing shape, e.g. NHWC images) and applies
dense layers with an activation between them. Like the other models it is a pure function of
its ``params``, so a train step vmaps over many trainees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax

from lrjax._validation import check_choice

Array = jax.Array

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": nn.relu,
    "tanh": nn.tanh,
    "sigmoid": nn.sigmoid,
    "gelu": nn.gelu,
    "elu": nn.elu,
    "silu": nn.silu,
}


class MLP(nn.Module):
    """Flatten, then ``len(hidden)`` dense layers with ``activation``, then a dense logits layer.

    Input is (N, ...) and is flattened to (N, prod(...)). ``activation`` is a name from
    :data:`ACTIVATIONS`. Layers are named ``dense1``, ..., ``logits``.
    """

    hidden: Sequence[int] = (256, 256)
    num_classes: int = 10
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        check_choice("activation", self.activation, ACTIVATIONS)
        act = ACTIVATIONS[self.activation]
        x = x.reshape(x.shape[0], -1)
        for i, width in enumerate(self.hidden):
            x = act(nn.Dense(width, name=f"dense{i + 1}")(x))
        return nn.Dense(self.num_classes, name="logits")(x)
