"""The schedules a layered controller applies (issue 30): each parameter group's LR (and, for a
controller that sets the momentum, its momentum) over a run, deployed as a user deploys it
(``scale_by_layer_controller`` in a plain optax loop, :func:`lrjax.training.train`), on the
held-out trainees of ``heldout_general.py``.

Prints, per target and group (in depth order), the LR averaged over the seeds at 5%, 25%, 50%,
75% and 95% of the run and its ratio to the geometric mean over groups at the run's middle (and
the momentum at the same points); with ``--out``, a figure of every group's mean LR (and
momentum) over the steps, one panel per target.

  python benchmarks/layer_schedules.py --controller runs/mixed_mlp_long_layers/controller-sgd \\
      --targets fashion_mlp,fashion_mlp_4x64,mnist_mlp --steps 3000 --seeds 3 --out layers.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from heldout_general import TARGETS  # noqa: E402

from lrjax import tasks, training  # noqa: E402
from lrjax.controller import (  # noqa: E402
    group_lrs,
    group_momenta,
    load_controller,
    make_groups,
    scale_by_layer_controller,
)

FRACTIONS = (0.05, 0.25, 0.5, 0.75, 0.95)


def group_schedule(controller, optimizer: str, task, data, keys, steps: int):
    """``(group names, LRs [seeds, steps, G], momenta [seeds, steps, G])`` of the controller on
    ``task`` (one group unless it is per layer; a momentum controller runs on the raw
    gradients, being the momentum itself)."""
    base = {"sgd": optax.identity(), "adam": optax.scale_by_adam()}[optimizer]
    if controller.config.momentum_control:
        base = optax.identity()
    tx = optax.chain(base, scale_by_layer_controller(controller, total_steps=steps))
    read = lambda s: jnp.stack([group_lrs(s), group_momenta(s)], axis=-1)
    result = training.train(task, lambda hp: tx, keys, data, steps, learning_rate_fn=read)
    names = ("all",)
    if controller.config.per_group:
        names = make_groups(jax.eval_shape(task.init, keys[0], data)).names
    out = np.asarray(result.learning_rate)
    return names, out[..., 0], out[..., 1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--controller", required=True, help="a saved per-layer controller")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    p.add_argument("--targets", default="fashion_mlp,fashion_mlp_4x64,mnist_mlp")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--seed", type=int, default=1000, help="root of the keys (held-out ones)")
    p.add_argument("--out", default=None, help="the figure (PNG)")
    args = p.parse_args()
    controller = load_controller(args.controller)
    if not controller.config.layered:
        raise SystemExit(f"{args.controller} is neither per layer nor sets the momentum")
    momentum = controller.config.momentum_control
    keys = jax.random.split(jax.random.key(args.seed), args.seeds)
    targets = args.targets.split(",")
    rows = 2 if momentum else 1
    fig, axes = plt.subplots(
        rows, len(targets), figsize=(5 * len(targets), 3.6 * rows), squeeze=False
    )
    for col, target in enumerate(targets):
        ax = axes[0, col]
        name, overrides = TARGETS[target]
        task = tasks.get_task(name, **overrides)
        data = task.load_data()
        names, lrs, betas = group_schedule(controller, args.optimizer, task, data, keys, args.steps)
        mean = np.exp(np.log(lrs).mean(axis=0))  # [steps, G], geometric mean over seeds
        middle = np.exp(np.log(mean[args.steps // 2]).mean())
        print(f"{target} ({args.steps} steps, {args.seeds} seeds):")
        print("| group | " + " | ".join(f"LR at {f:.0%}" for f in FRACTIONS) + " | / mean at 50% |")
        print("|---|" + "---|" * (len(FRACTIONS) + 1))
        for g, group in enumerate(names):
            at = [mean[min(int(f * args.steps), args.steps - 1), g] for f in FRACTIONS]
            ratio = mean[args.steps // 2, g] / middle
            print(f"| {group} | " + " | ".join(f"{x:.4g}" for x in at) + f" | {ratio:.3f} |")
        if momentum:
            beta = betas.mean(axis=0)
            print("| group | " + " | ".join(f"momentum at {f:.0%}" for f in FRACTIONS) + " |")
            print("|---|" + "---|" * len(FRACTIONS))
            for g, group in enumerate(names):
                at = [beta[min(int(f * args.steps), args.steps - 1), g] for f in FRACTIONS]
                print(f"| {group} | " + " | ".join(f"{x:.4f}" for x in at) + " |")
        steps = np.arange(1, args.steps + 1)
        for g, group in enumerate(names):
            ax.plot(steps, mean[:, g], label=str(group))
            if momentum:
                axes[1, col].plot(steps, betas.mean(axis=0)[:, g], label=str(group))
        ax.set(yscale="log", xlabel="step", ylabel="LR (mean over seeds)", title=target)
        ax.legend(fontsize=7)
        if momentum:
            axes[1, col].set(xlabel="step", ylabel="momentum (mean over seeds)", title=target)
    fig.tight_layout()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.out, dpi=120)
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
