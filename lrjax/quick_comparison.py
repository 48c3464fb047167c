"""The quick comparison after training: a controller against LR schedules on the same episodes.

:func:`compare_with_schedules` runs a controller and, on the same episodes (same trainee
initialisations and minibatch orders), a grid of constant learning rates and paper A's
step-decay baseline; each baseline family's best member is chosen on these episodes' final
validation loss. Choosing on the evaluation episodes favours the baselines, so a learned
controller that beats them here beats them fairly. The held-out protocol, with baselines tuned
on separate seeds, is :mod:`lrjax.protocol`; batch evaluation across tasks and seeds is
:mod:`lrjax.evaluate`.
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
from lrjax.rollouts import Episodes, run_episodes, run_schedules

STEP_DECAY_FACTOR = 0.1
STEP_DECAY_AT = (0.5, 0.75)
"""The step-decay schedule of the comparison: the LR times 0.1 after half the episode and again
after three quarters (the classic step schedule; paper A does not give its own)."""


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
        """A Markdown table of :meth:`rows`."""
        lines = [
            "| method | final val loss | test loss | test accuracy | diverged |",
            "|---|---|---|---|---|",
        ]
        for r in self.rows():
            acc = r["test_accuracy_mean"]
            mark = " (best of its family)" if r["best_of_family"] else ""
            lines.append(
                f"| {r['method']}{mark} | {r['final_val_loss_mean']:.4f} +- "
                f"{r['final_val_loss_std']:.4f} | {r['test_loss_mean']:.4f} | "
                f"{'n/a' if acc != acc else f'{acc:.4f}'} | {r['diverged']} |"
            )
        return "\n".join(lines)


def constant_lr_grid(env: TraineeEnv, count: int = 5) -> list[float]:
    """``count`` LRs spaced evenly on a log scale over two decades around the controller's
    initial LR (within its bounds): the constant-LR grid of the comparison."""
    c = env.config.controller
    lo, hi = max(c.lr_min, c.initial_lr / 10), min(c.lr_max, c.initial_lr * 10)
    return sorted({float(x) for x in np.geomspace(lo, hi, count)})


def step_decay_lrs(initial_lr: float, horizon: int) -> np.ndarray:
    """The comparison's step-decay schedule over ``horizon`` actions (:data:`STEP_DECAY_AT`)."""
    t = np.arange(horizon)
    decays = sum((t >= round(f * horizon)).astype(int) for f in STEP_DECAY_AT)
    return (initial_lr * STEP_DECAY_FACTOR**decays).astype(np.float32)


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
    specs = []
    for family in families:
        for lr in lrs:
            shape = np.full(horizon, lr, np.float32)
            specs.append(
                (family, lr, shape if family == "constant" else step_decay_lrs(lr, horizon))
            )
    learned = run_episodes(env, controller, key, data, num_episodes)
    runs = run_schedules(env, np.stack([s[2] for s in specs]), key, data, num_episodes)
    schedules = tuple(
        Schedule(family, float(lr), shape, episodes)
        for (family, lr, shape), episodes in zip(specs, runs, strict=True)
    )
    return Comparison(learned=learned, schedules=schedules, num_episodes=num_episodes)
