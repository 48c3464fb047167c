"""Every figure lrjax draws, as library functions that write a PNG and return its path.

Each axis is labelled with its quantity (and unit where there is one), update counts get integer
ticks, and each method has one legend entry. matplotlib is imported when a function is called,
with the non-interactive Agg backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

_DPI = 100


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    _pyplot().close(fig)
    return path


def plot_comparison(comparison, path, *, title: str = "", steps_per_action: int = 1) -> Path:
    """A learned controller against LR schedules (:class:`lrjax.evaluation.Comparison`).

    Left: the learned LR schedule of each evaluation episode, the constant-LR grid (faint) and
    the best step-decay schedule. Right: the validation loss over the episode, mean over the
    evaluation episodes, for the learned controller, every constant LR (faint; the best one
    bold) and the best step-decay schedule.
    """
    plt = _pyplot()
    fig, (ax_lr, ax_loss) = plt.subplots(1, 2, figsize=(12, 4.2))
    horizon = comparison.learned.lr.shape[1]
    steps = (np.arange(horizon) + 1) * steps_per_action
    best = {f: comparison.best(f) for f in comparison.families}
    for i, lrs in enumerate(comparison.learned.lr):
        ax_lr.plot(
            steps, lrs, color="C0", alpha=0.7, label="learned controller" if i == 0 else None
        )
    ax_loss.plot(
        steps,
        np.nanmean(comparison.learned.val_loss, axis=0),
        color="C0",
        lw=2.2,
        label="learned controller",
    )
    others_labelled = False
    for s in (s for s in comparison.schedules if s.family == "constant"):
        is_best = s is best["constant"]
        if is_best:
            label = f"{s.label} (best constant)"
        else:
            label = None if others_labelled else "other constant LRs"
            others_labelled = True
        style = dict(color="C1", lw=2.0 if is_best else 0.8, alpha=1.0 if is_best else 0.35)
        ax_lr.plot(steps, s.lrs, ls="--", label=label, **style)
        ax_loss.plot(steps, np.nanmean(s.episodes.val_loss, axis=0), label=label, **style)
    if "step_decay" in best:
        s = best["step_decay"]
        label = f"{s.label} (best step decay)"
        ax_lr.plot(steps, s.lrs, color="C2", lw=2.0, ls="-.", label=label)
        ax_loss.plot(
            steps, np.nanmean(s.episodes.val_loss, axis=0), color="C2", lw=2.0, label=label
        )
    ax_lr.set(
        xlabel="trainee step",
        ylabel="learning rate",
        yscale="log",
        title=f"{title}: LR schedules ({comparison.num_episodes} evaluation episodes)",
    )
    ax_loss.set(
        xlabel="trainee step",
        ylabel="validation loss",
        yscale="log",
        title="validation loss, mean over evaluation episodes",
    )
    ax_lr.legend(fontsize=7)
    ax_loss.legend(fontsize=7)
    return _save(fig, path)


def _metric_getter(history: Sequence[dict[str, Any]]):
    """``get(name)``: the metric per row of ``history`` as floats (NaN where missing)."""
    return lambda key: np.array(
        [np.nan if h.get(key) is None else h[key] for h in history], dtype=float
    )


def _plot_lr_band(ax, updates, get) -> None:
    """The applied LR per update: its min-to-max band and its mean, on a log axis."""
    ax.fill_between(
        updates, get("lr_min"), get("lr_max"), alpha=0.3, color="C2", label="applied LR, min to max"
    )
    ax.plot(updates, get("lr_mean"), color="C2", label="applied LR, mean")
    ax.set(ylabel="learning rate", yscale="log")


def _label_update_axes(axes, names, title: str, xlabel: str) -> None:
    """Titles, an integer update axis and a legend (where something is labelled) per panel."""
    from matplotlib.ticker import MaxNLocator

    for ax, name in zip(axes.flat, names, strict=True):
        ax.set(xlabel=xlabel, title=f"{title}: {name}" if title else name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)


def plot_training(history: Sequence[dict[str, Any]], path, *, title: str = "") -> Path:
    """An RL run's learning curves from its metrics rows, per update. Top: mean episode return,
    final validation loss of the episodes that ended, and the range of LRs the controller
    applied. Bottom, the diagnostics that say whether RL is learning: approx_kl (the policy
    moved), the critic's explained variance (it fitted the returns) and the policy's entropy."""
    plt = _pyplot()
    get = _metric_getter(history)
    updates = get("update")
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    top, bottom = axes
    top[0].plot(updates, get("episode_return"), marker="o", ms=3, label="mean episode return")
    top[0].set(ylabel="episode return")
    top[1].plot(
        updates, get("final_val_loss"), marker="o", ms=3, color="C1", label="final validation loss"
    )
    top[1].set(ylabel="validation loss")
    _plot_lr_band(top[2], updates, get)
    bottom[0].plot(updates, get("approx_kl"), marker="o", ms=3, color="C3", label="approx_kl")
    bottom[0].set(ylabel="approx KL(old || new)", yscale="log")
    bottom[1].plot(updates, get("explained_variance"), marker="o", ms=3, color="C4", label="critic")
    bottom[1].set(ylabel="explained variance", ylim=(-1.05, 1.05))
    bottom[2].plot(updates, get("entropy"), marker="o", ms=3, color="C5", label="policy")
    bottom[2].set(ylabel="entropy (nats)")
    names = (
        "episode return",
        "final validation loss",
        "learning rate",
        "approx_kl",
        "explained variance",
        "entropy",
    )
    _label_update_axes(axes, names, title, "RL update")
    return _save(fig, path)


def plot_actor_critic_training(history: Sequence[dict[str, Any]], path, *, title: str = "") -> Path:
    """An actor-critic run's curves per update (:mod:`lrjax.algos.actor_critic`). Top: the
    minibatch training loss (mean over the update's steps; in meta mode also at the episodes'
    ends), the test loss of the model being trained (online mode) and the range of LRs the actor
    applied. Bottom, whether the RL is learning: the critic's mean squared TD error, its mean
    Q(s_t, a_t) against the mean reward, and the episodes that ended and diverged."""
    plt = _pyplot()
    get = _metric_getter(history)
    updates = get("update")
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    top, bottom = axes
    top[0].plot(updates, get("train_loss"), marker="o", ms=3, label="mean minibatch loss")
    if np.isfinite(get("final_train_loss")).any():
        top[0].plot(updates, get("final_train_loss"), marker="s", ms=3, label="at episode ends")
    top[0].set(ylabel="training loss", yscale="log")
    if np.isfinite(get("test_loss")).any():
        top[1].plot(updates, get("test_loss"), marker="o", ms=3, color="C1", label="test loss")
    else:
        top[1].text(0.5, 0.5, "meta mode: no single model", ha="center", transform=top[1].transAxes)
    top[1].set(ylabel="test loss")
    _plot_lr_band(top[2], updates, get)
    bottom[0].plot(updates, get("td_error_sq"), marker="o", ms=3, color="C3", label="TD error^2")
    bottom[0].set(ylabel="mean squared TD error", yscale="log")
    bottom[1].plot(updates, get("q_mean"), marker="o", ms=3, color="C4", label="Q(s_t, a_t)")
    bottom[1].plot(updates, get("mean_reward"), marker="o", ms=3, color="C5", label="reward")
    bottom[1].set(ylabel="value (units of L_0)")
    bottom[2].plot(updates, get("episodes"), marker="o", ms=3, color="C6", label="episodes ended")
    bottom[2].plot(updates, get("diverged"), marker="x", ms=4, color="C3", label="diverged")
    bottom[2].set(ylabel="episodes per update")
    names = ("training loss", "test loss", "learning rate", "critic", "Q and reward", "episodes")
    _label_update_axes(axes, names, title, "update")
    return _save(fig, path)


def _trajectory_methods(analysis) -> list[tuple[str, Any]]:
    """The methods figures 4 and 5 draw: SGD at its best LR of the grid and at the grid's
    largest LR, and every actor-critic variant."""
    best = analysis.best_sgd_index
    picks = [(f"SGD lr={analysis.lrs[best]:g} (best)", analysis.sgd[best])]
    if best != len(analysis.lrs) - 1:
        picks.append((f"SGD lr={analysis.lrs[-1]:g}", analysis.sgd[-1]))
    return picks + list(analysis.methods.items())


def plot_trajectories(analysis, path, *, num_problems: int = 3) -> Path:
    """Paper B's figure 4: each method's weights over the test-loss contours of the first
    ``num_problems`` problems of a :class:`lrjax.paper_b.RegressionAnalysis` (start: black
    square; the generating weights: star)."""
    plt = _pyplot()
    n = min(num_problems, analysis.num_problems)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.8), squeeze=False)
    methods = _trajectory_methods(analysis)
    for p, ax in enumerate(axes[0]):
        data = analysis.problem(p)
        ws = np.concatenate([t.weights[p] for _, t in methods])
        lo, hi = np.percentile(ws, [0.5, 99.5], axis=0)
        pad = 0.15 * (hi - lo) + 1e-3
        g0, g1 = np.meshgrid(
            np.linspace(lo[0] - pad[0], hi[0] + pad[0], 80),
            np.linspace(lo[1] - pad[1], hi[1] + pad[1], 80),
        )
        grid = np.stack([g0.ravel(), g1.ravel()], axis=1)
        x, y = np.asarray(data.test_x), np.asarray(data.test_y)
        loss = 0.5 * np.mean((grid @ x.T - y) ** 2, axis=1).reshape(g0.shape)
        cs = ax.contour(g0, g1, loss, levels=12, cmap="Greys", linewidths=0.7)
        ax.clabel(cs, fontsize=6)
        for i, (name, t) in enumerate(methods):
            ax.plot(*t.weights[p].T, lw=0.9, alpha=0.85, color=f"C{i}", label=name)
        ax.plot(*methods[0][1].weights[p][0], "ks", ms=6, label="start")
        ax.plot(*np.asarray(data.w_true), "k*", ms=10, label="w_true")
        ax.set(xlabel="w[0]", ylabel="w[1]", title=f"problem {p}: test-loss contours")
        if p == 0:
            ax.legend(fontsize=7)
    return _save(fig, path)


def plot_gradient_disagreement(analysis, path, *, problem: int = 0, window: int = 20) -> Path:
    """Paper B's figure 5 on one problem: the gradient disagreement of each step's minibatch
    (moving average over ``window`` steps), the full training loss and the test loss, for SGD
    and the actor-critic."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    smooth = lambda v: np.convolve(v, np.ones(window) / window, mode="valid")
    for i, (name, t) in enumerate(_trajectory_methods(analysis)):
        d = smooth(t.disagreement[problem])
        axes[0].plot(np.arange(len(d)) + window, d, color=f"C{i}", lw=1.0, label=name)
        steps = np.arange(t.train_loss.shape[1])
        axes[1].plot(steps, t.train_loss[problem], color=f"C{i}", lw=1.0, label=name)
        axes[2].plot(steps, t.test_loss[problem], color=f"C{i}", lw=1.0, label=name)
    axes[0].set(
        ylabel="|| minibatch gradient - full gradient ||",
        title=f"gradient disagreement ({window}-step mean)",
    )
    axes[1].set(ylabel="training loss (full)", yscale="log", title="training loss")
    axes[2].set(ylabel="test loss", yscale="log", title="test loss")
    for ax in axes:
        ax.set(xlabel="step")
        ax.legend(fontsize=7)
    fig.suptitle(f"problem {problem}")
    return _save(fig, path)


