"""The trainee as a reinforcement-learning environment, gymnax style: the MDP only.

An episode is one training run of a task. An environment step applies the controller's learning
rate for k = ``controller.steps_per_action`` optimizer steps of the trainee, then observes it
through the state function chi (:mod:`lrjax.features`) and pays a reward by the rules of
:mod:`lrjax.mdp` (one definition, shared with paper B's actor-critic), on ``L_val``: ``"val_loss"``
(paper A), ``"loss_decrement"`` (paper B's, on the validation batch here: the reward is then
independent of the minibatch that moved the weights) or ``"final"``, in units of ``L_0``, the
episode's initial validation loss.

``L_val`` is the loss on the first ``val_batch_size`` validation examples, the same examples at
every step (a low-noise reward); the prediction features use the first ``probe_size`` of them.

The environment observes the trainee exactly as :func:`lrjax.controller.scale_by_controller`
does in a user's loop, so a controller trained here acts the same way when deployed: at an
action the inputs are the loss on the minibatch the next optimizer step trains on (``loss``),
the validation loss and probe predictions at the current params, the params, the previous LR
and the number of optimizer steps so far; the optimizer is ``chain(base, scale(-lr))``, which is
``chain(base, scale_by_controller(c))`` with the LR the controller chose.

The environment is pure and gymnax-shaped, with the task's data as gymnax's "params" (so
vmapping over problems is free): ``reset(key, data) -> (obs, state)``, ``step_env(key, state,
action, data) -> (obs, state, reward, done, info)`` (one step, no reset) and ``step`` (the same,
then a fresh episode where ``done``, as gymnax's auto-reset). :class:`VecEnv` runs a batch of
episodes side by side as the engine says (vmap, or ``lax.map`` for conv trainees on a CPU).

Episode variety comes from the key: trainee initialisation, minibatch order and, with
``initial_lr_spread > 1``, the initial learning rate.

A trainee diverges (:func:`lrjax.mdp.diverged`) when its validation loss is not finite or
exceeds ``divergence_factor`` times its initial one, or its training loss is not finite. Its
episode ends there with the bounded penalty of :func:`lrjax.mdp.divergence_penalty`;
``info["diverged"]`` flags it. Other episodes in a batch continue.

Observations are chi's raw features (logged where marked, not normalised): normalising them is
the agent's, with :func:`lrjax.features.observe_run` (the one place that decides whose statistics
normalise: the agent's across episodes for ``"frozen"``, the run's own for ``"ema"``), as the
deployed controller does.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from lrjax import engine as engine_lib
from lrjax import features as features_lib
from lrjax import mdp, training
from lrjax._validation import ConfigError, check_choice, check_positive, check_positive_int
from lrjax.controller import action_to_lr, action_to_momentum
from lrjax.controller import layer_transform as layers
from lrjax.controller.groups import Groups, make_groups
from lrjax.tasks import Task

REWARDS = mdp.REWARDS
OPTIMIZERS = mdp.OPTIMIZERS

ENV_INPUTS = tuple(i for i in features_lib.INPUTS if i != "updates")
"""The feature inputs the environment provides: all but ``updates`` (its optimizer's direction
is not observed), and ``last_layer`` from the task's declared output layer."""


