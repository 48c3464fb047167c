"""Parameter groups: what a per-layer controller acts on, and the per-group features it sees.

Paper B's future work is a learning rate per parameter group; learned optimizers (VeLO, Celo2)
act per tensor. A per-layer lrjax controller keeps one actor, shared by every group, and steps it
once per group with that group's observation: the run's features (the loss history, progress),
which every group shares, followed by the group's own (:data:`GROUP_FEATURES`), so one trained
controller applies to a network of any depth. The groups and their order are static, read from
the structure of the params:

* by default (:func:`layer_labels`) a group is a layer: every leaf whose path shares all but its
  last key (a Flax ``Dense_0``'s ``kernel`` and ``bias``);
* or any labelling in the style of ``optax.multi_transform``: a pytree of hashable labels with
  the params' structure, or a function of the params returning one.

Depth order is what ``group_depth`` reads. The params' own order cannot tell it (a pytree's
mappings come back key-sorted from every ``jit``), so groups are ordered by their labels: ints
as they are, strings in natural order (``Dense_2`` before ``Dense_10``, ``conv1`` before
``dense1``), an output layer's (``logits``, ``head``, ..., as :func:`lrjax.features.
find_last_layer` knows them) last. Labels that do not sort by depth can be given as ints.

Everything here is written by hand: optax's ``multi_transform`` splits a chain by labels but has
no notion of a per-group scalar chosen at run time, nor of group statistics.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Hashable
from typing import Any

import jax
import jax.numpy as jnp

from lrjax._validation import ConfigError
from lrjax.features.spec import OUTPUT_LAYER_NAMES

__all__ = [
    "GROUP_FEATURES",
    "Groups",
    "group_features",
    "group_relative_change",
    "layer_labels",
    "make_groups",
    "per_leaf",
]

GROUP_FEATURES = ("group_lr_vs_start", "group_step_vs_mean", "group_depth", "group_momentum")
"""The per-group features, each the same on every trainee (relative, never a raw magnitude):

* ``group_lr_vs_start``: decades of the group's LR over the run's starting LR (the run-wide
  ``lr_vs_start``, per group);
* ``group_step_vs_mean``: decades of the group's relative weight change since the last action,
  ``||w_g - w_g'|| / ||w_g||``, over the geometric mean of all groups' (0 at the first action
  and with one group): how fast this layer moves next to the others, the quantity layer-wise
  methods (LARS, LAMB) equalise;
* ``group_depth``: the group's position, ``g / (G - 1)`` (0 for the first, 1 for the last, 0
  with one group);
* ``group_momentum``: decades of ``1 - beta_g`` over ``1 - initial_momentum`` (needs
  ``ControllerConfig.momentum_control``).
"""

Labels = Any | Callable[[Any], Any]


def layer_labels(params: Any) -> Any:
    """The default labelling: each leaf's path without its last key (``"params/Dense_0"`` for
    ``params["params"]["Dense_0"]["kernel"]``), a pytree of str with ``params``' structure."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    paths = [tuple(_key(k) for k in kp) for kp, _ in flat]
    names = ["/".join(p[:-1]) if len(p) > 1 else "/".join(p) for p in paths]
    return jax.tree.unflatten(treedef, names)


