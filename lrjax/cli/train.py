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

import dataclasses
import time
from pathlib import Path

from lrjax.cli import _common
from lrjax.cli.train_options import (
    AC_ONLY,
    AC_STABILISERS,
    AC_STEP_SIZES,
    PPO_DEFAULTS,
    PPO_ONLY,
    add_parser,
    controller_config,
    resolve,
)

__all__ = ["add_parser", "run"]


def _setup(args):
    """The task, the environment (PPO's; None for the actor-critic), the algorithm and the
    run's signature, from the arguments."""
    from lrjax import tasks
    from lrjax.engine import EngineConfig

    # Driven from the host, never vmapped again: vmapped episodes may use every host device.
    host_driven = EngineConfig(shard_vmapped=True)
    resolve(args)
    overrides = {} if args.batch_size is None else {"batch_size": args.batch_size}
    task = tasks.get_task(args.task, **overrides)
    controller = controller_config(args)
    ignored = {"updates", "updates_per_chunk", "eval_episodes", "out", "data_dir", "raw_dir"}
    # How many processes run it does not change the run: it resumes on another count.
    ignored |= {"coordinator_address", "num_processes", "process_id", "distributed"}
    # Only the chosen algorithm's options describe the run (PPO runs made before the
    # actor-critic existed resume unchanged).
    other = (*AC_ONLY, "same_minibatch", "steps_per_update") if args.algo == "ppo" else PPO_ONLY
    ignored |= {"command", *other}
    if args.features is None:  # runs made before feature names could be given resume unchanged
        ignored.add("features")
    if args.family is None:  # runs made before families existed resume unchanged
        ignored.add("family")
    else:  # the family draws the task and its batch size, budget and optimizer
        ignored |= FAMILY_DRAWN
    if getattr(args, "actions_per_run", None) is None:  # ditto, before actions_per_run
        ignored.add("actions_per_run")
    if getattr(args, "base_schedule", None) is None:  # ditto, before base schedules
        ignored.add("base_schedule")
    if not getattr(args, "bounds_follow_start", False):  # ditto, before moving bounds
        ignored.add("bounds_follow_start")
    if getattr(args, "group_features", None) is None:  # ditto, before per-layer control
        ignored.add("group_features")
    if not getattr(args, "momentum_control", False):  # ditto, before momentum control
        ignored.add("momentum_control")
    # ditto, actor-critic runs made before its stabilisers (unset: paper B's)
    ignored |= {
        name for name in (*AC_STEP_SIZES, *AC_STABILISERS) if getattr(args, name, None) is None
    }
    signature = {k: v for k, v in vars(args).items() if k not in ignored}
    if args.family is not None:
        return None, None, _family_algo(args, controller, host_driven), signature
    if args.algo == "actor-critic":
        from lrjax.algos.actor_critic import ActorCritic, ActorCriticConfig, ActorCriticEnvConfig

        chosen = {
            "gamma": args.gamma,
            "actor_every": args.actor_every,
            "critic_every": args.critic_every,
            "exploration_std": args.exploration_std,
            **{name: getattr(args, name) for name in (*AC_STEP_SIZES, *AC_STABILISERS)},
        }
        env = ActorCriticEnvConfig(
            controller=controller,
            engine=host_driven,
            optimizer=args.optimizer,
            reset_every=args.reset_every,
        )
        config = ActorCriticConfig(
            env=env,
            mode=args.mode,
            num_envs=args.num_envs,
            num_updates=args.updates,
            steps_per_update=args.steps_per_update,
            same_minibatch=args.same_minibatch,
            **{k: v for k, v in chosen.items() if v is not None},
        )
        return task, None, ActorCritic(task, config), signature

    from lrjax.algos.ppo import PPO
    from lrjax.env import EnvConfig, TraineeEnv

    env_config = EnvConfig(
        controller=controller,
        engine=host_driven,
        optimizer=args.optimizer,
        horizon=args.horizon,
        reward=args.reward,
        initial_lr_spread=args.initial_lr_spread,
        bounds_follow_start=args.bounds_follow_start,
    )
    ppo_config = _ppo_config(args)
    env = TraineeEnv(task, env_config)
    return task, env, PPO(env, ppo_config), signature


def _ppo_config(args):
    """PPO's settings from the options (on a task and on a family alike)."""
    from lrjax.algos.ppo import PPOConfig

    return PPOConfig(
        num_envs=args.num_envs,
        num_updates=args.updates,
        num_minibatches=2 if args.num_envs % 2 == 0 else 1,
        **({} if args.ppo_lr is None else {"learning_rate": args.ppo_lr}),
    )


def _family_algo(args, controller, engine):
    """PPO across ``--family`` (:class:`lrjax.algos.family.FamilyPPO`)."""
    from lrjax.algos.family import FamilyPPO
    from lrjax.env import EnvConfig
    from lrjax.tasks import get_family
    from lrjax.training import DEFAULT_LEARNING_RATES

    env_config = EnvConfig(
        controller=controller,
        engine=engine,
        reward=args.reward,
        initial_lr_spread=args.initial_lr_spread,
        bounds_follow_start=args.bounds_follow_start,
        # each sample's horizon replaces this one (its budget over k, or actions_per_run)
        horizon=controller.actions_per_run or PPO_DEFAULTS["horizon"],
    )
    ppo_config = _ppo_config(args)
    # A user's --initial-lr moves every optimizer's start by the same factor.
    scale = 1.0 if args.initial_lr is None else args.initial_lr / DEFAULT_LEARNING_RATES["sgd"]
    starts = tuple((o, lr * scale) for o, lr in DEFAULT_LEARNING_RATES.items())
    family = get_family(args.family)
    if controller.momentum_control:  # it sets SGD's momentum: every draw is SGD with momentum
        family = dataclasses.replace(family, optimizers=("momentum",))
    return FamilyPPO(family, env_config, ppo_config, starts)


