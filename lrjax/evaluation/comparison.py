"""The quick comparison after training: a controller against LR schedules on the same episodes.

:func:`compare_with_schedules` runs a controller and, on the same episodes (same trainee
initialisations and minibatch orders), a grid of constant learning rates and paper A's
step-decay baseline (:mod:`lrjax.evaluation.schedules`); each baseline family's best member is
chosen on these episodes' final validation loss. Choosing on the evaluation episodes favours
the baselines, so a learned controller that beats them here beats them fairly. ``lrjax train``
runs it after PPO's training. The held-out protocol, with baselines tuned on separate seeds, is
:mod:`lrjax.evaluation.protocol`; batch evaluation across tasks and seeds is
:mod:`lrjax.evaluation.batch`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from lrjax._validation import ConfigError, check_positive
from lrjax.controller import Controller
from lrjax.env import TraineeEnv
from lrjax.evaluation import tables
from lrjax.evaluation.episodes import Episodes, run_episodes, run_schedules
from lrjax.evaluation.schedules import constant_lrs, step_decay_lrs


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A named baseline schedule and its episodes.

    Attributes:
      family: ``"constant"`` or ``"step_decay"``.
      initial_lr: the schedule's first LR (the LR of a constant).
      lrs: the LR of each action, ``[horizon]``.
      episodes: its evaluation episodes.
    """

    family: str
    initial_lr: float
    lrs: np.ndarray
    episodes: Episodes

    @property
    def label(self) -> str:
        if self.family == "constant":
            return f"constant LR {self.initial_lr:.3g}"
        return f"step decay from {self.initial_lr:.3g}"

    @property
    def mean_final_val_loss(self) -> float:
        return float(np.mean(self.episodes.final_val_loss))


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A learned controller against LR schedules on the same episodes.

    Attributes:
      learned: the controller's episodes.
      schedules: every baseline schedule run.
      num_episodes: episodes per method.
    """

    learned: Episodes
    schedules: tuple[Schedule, ...]
    num_episodes: int

    def best(self, family: str) -> Schedule:
        """The family's schedule with the lowest mean final validation loss."""
        members = [s for s in self.schedules if s.family == family]
        if not members:
            raise ConfigError(f"family={family!r} was not run: expected one of {self.families}.")
        return min(members, key=lambda s: s.mean_final_val_loss)

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.family for s in self.schedules))

    def rows(self) -> list[dict[str, Any]]:
        """One row per method (the learned controller, then each schedule): mean and std of
        the final validation loss, test loss and accuracy, diverged episodes, best flags."""
        bests = {id(self.best(f)) for f in self.families}

        def row(name, e: Episodes, best=False):
            return {
                "method": name,
                "best_of_family": best,
                "final_val_loss_mean": float(np.mean(e.final_val_loss)),
                "final_val_loss_std": float(np.std(e.final_val_loss)),
                "test_loss_mean": float(np.mean(e.test_loss)),
                "test_accuracy_mean": float(np.mean(e.test_accuracy)),
                "diverged": int(e.diverged.sum()),
            }

        rows = [row("learned controller", self.learned)]
        rows += [row(s.label, s.episodes, id(s) in bests) for s in self.schedules]
        return rows

    def table(self) -> str:
        """A Markdown table of :meth:`rows` (:func:`lrjax.evaluation.tables.comparison_table`)."""
        return tables.comparison_table(self.rows())


def constant_lr_grid(env: TraineeEnv, count: int = 5) -> list[float]:
    """``count`` LRs spaced evenly on a log scale over two decades around the controller's
    initial LR (within its bounds): the constant-LR grid of the comparison.

    Args:
      env: the environment; only its controller config (``env.config.controller``:
        ``initial_lr``, ``lr_min``, ``lr_max``) is read. The grid spans
        ``[max(lr_min, initial_lr / 10), min(lr_max, initial_lr * 10)]``.
      count: number of LRs.

    Returns:
      The LRs as Python floats, increasing (duplicates dropped).
    """
    c = env.config.controller
    lo, hi = max(c.lr_min, c.initial_lr / 10), min(c.lr_max, c.initial_lr * 10)
    return sorted({float(x) for x in np.geomspace(lo, hi, count)})


def compare_with_schedules(
    env: TraineeEnv,
    controller: Controller,
    key: jax.Array,
    data: Any,
    num_episodes: int,
    *,
    lrs: Sequence[float] | None = None,
    families: Sequence[str] = ("constant", "step_decay"),
) -> Comparison:
    """Run ``controller`` and the baseline schedules on the same ``num_episodes`` episodes.

    Args:
      env: the environment (the controller's MDP).
      controller: the learned controller (acting on its mean action).
      key: the episodes' key (use one no training or tuning saw).
      data: the task's data.
      num_episodes: episodes per method.
      lrs: the LRs of the constant grid and the step-decay schedules' initial LRs (default:
        :func:`constant_lr_grid`).
      families: which baselines to run, of ``"constant"`` and ``"step_decay"``.

    Returns:
      The :class:`Comparison`.
    """
    for f in families:
        if f not in ("constant", "step_decay"):
            raise ConfigError(
                f"families entry {f!r} is not allowed: expected 'constant' or 'step_decay'."
            )
    lrs = list(constant_lr_grid(env) if lrs is None else lrs)
    for lr in lrs:
        check_positive("lrs entry", lr)
    horizon = env.config.horizon
    shapes = {"constant": constant_lrs, "step_decay": step_decay_lrs}
    specs = [(family, lr, shapes[family](lr, horizon)) for family in families for lr in lrs]
    learned = run_episodes(env, controller, key, data, num_episodes)
    runs = run_schedules(env, np.stack([s[2] for s in specs]), key, data, num_episodes)
    schedules = tuple(
        Schedule(family, float(lr), shape, episodes)
        for (family, lr, shape), episodes in zip(specs, runs, strict=True)
    )
    return Comparison(learned=learned, schedules=schedules, num_episodes=num_episodes)
