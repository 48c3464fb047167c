"""Batch evaluation: controllers and tuned baselines on several tasks over many seeds.

:func:`evaluate` runs the held-out protocol of :mod:`lrjax.evaluation.protocol` on each task:
the baselines are tuned on ``tune_seeds`` tuning episodes (or taken as tuned before), then every
controller and baseline runs on the same ``seeds`` held-out episodes (paired: the same trainee
initialisations and minibatch orders for every method). Each task's episodes run side by side,
as many at once as the engine batches (vmap on accelerators, a map over devices and items on
the CPU): controllers of one config share one compiled program, and so do the baselines of one
optimizer.

Seeds: from the root ``seed``, tuning episodes come from ``fold_in(key(seed), 0)`` and held-out
episodes from ``fold_in(key(seed), 1)`` (the keys of
:func:`lrjax.evaluation.episodes.run_episodes`), the data's validation split from
``fold_in(key(seed), 2)``. A held-out root seed equal to a controller's training root seed is
reported in :attr:`Evaluation.notes`: the two sets of episodes then come from one root key and
are not independent by construction.

The result, :class:`Evaluation`, holds every method's per-action records (applied LR, minibatch
loss, validation-minibatch loss), test curves and final test loss and accuracy, as arrays
(:meth:`TaskEvaluation.array`) and as tidy tables (:meth:`Evaluation.rows`,
:meth:`Evaluation.summary`, CSV with :meth:`Evaluation.write_csv`), with means, standard
deviations, 95% Student-t confidence intervals and paired differences against a reference
(:mod:`lrjax.evaluation.stats`), and as Markdown (:mod:`lrjax.evaluation.tables`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from lrjax import tasks
from lrjax._validation import ConfigError, check_positive_int
from lrjax.controller import Controller
from lrjax.env import EnvConfig, TraineeEnv
from lrjax.evaluation import protocol, tables
from lrjax.evaluation.protocol import Method, Tuned
from lrjax.evaluation.stats import mean_interval, paired_difference

DEFAULT_BASELINES = ("constant", "step_decay", "cosine_warmup", "adam")
"""The baseline families evaluated by default (:data:`lrjax.evaluation.protocol.BASELINES`)."""

FINAL_METRICS = ("test_loss", "test_accuracy", "validation_loss", "final_val_loss")
CURVE_METRICS = ("lr", "train_loss", "val_loss")


@dataclasses.dataclass(frozen=True)
class TaskEvaluation:
    """One task's evaluation.

    Attributes:
      task: the task's name.
      horizon: actions per episode.
      steps_per_action: trainee steps per action.
      test_every: actions between two points of the test curve.
      methods: every method's held-out episodes, controllers first.
      tuned: the baselines' tuning (where and which LRs were tried).
    """

    task: str
    horizon: int
    steps_per_action: int
    test_every: int
    methods: tuple[Method, ...]
    tuned: tuple[Tuned, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.methods)

    def method(self, name: str) -> Method:
        """The method ``name``: a controller's name, a baseline's label, or a baseline family's
        name (``"cosine_warmup"`` for ``"cosine_warmup (lr 0.3)"``) when one label has it."""
        exact = [m for m in self.methods if m.name == name]
        family = [m for m in self.methods if m.name.startswith(f"{name} (")]
        if exact or len(family) == 1:
            return (exact or family)[0]
        raise ConfigError(f"method={name!r} is not allowed: expected one of {self.names}.")

    def array(self, field: str) -> np.ndarray:
        """A field of :class:`~lrjax.evaluation.episodes.Episodes` for every method:
        ``[methods, seeds, ...]`` (e.g. ``array("lr")``: ``[M, S, horizon]``,
        ``array("test_loss")``: ``[M, S]``)."""
        return np.stack([getattr(m.episodes, field) for m in self.methods])

    @property
    def test_curve_steps(self) -> np.ndarray:
        """The trainee step of each test-curve point."""
        points = self.horizon // self.test_every
        return (np.arange(1, points + 1) * self.test_every * self.steps_per_action).astype(int)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """The result of :func:`evaluate`.

    Attributes:
      tasks: one :class:`TaskEvaluation` per task, in the order asked.
      reference: the method the paired differences are taken against.
      seed: the root seed of tuning and held-out episodes.
      num_seeds: held-out episodes per method and task.
      notes: warnings about the evaluation's independence (seed overlaps).
    """

    tasks: tuple[TaskEvaluation, ...]
    reference: str
    seed: int
    num_seeds: int
    notes: tuple[str, ...] = ()

    def task(self, name: str) -> TaskEvaluation:
        for t in self.tasks:
            if t.task == name:
                return t
        raise ConfigError(
            f"task={name!r} is not allowed: expected one of {[t.task for t in self.tasks]}."
        )

    def rows(self) -> list[dict[str, Any]]:
        """Tidy: one row per task, method and held-out seed, with its final metrics."""
        rows = []
        for t in self.tasks:
            for m in t.methods:
                e = m.episodes
                for s in range(self.num_seeds):
                    row = {"task": t.task, "method": m.name, "seed": s}
                    row |= {f: float(getattr(e, f)[s]) for f in FINAL_METRICS}
                    row["diverged"] = bool(e.diverged[s])
                    rows.append(row)
        return rows

    def curve_rows(self) -> list[dict[str, Any]]:
        """Tidy: one row per task, method, seed and action: the trainee step at the action's
        end, the LR applied, the last minibatch loss, the validation-minibatch loss."""
        rows = []
        for t in self.tasks:
            steps = (np.arange(t.horizon) + 1) * t.steps_per_action
            for m in t.methods:
                e = m.episodes
                for s in range(self.num_seeds):
                    for a in range(t.horizon):
                        row = {"task": t.task, "method": m.name, "seed": s, "step": int(steps[a])}
                        row |= {f: float(getattr(e, f)[s, a]) for f in CURVE_METRICS}
                        rows.append(row)
        return rows

    def summary(self) -> list[dict[str, Any]]:
        """One row per task and method: mean, standard deviation (ddof 1) and 95% CI of the
        final test loss and accuracy over the seeds, diverged episodes, and the paired
        difference ``reference - method`` of the test loss with its 95% CI (NaN where an
        episode of either diverged or for the reference itself)."""
        rows = []
        for t in self.tasks:
            reference = t.method(self.reference)
            ref = reference.episodes.test_loss
            for m in t.methods:
                e = m.episodes
                row = {"task": t.task, "method": m.name, "seeds": self.num_seeds}
                for f in ("test_loss", "test_accuracy"):
                    row |= _stats(f, getattr(e, f))
                row["diverged"] = int(e.diverged.sum())
                d = paired_difference(ref, e.test_loss)
                same = m.name == reference.name
                row["diff_vs_reference"] = math.nan if same else d.mean
                row["diff_ci_low"] = math.nan if same else d.low
                row["diff_ci_high"] = math.nan if same else d.high
                rows.append(row)
        return rows

    def table(self) -> str:
        """Markdown: per task, :func:`lrjax.evaluation.tables.results_table`, then the notes
        (:func:`lrjax.evaluation.tables.evaluation_table`)."""
        return tables.evaluation_table(self)

    def write_csv(self, directory: str | Path) -> list[Path]:
        """``results.csv`` (:meth:`rows`), ``summary.csv`` (:meth:`summary`) and ``curves.csv``
        (:meth:`curve_rows`) in ``directory``; returns their paths."""
        return tables.write_csv(
            directory,
            {
                "results.csv": self.rows(),
                "summary.csv": self.summary(),
                "curves.csv": self.curve_rows(),
            },
        )


def _stats(name: str, x: np.ndarray) -> dict[str, float]:
    """Mean, std and 95% Student-t CI of the values (std and CI NaN if one is not finite)."""
    i = mean_interval(x)
    return {
        f"{name}_mean": i.mean,
        f"{name}_std": i.std,
        f"{name}_ci_low": i.low,
        f"{name}_ci_high": i.high,
    }


def seed_notes(seed: int, train_seeds: Mapping[str, int]) -> list[str]:
    """The notes of :class:`Evaluation`: each controller whose training root seed is the
    held-out root seed.

    Args:
      seed: the held-out root seed (``seed`` of :func:`evaluate`).
      train_seeds: each controller's training root seed, by controller name.

    Returns:
      One note (a sentence) per controller whose training seed equals ``seed``, in the order
      of ``train_seeds``; empty if there is none.
    """
    return [
        f"the held-out root seed {seed} is also the training root seed of controller "
        f"{name!r}: its training and evaluation episodes come from one root key, so they are "
        "not independent by construction; evaluate with another seed."
        for name, s in train_seeds.items()
        if s == seed
    ]


def evaluate(
    task_names: Sequence[str] | str,
    controllers: Mapping[str, Controller] | None = None,
    baselines: Sequence[str] = DEFAULT_BASELINES,
    *,
    seeds: int = 10,
    seed: int = 1000,
    tune_seeds: int = 8,
    tuning: Mapping[str, Sequence[Tuned]] | Sequence[Tuned] = (),
    horizon: int = 40,
    steps_per_action: int | None = None,
    batch_size: int | None = None,
    test_every: int | None = None,
    reference: str | None = None,
    train_seeds: Mapping[str, int] | None = None,
    data: Mapping[str, Any] | None = None,
    load_data: Callable[[tasks.Task, jax.Array], Any] | None = None,
    on_tuned: Callable[[str, list[Tuned]], None] | None = None,
) -> Evaluation:
    """Evaluate controllers and baselines on every task over ``seeds`` held-out episodes.

    Args:
      task_names: registry names (:func:`lrjax.tasks.get_task`: registered tasks and family
        variants); a family's name stands for all its variants
        (:func:`lrjax.tasks.expand_task_names`).
      controllers: name -> controller (saved, pretrained or just trained; any algorithm's).
        Their configs may differ (features, action map) but must share ``steps_per_action``.
      baselines: names of :data:`lrjax.evaluation.protocol.BASELINES` to tune here (when
        ``tune_seeds`` > 0; one name may be given as a string); empty: only the ``tuning`` given.
      seeds: held-out episodes per method and task (>= 2, for the confidence intervals).
      seed: the root seed (see the module docstring); keep it apart from training seeds.
      tune_seeds: tuning episodes per LR; 0 tunes nothing here.
      tuning: baselines tuned before (e.g. read from a ``tuning.json`` with
        :func:`lrjax.evaluation.protocol.read_tuning`): a sequence used on every task, or a
        mapping task -> sequence.
      horizon: actions per episode.
      steps_per_action: trainee steps per action; default the controllers' (10 without any).
      batch_size: the trainee's minibatch size (default: the task's).
      test_every: actions between the test curve's points (default: the end only).
      reference: the method of the paired differences (default: the first controller, else the
        first baseline).
      train_seeds: controller name -> the root seed it was trained from, for the seed notes.
      data: task name -> its data (default: loaded with ``load_data``).
      load_data: ``(task, key) -> data`` (default :meth:`lrjax.tasks.Task.load_data`).
      on_tuned: called with the task's name and its tuned baselines as soon as they are known
        (progress reports, saving ``tuning.json``).

    Returns:
      The :class:`Evaluation`.
    """
    names = tasks.expand_task_names([task_names] if isinstance(task_names, str) else task_names)
    baselines = [baselines] if isinstance(baselines, str) else list(baselines)
    if controllers is not None and not isinstance(controllers, Mapping):
        raise ConfigError(
            f"controllers of type {type(controllers).__name__} is not allowed: expected a "
            "mapping name -> Controller, e.g. {'ppo': controller}."
        )
    controllers = dict(controllers or {})
    k = _check(names, controllers, baselines, seeds, tune_seeds, tuning, steps_per_action)
    _check_reference(reference, controllers, baselines if tune_seeds else (), tuning)
    # Every task's environment (its batch size, horizon) is checked before any task runs.
    envs = {name: _environment(name, controllers, k, horizon, batch_size) for name in names}
    key = jax.random.key(seed)
    results = []
    for name in names:
        env = envs[name]
        if data is not None and name in data:
            task_data = data[name]
        else:
            task_data = (load_data or _load_data)(env.task, jax.random.fold_in(key, 2))
        tuned = list(tuning.get(name, ()) if isinstance(tuning, Mapping) else tuning)
        if tune_seeds and baselines:
            families = [protocol.BASELINES[b] for b in baselines]
            tuned += protocol.tune_baselines(
                env, families, jax.random.fold_in(key, 0), task_data, tune_seeds
            )
        if on_tuned is not None:
            on_tuned(name, tuned)
        methods = protocol.evaluate_methods(
            env, controllers, tuned, jax.random.fold_in(key, 1), task_data, seeds,
            test_every=test_every,
        )  # fmt: skip
        every = horizon if test_every is None else test_every
        results.append(TaskEvaluation(name, horizon, k, every, tuple(methods), tuple(tuned)))
    if reference is None:  # the first controller, else the first baseline's family (its
        # label, e.g. "constant (lr 0.1)", holds the LR tuned on the first task only)
        first = results[0]
        reference = next(iter(controllers), None) or first.tuned[0].baseline.name
    notes = tuple(seed_notes(seed, train_seeds or {}))
    return Evaluation(tuple(results), reference, seed, seeds, notes)


def _environment(name, controllers, steps_per_action, horizon, batch_size) -> TraineeEnv:
    """The task's environment, where the baselines run; its controller config is the first
    controller's unless that one is layered (per group or setting the momentum, which the
    baselines' optimizers cannot follow), and each controller runs in one of its own config
    (:func:`lrjax.evaluation.protocol.evaluate_methods`)."""
    overrides = {} if batch_size is None else {"batch_size": batch_size}
    task = tasks.get_task(name, **overrides)
    first = next(iter(controllers.values()), None)
    plain = first is not None and not first.config.layered
    config = first.config if plain else _baseline_controller(steps_per_action)
    return TraineeEnv(task, EnvConfig(controller=config, horizon=horizon))


def _load_data(task: tasks.Task, key: jax.Array) -> Any:
    return task.load_data(key)


def _baseline_controller(steps_per_action: int):
    """The environment's controller config when only baselines run: it fixes k."""
    from lrjax.controller import ControllerConfig

    return ControllerConfig.lrjax(steps_per_action=steps_per_action)