def _key(k: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _natural(s: str) -> tuple[Any, ...]:
    """``"Dense_10"`` after ``"Dense_2"``: digit runs compare as numbers."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s))


def _depth_key(label: Hashable) -> tuple[Any, ...]:
    """Where a group goes in depth order: output layers (:data:`~lrjax.features.spec.
    OUTPUT_LAYER_NAMES` as the last path part) last, the rest by natural order of the label."""
    text = str(label)
    last = text.rsplit("/", 1)[-1].lower()
    is_output = any(last == n or last.startswith(n + "_") for n in OUTPUT_LAYER_NAMES)
    return (is_output, _natural(text)) if not isinstance(label, int) else (False, (label,))


@dataclasses.dataclass(frozen=True)
class Groups:
    """The static grouping of one params structure.

    Attributes:
      names: the group labels, in depth order.
      index: each leaf's group (an int), in ``jax.tree.leaves(params)`` order.
      treedef: the params' structure.
    """

    names: tuple[Hashable, ...]
    index: tuple[int, ...]
    treedef: Any

    @property
    def size(self) -> int:
        """G, the number of groups."""
        return len(self.names)

    def depth(self) -> jax.Array:
        """``g / (G - 1)`` per group (float32 ``(G,)``; zeros when G = 1)."""
        return jnp.arange(self.size, dtype=jnp.float32) / max(self.size - 1, 1)

    def sq_norms(self, tree: Any) -> jax.Array:
        """Each group's sum of squares of ``tree`` (params-shaped), float32 ``(G,)``."""
        sums = [jnp.zeros((), jnp.float32) for _ in self.names]
        for g, leaf in zip(self.index, jax.tree.leaves(tree), strict=True):
            sums[g] = sums[g] + jnp.sum(jnp.square(jnp.asarray(leaf, jnp.float32)))
        return jnp.stack(sums)


def make_groups(params: Any, labels: Labels | None = None) -> Groups:
    """The :class:`Groups` of ``params`` (arrays or shapes: only the structure is read).

    Args:
      params: the trainee's params (or ``jax.eval_shape`` of them).
      labels: ``None`` for :func:`layer_labels`; a pytree of hashable labels with ``params``'
        structure; or a function ``params -> labels``.

    Returns:
      The groups in depth order (module docstring).
    """
    if labels is None:
        labels = layer_labels(params)
    elif callable(labels):
        labels = labels(params)
    treedef = jax.tree.structure(params)
    try:
        label_leaves = treedef.flatten_up_to(labels)
    except (ValueError, TypeError) as e:
        raise ConfigError(
            f"labels do not match the params' structure ({e}): expected a pytree of labels "
            "with one label per params leaf, as optax.multi_transform takes."
        ) from e
    names = tuple(sorted(set(label_leaves), key=_depth_key))
    first = {label: g for g, label in enumerate(names)}
    return Groups(names, tuple(first[label] for label in label_leaves), treedef)


def per_leaf(groups: Groups, values: jax.Array) -> Any:
    """A params-shaped pytree whose leaf of group g holds ``values[g]`` (a scalar)."""
    return jax.tree.unflatten(groups.treedef, [values[g] for g in groups.index])


def group_relative_change(groups: Groups, params: Any, anchor: Any) -> jax.Array:
    """``||w_g - a_g|| / ||w_g||`` per group (float32 ``(G,)``; 0 for a group of zeros)."""
    diff = jax.tree.map(
        lambda p, a: jnp.asarray(p, jnp.float32) - jnp.asarray(a, jnp.float32), params, anchor
    )
    moved = jnp.sqrt(groups.sq_norms(diff))
    size = jnp.sqrt(groups.sq_norms(params))
    return jnp.where(size > 0, moved / jnp.maximum(size, 1e-30), 0.0)


def group_features(
    names: tuple[str, ...],
    groups: Groups,
    *,
    lr: jax.Array,
    start_lr: jax.Array,
    relative_change: jax.Array,
    first: jax.Array,
    momentum: jax.Array,
    initial_momentum: float,
) -> jax.Array:
    """The per-group features ``names`` (:data:`GROUP_FEATURES`), float32 ``(G, len(names))``.

    Args:
      names: which features, in order.
      groups: the grouping.
      lr: each group's LR before this action, ``(G,)``.
      start_lr: log of the run's starting LR (``LossHistory.start_lr``).
      relative_change: :func:`group_relative_change` since the last action, ``(G,)``.
      first: whether this is the run's first observation (the change is then 0).
      momentum: each group's momentum before this action, ``(G,)``.
      initial_momentum: the momentum a run starts at.
    """
    log10 = jnp.log(10.0)
    columns = []
    for name in names:
        if name == "group_lr_vs_start":
            log_lr = jnp.log(jnp.maximum(jnp.asarray(lr, jnp.float32), 1e-12))
            columns.append((log_lr - start_lr) / log10)
        elif name == "group_step_vs_mean":
            log_change = jnp.log(jnp.maximum(relative_change, 1e-12)) / log10
            centred = log_change - jnp.mean(log_change)
            columns.append(jnp.where(first, 0.0, centred))
        elif name == "group_depth":
            columns.append(groups.depth())
        elif name == "group_momentum":
            gap = jnp.maximum(1.0 - jnp.asarray(momentum, jnp.float32), 1e-12)
            columns.append((jnp.log(gap) - jnp.log(jnp.float32(1.0 - initial_momentum))) / log10)
        else:
            raise ConfigError(
                f"group feature {name!r} is not allowed: expected one of {GROUP_FEATURES}."
            )
    if not columns:
        return jnp.zeros((groups.size, 0), jnp.float32)
    return jnp.stack([jnp.broadcast_to(c, (groups.size,)) for c in columns], axis=-1)
