"""The held-out protocol: baselines tuned on tuning seeds, then every method on held-out seeds.

Paper A's claim is that a learned schedule beats tuned ones. Judging that fairly needs three
disjoint sets of episodes (trainee initialisations and minibatch orders):

1. the controller's training episodes (PPO's, from the training seed);
2. *tuning* episodes, on which each baseline family picks its best LR
   (:func:`tune_baselines`), by the final trainee's loss on the whole validation split;
3. *held-out* evaluation episodes, on which every method runs on the same seeds (paired,
   common random numbers) and is reported by its final test loss and accuracy
   (:func:`evaluate_methods`), with the mean and 95% confidence interval of its paired
   differences to each other method (:func:`lrjax.evaluation.stats.paired_difference`).

Tuning and evaluation episodes come from ``fold_in(key, 0)`` and ``fold_in(key, 1)`` of the
evaluation key, and training episodes from a different root key, so the three sets never share
a trainee. The baselines (:data:`BASELINES`): a constant LR, paper A's step decay, cosine with
linear warm-up (SGD; the schedules of :mod:`lrjax.evaluation.schedules`), and Adam at a constant
LR; each grid is extended past its winner until the winner is interior or the grid reaches its
bounds (:func:`tune_baselines`).

The baseline families are not the optimizers of :data:`lrjax.baselines.registry.OPTIMIZERS`,
though some share a name or a schedule: a family runs *inside* the evaluation's
:class:`~lrjax.env.TraineeEnv`, as an LR per action through the environment's controlled
optimizer (:data:`lrjax.training.CONTROLLED_OPTIMIZERS`: ``chain(base, scale(-lr))``, as a
controller's LR is applied), on the very episodes the controllers run on; a registry optimizer
is a standalone optax transform with its own grid and hyperparameters (step-decay interval and
factor, LR-free methods), trained by :func:`lrjax.training.train` for ``lrjax baselines`` and
paper B. Where a family and a registry optimizer apply the same rule (constant-LR SGD and
``sgd``, ``adam`` and ``adam``, ``cosine_warmup`` and ``cosine``), the rule comes from one
definition, :mod:`lrjax.baselines.schedules`; ``step_decay`` here (x 0.1 at half and three
quarters of the episode) is another instance of the step decay than the registry's
``step_decay`` (x ``factor`` every ``interval``, both tuned).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from lrjax._validation import ConfigError, check_choice, check_positive_int
from lrjax.controller import Controller
from lrjax.env import TraineeEnv
from lrjax.evaluation.episodes import Episodes, run_controllers, run_schedules
from lrjax.evaluation.schedules import SHAPES, shape_lrs
from lrjax.training import CONTROLLED_OPTIMIZERS


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A baseline family of the protocol: an LR schedule shape for the environment's controlled
    optimizer, over an LR grid (not a :class:`lrjax.baselines.registry.OptimizerSpec`: see the
    module docstring).

    Attributes:
      name: e.g. ``"constant"``.
      shape: a schedule of :data:`lrjax.evaluation.schedules.SHAPES` (``"constant"``,
        ``"step_decay"`` or ``"cosine_warmup"``).
      optimizer: the environment's controlled optimizer
        (:data:`lrjax.training.CONTROLLED_OPTIMIZERS`): ``"sgd"`` (the controller's) or
        ``"adam"``.
      grid: the initial LR grid (log-spaced; extended past its winner when tuning).
      bounds: the grid is never extended past these.
    """

    name: str
    shape: str
    optimizer: str
    grid: tuple[float, ...]
    bounds: tuple[float, float] = (1e-5, 10.0)

    def __post_init__(self):
        check_choice("shape", self.shape, SHAPES)
        check_choice("optimizer", self.optimizer, CONTROLLED_OPTIMIZERS)

    def schedule(self, lr: float, horizon: int) -> np.ndarray:
        """The LR of each action for initial (peak) LR ``lr``."""
        return shape_lrs(self.shape, lr, horizon)


