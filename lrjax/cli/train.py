"""``lrjax train``: train a learning-rate controller with RL, save it, compare it with schedules.

  lrjax train --algo ppo --task fashion_cnn --updates 10 --num-envs 8 --out runs/ppo

Writes to ``--out``: ``metrics.jsonl`` (one line per update), ``run.json`` and ``checkpoints/``
(orbax; re-running the same command resumes, and a finished run is only evaluated again),
``controller/`` (loadable with ``lrjax.load_controller``), ``evaluation.json`` and
``evaluation.png`` (the learned LR schedules and validation-loss curves of evaluation episodes
against a constant-LR grid and step decay on the same episodes), and ``training.png``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from lrjax.cli import _common

FEATURE_PRESETS = ("lrjax", "paper_a", "paper_b")
ALGOS = ("ppo",)


def add_parser(sub, detailed: bool = False) -> None:
    from lrjax.cli import HelpFormatter

    epilog = None
    if detailed:
        from lrjax.features import (
            BUILTIN_FEATURES,
            LRJAX_FEATURES,
            PAPER_A_FEATURES,
            PAPER_B_FEATURES,
        )

        presets = {
            "lrjax": LRJAX_FEATURES,
            "paper_a": PAPER_A_FEATURES,
            "paper_b": PAPER_B_FEATURES,
        }
        epilog = "feature presets:\n" + "\n".join(
            f"  {name}: {', '.join(names)}" for name, names in presets.items()
        )
        epilog += "\nfeatures:\n" + "\n".join(
            f"  {f.name:16s} {f.description}" for f in BUILTIN_FEATURES.values()
        )
    p = sub.add_parser(
        "train",
        help="train an LR controller with RL (PPO, paper A)",
        description="Train a learning-rate controller with reinforcement learning (PPO, paper A) "
        "on trainee episodes of a task, save it, and compare it on fresh evaluation episodes "
        "with a constant-LR grid and step decay.",
        epilog=epilog,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--algo", default="ppo", choices=ALGOS, help="the RL algorithm")
    _common.add_task_option(p, detailed)
    p.add_argument(
        "--features",
        default="lrjax",
        choices=FEATURE_PRESETS,
        help="the controller preset: its state (features and normaliser) and the defaults of "
        "the controller options below (lrjax: ControllerConfig.lrjax(), paper A's features plus "
        "progress, frozen normaliser; paper_a; paper_b)",
    )
    p.add_argument(
        "--action-mode",
        default=None,
        choices=["scale", "absolute"],
        help="scale: the action scales the previous LR (paper A); absolute: it is the LR (B) "
        "(default: the preset's, scale for lrjax and paper_a)",
    )
    p.add_argument("--lr-min", type=float, default=None, help="smallest LR (lrjax: 1e-4)")
    p.add_argument("--lr-max", type=float, default=None, help="largest LR (lrjax: 1)")
    p.add_argument("--alpha", type=float, default=None, help="largest scale per action (1.25)")
    p.add_argument("--initial-lr", type=float, default=None, help="the LR runs start at (0.1)")
    p.add_argument(
        "--initial-lr-spread",
        type=float,
        default=1.0,
        help="episodes start at initial LR times a log-uniform factor in [1/spread, spread]",
    )
    p.add_argument(
        "--optimizer",
        default="sgd",
        choices=["sgd", "momentum", "adam"],
        help="the optimizer whose LR the controller sets",
    )
    p.add_argument(
        "--reward",
        default="loss_decrement",
        choices=["val_loss", "loss_decrement", "final"],
        help="the validation loss's decrement (paper B; undiscounted, it sums to the final loss's "
        "improvement), the per-step validation loss (paper A) or final-only",
    )
    p.add_argument("--horizon", type=int, default=40, help="controller actions per episode")
    p.add_argument(
        "--steps-per-action", type=int, default=None, help="trainee steps per action (10)"
    )
    p.add_argument("--batch-size", type=int, default=None, help="trainee minibatch size")
    p.add_argument("--num-envs", type=int, default=16, help="trainee episodes per update")
    p.add_argument("--updates", type=int, default=100, help="RL updates")
    p.add_argument("--ppo-lr", type=float, default=None, help="Adam step size of PPO (PPOConfig's)")
    p.add_argument("--updates-per-chunk", type=int, default=2, help="updates per compiled call")
    p.add_argument(
        "--eval-episodes",
        type=int,
        default=8,
        help="episodes of the quick comparison after training (0: skip it; `lrjax evaluate` "
        "runs the held-out protocol)",
    )
    p.add_argument("--seed", type=int, default=0, help="root seed of training and evaluation")
    p.add_argument("--out", default=None, help="output directory (default: runs/ALGO-TASK)")
    _common.add_data_options(p)


def _setup(args):
    """The environment, the algorithm and the run's signature, from the arguments."""
    from lrjax import tasks
    from lrjax.algos.ppo import PPO, PPOConfig
    from lrjax.controller import ControllerConfig
    from lrjax.env import EnvConfig, TraineeEnv

    given = {
        "action_mode": args.action_mode,
        "lr_min": args.lr_min,
        "lr_max": args.lr_max,
        "alpha": args.alpha,
        "initial_lr": args.initial_lr,
        "steps_per_action": args.steps_per_action,
    }
    controller = getattr(ControllerConfig, args.features)(
        **{k: v for k, v in given.items() if v is not None}
    )
    env_config = EnvConfig(
        controller=controller,
        optimizer=args.optimizer,
        horizon=args.horizon,
        reward=args.reward,
        initial_lr_spread=args.initial_lr_spread,
    )
    overrides = {} if args.batch_size is None else {"batch_size": args.batch_size}
    task = tasks.get_task(args.task, **overrides)
    ppo_config = PPOConfig(
        num_envs=args.num_envs,
        num_updates=args.updates,
        num_minibatches=2 if args.num_envs % 2 == 0 else 1,
        **({} if args.ppo_lr is None else {"learning_rate": args.ppo_lr}),
    )
    env = TraineeEnv(task, env_config)
    ignored = {"updates", "updates_per_chunk", "eval_episodes", "out", "data_dir", "raw_dir"}
    signature = {k: v for k, v in vars(args).items() if k not in ignored | {"command"}}
    return task, env, PPO(env, ppo_config), signature