@dataclasses.dataclass(frozen=True)
class EnvConfig(mdp.MDPConfig):
    """PPO's MDP: the shared :class:`~lrjax.mdp.MDPConfig` (controller, optimizer, divergence
    factor, engine) and paper A's episode. Defaults are lrjax's, the setting whose PPO controller
    beats tuned baselines on ``fashion_mlp`` (``RESULTS.md``); paper A's is
    ``EnvConfig(controller=ControllerConfig.paper_a(), reward="val_loss", horizon=20)``.

    Attributes:
      controller: see :class:`~lrjax.mdp.MDPConfig`. Default: :meth:`ControllerConfig.lrjax`
        (paper A's features plus progress with frozen statistics, scale actions with alpha 1.25,
        LR in [1e-4, 1] from 0.1, k = 10).
      optimizer, divergence_factor, engine: see :class:`~lrjax.mdp.MDPConfig`.
      horizon: environment steps per episode (an episode = ``horizon * k`` trainee steps).
        Default 40 (400 trainee steps at k = 10: long enough to warm up, hold and decay).
      reward: ``"val_loss"`` (paper A), ``"loss_decrement"`` (paper B) or ``"final"``
        (:mod:`lrjax.mdp`). Default ``"loss_decrement"``: dense, and undiscounted it sums to the
        final loss's improvement, the quantity a schedule is judged by (paper A's per-step loss
        rewards the area under the curve instead).
      val_batch_size: validation examples of the reward and ``val_loss`` feature (the first ones
        of the split, the same at every step). Default 128: cheap next to the k trainee steps it
        follows (``BENCHMARKS.md`` measures it).
      probe_size: the first validation examples whose predictions feed the prediction features.
        Default 32 (320 class probabilities for the variance features).
      initial_lr_spread: an episode's first LR is ``controller.initial_lr`` times a log-uniform
        factor in ``[1 / spread, spread]`` (clipped to the controller's bounds). Default 1: every
        episode starts at the initial LR the controller carries when deployed.
      bounds_follow_start: whether an episode's LR bounds move with its drawn start (by the
        start's factor over ``controller.initial_lr``), as
        :meth:`~lrjax.controller.ControllerConfig.with_initial_lr` moves them when a user
        deploys the controller from another LR. Default False: the controller's bounds hold for
        every episode. With False and ``initial_lr_spread > 1`` an episode that starts high has
        less room above it in training than the same start has when deployed (the bound clips
        its rise), so a policy can learn to rise freely where deployment punishes it.
    """

    horizon: int = 40
    reward: str = "loss_decrement"
    val_batch_size: int = 128
    probe_size: int = 32
    initial_lr_spread: float = 1.0
    bounds_follow_start: bool = False

    def __post_init__(self):
        super().__post_init__()
        check_positive_int("horizon", self.horizon)
        check_choice("reward", self.reward, REWARDS)
        check_positive_int("val_batch_size", self.val_batch_size)
        check_positive_int("probe_size", self.probe_size)
        check_positive("initial_lr_spread", self.initial_lr_spread)
        check_choice("bounds_follow_start", self.bounds_follow_start, (False, True))
        per_run = self.controller.actions_per_run
        if per_run is not None and self.horizon != per_run:
            raise ConfigError(
                f"horizon={self.horizon} is not allowed with controller.actions_per_run="
                f"{per_run}: expected horizon={per_run} (the controller acts that many times "
                "per run; set its steps_per_action to the budget over it)."
            )
        if self.initial_lr_spread < 1:
            raise ConfigError(
                f"initial_lr_spread={self.initial_lr_spread!r} is not allowed: expected a "
                "number >= 1 (1: every episode starts at the controller's initial_lr)."
            )


@struct.dataclass
class EnvState:
    """One episode in progress."""

    trainee: training.TraineeState
    lr: jax.Array  # the LR applied at the last step (the initial LR before the first)
    t: jax.Array  # environment steps taken in this episode
    predictions: jax.Array  # on the probe examples, at the last observation
    val_loss: jax.Array  # at the last observation
    initial_val_loss: jax.Array
    episode_return: jax.Array
    history: features_lib.LossHistory  # of the observed minibatch losses, as the transform's
    # A layered controller's (per group or with momentum, ``ControllerConfig.layered``): ``lr``
    # is then per group ``(G,)``, and these hold each group's momentum and the params at the
    # last observation (for ``group_step_vs_mean``); () otherwise.
    momentum: Any = ()
    anchor: Any = ()