_SGD_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)
BASELINES: Mapping[str, Baseline] = {
    "constant": Baseline("constant", "constant", "sgd", _SGD_GRID),
    "step_decay": Baseline("step_decay", "step_decay", "sgd", _SGD_GRID),
    "cosine_warmup": Baseline("cosine_warmup", "cosine_warmup", "sgd", _SGD_GRID),
    "adam": Baseline("adam", "constant", "adam", (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)),
    "momentum": Baseline("momentum", "constant", "momentum", (1e-3, 3e-3, 0.01, 0.03, 0.1)),
}
"""The baseline families of the protocol, by name (SGD grids from 0.01 to 1, Adam's from 1e-4
to 1e-2, SGD with momentum 0.9's from 1e-3 to 0.1, all half-decade steps; ``momentum`` is the
baseline of a controller that sets the momentum, not in ``lrjax evaluate``'s default list)."""


@dataclasses.dataclass(frozen=True)
class Tuned:
    """A baseline family's tuning: every LR tried and its mean final validation loss."""

    baseline: Baseline
    lrs: tuple[float, ...]
    validation_loss: tuple[float, ...]  # mean over tuning seeds (inf if any diverged)
    tuned_on: str | None = None  # the task it was tuned on, when not the evaluated one

    @property
    def best_lr(self) -> float:
        return self.lrs[int(np.argmin(self.validation_loss))]

    @property
    def at_edge(self) -> bool:
        """Whether the best LR is the smallest or largest tried: the grid met its bounds or
        ran out of extensions, so a better LR may lie beyond."""
        return len(self.lrs) > 1 and self.best_lr in (self.lrs[0], self.lrs[-1])

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.baseline.name,
            "shape": self.baseline.shape,
            "optimizer": self.baseline.optimizer,
            "best_lr": self.best_lr,
            "at_edge": self.at_edge,
            "lrs": list(self.lrs),
            "validation_loss": [float(v) for v in self.validation_loss],
        }


def _env_for(env: TraineeEnv, optimizer: str) -> TraineeEnv:
    if optimizer == env.config.optimizer:
        return env
    return TraineeEnv(env.task, dataclasses.replace(env.config, optimizer=optimizer))


def _mean_or_inf(x: np.ndarray) -> float:
    return float(np.mean(x)) if np.all(np.isfinite(x)) else math.inf


def read_tuning(data: Mapping[str, Any], names: Sequence[str] | None = None) -> list[Tuned]:
    """The tuned baselines of a ``tuning.json`` (as ``lrjax evaluate`` writes it), labelled with
    the task they were tuned on; only ``names`` if given. A file of another shape is a
    :class:`ConfigError` saying what it lacks.

    Args:
      data: the parsed JSON of the file (e.g. ``json.loads(path.read_text())``): a mapping
        with ``"task"`` (the task's name) and ``"baselines"``, a list of objects with
        ``"name"`` (a key of :data:`BASELINES`), ``"lrs"`` and ``"validation_loss"`` (one
        number or null per LR; null reads as ``inf``).
      names: the baseline names to keep; default None: every baseline of the file.

    Returns:
      One :class:`Tuned` per kept baseline, in the file's order, ``tuned_on`` the file's task
      and its family's grid the LRs tried.
    """
    _check_tuning(data)
    out = []
    for t in data["baselines"]:
        if names is not None and t["name"] not in names:
            continue
        base = dataclasses.replace(BASELINES[t["name"]], grid=tuple(t["lrs"]))
        # Strict JSON stores a diverged grid point's infinite loss as null.
        losses = tuple(np.inf if v is None else v for v in t["validation_loss"])
        out.append(Tuned(base, tuple(t["lrs"]), losses, data["task"]))
    return out


