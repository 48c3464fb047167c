"""Baseline sweeps: every configuration of an optimizer's grid on a task over many seeds at
once, the best configuration selected on validation loss and reported on test.

All configurations x seeds of one optimizer are one :func:`lrjax.training.train` call, i.e. one
compiled program; seeds use the same keys across configurations (common random numbers), so
configurations are compared on identical initialisations and data orders. Their tables are
:func:`lrjax.evaluation.tables.sweep_row` and :func:`~lrjax.evaluation.tables.sweep_table`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from lrjax import training
from lrjax._validation import check_positive_int
from lrjax.baselines.registry import OptimizerSpec, select_best, stack_configs
from lrjax.engine import EngineConfig
from lrjax.tasks import Task


@dataclasses.dataclass(frozen=True)
class OptimizerRun:
    """All configurations x seeds of one optimizer.

    Attributes:
      name: optimizer name.
      configs: the hyperparameter configurations searched.
      num_seeds: seeds per configuration.
      result: the :class:`~lrjax.training.TrainResult` of all ``len(configs) * num_seeds``
        trainees, configuration-major (trainee ``c * num_seeds + s``).
      best: index of the configuration with the lowest mean final validation loss.
    """

    name: str
    configs: list[dict[str, float]]
    num_seeds: int
    result: training.TrainResult

    def per_config(self, values: np.ndarray) -> np.ndarray:
        """Reshape a per-trainee array [N, ...] to [configs, seeds, ...]."""
        return values.reshape(len(self.configs), self.num_seeds, *values.shape[1:])

    @property
    def best(self) -> int:
        return select_best(self.per_config(self.result.val_loss[:, -1]))

    @property
    def best_result(self) -> training.TrainResult:
        start = self.best * self.num_seeds
        return self.result.select(slice(start, start + self.num_seeds))

    def summary(self) -> dict[str, Any]:
        """Mean and std over seeds of the best configuration's final metrics."""
        r = self.best_result
        stats = {}
        for metric in ("test_loss", "test_accuracy", "val_loss", "val_accuracy"):
            final = getattr(r, metric)[:, -1]
            stats[metric] = {"mean": float(np.mean(final)), "std": float(np.std(final))}
        return {
            "optimizer": self.name,
            "best_config": self.configs[self.best],
            "num_seeds": self.num_seeds,
            **stats,
        }

    def curves(self) -> dict[str, Any]:
        """The best configuration's mean curves over seeds, JSON-able."""
        best = self.best_result
        return {
            "best_config": self.configs[self.best],
            "train_loss_mean": best.train_loss.mean(axis=0).tolist(),
            "learning_rate_mean": best.learning_rate.mean(axis=0).tolist(),
            "eval_steps": best.eval_steps.tolist(),
            "val_loss_mean": best.val_loss.mean(axis=0).tolist(),
            "test_loss_mean": best.test_loss.mean(axis=0).tolist(),
            "test_accuracy_mean": best.test_accuracy.mean(axis=0).tolist(),
        }


def run_optimizer(
    task: Task,
    spec: OptimizerSpec,
    data: Any,
    key: jax.Array,
    *,
    num_seeds: int,
    num_steps: int,
    lrs: Sequence[float] | None = None,
    eval_every: int | None = None,
    eval_examples: int = 1000,
    engine: EngineConfig | None = None,
    progress: bool | str = False,
) -> OptimizerRun:
    """Train ``task`` with every configuration of ``spec`` (LRs ``lrs`` or its grid) for
    ``num_seeds`` seeds each, as one compiled program."""
    check_positive_int("num_seeds", num_seeds)
    configs = spec.grid(lrs)
    seed_keys = jax.random.split(key, num_seeds)
    keys = jax.numpy.tile(seed_keys, len(configs))
    result = training.train(
        task,
        spec.make_tx(num_steps),
        keys,
        data,
        num_steps,
        hparams=stack_configs(configs, repeat=num_seeds),
        eval_every=eval_every,
        eval_examples=eval_examples,
        eval_params=spec.eval_params,
        learning_rate_fn=spec.learning_rate,
        engine=engine,
        progress=progress,
        progress_group=num_seeds,
    )
    return OptimizerRun(spec.name, configs, num_seeds, result)
