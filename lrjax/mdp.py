"""The MDP both RL algorithms train a controller in: its shared settings, the reward, the
divergence rule and its penalty, each defined once.

PPO's environment (:mod:`lrjax.env`, paper A's setting: an action every k steps, rewards on a
fixed validation batch) and paper B's actor-critic (:mod:`lrjax.algos.actor_critic`: an action
every step, rewards on the training minibatch) observe different losses, but they score them by
the same rules, written here:

- the reward of a step from loss ``L_prev`` to ``L`` (:func:`reward`), in units of the episode's
  initial loss ``L_0``:

  - ``"val_loss"`` (paper A): ``r_t = -L / L_0``;
  - ``"loss_decrement"`` (paper B, Eq. 5): ``r_t = (L_prev - L) / L_0``;
  - ``"final"`` (paper A's RQ3 ablation): 0 except ``-L / L_0`` at the episode's last step;

- divergence (:func:`diverged`): the loss after the step is not finite or exceeds
  ``divergence_factor * L_0``, or the loss the step trained on was not finite;
- the penalty that replaces a diverged step's reward (:func:`divergence_penalty`): the reward
  had the loss stayed at the divergence limit to the end of the episode: ``-factor * (steps
  left + 1)`` for ``"val_loss"``, ``min(L_prev / L_0, factor) - factor`` for
  ``"loss_decrement"`` (taken from ``L_0`` when ``L_prev`` itself is not finite, a faulty
  minibatch; the return then sums to at most ``1 - factor``) and ``-factor`` for ``"final"``.
  Ending an episode by diverging thus never pays, and the penalty is bounded.

Rewards in units of ``L_0`` are the papers' rewards up to a constant factor per episode: returns
compare across seeds and tasks and stay O(1), so neither algorithm needs a running reward scale.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lrjax import engine as engine_lib
from lrjax import training
from lrjax._validation import ConfigError, check_choice, check_positive
from lrjax.controller import ControllerConfig

REWARDS = ("val_loss", "loss_decrement", "final")
OPTIMIZERS = training.CONTROLLED_OPTIMIZERS


@dataclasses.dataclass(frozen=True)
class MDPConfig:
    """What every lrjax MDP is made of, whichever algorithm learns in it.

    Attributes:
      controller: features, action map, LR bounds, initial LR and k (``steps_per_action``):
        what the trained controller will carry.
      optimizer: the controlled optimizer, ``"sgd"``, ``"momentum"`` (0.9) or ``"adam"``; the
        controller's LR scales its direction (deploy as ``chain(base, scale_by_controller)``).
      divergence_factor: a loss above this times the episode's initial one counts as diverged
        (:func:`diverged`). Default 3 (a classifier that starts at chance, ln(10) = 2.3, has
        diverged at 6.9).
      engine: how episodes run side by side and how the steps are unrolled
        (:mod:`lrjax.engine`; defaults suit the backend).
    """

    controller: ControllerConfig = dataclasses.field(
        default_factory=lambda: ControllerConfig.lrjax()
    )
    optimizer: str = "sgd"
    divergence_factor: float = 3.0
    engine: engine_lib.EngineConfig = engine_lib.EngineConfig()

    def __post_init__(self):
        if not isinstance(self.controller, ControllerConfig):
            raise ConfigError(
                f"controller={self.controller!r} is not allowed: expected a ControllerConfig."
            )
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_positive("divergence_factor", self.divergence_factor)
        if self.divergence_factor <= 1:
            raise ConfigError(
                f"divergence_factor={self.divergence_factor!r} is not allowed: "
                "expected a number > 1."
            )
        if not isinstance(self.engine, engine_lib.EngineConfig):
            raise ConfigError(f"engine={self.engine!r} is not allowed: expected an EngineConfig.")

    @property
    def steps_per_action(self) -> int:
        """k, read from the controller config (its one home)."""
        return self.controller.steps_per_action


def diverged(loss, initial_loss, factor: float, trained_on) -> jax.Array:
    """Whether a step diverged: ``loss`` (after the step) is not finite or above ``factor *
    initial_loss``, or ``trained_on`` (the minibatch loss the step descended) is not finite."""
    return (
        ~jnp.isfinite(loss)
        | (loss > jnp.float32(factor) * initial_loss)
        | ~jnp.isfinite(trained_on)
    )


def reward(kind: str, prev_loss, loss, initial_loss, t, horizon: int | None) -> jax.Array:
    """The reward of a step from ``prev_loss`` to ``loss`` (see the module docstring); ``t`` is
    the number of steps taken in the episode after this one, ``horizon`` its length (used by
    ``"final"`` only)."""
    if kind == "val_loss":
        return -loss / initial_loss
    if kind == "loss_decrement":
        return (prev_loss - loss) / initial_loss
    if kind == "final":
        return jnp.where(t >= horizon, -loss / initial_loss, 0.0)
    raise ConfigError(f"reward={kind!r} is not allowed: expected one of {', '.join(REWARDS)}.")


def divergence_penalty(
    kind: str, prev_loss, initial_loss, factor: float, t, horizon: int | None
) -> jax.Array:
    """The reward that replaces a diverged step's (see the module docstring): as if the loss
    had stayed at the divergence limit to the episode's end."""
    factor = jnp.float32(factor)
    if kind == "val_loss":
        return -factor * (horizon - t + 1).astype(jnp.float32)
    if kind == "loss_decrement":
        level = jnp.where(
            jnp.isfinite(prev_loss), jnp.minimum(prev_loss / initial_loss, factor), 1.0
        )
        return level - factor
    if kind == "final":
        return -factor
    raise ConfigError(f"reward={kind!r} is not allowed: expected one of {', '.join(REWARDS)}.")


def step_outcome(
    kind: str, prev_loss, loss, trained_on, initial_loss, factor: float, t, horizon
) -> tuple[jax.Array, jax.Array]:
    """``(reward, diverged)`` of one step: :func:`reward`, replaced by
    :func:`divergence_penalty` where :func:`diverged`; float32 reward."""
    is_diverged = diverged(loss, initial_loss, factor, trained_on)
    r = jnp.where(
        is_diverged,
        divergence_penalty(kind, prev_loss, initial_loss, factor, t, horizon),
        reward(kind, prev_loss, loss, initial_loss, t, horizon),
    )
    return r.astype(jnp.float32), is_diverged
