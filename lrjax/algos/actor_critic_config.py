"""The actor-critic's settings (Algorithm 1 of paper B, :mod:`lrjax.algos.actor_critic`): its
MDP (:class:`ActorCriticEnvConfig`, the shared :class:`~lrjax.mdp.MDPConfig` plus the episode
length) and the algorithm (:class:`ActorCriticConfig`), typed, frozen and validated in one place,
with defaults that follow paper B where it states them and are justified by measurement
(``RESULTS.md``, ``benchmarks/actor_critic_settings.py``) where it does not."""

from __future__ import annotations

import dataclasses

from lrjax import features as features_lib
from lrjax import mdp
from lrjax._validation import (
    ConfigError,
    check_choice,
    check_in_range,
    check_non_negative,
    check_non_negative_int,
    check_positive,
    check_positive_int,
)
from lrjax.controller import ControllerConfig

MODES = ("online", "meta")
ACTOR_MINIBATCHES = ("independent", "next")
"""Where the actor's minibatch ``x_j`` comes from (``ActorCriticConfig.actor_minibatch``)."""
REWARD_MINIBATCHES = ("same", "independent")
"""Which minibatch the reward's loss decrement is measured on
(``ActorCriticConfig.reward_minibatch``)."""
OPTIMIZERS = mdp.OPTIMIZERS
STABILISERS = (
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
"""The :class:`ActorCriticConfig` fields beyond Algorithm 1 (TD3's stabilisers, the reward scale,
the critic's warm-up, where the actor's and the reward's minibatches come from); each default is
paper B's algorithm, so a config that sets none of them is Algorithm 1."""
AC_INPUTS = ("loss", "params", "last_layer", "lr", "lr_bounds", "step", "total_steps")
"""The feature inputs the actor-critic provides at every step: the minibatch loss (``loss``),
the params (and the output layer), the LR and its bounds, the step and the episode length.
Validation inputs (``val_loss``, ``predictions``) would cost a validation pass per step and are
PPO's (:mod:`lrjax.env`)."""


@dataclasses.dataclass(frozen=True)
class ActorCriticEnvConfig(mdp.MDPConfig):
    """The actor-critic's MDP: the shared :class:`~lrjax.mdp.MDPConfig` (its divergence rule and
    penalty are :mod:`lrjax.mdp`'s, as PPO's environment's) with an action at every step and
    episodes of ``reset_every`` steps.

    Attributes:
      controller: the actor, its state function and action map (what a trained controller
        carries). Default :meth:`ControllerConfig.paper_b`: the minibatch loss, the LR itself in
        [1e-4, 1] (paper B's LR grid), starting at 1e-2. It acts every ``steps_per_action``
        (k) steps, as the deployed transform does: k = 1 is Algorithm 1; with k > 1 the LR,
        the state and the LSTM state are held between actions, an action's reward is the sum
        of its k steps' rewards, gamma discounts per action, and the critic and actor learn
        once per action (a semi-MDP, the shape of PPO's MDP). ``actions_per_run`` must be
        None. It needs only the inputs :data:`AC_INPUTS`.
      optimizer: the direction the LR scales: ``"sgd"`` (paper B), ``"momentum"`` (0.9) or
        ``"adam"``.
      divergence_factor, engine: see :class:`~lrjax.mdp.MDPConfig`.
      reset_every: e, reset the model to ``w_0`` every this many steps of an episode. Default
        None: never (online: one run); meta mode needs it.
    """

    controller: ControllerConfig = dataclasses.field(
        default_factory=lambda: ControllerConfig.paper_b()
    )
    reset_every: int | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.controller.actions_per_run is not None:
            raise ConfigError(
                f"controller.actions_per_run={self.controller.actions_per_run} is not allowed "
                "for the actor-critic: expected None (it acts every steps_per_action steps; "
                "Algorithm 1 at every step)."
            )
        if self.controller.layered:
            raise ConfigError(
                f"controller.group_features={self.controller.group_features} and "
                f"momentum_control={self.controller.momentum_control} are not allowed for the "
                "actor-critic: expected () and False (per-layer and momentum control are "
                "trained with PPO, lrjax train --algo ppo)."
            )
        if self.controller.base_schedule != "constant":
            raise ConfigError(
                f"controller.base_schedule={self.controller.base_schedule!r} is not allowed for "
                "the actor-critic: expected 'constant' (its actor sets the LR itself at every "
                "step; a base schedule is PPO's, lrjax train --algo ppo)."
            )
        features_lib.check_inputs(
            self.controller.features,
            AC_INPUTS,
            hint="the actor-critic provides these inputs at every step (validation features "
            "are PPO's: lrjax train --algo ppo).",
        )
        if self.reset_every is not None:
            check_positive_int("reset_every", self.reset_every)


@dataclasses.dataclass(frozen=True)
class ActorCriticConfig:
    """Settings of Algorithm 1. Paper B fixes the networks (actor: LSTM 2 x 20; critic: one
    hidden layer of 10) and the optimizer of both (Adam at default settings); the rest it leaves
    open, and the defaults are justified here (the measurements are in ``RESULTS.md`` and
    ``benchmarks/actor_critic_settings.py``).

    Attributes:
      env: the MDP (:class:`ActorCriticEnvConfig`: controller, optimizer, episode length,
        divergence factor, engine).
      mode: ``"online"`` (train one model, paper B's experiments) or ``"meta"`` (train the
        actor over many reset episodes, then deploy it). Default ``"online"``. Meta mode ends
        a diverged episode; online, the user's model trains on unless its loss is not finite.
      num_envs: trainees run side by side sharing the actor and critic (their gradients are
        averaged). Default 1 (online: one model; vmap :meth:`ActorCritic.train` over seeds).
      num_updates: updates (chunks of ``steps_per_update`` steps). Default 10.
      steps_per_update: Algorithm-1 steps per update. Default 100.
      gamma: discount of Eq. 7, in [0, 1]. Default 0.9: a horizon of about 10 steps, long
        enough to value a step's effect beyond the next minibatch (paper B's point against
        greedy decrements) while TD targets stay low-variance for a critic fitted online.
      critic_every: m_phi, steps whose critic gradients are averaged per Adam step. Default 1:
        TD learning per step, so the critic keeps up with an actor that changes every step.
      actor_every: m_theta, the same for the actor. Default 1: online, the model trains only
        once, so every step's gradient counts (at 10 the actor barely moved its LR on
        ``regression_2d``). Meta mode averages over ``num_envs`` as well.
      same_minibatch: the ablation of paper B section 3.4: the actor's gradient on ``x_i``
        (``s_{t+1}``) instead of a different minibatch ``x_j``. Default False (paper B).
      actor_minibatch: where the different minibatch ``x_j`` of the actor's gradient (lines
        20-23) comes from: ``"independent"``, a draw of its own (paper B), or ``"next"``, the
        minibatch the trainee's next step trains on, ``x_{t+1}``: its loss and gradient at
        ``w_{t+1}`` are computed once, for the actor's observation now and the trainee's step
        next, so a step costs one forward pass less and the minibatch stream is unchanged.
        Where the episode ends (a reset to ``w_0``), they are taken at ``w_0``, where the next
        step starts, and the actor observes that loss. Default ``"independent"``.
      reward_minibatch: where the reward's decrement ``f(w_t; x) - f(w_{t+1}; x)`` is measured:
        ``"same"``, on the minibatch ``x_i`` the step descended (paper B's Eq. 5), or
        ``"independent"``, on a minibatch of its own, drawn afresh each step (two forward passes
        more). On ``x_i`` the decrement keeps growing with the LR up to the line-search step of
        that one minibatch, so a greedy critic values LRs that overfit it; on an independent
        minibatch it measures the step's progress on the expected loss. Divergence is judged
        on ``x_i`` either way. Default ``"same"`` (paper B).
      exploration_std: the applied action is ``pi(s_t) + exploration_std * N(0, 1)`` (in the
        actor's output units u). Paper B states none (its on-policy deterministic
        actor-critic applies ``pi(s_t)`` itself); without it the critic sees one action per
        state and ``grad_a Q`` is its extrapolation, which measurably hurt on
        ``regression_2d``. Default 0.3 (in ``"absolute"`` mode about a factor 2 on the LR
        either way). 0 is paper B exactly.
      actor_learning_rate: Adam step size of the actor. Default 1e-3 (Adam's default, as
        paper B); 0 freezes the actor.
      critic_learning_rate: Adam step size of the critic. Default 1e-2: the per-step rewards
        are small (a thousandth of ``L_0`` once training slows) and the critic must keep
        ahead of the actor (Adam's default 1e-3 did worse on ``regression_2d``).
      critic_hidden: the critic's hidden units. Default 10 (paper B).
      target_update: tau of target networks (DDPG/TD3): the TD target's ``Q(s', pi(s'))`` comes
        from slowly moving copies of the critic and actor, ``phi' <- tau phi + (1 - tau) phi'``
        after every step (the target actor takes its step from the learning actor's LSTM
        carry). Default None: no target networks, the TD target from the learning critic and
        actor (paper B, Eq. 7). 1.0 is the same as None (the copies are the networks of the
        step before, the ones the step uses).
      twin_critics: clipped double Q (TD3): two critics, each fitted to the TD target
        ``r + gamma min(Q'_1, Q'_2)(s', a')``; the actor ascends the first. Default False (one
        critic, paper B).
      policy_delay: the actor's gradient enters its optimizer on every ``policy_delay``-th step
        only (TD3's delayed actor updates; combined with ``actor_every`` it accumulates that many
        delayed gradients). Default 1 (every step, paper B).
      target_noise: target policy smoothing (TD3): ``pi(s')`` of the TD target plus
        ``clip(target_noise N(0, 1), -target_noise_clip, target_noise_clip)``, in the actor's
        output units u. Default 0 (paper B).
      target_noise_clip: the bound of that noise. Default 0.5 (TD3's).
      reward_scale: the TD error's rewards (and divergence penalties) multiplied by this, to
        keep TD targets O(1) when the per-step decrements are tiny. Default 1 (paper B's
        rewards, in units of ``L_0``).
      critic_warmup: steps in which only the critic learns; the actor starts moving after
        them. Default 0 (paper B).
      eval_examples: test examples evaluated after each online update (the learning curve).
        Default 1000.
    """

    env: ActorCriticEnvConfig = ActorCriticEnvConfig()
    mode: str = "online"
    num_envs: int = 1
    num_updates: int = 10
    steps_per_update: int = 100
    gamma: float = 0.9
    critic_every: int = 1
    actor_every: int = 1
    same_minibatch: bool = False
    actor_minibatch: str = "independent"
    reward_minibatch: str = "same"
    exploration_std: float = 0.3
    actor_learning_rate: float = 1e-3
    critic_learning_rate: float = 1e-2
    critic_hidden: int = 10
    eval_examples: int = 1000
    target_update: float | None = None
    twin_critics: bool = False
    policy_delay: int = 1
    target_noise: float = 0.0
    target_noise_clip: float = 0.5
    reward_scale: float = 1.0
    critic_warmup: int = 0

    def __post_init__(self):
        if not isinstance(self.env, ActorCriticEnvConfig):
            raise ConfigError(f"env={self.env!r} is not allowed: expected an ActorCriticEnvConfig.")
        check_choice("mode", self.mode, MODES)
        for f in ("num_envs", "num_updates", "steps_per_update", "critic_every", "actor_every"):
            check_positive_int(f, getattr(self, f))
        check_in_range("gamma", self.gamma, 0.0, 1.0)
        if self.env.reset_every is None and self.mode == "meta":
            raise ConfigError(
                "reset_every=None is not allowed in mode='meta': the actor learns over episodes "
                "that reset the model every e steps; give e (e.g. "
                "ActorCriticEnvConfig(reset_every=1000))."
            )
        if not isinstance(self.same_minibatch, bool):
            raise ConfigError(
                f"same_minibatch={self.same_minibatch!r} is not allowed: expected True or False."
            )
        check_choice("actor_minibatch", self.actor_minibatch, ACTOR_MINIBATCHES)
        check_choice("reward_minibatch", self.reward_minibatch, REWARD_MINIBATCHES)
        if self.same_minibatch and self.actor_minibatch != "independent":
            raise ConfigError(
                f"actor_minibatch={self.actor_minibatch!r} is not allowed with "
                "same_minibatch=True: the actor observes the reward's minibatch x_i there; "
                "expected actor_minibatch='independent'."
            )
        check_non_negative("exploration_std", self.exploration_std)
        check_non_negative("actor_learning_rate", self.actor_learning_rate)
        check_non_negative("critic_learning_rate", self.critic_learning_rate)
        check_positive_int("critic_hidden", self.critic_hidden)
        check_positive_int("eval_examples", self.eval_examples)
        if self.target_update is not None:
            check_in_range("target_update", self.target_update, 0.0, 1.0)
        if not isinstance(self.twin_critics, bool):
            raise ConfigError(
                f"twin_critics={self.twin_critics!r} is not allowed: expected True or False."
            )
        check_positive_int("policy_delay", self.policy_delay)
        check_non_negative("target_noise", self.target_noise)
        check_non_negative("target_noise_clip", self.target_noise_clip)
        check_positive("reward_scale", self.reward_scale)
        check_non_negative_int("critic_warmup", self.critic_warmup)

    @property
    def controller(self) -> ControllerConfig:
        """The controller the actor is (``env.controller``)."""
        return self.env.controller

    @property
    def total_steps(self) -> int:
        """Steps of the whole run."""
        return self.num_updates * self.steps_per_update

    @property
    def episode_length(self) -> int:
        """Steps per episode: ``reset_every``, or the whole run (the ``total_steps`` input)."""
        return self.env.reset_every or self.total_steps
