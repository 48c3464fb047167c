"""Paper B's experiments as library functions (the ``lrjax paper-b`` commands call them).

* :mod:`lrjax.paper_b.analysis`, section 4.3 (figures 4 and 5): :func:`regression_analysis` on
  random 2-D regression problems.
* :mod:`lrjax.paper_b.comparison`, figures 2 and 3: :func:`compare_on_task`, the online
  actor-critic against tuned baselines on an image task.
"""

from lrjax.paper_b.analysis import (
    AC_METHODS,
    RegressionAnalysis,
    Trace,
    regression_analysis,
)
from lrjax.paper_b.comparison import (
    BASELINES,
    FIXED_START,
    PAPER_B_BASELINES,
    MethodResult,
    compare_on_task,
    comparison_table,
    final_lrs,
    paired_table,
)

__all__ = [
    "AC_METHODS",
    "BASELINES",
    "FIXED_START",
    "PAPER_B_BASELINES",
    "MethodResult",
    "RegressionAnalysis",
    "Trace",
    "compare_on_task",
    "comparison_table",
    "final_lrs",
    "paired_table",
    "regression_analysis",
]
