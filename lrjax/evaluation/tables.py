"""Every Markdown and CSV table lrjax writes, from the rows its results give.

Each writer takes plain rows (dicts) or results and returns the text (or writes the files), so
the numbers' formatting lives here and nowhere else:

- :func:`comparison_table`: the quick comparison after training
  (:class:`lrjax.evaluation.comparison.Comparison`);
- :func:`results_table` (one task) and :func:`evaluation_table` (every task, with the notes):
  the held-out protocol's methods with 95% intervals and paired differences
  (:mod:`lrjax.evaluation.protocol`, :class:`lrjax.evaluation.batch.Evaluation`);
- :func:`write_csv`: tidy rows as CSV files (:meth:`lrjax.evaluation.batch.Evaluation.write_csv`);
- :func:`sweep_row` and :func:`sweep_table`: ``lrjax baselines`` sweeps
  (:meth:`lrjax.baselines.sweep.OptimizerRun.summary`);
- :func:`paper_b_table`, :func:`paper_b_paired_table` and :func:`regression_analysis_table`:
  paper B's comparison (as paper B reports it, and paired against the actor-critic) and its 2-D
  analysis (:mod:`lrjax.paper_b`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lrjax._validation import ConfigError
from lrjax.evaluation.stats import mean_interval, paired_difference


def _number(x: float) -> str:
    """``x`` to 4 decimals, ``n/a`` for NaN (e.g. a regression's accuracy)."""
    return "n/a" if x != x else f"{x:.4f}"


def comparison_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The quick comparison's rows (:meth:`lrjax.evaluation.comparison.Comparison.rows`): final
    validation loss (mean +- std), test loss and accuracy, diverged episodes, the best of each
    family marked."""
    lines = [
        "| method | final val loss | test loss | test accuracy | diverged |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        mark = " (best of its family)" if r["best_of_family"] else ""
        lines.append(
            f"| {r['method']}{mark} | {r['final_val_loss_mean']:.4f} +- "
            f"{r['final_val_loss_std']:.4f} | {r['test_loss_mean']:.4f} | "
            f"{_number(r['test_accuracy_mean'])} | {r['diverged']} |"
        )
    return "\n".join(lines)


def mean_ci_cell(x: np.ndarray) -> str:
    """``mean +- half-width`` of the 95% interval over the seeds; the diverged episodes where
    there are some (an infinite loss, a NaN accuracy), ``n/a`` where every value is NaN."""
    x = np.asarray(x, np.float64)
    if np.all(np.isnan(x)):
        return "n/a"  # e.g. the accuracy of a regression
    if not np.all(np.isfinite(x)):  # diverged episodes: inf loss, NaN accuracy
        bad = int(np.sum(~np.isfinite(x)))
        if np.any(np.isposinf(x)):
            return f"inf ({bad} of {x.size} diverged)"
        return f"{np.nanmean(x):.4f} over {x.size - bad} of {x.size}"
    i = mean_interval(x)
    return f"{i.mean:.4f} +- {i.half_width:.4f}"


def results_table(methods: Sequence[Any], reference: str) -> str:
    """Markdown: each method's (:class:`lrjax.evaluation.protocol.Method`) final test loss and
    accuracy (mean +- 95% CI half-width over the seeds) and the paired test-loss difference
    ``reference - method`` (negative: the reference is better) with its 95% CI.

    Args:
      methods: the methods, in the table's row order: objects with a ``name`` and
        ``episodes`` (an :class:`lrjax.evaluation.episodes.Episodes`; ``test_loss``,
        ``test_accuracy`` and ``diverged`` are read), all on the same paired seeds (at least
        two, for the differences).
      reference: the ``name`` of the method the others are compared with; it must be one of
        ``methods``.

    Returns:
      The Markdown table, one row per method.
    """
    names = [m.name for m in methods]
    if reference not in names:
        raise ConfigError(
            f"reference={reference!r} is not allowed: expected one of the methods' names {names}."
        )
    ref = methods[names.index(reference)]
    lines = [
        f"| method | test loss | test accuracy | diverged | {reference} - method: test loss "
        "[95% CI] |",
        "|---|---|---|---|---|",
    ]
    for m in methods:
        e = m.episodes
        loss = mean_ci_cell(e.test_loss)
        acc = mean_ci_cell(e.test_accuracy)
        if m.name == reference:
            diff = "reference"
        else:
            d = paired_difference(ref.episodes.test_loss, e.test_loss)
            if not math.isfinite(d.low):
                lines.append(
                    f"| {m.name} | {loss} | {acc} | {int(e.diverged.sum())} | n/a (a diverged "
                    "episode) |"
                )
                continue
            verdict = (
                (f" ({reference} better)" if d.high < 0 else f" ({reference} worse)")
                if d.excludes_zero
                else " (not significant)"
            )
            diff = f"{d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}]{verdict}"
        lines.append(f"| {m.name} | {loss} | {acc} | {int(e.diverged.sum())} | {diff} |")
    return "\n".join(lines)


def evaluation_table(evaluation: Any) -> str:
    """Markdown of an :class:`lrjax.evaluation.batch.Evaluation`: per task a heading and its
    :func:`results_table`, then the notes."""
    parts = []
    for t in evaluation.tasks:
        head = (
            f"### {t.task}: {t.horizon} actions x {t.steps_per_action} steps, "
            f"{evaluation.num_seeds} held-out seeds (root seed {evaluation.seed})"
        )
        ref = t.method(evaluation.reference).name
        parts.append(f"{head}\n\n{results_table(list(t.methods), ref)}")
    parts += [f"Note: {n}" for n in evaluation.notes]
    return "\n\n".join(parts)


def write_csv(
    directory: str | Path, tables: Mapping[str, Sequence[Mapping[str, Any]]]
) -> list[Path]:
    """Each ``name -> rows`` of ``tables`` as the CSV file ``directory/name`` (columns: the first
    row's keys); returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in tables.items():
        path = directory / name
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        written.append(path)
    return written


def _sweep_stat(stat: Mapping[str, float]) -> str:
    """``mean +- std``, or ``n/a`` for a metric the task does not have (regression accuracy)."""
    if stat["mean"] != stat["mean"]:  # NaN
        return "n/a"
    return f"{stat['mean']:.4f} +- {stat['std']:.4f}"


def _sweep_config(summary: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in summary["best_config"].items())


def sweep_row(summary: Mapping[str, Any]) -> str:
    """One line for an :meth:`lrjax.baselines.sweep.OptimizerRun.summary` (with ``seconds``):
    test loss and accuracy of the best configuration, the configuration and the time taken."""
    return (
        f"{summary['optimizer']:>20s}  test loss {_sweep_stat(summary['test_loss'])}  "
        f"acc {_sweep_stat(summary['test_accuracy'])}  [{_sweep_config(summary)}]  "
        f"{summary['seconds']:.0f} s"
    )


def sweep_table(summaries: Sequence[Mapping[str, Any]]) -> str:
    """Markdown of sweep summaries: optimizer, best config, test loss and accuracy (mean +-
    std)."""
    width = max(40, *(len(_sweep_config(s)) for s in summaries))
    header = (
        f"| {'optimizer':20s} | {'best config':{width}s} | {'test loss':17s} | "
        f"{'test accuracy':17s} |"
    )
    lines = [header, "|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|"]
    for s in summaries:
        lines.append(
            f"| {s['optimizer']:20s} | {_sweep_config(s):{width}s} | "
            f"{_sweep_stat(s['test_loss']):17s} | {_sweep_stat(s['test_accuracy']):17s} |"
        )
    return "\n".join(lines)


def paper_b_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Paper B's comparison (:meth:`lrjax.paper_b.MethodResult.row`): final test loss (mean +-
    std over seeds), accuracy, last training loss and each method's setting, best final test
    loss first."""
    lines = [
        "| method | setting | final test loss | test accuracy | last train loss |",
        "|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: r["final_test_loss_mean"]):
        lines.append(
            f"| {r['method']} | {r['setting']} | {r['final_test_loss_mean']:.4f} +- "
            f"{r['final_test_loss_std']:.4f} | {r['final_test_accuracy_mean']:.4f} | "
            f"{r['final_train_loss_mean']:.4f} |"
        )
    return "\n".join(lines)


def paper_b_paired_table(methods: Sequence[Mapping[str, Any]], reference: str) -> str:
    """Paper B's comparison paired by seed (every method ran on the same seeds): each method's
    final test loss and accuracy (mean +- 95% CI half-width over the seeds), the paired
    difference ``reference - method`` of the final test loss with its 95% CI (negative: the
    reference is better), and on how many seeds the reference's loss is lower.

    Args:
      methods: rows with ``method`` and the per-seed ``test_loss`` and ``test_accuracy``
        (sequences of one length; a diverged seed's loss is inf or NaN), in the table's order.
      reference: the ``method`` the others are compared with; it must be one of them.

    Returns:
      The Markdown table, one row per method.
    """
    names = [m["method"] for m in methods]
    if reference not in names:
        raise ConfigError(
            f"reference={reference!r} is not allowed: expected one of the methods {names}."
        )
    ref = np.asarray(methods[names.index(reference)]["test_loss"], np.float64)
    lines = [
        f"| method | final test loss [95% CI] | test accuracy [95% CI] | {reference} - method: "
        f"test loss [95% CI] | seeds where {reference} is lower |",
        "|---|---|---|---|---|",
    ]
    for m in methods:
        loss = np.asarray(m["test_loss"], np.float64)
        cells = [m["method"], mean_ci_cell(loss), mean_ci_cell(m["test_accuracy"])]
        if m["method"] == reference:
            cells += ["reference", ""]
        else:
            d = paired_difference(ref, loss) if loss.size > 1 else None
            cells.append(
                f"{d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}]"
                if d is not None and math.isfinite(d.low) and math.isfinite(d.high)
                else "n/a (one seed, or a diverged one)"
            )
            lower = np.where(np.isfinite(ref), ref, np.inf) < np.where(
                np.isfinite(loss), loss, np.inf
            )
            cells.append(f"{int(lower.sum())} of {loss.size}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def regression_analysis_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Paper B's 2-D analysis (:meth:`lrjax.paper_b.RegressionAnalysis.rows`): final test loss,
    its ratio to the best constant LR, the oscillation and the LR's first and last values."""
    lines = [
        "| method | final test loss | / best constant LR (mean, max) | oscillation | LR first"
        " -> last |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['final_test_loss_mean']:.4f} +- "
            f"{r['final_test_loss_std']:.4f} | {r['ratio_to_best_sgd_mean']:.3f}, "
            f"{r['ratio_to_best_sgd_max']:.3f} | {r['oscillation_mean']:.2e} | "
            f"{r['lr_first']:.3g} -> {r['lr_last']:.3g} |"
        )
    return "\n".join(lines)
