"""``lrjax train``: train a learning-rate controller (paper A's PPO), save it, evaluate it.

  lrjax train --algo ppo --task fashion_cnn --updates 10 --num-envs 8 --out runs/ppo

Writes to ``--out``: ``metrics.jsonl`` (one line per PPO update), ``checkpoints/`` (orbax;
re-running the same command resumes), ``controller/`` (the trained controller, loadable with
``lrjax.load_controller``), ``evaluation.json`` and ``evaluation.png`` (learned LR schedules and
validation-loss curves of evaluation episodes, against the best constant LR of a grid), and
``training.png`` (PPO's learning curves).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

FEATURE_PRESETS = ("paper_a", "paper_b")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train an LR controller with RL (PPO, paper A)",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--algo", default="ppo", choices=["ppo"])
    p.add_argument("--task", default="fashion_cnn")
    p.add_argument("--features", default="paper_a", choices=FEATURE_PRESETS)
    p.add_argument("--action-mode", default="scale", choices=["scale", "absolute"])
    p.add_argument("--lr-min", type=float, default=1e-5)
    p.add_argument("--lr-max", type=float, default=1e-1)
    p.add_argument("--alpha", type=float, default=1.05)
    p.add_argument("--optimizer", default="sgd", help="controlled optimizer: sgd|momentum|adam")
    p.add_argument("--reward", default="val_loss", help="val_loss|loss_decrement|final")
    p.add_argument("--horizon", type=int, default=20, help="controller actions per episode")
    p.add_argument("--steps-per-action", type=int, default=10, help="trainee steps per action")
    p.add_argument("--batch-size", type=int, default=None, help="trainee minibatch size")
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--updates", type=int, default=20)
    p.add_argument("--ppo-lr", type=float, default=3e-4)
    p.add_argument("--updates-per-chunk", type=int, default=2)
    p.add_argument("--eval-episodes", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output directory (default runs/ppo-TASK)")
    p.add_argument("--data-dir")
    p.add_argument("--raw-dir")


def run(args) -> int:
    import jax
    import numpy as np

    from lrjax import tasks
    from lrjax.algos.ppo import PPO, PPOConfig
    from lrjax.algos.ppo_run import run as run_ppo
    from lrjax.controller import ControllerConfig, save_controller
    from lrjax.env import EnvConfig, TraineeEnv
    from lrjax.features import PAPER_A_FEATURES, PAPER_B_FEATURES, FeatureSpec
    from lrjax.rollouts import run_episodes

    out = Path(args.out or f"runs/ppo-{args.task}")
    names = PAPER_A_FEATURES if args.features == "paper_a" else PAPER_B_FEATURES
    controller = ControllerConfig(
        features=FeatureSpec(features=names),
        action_mode=args.action_mode,
        lr_min=args.lr_min,
        lr_max=args.lr_max,
        alpha=args.alpha,
        initial_lr=float(np.sqrt(args.lr_min * args.lr_max)),
    )
    lo = max(args.lr_min, 1e-3)
    hi = min(args.lr_max, 1e-1) if args.lr_max > lo else args.lr_max
    env_config = EnvConfig(
        controller=controller,
        optimizer=args.optimizer,
        steps_per_action=args.steps_per_action,
        horizon=args.horizon,
        reward=args.reward,
        initial_lr_range=(lo, hi),
    )
    overrides = {} if args.batch_size is None else {"batch_size": args.batch_size}
    task = tasks.get_task(args.task, **overrides)
    ppo_config = PPOConfig(
        num_envs=args.num_envs,
        num_updates=args.updates,
        learning_rate=args.ppo_lr,
        num_minibatches=2 if args.num_envs % 2 == 0 else 1,
    )
    env = TraineeEnv(task, env_config)
    ppo = PPO(env, ppo_config)
    key = jax.random.key(args.seed)
    data = (
        task.load_data(jax.random.fold_in(key, 1))
        if args.task == "regression_2d"
        else task.load_data(data_dir=args.data_dir, raw_dir=args.raw_dir)
    )
    trainee_steps = args.updates * args.num_envs * args.horizon * args.steps_per_action
    print(
        f"PPO on {args.task}: {args.updates} updates x {args.num_envs} episodes x "
        f"{args.horizon} actions x {args.steps_per_action} steps = {trainee_steps:,} trainee "
        f"steps (backend {jax.default_backend()}, {jax.local_device_count()} device(s))"
    )

    start = time.perf_counter()
    runner, history = run_ppo(ppo, key, data, out_dir=out, updates_per_chunk=args.updates_per_chunk)
    train_seconds = time.perf_counter() - start
    trained = ppo.controller(runner)
    save_controller(out / "controller", trained, overwrite=True)

    eval_key = jax.random.fold_in(key, 2)
    learned = run_episodes(env, trained, eval_key, data, args.eval_episodes)
    grid = sorted({float(x) for x in np.geomspace(lo, hi, 5)})
    constants = {lr: run_episodes(env, lr, eval_key, data, args.eval_episodes) for lr in grid}
    best_lr = min(constants, key=lambda lr: np.mean(constants[lr].final_val_loss))
    best = constants[best_lr]
    summary = {
        "task": args.task,
        "train_seconds": train_seconds,
        "trainee_steps": trainee_steps,
        "eval_episodes": args.eval_episodes,
        "learned": {
            "final_val_loss_mean": float(np.mean(learned.final_val_loss)),
            "final_val_loss_std": float(np.std(learned.final_val_loss)),
            "test_loss_mean": float(np.mean(learned.test_loss)),
            "test_accuracy_mean": float(np.mean(learned.test_accuracy)),
            "diverged": int(learned.diverged.sum()),
        },
        "constant_lr": {f"{lr:g}": float(np.mean(e.final_val_loss)) for lr, e in constants.items()},
        "best_constant_lr": best_lr,
        "best_constant": {
            "test_loss_mean": float(np.mean(best.test_loss)),
            "test_accuracy_mean": float(np.mean(best.test_accuracy)),
        },
    }
    (out / "evaluation.json").write_text(json.dumps(summary, indent=1))
    plot_evaluation(learned, best, best_lr, out / "evaluation.png", args.task)
    plot_training(history, out / "training.png", args.task)

    print(
        f"trained in {train_seconds:.0f} s; evaluation over {args.eval_episodes} episodes "
        "(final validation-minibatch loss, mean +- std):"
    )
    print(
        f"  learned controller   {np.mean(learned.final_val_loss):.4f} +- "
        f"{np.std(learned.final_val_loss):.4f}"
    )
    for lr, e in constants.items():
        mark = "  <- best constant" if lr == best_lr else ""
        print(
            f"  constant LR {lr:<8.3g} {np.mean(e.final_val_loss):.4f} +- "
            f"{np.std(e.final_val_loss):.4f}{mark}"
        )

    def test(e):
        acc = np.mean(e.test_accuracy)
        return f"test loss {np.mean(e.test_loss):.4f}" + (
            "" if acc != acc else f", test accuracy {acc:.4f}"
        )

    print(
        f"final trainees on the test split: learned controller: {test(learned)}; "
        f"best constant LR: {test(best)}"
    )
    print(
        f"controller:  {out / 'controller'}\nmetrics:     {out / 'metrics.jsonl'}\n"
        f"checkpoints: {out / 'checkpoints'}\nplots:       {out / 'evaluation.png'}, "
        f"{out / 'training.png'}\nsummary:     {out / 'evaluation.json'}"
    )
    return 0


def plot_evaluation(learned, best, best_lr, path, task) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lr, ax_loss) = plt.subplots(1, 2, figsize=(12, 4))
    for i in range(learned.lr.shape[0]):
        ax_lr.plot(learned.lr[i], color="C0", alpha=0.6, label="learned" if i == 0 else None)
        ax_loss.plot(
            learned.val_loss[i], color="C0", alpha=0.6, label="learned" if i == 0 else None
        )
        ax_loss.plot(
            best.val_loss[i],
            color="C1",
            alpha=0.6,
            label=f"constant LR {best_lr:.3g}" if i == 0 else None,
        )
    ax_lr.axhline(best_lr, color="C1", label=f"best constant {best_lr:.3g}")
    ax_lr.set(
        title=f"{task}: learned LR schedules (evaluation episodes)",
        xlabel="controller action",
        yscale="log",
    )
    ax_loss.set(title="validation-minibatch loss", xlabel="controller action", yscale="log")
    ax_lr.legend()
    ax_loss.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_training(history, path, task) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    updates = [h["update"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, key, title in (
        (axes[0], "episode_return", "mean episode return"),
        (axes[1], "final_val_loss", "final validation loss"),
        (axes[2], "lr_mean", "mean applied LR"),
    ):
        ax.plot(updates, [h[key] if h[key] is not None else float("nan") for h in history])
        ax.set(title=f"{task}: {title}", xlabel="PPO update")
    axes[2].set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
