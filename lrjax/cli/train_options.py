"""``lrjax train``'s options: the parser, the defaults that depend on ``--algo`` (filled, and
the other algorithm's options refused, before any work starts) and the controller configuration
the options describe."""

from __future__ import annotations

import argparse

from lrjax.cli import _common

PRESETS = ("lrjax", "paper_a", "paper_b", "loss_only")
ALGOS = ("ppo", "actor-critic")
PPO_DEFAULTS = {"horizon": 40, "reward": "loss_decrement", "num_envs": 16}
AC_DEFAULTS = {"num_envs": 4, "reset_every": 1000}


def add_parser(sub, detailed: bool = False) -> None:
    from lrjax.cli import HelpFormatter

    epilog = None
    if detailed:
        from lrjax.features import (
            BUILTIN_FEATURES,
            LOSS_ONLY_FEATURES,
            LRJAX_FEATURES,
            PAPER_A_FEATURES,
            PAPER_B_FEATURES,
        )

        presets = {
            "loss_only": LOSS_ONLY_FEATURES,
            "lrjax": LRJAX_FEATURES,
            "paper_a": PAPER_A_FEATURES,
            "paper_b": PAPER_B_FEATURES,
        }
        epilog = "presets (--preset) and their features:\n" + "\n".join(
            f"  {name}: {', '.join(names)}" for name, names in presets.items()
        )
        epilog += "\nfeatures (--features):\n" + "\n".join(
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
    p.add_argument(
        "--family",
        default=None,
        help="train across a task family instead of one task (lrjax.tasks.FAMILIES, e.g. "
        "mixed_mlp): a fresh trainee, budget and base optimizer drawn every update; the "
        "controller is saved for each optimizer (controller-sgd/, controller-adam/, ...). "
        "Defaults then: --preset loss_only, --initial-lr-spread 10",
    )
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
        "--preset",
        default=None,
        choices=PRESETS,
        help="the controller preset: its state (features and normaliser) and the defaults of "
        "the controller options below (lrjax: ControllerConfig.lrjax(), paper A's features plus "
        "progress, frozen normaliser; paper_a; paper_b; loss_only: losses relative to the run's "
        "own start and best, for a family). Default: lrjax for PPO on a task, loss_only on a "
        "family, paper_b for the actor-critic",
    )
    p.add_argument(
        "--features",
        default=None,
        help="comma-separated built-in features that replace the preset's (its normaliser "
        "kept), e.g. train_loss for paper B's loss-only state (the feature-subset ablation)",
    )
    p.add_argument("--state", action=_Renamed, to="--features", help=argparse.SUPPRESS)
    p.add_argument(
        "--action-mode",
        default=None,
        choices=["scale", "absolute", "log"],
        help="scale: the action scales the previous LR (paper A); absolute: it is the LR (B); "
        "log: the log of the LR relative to the start, clipped to the bounds (no sigmoid) "
        "(default: the preset's, scale for lrjax and paper_a)",
    )
    p.add_argument("--lr-min", type=float, default=None, help="smallest LR (lrjax: 1e-4)")
    p.add_argument("--lr-max", type=float, default=None, help="largest LR (lrjax: 1)")
    p.add_argument("--alpha", type=float, default=None, help="largest scale per action (1.25)")
    p.add_argument("--initial-lr", type=float, default=None, help="the LR runs start at (0.1)")
    p.add_argument(
        "--initial-lr-spread",
        type=float,
        default=None,
        help="episodes start at initial LR times a log-uniform factor in [1/spread, spread] "
        "(default 1; 10 on a family)",
    )
    p.add_argument(
        "--bounds-follow-start",
        action="store_true",
        help="an episode's LR bounds move with its drawn start, as they do when a user deploys "
        "the controller from another LR (default: the controller's bounds for every episode)",
    )
    p.add_argument(
        "--optimizer",
        default=None,
        choices=["sgd", "momentum", "adam"],
        help="the optimizer whose LR the controller sets (default sgd)",
    )
    p.add_argument(
        "--group-features",
        default=None,
        help="comma-separated per-group features (group_lr_vs_start, group_step_vs_mean, "
        "group_depth, group_momentum): a controller per layer, one actor shared by all "
        "(deployed with scale_by_layer_controller; PPO; default: one LR)",
    )
    p.add_argument(
        "--momentum-control",
        action="store_true",
        help="the actor also sets SGD's momentum (with --optimizer momentum; PPO)",
    )


