"""Every baseline as an optax transform built from (traced) hyperparameters, with its grid.

A :class:`OptimizerSpec` turns a dict of hyperparameters (traced scalars inside the vmapped
training program) into an ``optax`` transform, and says which grid to search:

- paper B's protocol: ``sgd``, ``adam``, ``adagrad``, ``rmsprop`` (and ``momentum``) over
  LR in {1e-4, 1e-3, 1e-2, 1e-1, 1e0}; the best LR is selected on validation loss;
- paper A's baseline: ``step_decay`` (SGD, LR x factor every interval), tuned over
  initial LR {0.01, 0.03, 0.1, 0.3} x interval {25 %, 50 %} of the run x factor {0.1, 0.5}
  (16 configurations; the paper does not give its grid), and ``step_decay_warmup`` (the same
  after a linear warm-up over the first 10 % of steps);
- hand-written here: ``vsgd`` (Schaul et al. 2013), ``sgd_hd`` and ``adam_hd`` (Baydin et al.
  2018), see :mod:`lrjax.baselines.vsgd` and :mod:`lrjax.baselines.hypergradient`;
- today's practice, from optax: ``cosine`` (SGD, linear warm-up 10 % then cosine decay to 0),
  ``momentum_cosine`` (the same on SGD with momentum 0.9, the baseline of a controller that sets
  the momentum),
  ``reduce_on_plateau`` (SGD with ``optax.contrib.reduce_on_plateau``: factor 0.5, patience 10
  accumulations of 20 steps), and the learning-rate-free ``prodigy``, ``dadapt_adamw``, ``dog``,
  ``mechanic`` (mechanized Adam 1e-3), ``schedule_free_sgd``, ``schedule_free_adamw``.

The schedules (constant, step decay, linear warm-up, cosine) are those of
:mod:`lrjax.baselines.schedules`, which the env-based evaluation uses too, with its
``WARMUP_FRACTION``.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrjax._validation import ConfigError, check_positive, check_positive_int
from lrjax.baselines.hypergradient import adam_hd, sgd_hd
from lrjax.baselines.schedules import (
    constant_schedule,
    linear_warmup,
    step_decay_schedule,
    warmup_cosine_schedule,
    warmup_steps,
)
from lrjax.baselines.vsgd import vsgd
from lrjax.training import state_field

Hparams = dict[str, jax.Array]

PAPER_B_LRS = (1e-4, 1e-3, 1e-2, 1e-1, 1e0)
STEP_DECAY_LRS = (0.01, 0.03, 0.1, 0.3)
MOMENTUM_COSINE_LRS = (0.001, 0.003, 0.01, 0.03)  # momentum 0.9 takes ~10x SGD's steps
STEP_DECAY_INTERVALS = (0.25, 0.5)  # fractions of the run
STEP_DECAY_FACTORS = (0.1, 0.5)


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """A baseline optimizer and its search grid.

    Attributes:
      name: registry name.
      build: ``(hparams, num_steps) -> optax transform``; ``hparams`` values may be traced.
      lr_grid: default learning rates (or LR multipliers for LR-free methods) to search.
      extra_grid: other hyperparameters to search, name -> values (product with ``lr_grid``).
      eval_params: ``(opt_state, params) -> params`` to evaluate (schedule-free), or None.
      learning_rate: ``opt_state -> applied LR``, or None for the state's ``learning_rate``.
      description: one line for tables and ``--help``.
    """

    name: str
    build: Callable[[Hparams, int], optax.GradientTransformation]
    lr_grid: tuple[float, ...]
    extra_grid: dict[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)
    eval_params: Callable[[Any, Any], Any] | None = None
    learning_rate: Callable[[Any], jax.Array] | None = None
    description: str = ""

    def make_tx(self, num_steps: int) -> Callable[[Hparams], optax.GradientTransformation]:
        """``hparams -> transform`` for a run of ``num_steps`` steps (for :func:`train`).

        The returned callable compares equal for equal arguments, so the training engine's
        compiled programs are reused across calls.
        """
        check_positive_int("num_steps", num_steps)
        return _TxBuilder(self.build, num_steps)

    def grid(self, lrs: Sequence[float] | None = None) -> list[dict[str, float]]:
        """All configurations: the product of ``lrs`` (default ``lr_grid``) and ``extra_grid``."""
        lrs = tuple(self.lr_grid if lrs is None else lrs)
        for lr in lrs:
            check_positive("learning_rate", lr)
        names = list(self.extra_grid)
        return [
            {"learning_rate": lr, **dict(zip(names, values, strict=True))}
            for lr, *values in itertools.product(lrs, *(self.extra_grid[n] for n in names))
        ]


@dataclasses.dataclass(frozen=True)
class _TxBuilder:
    """``hparams -> build(hparams, num_steps)``, hashable and equal by value."""

    build: Callable[[Hparams, int], optax.GradientTransformation]
    num_steps: int

    def __call__(self, hp: Hparams) -> optax.GradientTransformation:
        return self.build(hp, self.num_steps)


def stack_configs(configs: Sequence[dict[str, float]], repeat: int = 1) -> Hparams:
    """Configurations -> dict of float32 arrays, each config repeated ``repeat`` times
    (config-major: ``[c0, c0, ..., c1, c1, ...]``).

    Args:
      configs: a non-empty sequence of configurations, hyperparameter name -> value (e.g.
        :meth:`OptimizerSpec.grid`'s); the names are those of ``configs[0]``, which every
        config must have (names only later configs have are dropped).
      repeat: how many consecutive trainees get each config (e.g. the seeds per config).

    Returns:
      Name -> float32 array of shape ``(len(configs) * repeat,)``: the ``hparams`` of
      :func:`lrjax.training.train`.
    """
    return {
        k: jnp.repeat(jnp.asarray([c[k] for c in configs], jnp.float32), repeat) for k in configs[0]
    }


def _inject(opt, **fixed):
    return lambda hp, steps: optax.inject_hyperparams(opt)(
        learning_rate=constant_schedule(hp["learning_rate"]), **fixed
    )


def _step_decay(hp, steps, warmup=False):
    lr = hp["learning_rate"]
    schedule = step_decay_schedule(lr, hp["factor"], interval=hp["interval"] * steps)
    if warmup:
        schedule = linear_warmup(lr, warmup_steps(steps), schedule)
    return optax.inject_hyperparams(optax.sgd)(learning_rate=schedule)


def _cosine(hp, steps, momentum=None):
    schedule = warmup_cosine_schedule(hp["learning_rate"], warmup_steps(steps), steps)
    return optax.inject_hyperparams(optax.sgd)(learning_rate=schedule, momentum=momentum)


PLATEAU_ACCUMULATION = 20


def _plateau(hp, steps):
    return optax.chain(
        optax.inject_hyperparams(optax.sgd)(learning_rate=constant_schedule(hp["learning_rate"])),
        optax.contrib.reduce_on_plateau(
            factor=0.5, patience=10, accumulation_size=PLATEAU_ACCUMULATION
        ),
    )


def _plateau_lr(opt_state):
    inject_state, plateau_state = opt_state
    return inject_state.hyperparams["learning_rate"] * plateau_state.scale


def _state_field(name):
    return lambda opt_state: state_field(opt_state, name)


def _mechanic_scale(opt_state):
    """Mechanic's learned multiplier of the base optimizer's step: ``sum(s)``."""
    found = optax.tree_utils.tree_get_all_with_path(opt_state, "s")
    return jnp.sum(found[0][1]).astype(jnp.float32)


def _schedule_free_eval(opt_state, params):
    return optax.contrib.schedule_free_eval_params(opt_state, params)


OPTIMIZERS: dict[str, OptimizerSpec] = {
    spec.name: spec
    for spec in [
        OptimizerSpec("sgd", _inject(optax.sgd), PAPER_B_LRS, description="SGD (paper B grid)"),
        OptimizerSpec(
            "momentum",
            _inject(optax.sgd, momentum=0.9),
            PAPER_B_LRS,
            description="SGD + momentum 0.9",
        ),
        OptimizerSpec("adam", _inject(optax.adam), PAPER_B_LRS, description="Adam"),
        OptimizerSpec("adagrad", _inject(optax.adagrad), PAPER_B_LRS, description="Adagrad"),
        OptimizerSpec("rmsprop", _inject(optax.rmsprop), PAPER_B_LRS, description="RMSprop"),
        OptimizerSpec(
            "step_decay",
            _step_decay,
            STEP_DECAY_LRS,
            {"interval": STEP_DECAY_INTERVALS, "factor": STEP_DECAY_FACTORS},
            description="SGD, step decay (paper A baseline)",
        ),
        OptimizerSpec(
            "step_decay_warmup",
            lambda hp, s: _step_decay(hp, s, warmup=True),
            STEP_DECAY_LRS,
            {"interval": STEP_DECAY_INTERVALS, "factor": STEP_DECAY_FACTORS},
            description="SGD, 10% linear warm-up then step decay",
        ),
        OptimizerSpec(
            "cosine", _cosine, STEP_DECAY_LRS, description="SGD, 10% warm-up then cosine decay"
        ),
        OptimizerSpec(
            "momentum_cosine",
            lambda hp, s: _cosine(hp, s, momentum=0.9),
            MOMENTUM_COSINE_LRS,
            description="SGD + momentum 0.9, 10% warm-up then cosine decay",
        ),
        OptimizerSpec(
            "reduce_on_plateau",
            _plateau,
            STEP_DECAY_LRS,
            learning_rate=_plateau_lr,
            description="SGD + optax.contrib.reduce_on_plateau",
        ),
        OptimizerSpec(
            "vsgd",
            lambda hp, s: optax.chain(vsgd(), optax.scale(hp["learning_rate"])),
            (1.0,),
            description="vSGD (Schaul et al. 2013), LR-free",
        ),
        OptimizerSpec(
            "sgd_hd",
            lambda hp, s: sgd_hd(hp["learning_rate"]),
            PAPER_B_LRS,
            description="SGD with hypergradient descent (Baydin et al. 2018)",
        ),
        OptimizerSpec(
            "adam_hd",
            lambda hp, s: adam_hd(hp["learning_rate"]),
            PAPER_B_LRS,
            description="Adam with hypergradient descent (Baydin et al. 2018)",
        ),
        OptimizerSpec(
            "prodigy",
            lambda hp, s: optax.contrib.prodigy(hp["learning_rate"]),
            (1.0,),
            learning_rate=_state_field("estim_lr"),
            description="Prodigy (LR-free)",
        ),
        OptimizerSpec(
            "dadapt_adamw",
            lambda hp, s: optax.contrib.dadapt_adamw(hp["learning_rate"]),
            (1.0,),
            learning_rate=_state_field("estim_lr"),
            description="D-Adaptation AdamW (LR-free)",
        ),
        OptimizerSpec(
            "dog",
            lambda hp, s: optax.contrib.dog(hp["learning_rate"]),
            (1.0,),
            description="DoG (LR-free)",
        ),
        OptimizerSpec(
            "mechanic",
            lambda hp, s: optax.contrib.mechanize(optax.adam(hp["learning_rate"])),
            (1e-3,),
            learning_rate=_mechanic_scale,
            description="Mechanic around Adam (LR-free; reported LR = its learned scale sum(s))",
        ),
        OptimizerSpec(
            "schedule_free_sgd",
            lambda hp, s: optax.contrib.schedule_free_sgd(hp["learning_rate"]),
            STEP_DECAY_LRS,
            eval_params=_schedule_free_eval,
            learning_rate=_state_field("max_lr"),
            description="schedule-free SGD",
        ),
        OptimizerSpec(
            "schedule_free_adamw",
            lambda hp, s: optax.contrib.schedule_free_adamw(hp["learning_rate"]),
            (1e-4, 1e-3, 1e-2),
            eval_params=_schedule_free_eval,
            learning_rate=_state_field("max_lr"),
            description="schedule-free AdamW",
        ),
    ]
}


def get_optimizer(name: str) -> OptimizerSpec:
    """The baseline ``name``; an unknown name raises and lists the known ones.

    Args:
      name: a key of :data:`OPTIMIZERS`.

    Returns:
      Its :class:`OptimizerSpec`: ``build(hparams, num_steps)`` makes the optax transform,
      ``lr_grid`` is the grid it is tuned over.

    Example:

    >>> import jax.numpy as jnp
    >>> spec = get_optimizer("cosine")
    >>> spec.description, spec.lr_grid
    ('SGD, 10% warm-up then cosine decay', (0.01, 0.03, 0.1, 0.3))
    >>> tx = spec.build({"learning_rate": jnp.float32(0.1)}, 1000)  # an optax transform
    """
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ConfigError(
            f"optimizer={name!r} is not known: expected one of {', '.join(OPTIMIZERS)}."
        )
    return OPTIMIZERS[name]


def select_best(val_loss: np.ndarray) -> int:
    """Index of the configuration with the lowest mean final validation loss over seeds
    (``val_loss``: [configs, seeds]; non-finite counts as +inf)."""
    scores = np.where(np.isfinite(val_loss), val_loss, np.inf).mean(axis=1)
    return int(np.argmin(scores))