def _check_reference(reference, controllers, baselines, tuning) -> None:
    if reference is None:
        return
    given = tuning.values() if isinstance(tuning, Mapping) else [tuning]
    families = {t.baseline.name for ts in given for t in ts} | set(baselines)
    if reference not in controllers and reference not in families:
        raise ConfigError(
            f"reference={reference!r} is not allowed: expected a controller's name "
            f"({list(controllers)}) or an evaluated baseline family ({sorted(families)})."
        )


def _check(names, controllers, baselines, seeds, tune_seeds, tuning, steps_per_action) -> int:
    """Validate :func:`evaluate`'s arguments before any work; returns steps per action."""
    if not names:
        raise ConfigError("task_names=[] is not allowed: expected at least one task.")
    for n in names:
        tasks.get_task(n)  # unknown names raise here, before anything runs
    check_positive_int("seeds", seeds)
    if seeds < 2:
        raise ConfigError(f"seeds={seeds} is not allowed: confidence intervals need >= 2.")
    if not isinstance(tune_seeds, int) or isinstance(tune_seeds, bool) or tune_seeds < 0:
        raise ConfigError(f"tune_seeds={tune_seeds!r} is not allowed: expected an int >= 0.")
    for b in baselines:
        if b not in protocol.BASELINES:
            raise ConfigError(
                f"baselines entry {b!r} is not allowed: expected some of "
                f"{', '.join(protocol.BASELINES)}."
            )
    if not controllers and not (baselines and tune_seeds) and not tuning:
        raise ConfigError("nothing to evaluate: give controllers, baselines to tune or tuning.")
    ks = {c.config.steps_per_action for c in controllers.values()}
    if steps_per_action is not None:
        check_positive_int("steps_per_action", steps_per_action)
        ks.add(steps_per_action)
    if len(ks) > 1:
        per = {n: c.config.steps_per_action for n, c in controllers.items()}
        raise ConfigError(
            f"steps_per_action differs between the controllers ({per}): evaluate them "
            "separately, as the baselines' episodes must match each controller's."
        )
    return ks.pop() if ks else 10
