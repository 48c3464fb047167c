"""``lrjax baselines``: run baseline optimizers over their grids and seeds, print a table,
write JSON results and a PNG of the learning curves.

  lrjax baselines --task fashion_cnn --optimizers sgd,adam,step_decay --seeds 5 --steps 1000

Each optimizer's whole grid x seeds is one compiled program; the best configuration is selected
on mean final validation loss and reported on test (mean +- std over seeds).
"""

from __future__ import annotations

import json
import time
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "baselines",
        help="run baseline optimizers over LR grids and seeds",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--task", default="fashion_cnn")
    p.add_argument(
        "--optimizers",
        default="sgd,adam,adagrad,rmsprop,step_decay",
        help="comma-separated names (see lrjax.baselines.OPTIMIZERS)",
    )
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--lrs", help="comma-separated learning rates replacing each grid's LRs")
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--eval-examples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0, help="root key for all runs")
    p.add_argument("--out", default="runs/baselines", help="output directory")
    p.add_argument("--data-dir")
    p.add_argument("--raw-dir")


def run(args) -> int:
    import jax
    import numpy as np

    from lrjax import baselines, evaluate, tasks
    from lrjax._validation import check_positive_int

    check_positive_int("seeds", args.seeds)
    check_positive_int("steps", args.steps)
    names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    specs = [baselines.get_optimizer(n) for n in names]  # unknown names fail before any work
    lrs = [float(x) for x in args.lrs.split(",")] if args.lrs else None
    for spec in specs:
        spec.grid(lrs)  # validates the LRs
    task = tasks.get_task(args.task)
    key = jax.random.key(args.seed)
    data = (
        task.load_data(jax.random.fold_in(key, 1))
        if args.task == "regression_2d"
        else task.load_data(data_dir=args.data_dir, raw_dir=args.raw_dir)
    )
    eval_every = args.eval_every or max(1, args.steps // 10)

    runs, rows = [], []
    for spec in specs:
        start = time.perf_counter()
        r = evaluate.run_optimizer(
            task,
            spec,
            data,
            key,
            num_seeds=args.seeds,
            num_steps=args.steps,
            lrs=lrs,
            eval_every=eval_every,
            eval_examples=args.eval_examples,
            progress=f"{spec.name} ({len(spec.grid(lrs))} configs x {args.seeds} seeds)",
        )
        elapsed = time.perf_counter() - start
        summary = r.summary() | {"seconds": elapsed, "num_configs": len(r.configs)}
        runs.append(r)
        rows.append(summary)
        print(_row(summary), flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {
        "task": args.task,
        "steps": args.steps,
        "seeds": args.seeds,
        "root_seed": args.seed,
        "backend": jax.default_backend(),
        "selection": "lowest mean final validation loss",
        "optimizers": rows,
        "curves": {r.name: _curves(r) for r in runs},
    }
    json_path = out / f"{args.task}.json"
    json_path.write_text(json.dumps(results, indent=1, default=float))
    png_path = out / f"{args.task}.png"
    plot_curves(
        runs,
        png_path,
        title=f"{args.task}: best config per optimizer, mean over {args.seeds} seeds",
    )
    print()
    print(format_table(rows))
    print(f"\nresults: {json_path}\nplot:    {png_path}")
    del np
    return 0


def _stat(stat) -> str:
    """``mean +- std``, or ``n/a`` for a metric the task does not have (regression accuracy)."""
    if stat["mean"] != stat["mean"]:  # NaN
        return "n/a"
    return f"{stat['mean']:.4f} +- {stat['std']:.4f}"


def _config(s) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in s["best_config"].items())


def _row(s) -> str:
    return (
        f"{s['optimizer']:>20s}  test loss {_stat(s['test_loss'])}  "
        f"acc {_stat(s['test_accuracy'])}  [{_config(s)}]  {s['seconds']:.0f} s"
    )


def format_table(rows) -> str:
    """A markdown table: optimizer, best config, test loss and accuracy (mean +- std)."""
    width = max(40, *(len(_config(s)) for s in rows))
    header = (
        f"| {'optimizer':20s} | {'best config':{width}s} | {'test loss':17s} | "
        f"{'test accuracy':17s} |"
    )
    lines = [header, "|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|"]
    for s in rows:
        lines.append(
            f"| {s['optimizer']:20s} | {_config(s):{width}s} | "
            f"{_stat(s['test_loss']):17s} | {_stat(s['test_accuracy']):17s} |"
        )
    return "\n".join(lines)


def _curves(run) -> dict:
    best = run.best_result
    return {
        "best_config": run.configs[run.best],
        "train_loss_mean": best.train_loss.mean(axis=0).tolist(),
        "learning_rate_mean": best.learning_rate.mean(axis=0).tolist(),
        "eval_steps": best.eval_steps.tolist(),
        "val_loss_mean": best.val_loss.mean(axis=0).tolist(),
        "test_loss_mean": best.test_loss.mean(axis=0).tolist(),
        "test_accuracy_mean": best.test_accuracy.mean(axis=0).tolist(),
    }


def plot_curves(runs, path, title="") -> None:
    """Train loss (smoothed), test loss and applied LR of each optimizer's best config."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for r in runs:
        best = r.best_result
        loss = best.train_loss.mean(axis=0)
        window = max(1, len(loss) // 50)
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        axes[0].plot(np.arange(len(smooth)) + window, smooth, label=r.name)
        axes[1].plot(best.eval_steps, best.test_loss.mean(axis=0), marker="o", label=r.name)
        axes[2].plot(best.learning_rate.mean(axis=0), label=r.name)
    axes[0].set(title="train loss (moving average)", xlabel="step", yscale="log")
    axes[1].set(title="test loss (first eval_examples; last point: full test set)", xlabel="step")
    axes[2].set(title="applied learning rate", xlabel="step", yscale="log")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