def _check_tuning(data: Any) -> None:
    """Refuse tuning data that is not what ``lrjax evaluate`` writes to ``tuning.json``."""
    expected = (
        "expected a tuning.json as lrjax evaluate writes it: an object with 'task' and "
        "'baselines', each baseline with 'name', 'lrs' and 'validation_loss' (numbers or null, "
        "one per LR)"
    )
    if not isinstance(data, Mapping) or not isinstance(data.get("task"), str):
        raise ConfigError(f"the tuning data has no 'task' name: {expected}.")
    baselines = data.get("baselines")
    if not isinstance(baselines, list):
        raise ConfigError(f"the tuning data's 'baselines' is {baselines!r}: {expected}.")
    for t in baselines:
        name = t.get("name") if isinstance(t, Mapping) else None
        if name not in BASELINES:
            raise ConfigError(
                f"the tuning data's baseline {name!r} is not known: expected one of "
                f"{', '.join(BASELINES)}."
            )
        lrs, losses = t.get("lrs"), t.get("validation_loss")
        if not (_numbers(lrs) and _numbers(losses, null=True) and 0 < len(lrs) == len(losses)):
            raise ConfigError(f"the tuning data's baseline {name!r} is malformed: {expected}.")


def _numbers(x: Any, null: bool = False) -> bool:
    """Whether ``x`` is a list of numbers (and of None, when ``null``)."""
    real = lambda v: isinstance(v, int | float) and not isinstance(v, bool)
    return isinstance(x, list) and all(real(v) or (null and v is None) for v in x)


def tune_baselines(
    env: TraineeEnv,
    baselines: Sequence[Baseline],
    key: jax.Array,
    data: Any,
    num_seeds: int,
    *,
    max_extensions: int = 3,
) -> list[Tuned]:
    """Pick each family's LR on ``num_seeds`` tuning episodes, by the mean loss of the final
    trainee on the whole validation split.

    A winner at an end of its grid is not trusted: the grid grows by one more half-decade step
    on that side (within the family's bounds) and the new LR runs on the same episodes, up to
    ``max_extensions`` times, so that the chosen LR has a worse neighbour on both sides. Then
    the grid is refined around the winner, at a quarter decade on each side, so that each
    baseline is tuned to within a factor of 10^(1/8) = 1.33 of its best LR on these episodes.

    Args:
      env: the environment the tuning episodes run on; a family whose optimizer is not
        ``env.config.optimizer`` runs in a copy of it with that optimizer.
      baselines: the families to tune (e.g. values of :data:`BASELINES`), in order.
      key: the tuning episodes' root key, used as it is for every family and LR (common random
        numbers; :func:`lrjax.evaluation.evaluate` passes ``fold_in(key(seed), 0)``); a typed
        key (:func:`run_schedules`).
      data: the task's data pytree (``task.load_data(...)``).
      num_seeds: tuning episodes per LR, a positive int.
      max_extensions: the most LRs added past a winner at an end of the grid.

    Returns:
      One :class:`Tuned` per family, in the order of ``baselines``: every LR tried, increasing,
      with its mean final validation loss (``inf`` if any episode diverged).
    """
    check_positive_int("num_seeds", num_seeds)
    horizon = env.config.horizon
    out = []
    for b in baselines:
        benv = _env_for(env, b.optimizer)
        results: dict[float, float] = {}

        def run(lrs, b=b, benv=benv, results=results):
            todo = [lr for lr in lrs if lr not in results]
            if todo:
                shapes = np.stack([b.schedule(lr, horizon) for lr in todo])
                for lr, e in zip(
                    todo, run_schedules(benv, shapes, key, data, num_seeds), strict=True
                ):
                    results[lr] = _mean_or_inf(e.validation_loss)

        run(b.grid)
        for _ in range(max_extensions):
            lrs = sorted(results)
            best = min(lrs, key=lambda lr: results[lr])
            step = math.sqrt(10.0)
            if best == lrs[0] and best / step >= b.bounds[0]:
                run([best / step])
            elif best == lrs[-1] and best * step <= b.bounds[1]:
                run([best * step])
            else:
                break
        best = min(results, key=results.get)
        quarter = 10.0**0.25
        run([lr for lr in (best / quarter, best * quarter) if b.bounds[0] <= lr <= b.bounds[1]])
        lrs = tuple(sorted(results))
        out.append(Tuned(b, lrs, tuple(results[lr] for lr in lrs)))
    return out


