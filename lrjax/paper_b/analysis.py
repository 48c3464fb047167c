"""Paper B section 4.3 (figures 4 and 5) on random 2-D regression problems.

:func:`regression_analysis`: the online actor-critic (paper B's different minibatch, and the
same-minibatch ablation) against SGD at every LR of paper B's grid, all from the same start on
the same minibatches. It records every step's weights (figure 4: trajectories over the loss
contours), the gradient disagreement ``|| grad f(w; x_i) - grad F(w) ||`` of the minibatch each
step trains on, and the full training and test losses (figure 5), and measures each method's
final test loss and oscillation. Each method is one compiled program over the problems.
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
from lrjax.evaluation import tables
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
        """A Markdown table of :meth:`rows`
        (:func:`lrjax.evaluation.tables.regression_analysis_table`)."""
        return tables.regression_analysis_table(self.rows())


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

            trainee_of = lambda s: jax.tree.map(lambda x: x[0], s.episodes.trainee)
            return _trace(task, step, ac.init(run_key, d), trainee_of, d, num_steps)

        methods[name] = _to_trace(jax.jit(jax.vmap(ac_run))(data))
    return RegressionAnalysis(task, data, tuple(float(x) for x in lrs), sgd, methods)
