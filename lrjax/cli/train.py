"""``lrjax train``: train a learning-rate controller with RL, save it, compare it with schedules.

  lrjax train --algo ppo --task fashion_cnn --updates 10 --num-envs 8 --out runs/ppo
  lrjax train --algo actor-critic --task mnist_cnn --mode meta --reset-every 500 --out runs/ac

PPO (paper A) learns over episodes of ``--horizon`` actions; the actor-critic (paper B,
Algorithm 1) learns at every trainee step, over episodes of ``--reset-every`` steps (``--mode
meta``) or along one run (``--mode online``).

Writes to ``--out``: ``metrics.jsonl`` (one line per update), ``run.json`` and ``checkpoints/``
(orbax; re-running the same command resumes, and a finished run is only evaluated again),
``controller/`` (loadable with ``lrjax.load_controller``), ``evaluation.json`` and
``evaluation.png`` (the learned LR schedules and validation-loss curves of evaluation episodes
against a constant-LR grid and step decay on the same episodes), and ``training.png``.
"""

from __future__ import annotations

import time
from pathlib import Path

from lrjax.cli import _common

FEATURE_PRESETS = ("lrjax", "paper_a", "paper_b")
ALGOS = ("ppo", "actor-critic")
PPO_DEFAULTS = {"horizon": 40, "reward": "loss_decrement", "num_envs": 16}
AC_DEFAULTS = {"num_envs": 4, "reset_every": 1000}


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
        help="train an LR controller with RL (PPO, paper A; actor-critic, paper B)",
        description="Train a learning-rate controller with reinforcement learning (PPO, paper A, "
        "or the actor-critic of paper B) on trainee episodes of a task and save it; PPO's "
        "controller is then compared on fresh evaluation episodes with a constant-LR grid and "
        "step decay.",
        epilog=epilog,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--algo", default="ppo", choices=ALGOS, help="the RL algorithm")
    _common.add_task_option(p, detailed)
    _add_controller_options(p)
    _add_run_options(p)
    _add_actor_critic_options(p)
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


