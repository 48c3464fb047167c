"""Pretrained controllers shipped with lrjax, loadable in one call::

  controller = lrjax.pretrained.load("fashion_mlp_ppo")
  probe = controller.config.features.probe  # what its val_loss and predictions hold
  tx = lrjax.controlled_sgd(controller, total_steps=400, predictions_shape=(probe.examples, 10))
  # in the step: **lrjax.features.probe_inputs(probe, logits_on_val_batch, val_labels, loss_fn)

Each controller is a directory here in the saved-controller format
(:func:`lrjax.controller.save_controller`) with a ``MODEL_CARD.md``: the task it was trained on,
the exact training command, and its evaluation against tuned baselines on held-out seeds.
"""

from __future__ import annotations

from pathlib import Path

from lrjax._validation import ConfigError

_HERE = Path(__file__).parent

TRAINING_SEEDS = {
    "fashion_mlp_ppo": 0,
    "mlp_family_adam": 0,
    "mlp_family_momentum": 0,
    "mlp_family_sgd": 0,
}
"""The root seed each shipped controller was trained from (its model card's command), so that
``lrjax evaluate`` can report a held-out seed that coincides with it."""


def available() -> tuple[str, ...]:
    """The names of the shipped controllers."""
    return tuple(sorted(p.name for p in _HERE.iterdir() if (p / "metadata.json").is_file()))


def path(name: str) -> Path:
    """The directory of the shipped controller ``name``."""
    if name not in available():
        raise ConfigError(
            f"pretrained controller {name!r} is not known: expected one of "
            f"{', '.join(available()) or 'none'}."
        )
    return _HERE / name


def model_card(name: str) -> str:
    """The model card of ``name``: task, training command, evaluation table."""
    return (path(name) / "MODEL_CARD.md").read_text()


def load(name: str):
    """The shipped controller ``name`` as a :class:`~lrjax.controller.Controller`, ready for
    ``scale_by_controller(controller, total_steps=...)`` (``mlp_family_momentum``, which sets the
    momentum too: ``scale_by_layer_controller(controller, total_steps=...)``).

    >>> available()
    ('fashion_mlp_ppo', 'mlp_family_adam', 'mlp_family_momentum', 'mlp_family_sgd')
    >>> load("fashion_mlp_ppo").config.features.probe.describe()
    'val_loss = the mean loss on the first 128 examples ... on its first 32'
    """
    from lrjax.controller import load_controller

    return load_controller(path(name))
