"""Paper B's experiments as library functions (the ``lrjax paper-b`` commands call them).

* :func:`regression_analysis`, section 4.3: on random 2-D regression problems, the online
  actor-critic (paper B's different minibatch, and the same-minibatch ablation) against SGD at
  every LR of paper B's grid, all from the same start on the same minibatches. It records
  every step's weights (figure 4: trajectories over the loss contours), the gradient
  disagreement ``|| grad f(w; x_i) - grad F(w) ||`` of the minibatch each step trains on, and
  the full training and test losses (figure 5), and measures each method's final test loss
  and oscillation.
* :func:`compare_on_task`, figures 2 and 3: the online actor-critic against SGD, Adam, Adagrad,
  RMSprop (each at its best LR of paper B's grid, selected on validation), vSGD and Daniel et
  al.'s REPS controller, on the same seeds; learning curves and final losses.

Everything per method is one compiled program over problems (or seeds).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrjax import training
from lrjax._validation import check_choice, check_positive_int
from lrjax.algos.actor_critic import ActorCritic, ActorCriticConfig
from lrjax.baselines.registry import PAPER_B_LRS
from lrjax.tasks import Regression2DTask

AC_METHODS = {"actor-critic": False, "actor-critic (same minibatch)": True}
"""The online actor-critic variants of the 2-D analysis: name -> ``same_minibatch``."""


@dataclasses.dataclass(frozen=True)
class Trace:
    """Per-step record of one method on every problem (numpy; leading axis = problem).

    Attributes:
      weights: ``[P, T + 1, 2]`` the weights before each step and after the last.
      lr: ``[P, T]`` the LR applied at each step.
      disagreement: ``[P, T]`` gradient disagreement of the minibatch each step trained on.
      train_loss: ``[P, T + 1]`` full training loss along the way.
      test_loss: ``[P, T + 1]`` test loss along the way.
    """

    weights: np.ndarray
    lr: np.ndarray
    disagreement: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray

    @property
    def final_test_loss(self) -> np.ndarray:
        return self.test_loss[:, -1]

    @property
    def oscillation(self) -> np.ndarray:
        """Mean absolute step-to-step change of the test loss over the second half of the run,
        per problem: how much the model still moves once it is near its optimum."""
        half = self.test_loss.shape[1] // 2
        return np.abs(np.diff(self.test_loss[:, half:], axis=1)).mean(axis=1)


@dataclasses.dataclass(frozen=True)
class RegressionAnalysis:
    """What :func:`regression_analysis` measured.

    Attributes:
      task: the 2-D regression task.
      data: the problems (a stacked :class:`~lrjax.tasks.RegressionData`, leading axis P).
      lrs: SGD's learning rates (paper B's grid).
      sgd: one :class:`Trace` per LR of ``lrs``.
      methods: the actor-critic variants' traces, by name (:data:`AC_METHODS`).
    """

    task: Regression2DTask
    data: Any
    lrs: tuple[float, ...]
    sgd: tuple[Trace, ...]
    methods: dict[str, Trace]

    def problem(self, index: int) -> Any:
        """Problem ``index`` (a :class:`~lrjax.tasks.RegressionData` of numpy arrays)."""
        return jax.tree.map(lambda x: np.asarray(x[index]), self.data)

    @property
    def num_problems(self) -> int:
        return self.sgd[0].test_loss.shape[0]

    @property
    def best_sgd_loss(self) -> np.ndarray:
        """Per problem, the lowest final test loss over SGD's LR grid."""
        return np.min([t.final_test_loss for t in self.sgd], axis=0)

    @property
    def best_sgd_index(self) -> int:
        """The LR of the grid with the lowest mean final test loss over problems."""
        return int(np.argmin([np.mean(t.final_test_loss) for t in self.sgd]))

    def rows(self) -> list[dict[str, Any]]:
        """One row per method: final test loss (mean, std over problems), its ratio to the best
        constant LR of each problem (mean, max) and the oscillation (mean)."""
        best = self.best_sgd_loss
        out = []
        named = [(f"SGD lr={lr:g}", t) for lr, t in zip(self.lrs, self.sgd, strict=True)]
        for name, t in [*self.methods.items(), *named]:
            final = t.final_test_loss
            out.append(
                {
                    "method": name,
                    "final_test_loss_mean": float(np.mean(final)),
                    "final_test_loss_std": float(np.std(final)),
                    "ratio_to_best_sgd_mean": float(np.mean(final / best)),
                    "ratio_to_best_sgd_max": float(np.max(final / best)),
                    "oscillation_mean": float(np.mean(t.oscillation)),
                    "lr_first": float(np.mean(t.lr[:, 0])),
                    "lr_last": float(np.mean(t.lr[:, -1])),
                }
            )
        return out

    def table(self) -> str:
        """A Markdown table of :meth:`rows`."""
        lines = [
            "| method | final test loss | / best constant LR (mean, max) | oscillation | LR first"
            " -> last |",
            "|---|---|---|---|---|",
        ]
        for r in self.rows():
            lines.append(
                f"| {r['method']} | {r['final_test_loss_mean']:.4f} +- "
                f"{r['final_test_loss_std']:.4f} | {r['ratio_to_best_sgd_mean']:.3f}, "
                f"{r['ratio_to_best_sgd_max']:.3f} | {r['oscillation_mean']:.2e} | "
                f"{r['lr_first']:.3g} -> {r['lr_last']:.3g} |"
            )
        return "\n".join(lines)