POSITIVE_FLAGS = (
    "updates",
    "updates_per_chunk",
    "num_envs",
    "horizon",
    "steps_per_action",
    "actions_per_run",
    "batch_size",
    "reset_every",
    "steps_per_update",
    "actor_every",
    "critic_every",
)
RENAMES = {"num_updates": "updates", "learning_rate": "ppo_lr"}
"""Config fields whose option has another name."""


FAMILY_DRAWN = frozenset({"task", "batch_size", "horizon", "optimizer"})
"""Options a family run does not read (the family draws them)."""


def upgrade_signature(saved: dict) -> dict:
    """The signature of an older ``run.json`` in today's keys. Before ``--preset`` existed its
    ``features`` was the preset (now ``preset``), its ``state`` the feature names (now
    ``features``); a family run without ``--actions-per-run`` recorded the options the family
    draws (no longer part of a family run's signature); an actor-critic run made before it
    could act every k steps did not record ``steps_per_action`` (it acted at every step)."""
    if saved.get("algo") == "actor-critic" and "steps_per_action" not in saved:
        saved = {**saved, "steps_per_action": None}
    if "family" in saved:
        saved = {k: v for k, v in saved.items() if k not in FAMILY_DRAWN}
    if "preset" in saved or "features" not in saved:
        return saved
    upgraded = {k: v for k, v in saved.items() if k not in ("features", "state")}
    upgraded["preset"] = saved["features"]
    if "state" in saved:
        upgraded["features"] = saved["state"]
    return upgraded


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
    default = f"runs/{args.algo}-{args.family or args.task}"
    return _common.check_out_dir(args.out or default)


def _check_run_dir(args, out: Path, signature: dict) -> None:
    """Refuse, before any work, to resume a run in ``--out`` made with other settings or with
    more updates done than ``--updates`` asks for (the runner's check, in the options' words)."""
    from lrjax._validation import ConfigError
    from lrjax.algos import runner

    try:
        runner.check_run_dir(out, signature, args.updates, upgrade_signature)
    except runner.UpdatesDoneError as e:
        raise ConfigError(
            f"--updates={args.updates} is not allowed: --out={str(out)!r} holds a run with "
            f"{e.done} updates done. Ask for --updates {e.done} (or more) to resume or evaluate "
            "that run, or choose another --out for a new one."
        ) from None


def _announce(args, algo, env) -> int:
    """Print what the run will do; return its trainee steps."""
    if args.family is not None:
        samples = algo.family.samples()
        budgets = sorted({s.budget for s in samples})
        mean_budget = sum(s.budget for s in samples) / len(samples)
        trainee_steps = round(args.updates * args.num_envs * mean_budget)
        print(
            f"{algo.name} {args.family}: {args.updates} updates x {args.num_envs} episodes of "
            f"a drawn trainee ({len(algo.family.variants())} trainees, budgets {budgets}, "
            f"{len(samples)} samples: at most {len(samples)} compiled programs) = about "
            f"{trainee_steps:,} trainee steps",
            flush=True,
        )
        return trainee_steps
    if env is None:
        cfg = algo.config
        trainee_steps = args.updates * cfg.num_envs * cfg.steps_per_update
        episodes = f"episodes of {cfg.env.reset_every} steps" if cfg.mode == "meta" else "one run"
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
    title = f"{args.family or args.task} {algo.name}"
    if env is None and args.family is None:
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

    from lrjax import distributed, plots
    from lrjax.evaluation.comparison import compare_with_schedules

    start = time.perf_counter()
    print(
        f"evaluating on {args.eval_episodes} fresh episodes (learned controller, constant LRs, "
        "step decay; compiling first) ...",
        flush=True,
    )
    comparison = compare_with_schedules(
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
    _check_run_dir(args, out, signature)  # every argument checked before any work
    return _common.run_distributed(args, lambda: _train(args, out, task, env, algo, signature))


def _train(args, out, task, env, algo, signature) -> int:
    import jax

    from lrjax import distributed
    from lrjax.algos import runner
    from lrjax.controller import save_controller

    primary = distributed.is_primary()
    key = jax.random.key(args.seed)
    if args.family is not None:
        data = _common.load_family_data(algo.family, args)
    else:
        data = _common.load_task_data(task, jax.random.fold_in(key, 1), args)
    trainee_steps = _announce(args, algo, env)
    result = runner.run(
        algo,
        key,
        data,
        out_dir=out,
        signature=signature,
        upgrade_signature=upgrade_signature,
        updates_per_chunk=args.updates_per_chunk,
        progress=primary,
    )
    if result.already_complete:
        print(f"the run in {out} is complete ({args.updates} updates); evaluating its controller")
    trained = algo.controller(result.state)
    if primary:
        save_controller(out / "controller", trained, overwrite=True)
        if args.family is not None:
            for optimizer in algo.starts:
                controller = algo.controller(result.state, optimizer)
                save_controller(out / f"controller-{optimizer}", controller, overwrite=True)
        _report_training(args, algo, env, result, out)
    if args.eval_episodes == 0:
        print(
            f"controller:  {out / 'controller'}\nmetrics:     {out / 'metrics.jsonl'}\n"
            f"plots:       {out / 'training.png'}"
        )
        return 0
    _evaluate_after_training(args, env, trained, key, data, out, result, trainee_steps)
    return 0
