"""Evaluation: controllers and reference schedules run on the same trainee episodes, compared
with confidence intervals.

One job per module, each using only those listed before it:

- :mod:`~lrjax.evaluation.stats`: means, the Student-t 95% interval, paired differences;
- :mod:`~lrjax.evaluation.tables`: every Markdown and CSV table lrjax writes;
- :mod:`~lrjax.evaluation.schedules`: the reference schedules (constant, step decay, cosine
  with warm-up) as the LR of each action, from :mod:`lrjax.baselines.schedules`;
- :mod:`~lrjax.evaluation.episodes`: controllers and LR schedules run for episodes on a
  :class:`~lrjax.env.TraineeEnv`;
- :mod:`~lrjax.evaluation.comparison`: the quick comparison after training (baselines chosen on
  the evaluation episodes themselves);
- :mod:`~lrjax.evaluation.protocol`: the held-out protocol (baselines tuned on tuning seeds,
  every method on held-out seeds);
- :mod:`~lrjax.evaluation.batch`: :func:`evaluate`, the protocol over tasks, with tidy results;
- :mod:`~lrjax.evaluation.transfer`: baselines tuned across other trainees (a family's training
  trainees: transferred; the target: an oracle) and applied unchanged, in a plain optax loop.
"""

from lrjax.evaluation import stats, tables  # noqa: I001 (the order is the layering)
from lrjax.evaluation import schedules
from lrjax.evaluation import episodes
from lrjax.evaluation import comparison
from lrjax.evaluation import protocol
from lrjax.evaluation import batch
from lrjax.evaluation import transfer
from lrjax.evaluation.batch import (
    DEFAULT_BASELINES,
    Evaluation,
    TaskEvaluation,
    evaluate,
    seed_notes,
)
from lrjax.evaluation.comparison import (
    Comparison,
    Schedule,
    compare_with_schedules,
    constant_lr_grid,
)
from lrjax.evaluation.episodes import Episodes, run_controllers, run_episodes, run_schedules
from lrjax.evaluation.protocol import (
    BASELINES,
    Baseline,
    Method,
    Tuned,
    evaluate_methods,
    read_tuning,
    tune_baselines,
)
from lrjax.evaluation.schedules import (
    STEP_DECAY_AT,
    STEP_DECAY_FACTOR,
    constant_lrs,
    cosine_warmup_lrs,
    step_decay_lrs,
)
from lrjax.evaluation.stats import (
    Difference,
    Interval,
    mean_interval,
    paired_difference,
    t_half_width,
)
from lrjax.evaluation.tables import evaluation_table, results_table
from lrjax.evaluation.transfer import Transferred, relative_regret, tune_across

__all__ = [
    "BASELINES",
    "DEFAULT_BASELINES",
    "STEP_DECAY_AT",
    "STEP_DECAY_FACTOR",
    "Baseline",
    "Comparison",
    "Difference",
    "Episodes",
    "Evaluation",
    "Interval",
    "Method",
    "Schedule",
    "TaskEvaluation",
    "Transferred",
    "Tuned",
    "batch",
    "compare_with_schedules",
    "comparison",
    "constant_lr_grid",
    "constant_lrs",
    "cosine_warmup_lrs",
    "episodes",
    "evaluate",
    "evaluate_methods",
    "evaluation_table",
    "mean_interval",
    "paired_difference",
    "protocol",
    "relative_regret",
    "read_tuning",
    "results_table",
    "run_controllers",
    "run_episodes",
    "run_schedules",
    "schedules",
    "seed_notes",
    "stats",
    "step_decay_lrs",
    "t_half_width",
    "tables",
    "transfer",
    "tune_across",
    "tune_baselines",
]