def _add_controller_options(p) -> None:
    """The controller preset, its action map and the optimizer it steers."""
    p.add_argument(
        "--features",
        default=None,
        choices=FEATURE_PRESETS,
        help="the controller preset: its state (features and normaliser) and the defaults of "
        "the controller options below (lrjax: ControllerConfig.lrjax(), paper A's features plus "
        "progress, frozen normaliser; paper_a; paper_b). Default: lrjax for PPO, paper_b for "
        "the actor-critic",
    )
    p.add_argument(
        "--state",
        default=None,
        help="comma-separated built-in features that replace the preset's (its normaliser "
        "kept), e.g. train_loss for paper B's loss-only state (the feature-subset ablation)",
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


def _add_run_options(p) -> None:
    """The episodes and updates (PPO's options among them)."""
    p.add_argument(
        "--reward",
        default=None,
        choices=["val_loss", "loss_decrement", "final"],
        help="PPO: the validation loss's decrement (default; undiscounted, it sums to the final "
        "loss's improvement), the per-step validation loss (paper A) or final-only",
    )
    p.add_argument("--horizon", type=int, default=None, help="PPO: actions per episode (40)")
    p.add_argument(
        "--steps-per-action", type=int, default=None, help="trainee steps per action (10)"
    )
    p.add_argument("--batch-size", type=int, default=None, help="trainee minibatch size")
    p.add_argument(
        "--num-envs",
        type=int,
        default=None,
        help="trainee episodes side by side (PPO 16; actor-critic 4 in meta mode, 1 online)",
    )
    p.add_argument("--updates", type=int, default=100, help="RL updates")
    p.add_argument("--ppo-lr", type=float, default=None, help="Adam step size of PPO (PPOConfig's)")
    _common.add_distributed_options(p)


def _add_actor_critic_options(p) -> None:
    """Algorithm 1's options (paper B)."""
    ac = p.add_argument_group("actor-critic (paper B; ActorCriticConfig's defaults)")
    ac.add_argument(
        "--mode",
        default=None,
        choices=["meta", "online"],
        help="meta: learn over episodes that reset the model every --reset-every steps; online: "
        "learn along one run of updates x steps-per-update steps (default meta)",
    )
    ac.add_argument("--reset-every", type=int, default=None, help="e, steps per episode (1000)")
    ac.add_argument("--steps-per-update", type=int, default=100, help="trainee steps per update")
    ac.add_argument("--gamma", type=float, default=None, help="discount of the TD target (0.9)")
    ac.add_argument("--actor-every", type=int, default=None, help="m_theta (1)")
    ac.add_argument("--critic-every", type=int, default=None, help="m_phi (1)")
    ac.add_argument(
        "--exploration-std", type=float, default=None, help="noise on the actor's action (0.3)"
    )
    ac.add_argument(
        "--same-minibatch",
        action="store_true",
        help="ablation: the actor's gradient on the model's minibatch, not a different one",
    )


PPO_ONLY = ("horizon", "reward", "steps_per_action", "ppo_lr", "initial_lr_spread")
AC_ONLY = ("mode", "reset_every", "gamma", "actor_every", "critic_every", "exploration_std")


def _resolve(args) -> None:
    """Fill the defaults that depend on ``--algo``, and refuse options of the other algorithm
    (before any work starts)."""
    from lrjax._validation import ConfigError

    ppo = args.algo == "ppo"
    flag = lambda name: "--" + name.replace("_", "-")
    other = AC_ONLY + ("same_minibatch",) if ppo else PPO_ONLY
    defaults = {"initial_lr_spread": 1.0}
    given = [n for n in other if getattr(args, n) not in (None, False, defaults.get(n))]
    if given:
        raise ConfigError(
            f"{', '.join(flag(n) for n in given)} is not allowed with --algo {args.algo}: "
            f"{'the actor-critic' if ppo else 'PPO'}'s option(s)."
        )
    if args.features is None:
        args.features = "lrjax" if ppo else "paper_b"
    if ppo:
        for name, value in PPO_DEFAULTS.items():
            if getattr(args, name) is None:
                setattr(args, name, value)
        return
    args.mode = args.mode or "meta"
    if args.num_envs is None:
        args.num_envs = AC_DEFAULTS["num_envs"] if args.mode == "meta" else 1
    if args.reset_every is None and args.mode == "meta":
        args.reset_every = AC_DEFAULTS["reset_every"]
    if args.eval_episodes not in (0, 8):
        raise ConfigError(
            "--eval-episodes is not allowed with --algo actor-critic: its controller is "
            "evaluated with `lrjax evaluate` or `lrjax paper-b compare`."
        )
    args.eval_episodes = 0


def _controller_config(args):
    import dataclasses

    from lrjax._validation import ConfigError
    from lrjax.controller import ControllerConfig

    given = {
        "action_mode": args.action_mode,
        "lr_min": args.lr_min,
        "lr_max": args.lr_max,
        "alpha": args.alpha,
        "initial_lr": args.initial_lr,
        "steps_per_action": args.steps_per_action,
    }
    config = getattr(ControllerConfig, args.features)(
        **{k: v for k, v in given.items() if v is not None}
    )
    if args.state is None:
        return config
    names = tuple(n.strip() for n in args.state.split(",") if n.strip())
    if not names:
        raise ConfigError(f"--state={args.state!r} is not allowed: expected feature names.")
    spec = dataclasses.replace(config.features, features=names)
    return config.replace(features=spec)


def _setup(args):
    """The task, the environment (PPO's; None for the actor-critic), the algorithm and the
    run's signature, from the arguments."""
    from lrjax import tasks
    from lrjax.engine import EngineConfig

    # Driven from the host, never vmapped again: vmapped episodes may use every host device.
    host_driven = EngineConfig(shard_vmapped=True)
    _resolve(args)
    overrides = {} if args.batch_size is None else {"batch_size": args.batch_size}
    task = tasks.get_task(args.task, **overrides)
    controller = _controller_config(args)
    ignored = {"updates", "updates_per_chunk", "eval_episodes", "out", "data_dir", "raw_dir"}
    # How many processes run it does not change the run: it resumes on another count.
    ignored |= {"coordinator_address", "num_processes", "process_id", "distributed"}
    # Only the chosen algorithm's options describe the run (PPO runs made before the
    # actor-critic existed resume unchanged).
    other = (*AC_ONLY, "same_minibatch", "steps_per_update") if args.algo == "ppo" else PPO_ONLY
    ignored |= {"command", *other}
    if args.state is None:  # runs made before --state existed resume unchanged
        ignored.add("state")
    signature = {k: v for k, v in vars(args).items() if k not in ignored}
    if args.algo == "actor-critic":
        from lrjax.algos.actor_critic import ActorCritic, ActorCriticConfig

        chosen = {
            "gamma": args.gamma,
            "actor_every": args.actor_every,
            "critic_every": args.critic_every,
            "exploration_std": args.exploration_std,
        }
        config = ActorCriticConfig(
            controller=controller,
            engine=host_driven,
            mode=args.mode,
            optimizer=args.optimizer,
            num_envs=args.num_envs,
            num_updates=args.updates,
            steps_per_update=args.steps_per_update,
            reset_every=args.reset_every,
            same_minibatch=args.same_minibatch,
            **{k: v for k, v in chosen.items() if v is not None},
        )
        return task, None, ActorCritic(task, config), signature

    from lrjax.algos.ppo import PPO, PPOConfig
    from lrjax.env import EnvConfig, TraineeEnv

    env_config = EnvConfig(
        controller=controller,
        engine=host_driven,
        optimizer=args.optimizer,
        horizon=args.horizon,
        reward=args.reward,
        initial_lr_spread=args.initial_lr_spread,
    )
    ppo_config = PPOConfig(
        num_envs=args.num_envs,
        num_updates=args.updates,
        num_minibatches=2 if args.num_envs % 2 == 0 else 1,
        **({} if args.ppo_lr is None else {"learning_rate": args.ppo_lr}),
    )
    env = TraineeEnv(task, env_config)
    return task, env, PPO(env, ppo_config), signature


POSITIVE_FLAGS = (
    "updates",
    "updates_per_chunk",
    "num_envs",
    "horizon",
    "steps_per_action",
    "batch_size",
    "reset_every",
    "steps_per_update",
    "actor_every",
    "critic_every",
)
RENAMES = {"num_updates": "updates", "learning_rate": "ppo_lr", "features": "state"}
"""Config fields whose option has another name (``features``: a preset's features are always
valid, so a wrong feature name comes from ``--state``)."""


def _out_dir(args) -> Path:
    """``--out``, after the integer options (by their flag names), all refused before any
    work."""
    from lrjax._validation import ConfigError

    _common.check_flags(args, positive=POSITIVE_FLAGS, non_negative=("seed",))
    if args.eval_episodes < 0:
        raise ConfigError(
            f"--eval-episodes={args.eval_episodes} is not allowed: expected >= 0 (0 skips the "
            "comparison after training)."
        )
    return _common.check_out_dir(args.out or f"runs/{args.algo}-{args.task}")


def _check_updates_done(args, out: Path) -> None:
    """Refuse, before any work, an ``--out`` whose run has done more updates (its latest
    checkpoint's step) than ``--updates`` asks for."""
    from lrjax._validation import ConfigError

    checkpoints = out / "checkpoints"
    found = checkpoints.iterdir() if checkpoints.is_dir() else ()
    done = max((int(p.name) for p in found if p.name.isdigit() and p.is_dir()), default=0)
    if done > args.updates:
        raise ConfigError(
            f"--updates={args.updates} is not allowed: --out={str(out)!r} holds a run with "
            f"{done} updates done. Ask for --updates {done} (or more) to resume or evaluate "
            "that run, or choose another --out for a new one."
        )


def _announce(args, algo, env) -> int:
    """Print what the run will do; return its trainee steps."""
    if env is None:
        cfg = algo.config
        trainee_steps = args.updates * cfg.num_envs * cfg.steps_per_update
        episodes = f"episodes of {cfg.reset_every} steps" if cfg.mode == "meta" else "one run"
        print(
            f"actor-critic ({cfg.mode}) on {args.task}: {args.updates} updates x "
            f"{cfg.num_envs} trainee(s) x {cfg.steps_per_update} steps = {trainee_steps:,} "
            f"trainee steps ({episodes})",
            flush=True,
        )
        return trainee_steps
    k = env.config.steps_per_action
    trainee_steps = args.updates * args.num_envs * args.horizon * k
    print(
        f"{algo.name} on {args.task}: {args.updates} updates x {args.num_envs} episodes x "
        f"{args.horizon} actions x {k} steps = {trainee_steps:,} trainee steps",
        flush=True,
    )
    return trainee_steps


def _report_training(args, algo, env, result, out: Path) -> None:
    """The training figure and a line on the last update (what each algorithm watches)."""
    from lrjax import plots

    last = result.history[-1] if result.history else {}
    get = lambda name: float("nan") if last.get(name) is None else float(last[name])
    title = f"{args.task} {algo.name}"
    if env is None:
        plots.plot_actor_critic_training(result.history, out / "training.png", title=title)
        print(
            f"trained in {result.train_seconds:.0f} s; last update: train loss "
            f"{get('train_loss'):.4g}, TD error^2 {get('td_error_sq'):.2g}, LRs "
            f"[{get('lr_min'):.3g}, {get('lr_max'):.3g}]"
            + (f", test loss {get('test_loss'):.4g}" if "test_loss" in last else "")
        )
        return
    plots.plot_training(result.history, out / "training.png", title=title)
    print(
        f"trained in {result.train_seconds:.0f} s; last update: return "
        f"{get('episode_return'):.4g}, approx_kl {get('approx_kl'):.2g}, explained variance "
        f"{get('explained_variance'):.2f}, LRs [{get('lr_min'):.3g}, {get('lr_max'):.3g}]"
    )


def _evaluate_after_training(args, env, trained, key, data, out, result, trainee_steps) -> None:
    """PPO's quick comparison on fresh episodes: the learned controller, constant LRs and step
    decay; ``evaluation.json`` and ``evaluation.png``."""
    import jax
    import numpy as np

    from lrjax import distributed, plots, quick_comparison

    start = time.perf_counter()
    print(
        f"evaluating on {args.eval_episodes} fresh episodes (learned controller, constant LRs, "
        "step decay; compiling first) ...",
        flush=True,
    )
    comparison = quick_comparison.compare_with_schedules(
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
    if not distributed.is_primary():
        return
    _common.write_json(out / "evaluation.json", summary)
    plots.plot_comparison(
        comparison,
        out / "evaluation.png",
        title=args.task,
        steps_per_action=env.config.steps_per_action,
    )
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


def run(args) -> int:
    out = _out_dir(args)
    with _common.flag_names(args, RENAMES):
        task, env, algo, signature = _setup(args)
    from lrjax.algos.runner import check_signature

    check_signature(out, signature)  # a different run in --out: the settings that differ
    _check_updates_done(args, out)  # every argument checked before any work
    return _common.run_distributed(args, lambda: _train(args, out, task, env, algo, signature))


def _train(args, out, task, env, algo, signature) -> int:
    import jax

    from lrjax import distributed
    from lrjax.algos import runner
    from lrjax.controller import save_controller

    primary = distributed.is_primary()
    key = jax.random.key(args.seed)
    data = _common.load_task_data(task, jax.random.fold_in(key, 1), args)
    trainee_steps = _announce(args, algo, env)
    result = runner.run(
        algo,
        key,
        data,
        out_dir=out,
        signature=signature,
        updates_per_chunk=args.updates_per_chunk,
        progress=primary,
    )
    if result.already_complete:
        print(f"the run in {out} is complete ({args.updates} updates); evaluating its controller")
    trained = algo.controller(result.state)
    if primary:
        save_controller(out / "controller", trained, overwrite=True)
        _report_training(args, algo, env, result, out)
    if args.eval_episodes == 0:
        print(
            f"controller:  {out / 'controller'}\nmetrics:     {out / 'metrics.jsonl'}\n"
            f"plots:       {out / 'training.png'}"
        )
        return 0
    _evaluate_after_training(args, env, trained, key, data, out, result, trainee_steps)
    return 0
