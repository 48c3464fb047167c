"""Baselines: fixed optimizers over LR grids, step decay, hand-written vSGD and hypergradient
descent, and today's practice from optax; all plain optax transforms."""

from lrjax.baselines.hypergradient import adam_hd, sgd_hd
from lrjax.baselines.registry import (
    OPTIMIZERS,
    PAPER_B_LRS,
    OptimizerSpec,
    get_optimizer,
    select_best,
    stack_configs,
    step_decay_schedule,
)
from lrjax.baselines.vsgd import vsgd

__all__ = [
    "OPTIMIZERS",
    "PAPER_B_LRS",
    "OptimizerSpec",
    "adam_hd",
    "get_optimizer",
    "select_best",
    "sgd_hd",
    "stack_configs",
    "step_decay_schedule",
    "vsgd",
]
