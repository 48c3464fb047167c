"""The trainee as a reinforcement-learning environment, gymnax style: the MDP only.

An episode is one training run of a task. An environment step applies the controller's learning
rate for k = ``controller.steps_per_action`` optimizer steps of the trainee, then observes it
through the state function chi (:mod:`lrjax.features`) and pays a reward:

- ``"val_loss"`` (paper A): ``r_t = -L_val(w_{t+1}) / L_0``;
- ``"loss_decrement"`` (paper B): ``r_t = (L_val(w_t) - L_val(w_{t+1})) / L_0`` (paper B uses the
  training minibatch; the validation batch makes the reward independent of the batch that
  moved the weights);
- ``"final"`` (paper A's RQ3 ablation): 0 except ``-L_val / L_0`` at the episode's last step.

Rewards are in units of ``L_0``, the episode's initial validation loss: the papers' rewards up to
a constant factor per episode, which makes returns comparable across seeds and tasks and keeps
them O(1), so PPO needs no running reward scaling whose statistics one outlier would dominate.

``L_val`` is the loss on the first ``val_batch_size`` validation examples, the same examples at
every step (a low-noise reward); the prediction features use the first ``probe_size`` of them.

The environment observes the trainee exactly as :func:`lrjax.controller.scale_by_controller`
does in a user's loop, so a controller trained here acts the same way when deployed: at an
action the inputs are the loss on the minibatch the next optimizer step trains on (``value``),
the validation loss and probe predictions at the current params, the params, the previous LR
and the number of optimizer steps so far; the optimizer is ``chain(base, scale(-lr))``, which is
``chain(base, scale_by_controller(c))`` with the LR the controller chose.

The environment is pure: ``reset(key, data) -> (obs, state)`` and
``step(key, state, action, data) -> (obs, state, reward, done, info)``, with the task's data as
gymnax's "params" (so vmapping over problems is free). Episodes auto-reset: when ``done``, the
returned observation and state are those of a fresh episode, as in gymnax's wrappers.

Episode variety comes from the key: trainee initialisation, minibatch order and, with
``initial_lr_spread > 1``, the initial learning rate.

A trainee diverges when its validation loss is not finite or exceeds ``divergence_factor`` times
its initial validation loss. Its episode ends there and is scored as if its validation loss had
stayed at that limit to the end: reward ``-divergence_factor * (steps left + 1)`` for
``"val_loss"``, ``L_val(w_t) / L_0 - divergence_factor`` for ``"loss_decrement"`` (the return
then sums to ``1 - divergence_factor``) and ``-divergence_factor`` for ``"final"``. Ending an
episode by diverging thus never pays, and the penalty is bounded (by ``divergence_factor *
(horizon + 1)``, or ``divergence_factor``). ``info["diverged"]`` flags it. Other episodes in a
batch continue.

Observations are chi's features normalised as ``controller.features.normaliser`` says: with
``"ema"`` (and ``"none"``) the environment normalises them itself, restarting with each episode;
with ``"frozen"`` it returns the raw features, and the agent normalises them with statistics
gathered across all its episodes (PPO does; a trained controller carries them).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from lrjax import engine as engine_lib
from lrjax import features as features_lib
from lrjax import training
from lrjax._validation import ConfigError, check_choice, check_positive, check_positive_int
from lrjax.controller import ControllerConfig, action_to_lr
from lrjax.tasks import Task

REWARDS = ("val_loss", "loss_decrement", "final")
OPTIMIZERS = training.CONTROLLED_OPTIMIZERS

ENV_INPUTS = tuple(i for i in features_lib.INPUTS if i != "updates")
"""The feature inputs the environment provides: all but ``updates`` (its optimizer's direction
is not observed), and ``last_layer`` from the task's declared output layer."""


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """The MDP. Defaults are lrjax's, the setting whose PPO controller beats tuned baselines on
    ``fashion_mlp`` (``RESULTS.md``); paper A's is ``EnvConfig(controller=ControllerConfig.
    paper_a(), reward="val_loss", horizon=20)``.

    Attributes:
      controller: features, action map, LR bounds, initial LR and k (``steps_per_action``): what
        the trained controller will carry. Default: :meth:`ControllerConfig.lrjax` (paper A's
        features plus progress with frozen statistics, scale actions with alpha 1.25, LR in
        [1e-4, 1] from 0.1, k = 10).
      optimizer: the controlled optimizer, ``"sgd"``, ``"momentum"`` (0.9) or ``"adam"``; the
        controller's LR scales its direction (deploy as ``chain(base, scale_by_controller)``).
      horizon: environment steps per episode (an episode = ``horizon * k`` trainee steps).
        Default 40 (400 trainee steps at k = 10: long enough to warm up, hold and decay).
      reward: ``"val_loss"`` (paper A), ``"loss_decrement"`` (paper B) or ``"final"``. Default
        ``"loss_decrement"``: dense, and undiscounted it sums to the final loss's improvement,
        the quantity a schedule is judged by (paper A's per-step loss rewards the area under
        the curve instead).
      val_batch_size: validation examples of the reward and ``val_loss`` feature (the first ones
        of the split, the same at every step). Default 128: cheap next to the k trainee steps
        it follows (5.5% of their time on the MNIST CNN with k = 10, ``BENCHMARKS.md``).
      probe_size: the first validation examples whose predictions feed the prediction features.
        Default 32 (320 class probabilities for the variance features).
      initial_lr_spread: an episode's first LR is ``controller.initial_lr`` times a log-uniform
        factor in ``[1 / spread, spread]`` (clipped to the controller's bounds). Default 1: every
        episode starts at the initial LR the controller carries when deployed.
      divergence_factor: a validation loss above this times the initial one counts as diverged.
        Default 3 (a classifier that starts at chance, ln(10) = 2.3, has diverged at 6.9).
      engine: how episodes run side by side and how the k steps are unrolled
        (:mod:`lrjax.engine`; defaults suit the backend).
    """

    controller: ControllerConfig = dataclasses.field(
        default_factory=lambda: ControllerConfig.lrjax()
    )
    optimizer: str = "sgd"
    horizon: int = 40
    reward: str = "loss_decrement"
    val_batch_size: int = 128
    probe_size: int = 32
    initial_lr_spread: float = 1.0
    divergence_factor: float = 3.0
    engine: engine_lib.EngineConfig = engine_lib.EngineConfig()

    def __post_init__(self):
        if not isinstance(self.controller, ControllerConfig):
            raise ConfigError(
                f"controller={self.controller!r} is not allowed: expected a ControllerConfig."
            )
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_positive_int("horizon", self.horizon)
        check_choice("reward", self.reward, REWARDS)
        check_positive_int("val_batch_size", self.val_batch_size)
        check_positive_int("probe_size", self.probe_size)
        check_positive("initial_lr_spread", self.initial_lr_spread)
        if self.initial_lr_spread < 1:
            raise ConfigError(
                f"initial_lr_spread={self.initial_lr_spread!r} is not allowed: expected a "
                "number >= 1 (1: every episode starts at the controller's initial_lr)."
            )
        check_positive("divergence_factor", self.divergence_factor)
        if self.divergence_factor <= 1:
            raise ConfigError(
                f"divergence_factor={self.divergence_factor!r} is not allowed: "
                "expected a number > 1."
            )
        if not isinstance(self.engine, engine_lib.EngineConfig):
            raise ConfigError(f"engine={self.engine!r} is not allowed: expected an EngineConfig.")

    @property
    def steps_per_action(self) -> int:
        """k, read from the controller config (its one home)."""
        return self.controller.steps_per_action