def _measure(task: Regression2DTask, trainee: training.TraineeState, data):
    """(weights, disagreement of the minibatch the next step trains on, train, test loss)."""
    params = trainee.params
    disagreement = task.gradient_disagreement(params, data, training.minibatch_key(trainee))
    train = task.metrics(params, data, "train")["loss"]
    test = task.metrics(params, data, "test")["loss"]
    return params["kernel"], disagreement, train, test


def _trace(task, step, state, trainee_of, data, num_steps: int):
    """Run ``step`` ``num_steps`` times from ``state``, measuring the trainee before each."""

    def body(s, _):
        w, dis, train, test = _measure(task, trainee_of(s), data)
        s, lr = step(s)
        return s, (w, dis, train, test, lr)

    state, (w, dis, train, test, lr) = jax.lax.scan(body, state, None, length=num_steps)
    w_end, _, train_end, test_end = _measure(task, trainee_of(state), data)
    cat = lambda xs, x: jnp.concatenate([xs, x[None]])
    return cat(w, w_end), lr, dis, cat(train, train_end), cat(test, test_end)


def _to_trace(out) -> Trace:
    w, lr, dis, train, test = (np.asarray(x) for x in out)
    return Trace(weights=w, lr=lr, disagreement=dis, train_loss=train, test_loss=test)


def regression_analysis(
    key: jax.Array,
    *,
    num_problems: int = 8,
    num_steps: int = 1000,
    lrs: Sequence[float] = PAPER_B_LRS,
    task: Regression2DTask | None = None,
    config: ActorCriticConfig | None = None,
    variants: Sequence[str] = tuple(AC_METHODS),
) -> RegressionAnalysis:
    """Paper B section 4.3 on ``num_problems`` random 2-D regression problems.

    Every method starts at the problem's ``w_init`` and draws the same minibatches (the trainee
    key is the same for all), so the methods differ only in their learning rates.

    Args:
      key: draws the problems and the trainees' minibatches.
      num_problems: random problems (figure 4 draws the first three).
      num_steps: steps per run.
      lrs: SGD's constant learning rates (default paper B's grid, 1e-4 .. 1).
      task: the regression task (default ``Regression2DTask()``).
      config: the actor-critic (default ``ActorCriticConfig()``: online, paper B's actor);
        ``same_minibatch`` is set per variant.
      variants: which of :data:`AC_METHODS` to run (default both).
    """
    check_positive_int("num_problems", num_problems)
    check_positive_int("num_steps", num_steps)
    for name in variants:
        check_choice("variants entry", name, AC_METHODS)
    task = task or Regression2DTask()
    config = config or ActorCriticConfig()
    k_problems, k_run = jax.random.split(key)
    problems = [task.load_data(k) for k in jax.random.split(k_problems, num_problems)]
    data = jax.tree.map(lambda *x: jnp.stack(x), *problems)
    run_key = k_run

    def sgd_run(lr, d):
        tx = optax.with_extra_args_support(optax.sgd(lr))
        trainee = training.init_trainee(task, tx, run_key, d)

        def step(s):
            s, (_, _) = training.train_step(task, tx, s, d)
            return s, jnp.asarray(lr, jnp.float32)

        return _trace(task, step, trainee, lambda s: s, d, num_steps)

    sgd_all = jax.jit(jax.vmap(jax.vmap(sgd_run, in_axes=(None, 0)), in_axes=(0, None)))
    out = sgd_all(jnp.asarray(lrs, jnp.float32), data)
    sgd = tuple(_to_trace(jax.tree.map(lambda x, i=i: x[i], out)) for i in range(len(lrs)))

    methods = {}
    for name in variants:
        same = AC_METHODS[name]
        ac = ActorCritic(
            task,
            dataclasses.replace(
                config,
                mode="online",
                num_envs=1,
                same_minibatch=same,
                num_updates=1,
                steps_per_update=num_steps,
            ),
        )

        def ac_run(d, ac=ac):
            def step(s):
                s, out = ac.step(s, d)
                return s, out.lr[0]

            trainee_of = lambda s: jax.tree.map(lambda x: x[0], s.learners.trainee)
            return _trace(task, step, ac.init(run_key, d), trainee_of, d, num_steps)

        methods[name] = _to_trace(jax.jit(jax.vmap(ac_run))(data))
    return RegressionAnalysis(task, data, tuple(float(x) for x in lrs), sgd, methods)