@dataclasses.dataclass(frozen=True)
class TraineeEnv:
    """A task as an environment (see the module docstring). Frozen, hashable: a static
    argument of ``jax.jit``."""

    task: Task
    config: EnvConfig = EnvConfig()

    def __post_init__(self):
        features_lib.check_inputs(
            self.config.controller.features,
            (*ENV_INPUTS, "last_layer"),
            hint="the environment provides these inputs",
        )

    @property
    def obs_size(self) -> int:
        return self.config.controller.obs_size

    @property
    def probe(self) -> features_lib.Probe:
        """What this environment's ``val_loss`` and ``predictions`` inputs hold (its
        ``val_batch_size``, ``probe_size`` and the task's kind of output), recorded in the
        controllers trained on it."""
        cfg = self.config
        return features_lib.Probe(cfg.val_batch_size, cfg.probe_size, self.task.probe_outputs)

    @property
    def total_steps(self) -> int:
        """Optimizer steps of an episode, ``horizon * k`` (the ``total_steps`` input)."""
        return self.config.horizon * self.config.steps_per_action

    # -- how the trainee computes -----------------------------------------------------------

    @property
    def _engine(self) -> engine_lib.Engine:
        return engine_lib.resolve(
            self.config.engine,
            uses_conv=self.task.uses_conv,
            cpu_conv_impl=self.task.cpu_conv_impl,
            num_steps=self.config.steps_per_action,
            shard_vmapped=False,
        )

    @property
    def train_task(self) -> Task:
        """The task as used for the trainee's optimizer steps (the engine's conv choice)."""
        return self._engine.train_task(self.task)

    @property
    def eval_task(self) -> Task:
        """The task as used for forward-only evaluation (observation, reward, test metrics)."""
        return self._engine.eval_task(self.task)

    def optimizer(self, lr: jax.Array, momentum=None, groups=None):
        """The controlled optimizer at learning rate ``lr`` (a traced array; per group ``(G,)``
        for a layered controller, with each group's ``momentum`` under momentum control)."""
        if groups is None:
            return training.controlled_optimizer(self.config.optimizer, lr)
        controlled = momentum if self.config.controller.momentum_control else None
        return layers.layer_optimizer(self.config.optimizer, groups, lr, controlled)

    @property
    def layered(self) -> bool:
        """Whether the controller is per group or sets momentum (``ControllerConfig.layered``)."""
        return self.config.controller.layered

    def groups(self, params) -> Groups:
        """The trainee's parameter groups (one unless the controller is per group)."""
        if not self.config.controller.per_group:
            return make_groups(params, jax.tree.map(lambda _: 0, params))
        return make_groups(params)

    # -- observation ------------------------------------------------------------------------

    def _measure(self, trainee: training.TraineeState, data) -> tuple[jax.Array, ...]:
        """``(loss, val_loss, predictions)`` at the trainee's params: the loss on the
        minibatch its next step trains on, the validation loss, the probe predictions."""
        task, cfg = self.eval_task, self.config
        loss = task.loss(trainee.params, data, training.minibatch_key(trainee))
        val_loss, predictions = task.validation_probe(
            trainee.params, data, cfg.val_batch_size, cfg.probe_size
        )
        return loss, val_loss, jnp.asarray(predictions, jnp.float32)

    def _observe(
        self,
        trainee,
        lr,
        loss,
        val_loss,
        predictions,
        prev_predictions,
        history,
        momentum=(),
        anchor=(),
    ) -> jax.Array:
        """chi's raw features of the trainee (:func:`lrjax.features.feature_inputs`);
        ``history`` already holds this observation's loss, as the transform's does. A layered
        controller's are per group, ``(G, obs_size)``, as
        :func:`~lrjax.controller.scale_by_layer_controller` computes them."""
        c = self.config.controller
        moved = self._bounds_factor(history)
        inputs = features_lib.feature_inputs(
            loss=loss,
            val_loss=val_loss,
            predictions=predictions,
            prev_predictions=prev_predictions,
            params=trainee.params,
            last_layer=self.task.output_weights(trainee.params),
            lr=layers.mean_lr(lr) if self.layered else lr,
            lr_bounds=(c.lr_min * moved, c.lr_max * moved),
            step=trainee.step,
            total_steps=self.total_steps,
            loss_history=history,
        )
        raw = features_lib.raw_features(c.features, inputs)
        if not self.layered:
            return raw
        return layers.group_observation(
            c,
            self.groups(trainee.params),
            raw,
            lr=lr,
            momentum=momentum,
            history=history,
            first=history.count == 1,
            params=trainee.params,
            anchor=anchor if "group_step_vs_mean" in c.group_features else None,
        )

    # -- gymnax API -------------------------------------------------------------------------

    def reset(self, key: jax.Array, data: Any) -> tuple[jax.Array, EnvState]:
        """A fresh episode: new trainee init and data order (and initial LR) from ``key``."""
        k_init, k_lr = jax.random.split(key)
        c = self.config.controller
        log_spread = math.log(self.config.initial_lr_spread)
        factor = jnp.exp(jax.random.uniform(k_lr, (), minval=-log_spread, maxval=log_spread))
        lr = jnp.clip(jnp.float32(c.initial_lr) * factor, c.lr_min, c.lr_max)
        momentum, groups = (), None
        if self.layered:
            groups = self.groups(jax.eval_shape(self.train_task.init, k_init, data))
            lr = jnp.full((groups.size,), lr)
            momentum = jnp.full((groups.size,), c.initial_momentum, jnp.float32)
        tx = self.optimizer(lr, momentum, groups)
        trainee = training.init_trainee(self.train_task, tx, k_init, data)
        loss, val_loss, predictions = self._measure(trainee, data)
        history = features_lib.update_history(
            features_lib.init_history(), loss, layers.mean_lr(lr) if self.layered else lr
        )
        anchor = trainee.params if "group_step_vs_mean" in c.group_features else ()
        obs = self._observe(
            trainee, lr, loss, val_loss, predictions, predictions, history, momentum, anchor
        )
        state = EnvState(
            trainee=trainee,
            lr=lr,
            t=jnp.zeros((), jnp.int32),
            predictions=predictions,
            val_loss=val_loss,
            initial_val_loss=val_loss,
            episode_return=jnp.zeros((), jnp.float32),
            history=history,
            momentum=momentum,
            anchor=anchor,
        )
        return obs, state

    def step(self, key, state: EnvState, action, data):
        """:meth:`step_env`, then a fresh episode (from ``key``) where it ended (gymnax's
        auto-reset).

        Returns:
          ``(obs, state, reward, done, info)``; ``info`` holds ``lr`` (applied),
          ``val_loss``, ``train_loss``, ``diverged`` and, for the episode that ended,
          ``episode_return`` and ``final_val_loss`` (zeros while ``done`` is False).
        """
        obs, new, reward, done, info = self.step_env(key, state, action, data)
        obs, new = self.auto_reset(key, data, obs, new, done)
        return obs, new, reward, done, info

    def step_lr(self, key, state: EnvState, lr, data):
        """:meth:`step` with the learning rate given directly (reference schedules)."""
        obs, new, reward, done, info = self.step_env_lr(key, state, lr, data)
        obs, new = self.auto_reset(key, data, obs, new, done)
        return obs, new, reward, done, info

    def auto_reset(self, key, data, obs, state: EnvState, done) -> tuple[jax.Array, EnvState]:
        """``reset(key, data)`` where ``done``, else ``(obs, state)``. A real branch where the
        environments run one after another (lax.map); under vmap JAX turns it into a select
        that computes both sides, as gymnax's auto-reset does (:class:`VecEnv` avoids that)."""
        return jax.lax.cond(done, lambda: self.reset(key, data), lambda: (obs, state))

    def step_env(self, key, state: EnvState, action, data):
        """Apply the action's LR (times the base schedule's factor at ``t / horizon``,
        ``ControllerConfig.base_schedule``) for k trainee steps; observe and reward (no reset:
        the state after the step even when the episode ended, e.g. for evaluation, which wants
        the final trainee). Returns what :meth:`step` does."""
        controller = self.config.controller
        u_lr, u_momentum = layers.split_action(controller, action)
        lr = action_to_lr(u_lr, state.lr, controller, self.bounds_factor(state))
        factor = controller.schedule_factor(state.t / self.config.horizon)
        momentum = state.momentum
        if controller.momentum_control:
            momentum = action_to_momentum(u_momentum, controller)
        return self._train_and_conclude(state, lr, lr * factor, data, momentum)

    def bounds_factor(self, state: EnvState) -> jax.Array | float:
        """What the episode's LR bounds are the controller's times: its start over
        ``controller.initial_lr`` where ``bounds_follow_start`` (the start is the history's
        first LR), else 1."""
        return self._bounds_factor(state.history)

    def _bounds_factor(self, history: features_lib.LossHistory) -> jax.Array | float:
        if not self.config.bounds_follow_start:
            return 1.0
        return jnp.exp(history.start_lr) / jnp.float32(self.config.controller.initial_lr)

    def step_env_lr(self, key, state: EnvState, lr, data):
        """:meth:`step_env` with the learning rate given directly (no reset, no base
        schedule: reference schedules give the LR they apply)."""
        del key  # the trainee's own key draws its minibatches
        lr = jnp.broadcast_to(jnp.asarray(lr, jnp.float32), jnp.shape(state.lr))
        return self._train_and_conclude(state, lr, lr, data, state.momentum)

    def _train_and_conclude(self, state: EnvState, lr, applied, data, momentum=()):
        """k trainee steps at ``applied`` (and ``momentum``, a layered controller's), then
        :meth:`conclude` (the state keeps ``lr``)."""
        groups = self.groups(state.trainee.params) if self.layered else None
        tx = self.optimizer(applied, momentum, groups)
        step = lambda s, _: training.train_step(self.train_task, tx, s, data)
        k = self.config.steps_per_action
        trainee, (losses, _) = jax.lax.scan(
            step, state.trainee, length=k, unroll=self._engine.unroll
        )
        return self.conclude(
            state, trainee, lr, losses[-1], data, applied=applied, momentum=momentum
        )

    def conclude(self, state: EnvState, trainee, lr, train_loss, data, applied=None, momentum=()):
        """The second half of :meth:`step_env_lr`, once the trainee has taken its k steps at
        ``lr`` (the last on minibatch loss ``train_loss``): observe, reward, detect divergence
        (:func:`lrjax.mdp.step_outcome`). Public so that a host-driven loop
        (``benchmarks/ppo_throughput.py``) can run the trainee steps itself and still compute
        exactly what the environment does. ``lr`` is the controller's LR (what the state, the
        history and the observation keep), ``applied`` the LR the trainee took (``lr`` times
        the base schedule's factor; default ``lr``), reported as ``info["lr"]``."""
        cfg = self.config
        applied = lr if applied is None else applied
        loss, val_loss, predictions = self._measure(trainee, data)
        mean_lr = layers.mean_lr(lr) if self.layered else lr
        history = features_lib.update_history(state.history, loss, mean_lr)
        anchor = trainee.params if "group_step_vs_mean" in cfg.controller.group_features else ()
        obs = self._observe(
            trainee,
            lr,
            loss,
            val_loss,
            predictions,
            state.predictions,
            history,
            momentum,
            state.anchor,
        )
        t = state.t + 1
        reward, diverged = mdp.step_outcome(
            cfg.reward,
            state.val_loss,
            val_loss,
            train_loss,
            state.initial_val_loss,
            cfg.divergence_factor,
            t,
            cfg.horizon,
        )
        done = (t >= cfg.horizon) | diverged
        episode_return = state.episode_return + reward
        new = EnvState(
            trainee=trainee,
            lr=lr,
            t=t,
            predictions=predictions,
            val_loss=val_loss,
            initial_val_loss=state.initial_val_loss,
            episode_return=episode_return,
            history=history,
            momentum=momentum,
            anchor=anchor,
        )
        zero = jnp.zeros((), jnp.float32)
        layered = {}
        if self.layered:  # the groups' LRs and momenta; "lr" is their geometric mean
            layered = {"group_lr": applied, "momentum": momentum}
            applied = layers.mean_lr(applied)
        info = {
            **layered,
            "lr": applied,
            "val_loss": val_loss,
            "train_loss": train_loss,
            "diverged": diverged,
            "episode_return": jnp.where(done, episode_return, zero),
            "final_val_loss": jnp.where(done, val_loss, zero),
        }
        return obs, new, reward, done, info


