"""Orbax checkpoints of training states (pytrees that may hold typed PRNG keys).

Orbax stores arrays; typed PRNG keys are stored as their raw key data and re-wrapped on restore
against a template (an abstract or concrete state of the same structure), so a restored state is
bit-identical to the saved one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from lrjax._validation import ConfigError


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def to_saveable(tree: Any) -> Any:
    """PRNG keys -> their uint32 key data; everything else unchanged."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def from_saveable(saved: Any, template: Any) -> Any:
    """Inverse of :func:`to_saveable`, taking key implementations from ``template``."""
    return jax.tree.map(
        lambda s, t: jax.random.wrap_key_data(s, impl=jax.random.key_impl(t)) if _is_key(t) else s,
        saved,
        template,
    )


class Checkpointer:
    """Numbered checkpoints of one state in a directory (keeps the newest ``max_to_keep``)."""

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 3):
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
            item_handlers=ocp.StandardCheckpointHandler(),  # its metadata readable on reopen
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any) -> None:
        self._manager.save(step, args=ocp.args.StandardSave(to_saveable(state)))
        self._manager.wait_until_finished()

    def restore(self, template: Any, step: int | None = None) -> Any:
        """The state saved at ``step`` (default: the latest), shaped like ``template``."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, to_saveable(template))
        self._check_fits(step, abstract)
        saved = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        return from_saveable(saved, template)

    def _check_fits(self, step: int, abstract: Any) -> None:
        """Refuse, naming the arrays that differ, a checkpoint whose arrays are not those of
        the state to restore (a run with other settings wrote it): orbax's own error is a page
        of tree internals."""
        saved = _shapes(self._manager.item_metadata(step).tree)
        wanted = _shapes(abstract)
        differ = [
            f"{name}: {_describe(saved.get(name))} there, {_describe(wanted.get(name))} now"
            for name in sorted(set(saved) | set(wanted))
            if saved.get(name) != wanted.get(name)
        ]
        if differ:
            more = f" (and {len(differ) - 5} more)" if len(differ) > 5 else ""
            raise ConfigError(
                f"the checkpoint in {str(self.directory)!r} was written by a run with other "
                f"settings; its arrays differ: {'; '.join(differ[:5])}{more}. Resume it with "
                "the settings it was made with, or write the new run to another directory."
            )

    def close(self) -> None:
        self._manager.close()


def _shapes(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{"a/b/c": (shape, dtype)}`` of a tree of arrays or array metadata."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path): (
            tuple(leaf.shape),
            str(leaf.dtype),
        )
        for path, leaf in flat
    }


def _describe(entry: tuple[tuple[int, ...], str] | None) -> str:
    return "absent" if entry is None else f"{entry[1]}{list(entry[0])}"