# ----------------------------------------------------------------------------------------------
# Figures 2 and 3: the online actor-critic against the baselines on an image task.

PAPER_B_BASELINES = ("sgd", "adam", "adagrad", "rmsprop", "vsgd", "daniel_reps")
"""Paper B's comparison: four optimizers at their best LR of paper B's grid, vSGD (LR-free)
and Daniel et al.'s REPS-trained controller."""


@dataclasses.dataclass(frozen=True)
class MethodResult:
    """One method of :func:`compare_on_task` on every seed (numpy; leading axis = seed).

    Attributes:
      name: the method.
      setting: how it was configured (e.g. ``"lr=0.1 (best of 1e-4..1 on validation)"``).
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
        final, acc = self.test_loss[:, -1], self.test_accuracy[:, -1]
        return {
            "method": self.name,
            "setting": self.setting,
            "final_test_loss_mean": float(np.mean(final)),
            "final_test_loss_std": float(np.std(final)),
            "final_test_accuracy_mean": float(np.mean(acc)),
            "final_train_loss_mean": float(np.mean(self.train_loss[:, -1])),
            "num_seeds": int(final.shape[0]),
        }

    def curves(self) -> dict[str, Any]:
        return {
            "eval_steps": self.eval_steps.tolist(),
            "train_loss_mean": np.mean(self.train_loss, axis=0).tolist(),
            "test_loss_mean": np.mean(self.test_loss, axis=0).tolist(),
            "learning_rate_mean": np.mean(self.learning_rate, axis=0).tolist(),
        }


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
    loss, and each method's setting, best final test loss first."""
    lines = [
        "| method | setting | final test loss | test accuracy | last train loss |",
        "|---|---|---|---|---|",
    ]
    rows = sorted((r.row() for r in results), key=lambda r: r["final_test_loss_mean"])
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['setting']} | {r['final_test_loss_mean']:.4f} +- "
            f"{r['final_test_loss_std']:.4f} | {r['final_test_accuracy_mean']:.4f} | "
            f"{r['final_train_loss_mean']:.4f} |"
        )
    return "\n".join(lines)