@dataclasses.dataclass(frozen=True)
class VecEnv:
    """Episodes of one environment side by side (leading axis), as the engine says: vmapped,
    or one after another with ``lax.map`` (conv trainees on a CPU), split over host devices
    where it shards. The one place that batches episodes: PPO's rollouts and the evaluation
    episodes go through here."""

    env: TraineeEnv

    def engine(self, num_episodes: int | None = None) -> engine_lib.Engine:
        """The execution policy for ``num_episodes`` episodes side by side."""
        return engine_lib.resolve(
            self.env.config.engine,
            uses_conv=self.env.task.uses_conv,
            cpu_conv_impl=self.env.task.cpu_conv_impl,
            num_steps=self.env.config.steps_per_action,
            num_items=num_episodes,
            shard_vmapped=False,
        )

    def over_episodes(self, fn, num_batched_args: int):
        """``fn`` over episodes: batched over the leading axis of its first
        ``num_batched_args`` arguments (keys, states, actions), sharing the rest (the data)."""

        def run(*args):
            num_episodes = jax.tree.leaves(args[:num_batched_args])[0].shape[0]
            return self.engine(num_episodes).over_items(fn, num_batched_args)(*args)

        return run

    def reset(self, keys, data):
        """:meth:`TraineeEnv.reset` of each key."""
        return self.over_episodes(self.env.reset, 1)(keys, data)

    def step_env(self, keys, state: EnvState, action, data):
        """:meth:`TraineeEnv.step_env` of each episode (no reset)."""
        return self.over_episodes(self.env.step_env, 3)(keys, state, action, data)

    def step(self, keys, state: EnvState, action, data):
        """:meth:`TraineeEnv.step` of each episode (with auto-reset); ``keys[i]`` is episode
        i's ``key``.

        Where the episodes are vmapped, a per-episode auto-reset is a select that computes a
        fresh trainee (its init and first evaluation) for every episode at every action. Here
        the batch steps without reset and then, only when some episode ended (a real branch,
        outside the vmap), fresh episodes replace the ended ones: with every episode ending at
        its horizon, that is once per horizon instead of every action.
        """
        if self.engine(len(keys)).batching == "map":  # the per-episode branch is real there
            return self.over_episodes(self.env.step, 3)(keys, state, action, data)
        obs, state, reward, done, info = self.step_env(keys, state, action, data)

        def replace_ended():
            fresh = self.reset(keys, data)
            pick = lambda f, x: jnp.where(done.reshape(done.shape + (1,) * (x.ndim - 1)), f, x)
            return jax.tree.map(pick, fresh, (obs, state))

        obs, state = jax.lax.cond(done.any(), replace_ended, lambda: (obs, state))
        return obs, state, reward, done, info
