"""Baselines: fixed optimizers over LR grids, step decay, hand-written vSGD and hypergradient
descent, and today's practice from optax; all plain optax transforms. The reference LR
schedules they share with the evaluation are in :mod:`lrjax.baselines.schedules`."""

from lrjax.baselines.hypergradient import adam_hd, sgd_hd
from lrjax.baselines.registry import (
    OPTIMIZERS,
    PAPER_B_LRS,
    OptimizerSpec,
    get_optimizer,
    select_best,
    stack_configs,
)
from lrjax.baselines.schedules import (
    WARMUP_FRACTION,
    constant_schedule,
    step_decay_schedule,
    warmup_cosine_schedule,
)
from lrjax.baselines.vsgd import vsgd

__all__ = [
    "OPTIMIZERS",
    "PAPER_B_LRS",
    "WARMUP_FRACTION",
    "OptimizerSpec",
    "adam_hd",
    "constant_schedule",
    "get_optimizer",
    "select_best",
    "sgd_hd",
    "stack_configs",
    "step_decay_schedule",
    "vsgd",
    "warmup_cosine_schedule",
]