def compare_on_task(
    task,
    data: Any,
    key: jax.Array,
    *,
    num_steps: int,
    num_seeds: int,
    eval_every: int,
    eval_examples: int = 1000,
    baselines: Sequence[str] = PAPER_B_BASELINES,
    lrs: Sequence[float] = PAPER_B_LRS,
    config: ActorCriticConfig | None = None,
    reps=None,
    daniel=None,
    engine=None,
    progress: bool = True,
) -> list[MethodResult]:
    """Paper B's figures 2 and 3 on ``task``: the online actor-critic and ``baselines`` on the
    same ``num_seeds`` seeds (same initial weights and minibatches), ``num_steps`` steps each.

    Each optimizer's LR is the best of ``lrs`` by mean final validation loss over the seeds
    (paper B: "the best performance ... over those learning rates"); vSGD needs none; Daniel et
    al.'s controller is first trained with REPS on other seeds of the same task
    (:mod:`lrjax.baselines.reps`), then run from ``mu``.
    """
    from lrjax.baselines import reps as reps_lib
    from lrjax.baselines.registry import get_optimizer
    from lrjax.baselines.sweep import run_optimizer

    check_positive_int("num_steps", num_steps)
    check_positive_int("num_seeds", num_seeds)
    check_positive_int("eval_every", eval_every)
    if num_steps % eval_every:
        from lrjax._validation import ConfigError

        raise ConfigError(
            f"eval_every={eval_every} is not allowed: it must divide num_steps={num_steps}."
        )
    k_seeds, k_reps = jax.random.split(key)
    seed_keys = jax.random.split(k_seeds, num_seeds)
    say = print if progress else (lambda *a, **k: None)
    results = []

    config = config or ActorCriticConfig()
    ac = ActorCritic(
        task,
        dataclasses.replace(
            config,
            mode="online",
            num_envs=1,
            num_updates=num_steps // eval_every,
            steps_per_update=eval_every,
            eval_examples=eval_examples,
            engine=engine or config.engine,
        ),
    )
    say(f"actor-critic: {num_seeds} seeds x {num_steps} steps (compiling first) ...", flush=True)
    states, metrics = jax.jit(ac.train_seeds)(seed_keys, data)
    final = jax.jit(jax.vmap(ac.final_metrics, in_axes=(0, None)))(states, data)
    steps = np.arange(1, num_steps // eval_every + 1) * eval_every
    test = np.asarray(metrics["test_loss"]).copy()
    acc = np.asarray(metrics["test_accuracy"]).copy()
    test[:, -1] = np.asarray(final["test_loss"])[:, 0]
    acc[:, -1] = np.asarray(final["test_accuracy"])[:, 0]
    results.append(
        MethodResult(
            "actor-critic",
            f"online, from lr={ac.controller_config.initial_lr:g}",
            steps,
            np.asarray(metrics["train_loss"]),
            test,
            acc,
            np.asarray(metrics["lr_mean"]),
        )
    )
    say(comparison_table(results[-1:]).splitlines()[-1], flush=True)

    for name in baselines:
        if name == "daniel_reps":
            daniel = daniel or reps_lib.DanielConfig()
            reps = reps or reps_lib.REPSConfig(episode_steps=min(num_steps, 300))
            say(
                f"daniel_reps: REPS, {reps.iterations} iterations x {reps.samples} episodes of "
                f"{reps.episode_steps} steps ...",
                flush=True,
            )
            learned = reps_lib.train_reps(
                task, data, k_reps, daniel, reps, engine=engine, progress=progress
            )
            thetas = np.repeat(learned.mean[None], num_seeds, axis=0)
            out = reps_lib.run_episodes(
                task,
                daniel,
                thetas,
                seed_keys,
                data,
                num_steps,
                eval_every=eval_every,
                eval_examples=eval_examples,
                engine=engine,
            )
            theta = ", ".join(f"{x:.3g}" for x in learned.mean)
            setting = f"REPS-trained theta=[{theta}], from lr={daniel.initial_lr:g}"
            train, lr = out["train_loss"], out["learning_rate"]
            test, acc = out["test_loss"], out["test_accuracy"]
        else:
            spec = get_optimizer(name)
            grid = None if name == "vsgd" else lrs
            say(f"{name}: {len(spec.grid(grid))} LR(s) x {num_seeds} seeds ...", flush=True)
            run = run_optimizer(
                task,
                spec,
                data,
                k_seeds,
                num_seeds=num_seeds,
                num_steps=num_steps,
                lrs=grid,
                eval_every=eval_every,
                eval_examples=eval_examples,
                engine=engine,
            )
            best = run.best_result
            lr_value = run.configs[run.best]["learning_rate"]
            setting = (
                "LR-free" if name == "vsgd" else f"lr={lr_value:g} (best of the grid on validation)"
            )
            train, lr = best.train_loss, best.learning_rate
            test, acc = best.test_loss, best.test_accuracy
        steps = np.arange(1, num_steps // eval_every + 1) * eval_every
        results.append(
            MethodResult(
                name,
                setting,
                steps,
                _block_means(train, steps),
                np.asarray(test),
                np.asarray(acc),
                _block_means(lr, steps),
            )
        )
        say(comparison_table(results[-1:]).splitlines()[-1], flush=True)
    return results
