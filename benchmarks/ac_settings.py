"""``--setting`` for the actor-critic benchmarks: ``name=value,...`` changes of
:class:`lrjax.algos.actor_critic.ActorCriticConfig` (``action_mode=...`` changes its
controller's), or ``defaults``. Shared by ``actor_critic_mnist.py`` and
``actor_critic_settings.py``.
"""

from __future__ import annotations

import dataclasses

from lrjax.algos.actor_critic import ActorCriticConfig


def _value(text: str):
    if text in ("True", "False"):
        return text == "True"
    if text.isdigit():
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def parse_setting(text: str) -> tuple[str, dict]:
    """``"gamma=0.5,twin_critics=True"`` -> ``(text, {"gamma": 0.5, "twin_critics": True})``."""
    if text == "defaults":
        return text, {}
    changes = {}
    for part in text.split(","):
        name, value = part.split("=")
        changes[name] = _value(value)
    return text, changes


def apply_setting(config: ActorCriticConfig, changes: dict) -> ActorCriticConfig:
    """``config`` with ``changes``; ``action_mode`` goes to the environment's controller."""
    changes = dict(changes)
    if "action_mode" in changes:
        controller = config.controller.replace(action_mode=changes.pop("action_mode"))
        changes["env"] = dataclasses.replace(config.env, controller=controller)
    return dataclasses.replace(config, **changes)