def plot_paper_b_comparison(results, path, *, title: str = "") -> Path:
    """Paper B's figures 2 and 3 (:func:`lrjax.paper_b.compare_on_task`): the training loss
    (mean over each block of steps) and the test loss against minibatches, means over seeds,
    and the LR each method applied."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.3))
    for i, r in enumerate(results):
        style = dict(color=f"C{i}", lw=2.2 if r.name == "actor-critic" else 1.2, label=r.name)
        axes[0].plot(r.eval_steps, np.nanmean(r.train_loss, axis=0), marker="o", ms=2, **style)
        axes[1].plot(r.eval_steps, np.nanmean(r.test_loss, axis=0), marker="o", ms=2, **style)
        lr = np.nanmean(r.learning_rate, axis=0) if np.isfinite(r.learning_rate).any() else None
        if lr is not None:
            axes[2].plot(r.eval_steps, lr, **style)
    axes[0].set(ylabel="training loss", yscale="log", title="(a) training loss")
    axes[1].set(ylabel="test loss", yscale="log", title="(b) test loss")
    axes[2].set(ylabel="learning rate (block mean)", yscale="log", title="applied LR")
    for ax in axes:
        ax.set(xlabel="minibatches")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_sweeps(runs: Sequence[Any], path, *, title: str = "") -> Path:
    """Baseline sweeps (:class:`lrjax.baselines.sweep.OptimizerRun`): for each optimizer's best
    configuration, the training loss (moving average), the test loss at the evaluation steps
    (the last point on the full test split) and the applied LR, means over seeds."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for r in runs:
        best = r.best_result
        loss = best.train_loss.mean(axis=0)
        window = max(1, len(loss) // 50)
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        axes[0].plot(np.arange(len(smooth)) + window, smooth, label=r.name)
        axes[1].plot(best.eval_steps, best.test_loss.mean(axis=0), marker="o", ms=3, label=r.name)
        axes[2].plot(np.arange(1, loss.size + 1), best.learning_rate.mean(axis=0), label=r.name)
    axes[0].set(title="training loss (moving average)", ylabel="training loss", yscale="log")
    axes[1].set(title="test loss", ylabel="test loss")
    axes[2].set(title="applied learning rate", ylabel="learning rate", yscale="log")
    for ax in axes:
        ax.set(xlabel="trainee step")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_methods(methods, path, *, title: str = "", steps_per_action: int = 1) -> Path:
    """Methods on the same held-out seeds (:class:`lrjax.evaluation.Method`).

    Left: each method's LR schedule (the mean over seeds on a log scale; a learned controller's
    differs per seed, so its range is shaded). Right: the validation loss (the environment's
    fixed validation batch) over the episode, mean with a 95% band over the seeds.
    """
    from lrjax.evaluation.stats import t_half_width

    plt = _pyplot()
    fig, (ax_lr, ax_loss) = plt.subplots(1, 2, figsize=(12, 4.2))
    for i, m in enumerate(methods):
        e, color = m.episodes, f"C{i}"
        steps = (np.arange(e.lr.shape[1]) + 1) * steps_per_action
        lw = 2.2 if i == 0 else 1.3
        ax_lr.plot(
            steps, np.exp(np.nanmean(np.log(e.lr), axis=0)), color=color, lw=lw, label=m.name
        )
        if np.nanmax(np.nanmax(e.lr, axis=0) - np.nanmin(e.lr, axis=0)) > 0:
            ax_lr.fill_between(
                steps, np.nanmin(e.lr, axis=0), np.nanmax(e.lr, axis=0), color=color, alpha=0.2
            )
        n = np.sum(np.isfinite(e.val_loss), axis=0)
        mean = np.nanmean(e.val_loss, axis=0)
        half = t_half_width(np.nanstd(e.val_loss, axis=0, ddof=1), n)
        ax_loss.plot(steps, mean, color=color, lw=lw, label=m.name)
        ax_loss.fill_between(steps, mean - half, mean + half, color=color, alpha=0.2)
    ax_lr.set(
        xlabel="trainee step",
        ylabel="learning rate",
        yscale="log",
        title=f"{title}: LR schedules".strip(": "),
    )
    ax_loss.set(
        xlabel="trainee step",
        ylabel="validation loss (fixed batch)",
        yscale="log",
        title=f"{title}: validation loss, mean and 95% band".strip(": "),
    )
    ax_lr.legend(fontsize=8)
    ax_loss.legend(fontsize=8)
    return _save(fig, path)


def plot_lr_schedules(curves, path, *, title: str = "") -> Path:
    """Learned LR schedules on one trainee, one line per seed.

    ``curves`` maps a method's name to ``(steps [T], lr [N, T], train_loss [N, T])``, e.g. the
    rows of a held-out evaluation. Left: the LR each seed applied (log scale; a learned
    controller's differs per seed). Right: the training loss, mean over the seeds (log scale).
    Non-finite values (a diverged seed) leave gaps.
    """
    plt = _pyplot()
    fig, (ax_lr, ax_loss) = plt.subplots(1, 2, figsize=(12, 4.2))
    for i, (name, (steps, lr, loss)) in enumerate(curves.items()):
        color = f"C{i}"
        for j, seed_lr in enumerate(np.asarray(lr)):
            ax_lr.plot(
                steps, seed_lr, color=color, lw=0.9, alpha=0.6, label=name if j == 0 else None
            )
        mean_loss = np.nanmean(np.where(np.isfinite(loss), loss, np.nan), axis=0)
        ax_loss.plot(steps, mean_loss, color=color, lw=1.5, label=name)
    ax_lr.set(
        xlabel="trainee step", ylabel="learning rate", yscale="log", title="applied LR, per seed"
    )
    ax_loss.set(
        xlabel="trainee step",
        ylabel="training loss",
        yscale="log",
        title="training loss, mean over seeds",
    )
    for ax in (ax_lr, ax_loss):
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path)
