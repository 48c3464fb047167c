"""Paper B's figures 2 and 3: the online actor-critic against tuned baselines on an image task.

:func:`compare_on_task` runs the online actor-critic, SGD, Adam, Adagrad and RMSprop (each at
its best LR of paper B's grid, selected on validation), vSGD and Daniel et al.'s REPS
controller on the same seeds (the same initial weights and minibatches for every method), and
returns each method's learning curves and final losses. Each method is one compiled program
over the seeds (and LRs). Methods are independent, so a long comparison hands each result to
``on_result`` as it finishes and takes finished ones back through ``done``: a run that stops
halfway resumes where it stopped (``lrjax paper-b compare --resume``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from lrjax._validation import ConfigError, check_positive_int
from lrjax.algos.actor_critic import ActorCritic, ActorCriticConfig
from lrjax.algos.actor_critic_config import STABILISERS
from lrjax.baselines.registry import PAPER_B_LRS
from lrjax.evaluation import tables

FIXED_START = "fixed_start"
"""The method that runs the actor-critic's own optimizer held at the actor-critic's starting LR:
what the actor-critic must beat on every seed to have learned anything (issue 27's criterion)."""
PAPER_B_BASELINES = ("sgd", "adam", "adagrad", "rmsprop", "vsgd", "daniel_reps")
"""Paper B's comparison: four optimizers at their best LR of paper B's grid, vSGD (LR-free)
and Daniel et al.'s REPS-trained controller."""
BASELINES = (FIXED_START, *PAPER_B_BASELINES)
"""Every method :func:`compare_on_task` runs besides the actor-critic (its default): paper B's
and :data:`FIXED_START`."""

_ARRAYS = ("eval_steps", "train_loss", "test_loss", "test_accuracy", "learning_rate")


@dataclasses.dataclass(frozen=True)
class MethodResult:
    """One method of :func:`compare_on_task` on every seed (numpy; leading axis = seed).

    Attributes:
      name: the method.
      setting: how it was configured (e.g. ``"lr=0.1 (best of the grid on validation)"``).
      eval_steps: ``[E]`` steps after which the curves were evaluated.
      train_loss: ``[S, E]`` mean minibatch training loss over the steps since the previous
        evaluation.
      test_loss: ``[S, E]`` test loss (on ``eval_examples`` test examples, the last column on
        the full test split); ``test_accuracy`` likewise.
      learning_rate: ``[S, E]`` mean applied LR over each block (NaN where not readable).
    """

    name: str
    setting: str
    eval_steps: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray
    test_accuracy: np.ndarray
    learning_rate: np.ndarray

    def row(self) -> dict[str, Any]:
        """The table's row: final test loss (mean, std over seeds), accuracy, training loss."""
        final, acc = self.test_loss[:, -1].astype(float), self.test_accuracy[:, -1].astype(float)
        return {
            "method": self.name,
            "setting": self.setting,
            "final_test_loss_mean": float(np.mean(final)),
            "final_test_loss_std": float(np.std(final)),
            "final_test_accuracy_mean": float(np.mean(acc)),
            "final_train_loss_mean": float(np.mean(self.train_loss[:, -1].astype(float))),
            "num_seeds": int(final.shape[0]),
        }

    def finals(self) -> dict[str, Any]:
        """The final test loss and accuracy per seed (what the paired table compares)."""
        return {
            "method": self.name,
            "test_loss": self.test_loss[:, -1].astype(float),
            "test_accuracy": self.test_accuracy[:, -1].astype(float),
        }

    def curves(self) -> dict[str, Any]:
        """Seed-mean curves (what the figure draws)."""
        return {
            "eval_steps": self.eval_steps.tolist(),
            "train_loss_mean": np.mean(self.train_loss, axis=0).tolist(),
            "test_loss_mean": np.mean(self.test_loss, axis=0).tolist(),
            "learning_rate_mean": np.mean(self.learning_rate, axis=0).tolist(),
        }

    def to_json(self) -> dict[str, Any]:
        """Everything, per seed, as JSON-ready lists (NaN and inf, a diverged run's, as
        ``None``: strict JSON has neither); :meth:`from_json` reads it back (``None`` as NaN)."""
        nan_free = lambda x: np.where(np.isfinite(x), x, None).tolist()
        arrays = {f: nan_free(np.asarray(getattr(self, f), float)) for f in _ARRAYS}
        return {"name": self.name, "setting": self.setting, **arrays}

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> MethodResult:
        arrays = {f: np.asarray(record[f], dtype=float) for f in _ARRAYS}
        arrays["eval_steps"] = arrays["eval_steps"].astype(int)
        return cls(name=record["name"], setting=record["setting"], **arrays)


def _block_means(x: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """``[S, T]`` per-step values -> ``[S, E]`` means over the blocks ending at ``steps``."""
    import warnings

    starts = [0, *steps[:-1]]
    with warnings.catch_warnings():  # an optimizer that reports no LR gives NaN, quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        means = [np.nanmean(x[:, a:b], axis=1) for a, b in zip(starts, steps, strict=True)]
    return np.stack(means, axis=1)


def comparison_table(results: Sequence[MethodResult]) -> str:
    """A Markdown table: final test loss (mean +- std over seeds), accuracy, last training
    loss, and each method's setting, best final test loss first
    (:func:`lrjax.evaluation.tables.paper_b_table`)."""
    return tables.paper_b_table([r.row() for r in results])


def paired_table(results: Sequence[MethodResult], reference: str = "actor-critic") -> str:
    """A Markdown table paired by seed against ``reference`` (every method ran on the same
    seeds): final test loss and accuracy with 95% CIs, ``reference - method`` with its 95% CI,
    and on how many seeds the reference is lower
    (:func:`lrjax.evaluation.tables.paper_b_paired_table`)."""
    return tables.paper_b_paired_table([r.finals() for r in results], reference)


def final_lrs(result: MethodResult, lr_min: float, lr_max: float) -> str:
    """The mean LR ``result`` applied over its last block, per seed, and the seeds where it is
    at a bound of ``[lr_min, lr_max]`` (within 1% of it in log space: an actor locked there)."""
    last = np.asarray(result.learning_rate, float)[:, -1]
    span = np.log(lr_max) - np.log(lr_min)
    with np.errstate(invalid="ignore", divide="ignore"):
        near = lambda bound: np.abs(np.log(last) - np.log(bound)) <= 0.01 * span
        floor, ceiling = np.flatnonzero(near(lr_min)), np.flatnonzero(near(lr_max))
    seeds = ", ".join(f"{x:.3g}" for x in last)
    where = [f"seed {s} at the floor" for s in floor]
    where += [f"seed {s} at the ceiling" for s in ceiling]
    return (
        f"{result.name}'s mean LR over the last block, per seed: {seeds} (range [{lr_min:g}, "
        f"{lr_max:g}]; at a bound: {', '.join(where) if where else 'none'})"
    )


@dataclasses.dataclass(frozen=True)
class _Setup:
    """What every method of one comparison shares."""

    task: Any
    data: Any
    seeds_key: jax.Array  # split in num_seeds: the same weights and minibatches for all
    num_seeds: int
    reps_key: jax.Array  # Daniel et al.'s controller is trained on other seeds
    num_steps: int
    eval_every: int
    eval_examples: int
    engine: Any

    @property
    def seed_keys(self) -> jax.Array:
        """``[S]`` the trainee keys (``lrjax.baselines.sweep.run_optimizer`` splits alike)."""
        return jax.random.split(self.seeds_key, self.num_seeds)

    @property
    def eval_steps(self) -> np.ndarray:
        return np.arange(1, self.num_steps // self.eval_every + 1) * self.eval_every


def _actor_critic(setup: _Setup, config: ActorCriticConfig) -> MethodResult:
    """The online actor-critic, one learner per seed; the last point on the full test split."""
    ac = ActorCritic(
        setup.task,
        dataclasses.replace(
            config,
            mode="online",
            num_envs=1,
            num_updates=setup.num_steps // setup.eval_every,
            steps_per_update=setup.eval_every,
            eval_examples=setup.eval_examples,
            env=dataclasses.replace(config.env, engine=setup.engine or config.env.engine),
        ),
    )
    states, metrics = jax.jit(ac.train_seeds)(setup.seed_keys, setup.data)
    final = jax.jit(jax.vmap(ac.final_metrics, in_axes=(0, None)))(states, setup.data)
    test = np.asarray(metrics["test_loss"]).copy()
    acc = np.asarray(metrics["test_accuracy"]).copy()
    test[:, -1] = np.asarray(final["test_loss"])[:, 0]
    acc[:, -1] = np.asarray(final["test_accuracy"])[:, 0]
    return MethodResult(
        "actor-critic",
        f"online, from lr={ac.controller_config.initial_lr:g}{_changed_settings(config)}",
        setup.eval_steps,
        np.asarray(metrics["train_loss"]),
        test,
        acc,
        np.asarray(metrics["lr_mean"]),
    )


LEARNER_SETTINGS = (
    "gamma",
    "exploration_std",
    "actor_learning_rate",
    "critic_learning_rate",
    *STABILISERS,
)
"""The actor-critic's settings a comparison names in its row when they are not the default."""


def _changed_settings(config: ActorCriticConfig) -> str:
    """``", gamma=0.5, twin_critics=True"``: the settings that differ from the defaults."""
    default = ActorCriticConfig()
    changed = [
        f"{name}={getattr(config, name)}"
        for name in LEARNER_SETTINGS
        if getattr(config, name) != getattr(default, name)
    ]
    mode, k = config.controller.action_mode, config.controller.steps_per_action
    if k != default.controller.steps_per_action:
        changed.insert(0, f"steps_per_action={k}")
    if mode != default.controller.action_mode:
        changed.insert(0, f"action_mode={mode}")
    return "".join(f", {c}" for c in changed)


def _daniel_reps(setup: _Setup, daniel, reps, progress: bool) -> MethodResult:
    """Daniel et al.'s controller: trained with REPS on other seeds, then run from ``mu``."""
    from lrjax.baselines import reps as reps_lib

    learned = reps_lib.train_reps(
        setup.task, setup.data, setup.reps_key, daniel, reps, engine=setup.engine,
        progress=progress,
    )  # fmt: skip
    out = reps_lib.run_episodes(
        setup.task,
        daniel,
        np.repeat(learned.mean[None], setup.num_seeds, axis=0),
        setup.seed_keys,
        setup.data,
        setup.num_steps,
        eval_every=setup.eval_every,
        eval_examples=setup.eval_examples,
        engine=setup.engine,
    )
    theta = ", ".join(f"{x:.3g}" for x in learned.mean)
    steps = setup.eval_steps
    return MethodResult(
        "daniel_reps",
        f"REPS-trained theta=[{theta}], from lr={daniel.initial_lr:g}",
        steps,
        _block_means(out["train_loss"], steps),
        np.asarray(out["test_loss"]),
        np.asarray(out["test_accuracy"]),
        _block_means(out["learning_rate"], steps),
    )


def _optimizer(setup: _Setup, name: str, lrs: Sequence[float]) -> MethodResult:
    """An optimizer at the best of ``lrs`` by mean final validation loss (vSGD: LR-free)."""
    from lrjax.baselines.registry import get_optimizer
    from lrjax.baselines.sweep import run_optimizer

    spec = get_optimizer(name)
    grid = None if name == "vsgd" else lrs
    run = run_optimizer(
        setup.task,
        spec,
        setup.data,
        setup.seeds_key,
        num_seeds=setup.num_seeds,
        num_steps=setup.num_steps,
        lrs=grid,
        eval_every=setup.eval_every,
        eval_examples=setup.eval_examples,
        engine=setup.engine,
    )
    best = run.best_result
    lr_value = run.configs[run.best]["learning_rate"]
    setting = "LR-free" if name == "vsgd" else f"lr={lr_value:g} (best of the grid on validation)"
    steps = setup.eval_steps
    return MethodResult(
        name,
        setting,
        steps,
        _block_means(best.train_loss, steps),
        np.asarray(best.test_loss),
        np.asarray(best.test_accuracy),
        _block_means(best.learning_rate, steps),
    )


def _fixed_start(setup: _Setup, config: ActorCriticConfig) -> MethodResult:
    """The actor-critic's optimizer (``config.env.optimizer``) held at its starting LR."""
    lr = config.env.controller.initial_lr
    held = _optimizer(setup, config.env.optimizer, [lr])
    setting = f"{config.env.optimizer} at lr={lr:g}, the actor-critic's start, held"
    return dataclasses.replace(held, name=FIXED_START, setting=setting)


def _plan(setup: _Setup, name: str, reps, lrs: Sequence[float]) -> str:
    """What running method ``name`` involves, for the progress line."""
    if name == FIXED_START:
        return f"1 LR x {setup.num_seeds} seeds"
    if name == "actor-critic":
        return f"{setup.num_seeds} seeds x {setup.num_steps} steps (compiling first)"
    if name == "daniel_reps":
        return (
            f"REPS, {reps.iterations} iterations x {reps.samples} episodes of "
            f"{reps.episode_steps} steps, then {setup.num_seeds} seeds"
        )
    grid = 1 if name == "vsgd" else len(lrs)
    return f"{grid} LR(s) x {setup.num_seeds} seeds"


def _run_method(setup: _Setup, name: str, config, lrs, daniel, reps, progress) -> MethodResult:
    if name == "actor-critic":
        return _actor_critic(setup, config)
    if name == FIXED_START:
        return _fixed_start(setup, config)
    if name == "daniel_reps":
        return _daniel_reps(setup, daniel, reps, progress)
    return _optimizer(setup, name, lrs)


def compare_on_task(
    task,
    data: Any,
    key: jax.Array,
    *,
    num_steps: int,
    num_seeds: int,
    eval_every: int,
    eval_examples: int = 1000,
    baselines: Sequence[str] = BASELINES,
    lrs: Sequence[float] = PAPER_B_LRS,
    config: ActorCriticConfig | None = None,
    reps=None,
    daniel=None,
    engine=None,
    progress: bool = True,
    done: Mapping[str, MethodResult] | None = None,
    on_result: Callable[[MethodResult], None] | None = None,
) -> list[MethodResult]:
    """Paper B's figures 2 and 3 on ``task``: the online actor-critic and ``baselines`` on the
    same ``num_seeds`` seeds (same initial weights and minibatches), ``num_steps`` steps each.

    Each optimizer's LR is the best of ``lrs`` by mean final validation loss over the seeds
    (paper B: "the best performance ... over those learning rates"); vSGD needs none; Daniel et
    al.'s controller is first trained with REPS on other seeds of the same task
    (:mod:`lrjax.baselines.reps`), then run from ``mu``; :data:`FIXED_START` is the
    actor-critic's optimizer at the actor-critic's starting LR, held (not tuned).

    Args:
      done: results of an earlier run with the same arguments, by method name: taken as they
        are, not run again (resuming a stopped comparison).
      on_result: called with each method's result as soon as it is there (in method order,
        ``done`` ones included), e.g. to save it.

    Returns:
      One :class:`MethodResult` per method: the actor-critic first, then ``baselines``.
    """
    from lrjax.baselines import reps as reps_lib

    check_positive_int("num_steps", num_steps)
    check_positive_int("num_seeds", num_seeds)
    check_positive_int("eval_every", eval_every)
    if num_steps % eval_every:
        raise ConfigError(
            f"eval_every={eval_every} is not allowed: it must divide num_steps={num_steps}."
        )
    if "daniel_reps" in baselines and "daniel_reps" not in (done or {}):
        reps_lib.check_supported(task)  # before the other methods run, not after
    k_seeds, k_reps = jax.random.split(key)
    setup = _Setup(
        task, data, k_seeds, num_seeds, k_reps, num_steps, eval_every, eval_examples, engine,
    )  # fmt: skip
    daniel = daniel or reps_lib.DanielConfig()
    reps = reps or reps_lib.REPSConfig(episode_steps=min(num_steps, 300))
    config = config or ActorCriticConfig()
    say = print if progress else (lambda *a, **k: None)
    done = dict(done or {})
    results = []
    for name in ("actor-critic", *baselines):
        if name in done:
            result = done[name]
            say(f"{name}: taken from the earlier run", flush=True)
        else:
            say(f"{name}: {_plan(setup, name, reps, lrs)} ...", flush=True)
            result = _run_method(setup, name, config, lrs, daniel, reps, progress)
        results.append(result)
        say(comparison_table([result]).splitlines()[-1], flush=True)
        if on_result is not None:
            on_result(result)
    return results