@struct.dataclass
class EnvState:
    """One episode in progress."""

    trainee: training.TraineeState
    lr: jax.Array  # the LR applied at the last step (the initial LR before the first)
    t: jax.Array  # environment steps taken in this episode
    normaliser: features_lib.NormaliserState
    predictions: jax.Array  # on the probe examples, at the last observation
    val_loss: jax.Array  # at the last observation
    initial_val_loss: jax.Array
    episode_return: jax.Array


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
    def total_steps(self) -> int:
        """Optimizer steps of an episode, ``horizon * k`` (the ``total_steps`` input)."""
        return self.config.horizon * self.config.steps_per_action

    # -- execution --------------------------------------------------------------------------

    def engine(self, num_episodes: int | None = None) -> engine_lib.Engine:
        """The execution policy for ``num_episodes`` episodes side by side (k-step unroll,
        batching, devices, convolutions)."""
        return engine_lib.resolve(
            self.config.engine,
            uses_conv=self.task.uses_conv,
            num_steps=self.config.steps_per_action,
            num_items=num_episodes,
            shard_vmapped=False,
        )

    def over_episodes(self, fn, num_batched_args: int):
        """``fn`` over episodes: batched over the leading axis of its first
        ``num_batched_args`` arguments (keys, states, actions), sharing the rest (the data), as
        the engine says. PPO's rollouts and the evaluation episodes go through here."""

        def run(*args):
            num_episodes = jax.tree.leaves(args[:num_batched_args])[0].shape[0]
            return self.engine(num_episodes).over_items(fn, num_batched_args)(*args)

        return run

    def step_episodes(self, keys, state: EnvState, action, data):
        """:meth:`step` (with auto-reset) over a batch of episodes (leading axis), as PPO's
        rollout steps them; ``keys[i]`` is episode i's ``key``. Equal to
        ``over_episodes(step, 3)``.

        Where the episodes are vmapped, a per-episode auto-reset is a select that computes a
        fresh trainee (its init and first evaluation) for every episode at every action. Here
        the batch steps without auto-reset and then, only when some episode ended (a real
        branch, outside the vmap), fresh episodes replace the ended ones: with every episode
        ending at its horizon, that is once per horizon instead of every action.
        """
        if self.engine(len(keys)).batching == "map":  # the per-episode branch is real there
            return self.over_episodes(self.step, 3)(keys, state, action, data)
        step = functools.partial(self.step, auto_reset=False)
        obs, state, reward, done, info = self.over_episodes(step, 3)(keys, state, action, data)

        def replace_ended():
            fresh = self.over_episodes(self.reset, 1)(keys, data)
            pick = lambda f, x: jnp.where(done.reshape(done.shape + (1,) * (x.ndim - 1)), f, x)
            return jax.tree.map(pick, fresh, (obs, state))

        obs, state = jax.lax.cond(done.any(), replace_ended, lambda: (obs, state))
        return obs, state, reward, done, info

    @property
    def train_task(self) -> Task:
        """The task as used for the trainee's optimizer steps."""
        return self.engine().train_task(self.task)

    @property
    def eval_task(self) -> Task:
        """The task as used for forward-only evaluation (observation, reward, test metrics)."""
        return self.engine().eval_task(self.task)

    def optimizer(self, lr: jax.Array) -> optax.GradientTransformationExtraArgs:
        """The controlled optimizer at learning rate ``lr`` (a traced array)."""
        return training.controlled_optimizer(self.config.optimizer, lr)

    # -- observation ------------------------------------------------------------------------

    def _measure(self, trainee: training.TraineeState, data) -> tuple[jax.Array, ...]:
        """``(value, val_loss, predictions)`` at the trainee's params: the loss on the
        minibatch its next step trains on, the validation loss, the probe predictions."""
        task, cfg = self.eval_task, self.config
        value = task.loss(trainee.params, data, training.minibatch_key(trainee))
        val_loss, predictions = task.validation_probe(
            trainee.params, data, cfg.val_batch_size, cfg.probe_size
        )
        return value, val_loss, jnp.asarray(predictions, jnp.float32)

    def _observe(self, trainee, lr, value, val_loss, predictions, prev_predictions, normaliser):
        """chi: the inputs the environment provides -> normalised observation."""
        c = self.config.controller
        inputs = {
            "value": value,
            "val_loss": val_loss,
            "predictions": predictions,
            "prev_predictions": prev_predictions,
            "params": trainee.params,
            "last_layer": self.task.output_weights(trainee.params),
            "lr": lr,
            "lr_bounds": (c.lr_min, c.lr_max),
            "step": trainee.step,
            "total_steps": self.total_steps,
        }
        if c.features.normaliser == "frozen":
            return features_lib.raw_features(c.features, inputs), normaliser
        return features_lib.observe(c.features, normaliser, inputs)

    def _reward(self, state: EnvState, val_loss, t) -> tuple[jax.Array, jax.Array]:
        """``(reward, penalty)`` of a step to ``val_loss`` (see the module docstring), in units
        of the initial validation loss; ``penalty`` replaces the reward on divergence: the
        reward had the loss stayed at the divergence limit to the end."""
        cfg, l0 = self.config, state.initial_val_loss
        factor = jnp.float32(cfg.divergence_factor)
        if cfg.reward == "val_loss":
            steps_left = (cfg.horizon - t + 1).astype(jnp.float32)
            return -val_loss / l0, -factor * steps_left
        if cfg.reward == "loss_decrement":
            return (state.val_loss - val_loss) / l0, state.val_loss / l0 - factor
        return jnp.where(t >= cfg.horizon, -val_loss / l0, 0.0), -factor

    # -- gymnax API -------------------------------------------------------------------------

    def reset(self, key: jax.Array, data: Any) -> tuple[jax.Array, EnvState]:
        """A fresh episode: new trainee init and data order (and initial LR) from ``key``."""
        k_init, k_lr = jax.random.split(key)
        c = self.config.controller
        log_spread = math.log(self.config.initial_lr_spread)
        factor = jnp.exp(jax.random.uniform(k_lr, (), minval=-log_spread, maxval=log_spread))
        lr = jnp.clip(jnp.float32(c.initial_lr) * factor, c.lr_min, c.lr_max)
        trainee = training.init_trainee(self.train_task, self.optimizer(lr), k_init, data)
        value, val_loss, predictions = self._measure(trainee, data)
        obs, normaliser = self._observe(
            trainee,
            lr,
            value,
            val_loss,
            predictions,
            predictions,
            features_lib.init_normaliser(self.obs_size),
        )
        state = EnvState(
            trainee=trainee,
            lr=lr,
            t=jnp.zeros((), jnp.int32),
            normaliser=normaliser,
            predictions=predictions,
            val_loss=val_loss,
            initial_val_loss=val_loss,
            episode_return=jnp.zeros((), jnp.float32),
        )
        return obs, state

    def step(self, key, state: EnvState, action, data, *, auto_reset: bool = True):
        """Apply the action's LR for k trainee steps; observe, reward, auto-reset when done.

        Returns:
          ``(obs, state, reward, done, info)``; ``info`` holds ``lr`` (applied),
          ``val_loss``, ``train_loss``, ``diverged`` and, for the episode that ended,
          ``episode_return`` and ``final_val_loss`` (zeros while ``done`` is False).
        """
        lr = action_to_lr(action, state.lr, self.config.controller)
        return self.step_lr(key, state, lr, data, auto_reset=auto_reset)

    def step_lr(self, key, state: EnvState, lr, data, *, auto_reset: bool = True):
        """:meth:`step` with the learning rate given directly (constant-LR baselines).

        ``auto_reset=False`` returns the state after the step even when the episode ended (for
        evaluation, which wants the final trainee)."""
        lr = jnp.asarray(lr, jnp.float32)
        tx = self.optimizer(lr)
        step = lambda s, _: training.train_step(self.train_task, tx, s, data)
        k = self.config.steps_per_action
        trainee, (losses, _) = jax.lax.scan(
            step, state.trainee, length=k, unroll=self.engine().unroll
        )
        return self.conclude_step(key, state, trainee, lr, losses[-1], data, auto_reset=auto_reset)

    def conclude_step(
        self, key, state: EnvState, trainee, lr, train_loss, data, *, auto_reset: bool = True
    ):
        """The second half of :meth:`step_lr`, once the trainee has taken its k steps at
        ``lr`` (the last on minibatch loss ``train_loss``): observe, reward, detect divergence,
        auto-reset. Public so that a host-driven loop (``benchmarks/ppo_throughput.py``) can
        run the trainee steps itself and still compute exactly what the environment does."""
        cfg = self.config
        value, val_loss, predictions = self._measure(trainee, data)
        obs, normaliser = self._observe(
            trainee, lr, value, val_loss, predictions, state.predictions, state.normaliser
        )
        t = state.t + 1
        limit = cfg.divergence_factor * state.initial_val_loss
        diverged = ~jnp.isfinite(val_loss) | (val_loss > limit) | ~jnp.isfinite(train_loss)
        last = t >= cfg.horizon
        reward, penalty = self._reward(state, val_loss, t)
        reward = jnp.where(diverged, penalty, reward).astype(jnp.float32)
        done = last | diverged
        episode_return = state.episode_return + reward
        new = EnvState(
            trainee=trainee,
            lr=lr,
            t=t,
            normaliser=normaliser,
            predictions=predictions,
            val_loss=val_loss,
            initial_val_loss=state.initial_val_loss,
            episode_return=episode_return,
        )
        # A real branch where the environments run one after another (lax.map); under vmap
        # JAX turns it into a select that computes both sides, as gymnax's auto-reset does.
        if auto_reset:
            obs, new = jax.lax.cond(done, lambda: self.reset(key, data), lambda: (obs, new))
        zero = jnp.zeros((), jnp.float32)
        info = {
            "lr": lr,
            "val_loss": val_loss,
            "train_loss": train_loss,
            "diverged": diverged,
            "episode_return": jnp.where(done, episode_return, zero),
            "final_val_loss": jnp.where(done, val_loss, zero),
        }
        return obs, new, reward, done, info