class _Renamed(argparse.Action):
    """A removed option: using it is a parse error naming the option that replaced it."""

    def __init__(self, option_strings, dest, to: str, **kwargs):
        super().__init__(option_strings, argparse.SUPPRESS, default=argparse.SUPPRESS, **kwargs)
        self.to = to

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} was renamed {self.to}: use {self.to} {values}")


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
        "--steps-per-action",
        type=int,
        default=None,
        help="trainee steps per action (PPO: 10; actor-critic: 1, Algorithm 1; k > 1 holds the "
        "LR for k steps, as the deployed controller does)",
    )
    p.add_argument(
        "--actions-per-run",
        type=int,
        default=None,
        help="PPO: the controller acts this many times per run whatever its length (every "
        "budget / N steps; sets --horizon); default: every --steps-per-action steps",
    )
    p.add_argument(
        "--base-schedule",
        default=None,
        choices=["constant", "cosine"],
        help="PPO: the controller's LR is applied times this schedule over the run (cosine: "
        "the controller learns a correction of a cosine decay); default constant",
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
    ac.add_argument("--actor-every", type=int, default=None, help="m_theta (1)")
    ac.add_argument("--critic-every", type=int, default=None, help="m_phi (1)")
    add_learner_options(ac)
    ac.add_argument(
        "--same-minibatch",
        action="store_true",
        help="ablation: the actor's gradient on the model's minibatch, not a different one",
    )


def add_learner_options(ac) -> None:
    """The actor-critic's discount, exploration and stabilisers (:data:`AC_STABILISERS`), shared
    by ``lrjax train --algo actor-critic`` and ``lrjax paper-b compare``; each defaults to None
    (ActorCriticConfig's default, paper B's Algorithm 1)."""
    ac.add_argument("--gamma", type=float, default=None, help="discount of the TD target (0.9)")
    ac.add_argument(
        "--actor-learning-rate", type=float, default=None, help="alpha_theta, Adam's (1e-3)"
    )
    ac.add_argument(
        "--critic-learning-rate", type=float, default=None, help="alpha_phi, Adam's (1e-2)"
    )
    ac.add_argument(
        "--exploration-std", type=float, default=None, help="noise on the actor's action (0.3)"
    )
    ac.add_argument(
        "--target-update",
        type=float,
        default=None,
        help="tau of target networks (TD3; default none: paper B's TD target)",
    )
    ac.add_argument(
        "--twin-critics",
        action="store_true",
        default=None,
        help="clipped double Q: two critics, the TD target from the smaller (TD3)",
    )
    ac.add_argument(
        "--policy-delay", type=int, default=None, help="actor updates every d-th step (TD3; 1)"
    )
    ac.add_argument(
        "--target-noise",
        type=float,
        default=None,
        help="target policy smoothing noise, in the actor's output units (TD3; 0)",
    )
    ac.add_argument(
        "--target-noise-clip", type=float, default=None, help="bound of that noise (0.5)"
    )
    ac.add_argument(
        "--reward-scale", type=float, default=None, help="rewards of the TD target times this (1)"
    )
    ac.add_argument(
        "--critic-warmup",
        type=int,
        default=None,
        help="steps in which only the critic learns (0)",
    )
    ac.add_argument(
        "--actor-minibatch",
        default=None,
        choices=["independent", "next"],
        help="the actor's x_j: a minibatch of its own (paper B) or the next step's training "
        "minibatch, its gradient reused by that step (one forward pass fewer)",
    )
    ac.add_argument(
        "--reward-minibatch",
        default=None,
        choices=["same", "independent"],
        help="the reward's loss decrement on the minibatch the step descended (paper B) or on "
        "one of its own (progress on the expected loss; two forward passes more)",
    )


PPO_ONLY = (
    "horizon",
    "reward",
    "actions_per_run",
    "base_schedule",
    "ppo_lr",
    "initial_lr_spread",
    "bounds_follow_start",
    "group_features",
    "momentum_control",
)
AC_STABILISERS = (
    "target_update",
    "twin_critics",
    "policy_delay",
    "target_noise",
    "target_noise_clip",
    "reward_scale",
    "critic_warmup",
    "actor_minibatch",
    "reward_minibatch",
)
"""The actor-critic's stabilisers, ``actor_minibatch`` and ``reward_minibatch``
(ActorCriticConfig fields of the same names; None: its default, paper B's Algorithm 1). The same
names as :data:`lrjax.algos.actor_critic_config.STABILISERS`, spelled out here so that the
parser imports no JAX (a test holds the two equal)."""
AC_STEP_SIZES = ("actor_learning_rate", "critic_learning_rate")
"""The step sizes of the actor's and the critic's Adam (alpha_theta and alpha_phi of Algorithm 1;
ActorCriticConfig fields of the same names; None: its default)."""
AC_ONLY = (
    "mode",
    "reset_every",
    "gamma",
    "actor_every",
    "critic_every",
    "exploration_std",
    *AC_STEP_SIZES,
    *AC_STABILISERS,
)


def resolve(args) -> None:
    """Fill the defaults that depend on ``--algo``, and refuse options of the other algorithm
    (before any work starts)."""
    from lrjax._validation import ConfigError

    ppo = args.algo == "ppo"
    flag = lambda name: "--" + name.replace("_", "-")
    other = AC_ONLY + ("same_minibatch",) if ppo else PPO_ONLY
    given = [n for n in other if getattr(args, n) not in (None, False)]
    if given:
        raise ConfigError(
            f"{', '.join(flag(n) for n in given)} is not allowed with --algo {args.algo}: "
            f"{'the actor-critic' if ppo else 'PPO'}'s option(s)."
        )
    _check_features(args.features)
    family = getattr(args, "family", None) is not None
    if family and not ppo:
        raise ConfigError(
            "--family is not allowed with --algo actor-critic: PPO trains across a family."
        )
    if args.preset is None:
        args.preset = ("loss_only" if family else "lrjax") if ppo else "paper_b"
    if not family and args.optimizer is None:
        args.optimizer = "sgd"
    if ppo and args.initial_lr_spread is None:
        args.initial_lr_spread = 10.0 if family else 1.0
    if family:
        fixed = [n for n in ("horizon", "batch_size", "optimizer") if getattr(args, n) is not None]
        if fixed:
            raise ConfigError(
                f"{', '.join(flag(n) for n in fixed)} is not allowed with --family: the family "
                "draws each update's budget, batch size and base optimizer."
            )
        if args.eval_episodes not in (0, 8):
            raise ConfigError(
                "--eval-episodes is not allowed with --family: a family's controller is "
                "evaluated on held-out trainees with `lrjax evaluate`."
            )
        args.eval_episodes = 0
    if ppo and args.actions_per_run is not None and args.horizon is None and not family:
        args.horizon = args.actions_per_run
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


def _check_features(features: str | None) -> None:
    """Refuse a preset's name given to ``--features`` (which picked the preset in earlier
    versions of lrjax), pointing to ``--preset``."""
    from lrjax._validation import ConfigError

    names = [n.strip() for n in (features or "").split(",")]
    preset = next((n for n in names if n in PRESETS), None)
    if preset is not None:
        raise ConfigError(
            f"--features={features!r} is not allowed: {preset} is a controller preset, picked "
            f"with --preset {preset}; --features takes comma-separated feature names (e.g. "
            "train_loss,val_loss; lrjax train --help lists them)."
        )


def controller_config(args):
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
        "actions_per_run": getattr(args, "actions_per_run", None),
        "base_schedule": getattr(args, "base_schedule", None),
    }
    if getattr(args, "group_features", None):
        given["group_features"] = tuple(
            n.strip() for n in args.group_features.split(",") if n.strip()
        )
    if getattr(args, "momentum_control", False):
        given["momentum_control"] = True
    config = getattr(ControllerConfig, args.preset)(
        **{k: v for k, v in given.items() if v is not None}
    )
    if args.features is None:
        return config
    names = tuple(n.strip() for n in args.features.split(",") if n.strip())
    if not names:
        raise ConfigError(f"--features={args.features!r} is not allowed: expected feature names.")
    spec = dataclasses.replace(config.features, features=names)
    return config.replace(features=spec)