def run(args) -> int:
    import jax
    import numpy as np

    from lrjax import evaluate, plots
    from lrjax.algos import runner
    from lrjax.controller import save_controller

    out = Path(args.out or f"runs/{args.algo}-{args.task}")
    if out.exists() and not out.is_dir():
        from lrjax._validation import ConfigError

        raise ConfigError(f"--out={str(out)!r} is a file: expected a directory.")
    if args.eval_episodes < 0:
        from lrjax._validation import ConfigError

        raise ConfigError(
            f"--eval-episodes={args.eval_episodes} is not allowed: expected >= 0 (0 skips the "
            "comparison after training)."
        )
    task, env, algo, signature = _setup(args)
    key = jax.random.key(args.seed)
    data = _common.load_task_data(task, jax.random.fold_in(key, 1), args)
    k = env.config.steps_per_action
    trainee_steps = args.updates * args.num_envs * args.horizon * k
    print(
        f"{algo.name} on {args.task}: {args.updates} updates x {args.num_envs} episodes x "
        f"{args.horizon} actions x {k} steps = {trainee_steps:,} trainee steps",
        flush=True,
    )

    result = runner.run(
        algo,
        key,
        data,
        out_dir=out,
        signature=signature,
        updates_per_chunk=args.updates_per_chunk,
    )
    if result.already_complete:
        print(f"the run in {out} is complete ({args.updates} updates); evaluating its controller")
    trained = algo.controller(result.state)
    save_controller(out / "controller", trained, overwrite=True)
    plots.plot_training(result.history, out / "training.png", title=f"{args.task} {algo.name}")
    last = result.history[-1] if result.history else {}
    get = lambda name: float("nan") if last.get(name) is None else float(last[name])
    print(
        f"trained in {result.train_seconds:.0f} s; last update: return "
        f"{get('episode_return'):.4g}, approx_kl {get('approx_kl'):.2g}, explained variance "
        f"{get('explained_variance'):.2f}, LRs [{get('lr_min'):.3g}, {get('lr_max'):.3g}]"
    )
    if args.eval_episodes == 0:
        print(
            f"controller:  {out / 'controller'}\nmetrics:     {out / 'metrics.jsonl'}\n"
            f"plots:       {out / 'training.png'}"
        )
        return 0

    start = time.perf_counter()
    print(
        f"evaluating on {args.eval_episodes} fresh episodes (learned controller, constant LRs, "
        "step decay; compiling first) ...",
        flush=True,
    )
    comparison = evaluate.compare_with_schedules(
        env, trained, jax.random.fold_in(key, 2), data, args.eval_episodes
    )
    eval_seconds = time.perf_counter() - start
    summary = {
        "task": args.task,
        "train_seconds": result.train_seconds,
        "eval_seconds": eval_seconds,
        "trainee_steps": trainee_steps,
        "eval_episodes": args.eval_episodes,
        "methods": comparison.rows(),
    }
    (out / "evaluation.json").write_text(json.dumps(summary, indent=1))
    plots.plot_comparison(comparison, out / "evaluation.png", title=args.task, steps_per_action=k)

    learned = comparison.learned
    print(
        f"evaluated in {eval_seconds:.0f} s; evaluation over {args.eval_episodes} episodes "
        "(the best of each baseline family is chosen on these same episodes, which favours "
        "the baselines):"
    )
    print(comparison.table())
    print(f"learned LRs ranged over [{np.nanmin(learned.lr):.3g}, {np.nanmax(learned.lr):.3g}]")
    print(
        f"controller:  {out / 'controller'}\nmetrics:     {out / 'metrics.jsonl'}\n"
        f"checkpoints: {out / 'checkpoints'}\nplots:       {out / 'evaluation.png'}, "
        f"{out / 'training.png'}\nsummary:     {out / 'evaluation.json'}"
    )
    return 0