@dataclasses.dataclass(frozen=True)
class Method:
    """A method evaluated on the held-out seeds: its name and episodes."""

    name: str
    episodes: Episodes


def evaluate_methods(
    env: TraineeEnv,
    controllers: Mapping[str, Controller],
    tuned: Sequence[Tuned],
    key: jax.Array,
    data: Any,
    num_seeds: int,
    *,
    test_every: int | None = None,
) -> list[Method]:
    """Every controller and every tuned baseline (at its best LR) on the same ``num_seeds``
    held-out episodes, the controllers first, in the order given.

    Each controller runs in ``env`` with its own config (its features and action map), and
    controllers of one config, like baselines of one optimizer, run side by side in one
    program. ``test_every``: measure the test split after every so many actions.

    Args:
      env: the environment of the held-out episodes; each controller runs in a copy of it with
        that controller's config (one that sets the momentum, ``momentum_control``, under SGD
        with momentum, the optimizer it controls), each baseline in one with its family's
        optimizer.
      controllers: the controllers by name (the names label the methods).
      tuned: the tuned baselines (:func:`tune_baselines`, :func:`read_tuning`), each run at its
        :attr:`Tuned.best_lr`.
      key: the held-out episodes' root key, the same for every method (paired episodes;
        :func:`lrjax.evaluation.evaluate` passes ``fold_in(key(seed), 1)``); a typed key
        (:func:`run_controllers`).
      data: the task's data pytree (``task.load_data(...)``).
      num_seeds: held-out episodes per method, a positive int.
      test_every: a divisor of the horizon; default None: the test split at the end only.

    Returns:
      One :class:`Method` per controller, in the order of ``controllers``, then one per tuned
      baseline, in the order of ``tuned``, named ``"<family> (lr <best_lr>)"``, the LR to 3
      significant digits and ``", tuned on <task>"`` before the closing parenthesis where
      :attr:`Tuned.tuned_on` is set (as :func:`read_tuning` sets it).
    """
    check_positive_int("num_seeds", num_seeds)
    episodes: dict[str, Episodes] = {}
    groups: dict[Any, list[str]] = {}
    for name, c in controllers.items():
        groups.setdefault(c.config, []).append(name)
    for config, names in groups.items():
        own = {"optimizer": "momentum"} if config.momentum_control else {}
        cenv = TraineeEnv(env.task, dataclasses.replace(env.config, controller=config, **own))
        runs = run_controllers(
            cenv, [controllers[n] for n in names], key, data, num_seeds, test_every=test_every
        )
        episodes.update(zip(names, runs, strict=True))
    methods = [Method(name, episodes[name]) for name in controllers]
    horizon = env.config.horizon
    for optimizer in dict.fromkeys(t.baseline.optimizer for t in tuned):
        mine = [t for t in tuned if t.baseline.optimizer == optimizer]
        shapes = np.stack([t.baseline.schedule(t.best_lr, horizon) for t in mine])
        runs = run_schedules(
            _env_for(env, optimizer), shapes, key, data, num_seeds, test_every=test_every
        )
        episodes.update({_label(t): e for t, e in zip(mine, runs, strict=True)})
    return methods + [Method(_label(t), episodes[_label(t)]) for t in tuned]


def _label(t: Tuned) -> str:
    where = f", tuned on {t.tuned_on}" if t.tuned_on else ""
    return f"{t.baseline.name} (lr {t.best_lr:.3g}{where})"
