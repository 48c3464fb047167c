"""The trainee as a reinforcement-learning environment, gymnax style.

An episode is one training run of a task; one environment step applies the controller's
learning rate for ``steps_per_action`` (k) optimizer steps of the trainee, then observes it
through the state function chi (:mod:`lrjax.features`) and pays a reward:

- ``"val_loss"`` (paper A): ``r_t = -L_val(w_{t+1})`` on a fixed-size validation minibatch;
- ``"loss_decrement"`` (paper B): ``r_t = L_val(w_t) - L_val(w_{t+1})`` (paper B uses the
  training minibatch; a validation minibatch makes the reward independent of the batch that
  moved the weights);
- ``"final"`` (paper A's RQ3 ablation): 0 except ``-L_val`` at the episode's last step.

The environment is pure: ``reset(key, data) -> (obs, state)`` and
``step(key, state, action, data) -> (obs, state, reward, done, info)``, with the task's data as
gymnax's "params" (so vmapping over problems is free). Episodes auto-reset: when ``done``, the
returned observation and state are those of a fresh episode, as in gymnax's wrappers.

Episode variety comes from the key: trainee initialisation, minibatch order and the initial
learning rate (log-uniform in ``initial_lr_range``).

A trainee diverges when its validation loss is not finite or exceeds ``divergence_factor`` times
its initial validation loss. Its episode ends with reward ``-divergence_factor * L_0 * (steps
left + 1)``, the worst the remaining per-step rewards could add up to, so ending an episode by
diverging never pays; ``info["diverged"]`` flags it. Other episodes in a vmapped batch continue
untouched.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from lrjax import engine, training
from lrjax import features as features_lib
from lrjax._validation import (
    ConfigError,
    check_choice,
    check_less,
    check_positive,
    check_positive_int,
)
from lrjax.controller import ControllerConfig, action_to_lr
from lrjax.tasks import Task, init_params

REWARDS = ("val_loss", "loss_decrement", "final")
OPTIMIZERS = ("sgd", "momentum", "adam")


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """How a trainee becomes an environment. Defaults follow paper A where it says, and are
    chosen to be cheap enough for a 2-core CPU where it does not.

    Attributes:
      controller: features, action mode and LR bounds (default: paper A's features, scale mode,
        alpha 1.05, LR in [1e-5, 1e-1]).
      optimizer: the controlled optimizer, ``"sgd"``, ``"momentum"`` (0.9) or ``"adam"``.
      steps_per_action: k, trainee optimizer steps per environment step. Default 10.
      horizon: environment steps per episode (an episode = ``horizon * k`` trainee steps).
        Default 20.
      reward: ``"val_loss"`` (paper A), ``"loss_decrement"`` (paper B) or ``"final"``.
      val_batch_size: validation examples drawn for the reward and ``val_loss`` feature each
        step. Default 128: an estimate cheap next to the k trainee steps it follows (5.5% of
        their time on the MNIST CNN with k = 10, ``BENCHMARKS.md``) whose noise PPO's
        advantage estimate averages out.
      probe_size: fixed validation examples whose predictions feed the prediction features.
        Default 32 (320 class probabilities for the variance features).
      initial_lr_range: the episode's first LR is log-uniform in this range (within the
        controller's bounds). Default (1e-3, 1e-1).
      divergence_factor: a validation loss above this times the initial one counts as diverged.
      unroll: unroll of the k-step inner scan (None: fully unrolled on CPU for conv trainees,
        where XLA runs convolutions in rolled loops slowly, else 1).
      batching: how episodes run side by side (:meth:`TraineeEnv.over_episodes`): ``"vmap"``
        or ``"map"`` (one after another). None: ``"map"`` on CPU for conv trainees, whose
        vmapped convolutions are grouped convolutions there, else ``"vmap"``
        (:func:`lrjax.engine.default_batching`).
      devices: at most this many devices share the episodes (``shard_map``; the most that
        divides the number of episodes is used). None: all host devices when episodes are
        mapped on CPU (XLA:CPU runs one program on about one core; see
        :func:`lrjax.engine.configure_host_devices`), else 1.
    """

    controller: ControllerConfig = dataclasses.field(
        default_factory=lambda: ControllerConfig.paper_a()
    )
    optimizer: str = "sgd"
    steps_per_action: int = 10
    horizon: int = 20
    reward: str = "val_loss"
    val_batch_size: int = 128
    probe_size: int = 32
    initial_lr_range: tuple[float, float] = (1e-3, 1e-1)
    divergence_factor: float = 5.0
    unroll: int | None = None
    batching: str | None = None
    devices: int | None = None

    def __post_init__(self):
        if not isinstance(self.controller, ControllerConfig):
            raise ConfigError(
                f"controller={self.controller!r} is not allowed: expected a ControllerConfig."
            )
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_positive_int("steps_per_action", self.steps_per_action)
        check_positive_int("horizon", self.horizon)
        check_choice("reward", self.reward, REWARDS)
        check_positive_int("val_batch_size", self.val_batch_size)
        check_positive_int("probe_size", self.probe_size)
        lo, hi = self.initial_lr_range
        check_positive("initial_lr_range[0]", lo)
        check_less("initial_lr_range[0]", lo, "initial_lr_range[1]", hi)
        c = self.controller
        if lo < c.lr_min or hi > c.lr_max:
            raise ConfigError(
                f"initial_lr_range={self.initial_lr_range!r} is not allowed: "
                f"expected within the controller's [{c.lr_min}, {c.lr_max}]."
            )
        check_positive("divergence_factor", self.divergence_factor)
        if self.divergence_factor <= 1:
            raise ConfigError(
                f"divergence_factor={self.divergence_factor!r} is not allowed: "
                "expected a number > 1."
            )
        if self.unroll is not None:
            check_positive_int("unroll", self.unroll)
        if self.batching is not None:
            check_choice("batching", self.batching, engine.BATCHINGS)
        if self.devices is not None:
            check_positive_int("devices", self.devices)


@struct.dataclass
class EnvState:
    """One episode in progress."""

    trainee: training.TraineeState
    lr: jax.Array
    t: jax.Array  # environment steps taken in this episode
    normaliser: features_lib.NormaliserState
    predictions: jax.Array  # on the probe examples, at the last observation
    val_loss: jax.Array  # at the last observation
    initial_val_loss: jax.Array
    episode_return: jax.Array


AVAILABLE_INPUTS = (
    "value",
    "val_loss",
    "predictions",
    "prev_predictions",
    "params",
    "lr",
    "lr_bounds",
    "step",
)


@dataclasses.dataclass(frozen=True)
class TraineeEnv:
    """A task as an environment (see the module docstring). Frozen, hashable: a static
    argument of ``jax.jit``."""

    task: Task
    config: EnvConfig = EnvConfig()

    def __post_init__(self):
        features_lib.check_inputs(
            self.config.controller.features,
            AVAILABLE_INPUTS,
            hint="the environment provides these inputs",
        )

    @property
    def obs_size(self) -> int:
        return self.config.controller.obs_size

    # -- pieces ---------------------------------------------------------------------------

    def optimizer(self, lr: jax.Array) -> optax.GradientTransformationExtraArgs:
        """The controlled optimizer at learning rate ``lr`` (a traced array)."""
        opt = self.config.optimizer
        if opt == "sgd":
            tx = optax.sgd(lr)
        elif opt == "momentum":
            tx = optax.sgd(lr, momentum=0.9)
        else:
            tx = optax.adam(lr)
        return optax.with_extra_args_support(tx)

    @property
    def batching(self) -> str:
        """``"vmap"`` or ``"map"``: how :meth:`over_episodes` runs episodes side by side."""
        return self.config.batching or engine.default_batching(self.task.uses_conv)

    def over_episodes(self, fn, num_batched_args: int):
        """``fn`` over episodes: batched over the leading axis of its first
        ``num_batched_args`` arguments (keys, states, actions), sharing the rest (the data),
        by :attr:`batching`, and split over devices (``EnvConfig.devices``). PPO's rollouts
        and the evaluation episodes go through here."""

        def run(*args):
            num_episodes = jax.tree.leaves(args[:num_batched_args])[0].shape[0]
            devices = self._devices(num_episodes)
            return engine.shard_over(fn, self.batching, devices, num_batched_args)(*args)

        return run

    def _devices(self, num_episodes: int) -> tuple[jax.Device, ...]:
        local = jax.local_devices()
        most = self.config.devices or (len(local) if self.batching == "map" else 1)
        count = max(d for d in range(1, min(most, len(local)) + 1) if num_episodes % d == 0)
        return tuple(local[:count])

    @property
    def eval_task(self) -> Task:
        """The task as used for forward-only evaluation (reward, probe, test metrics):
        :func:`lrjax.engine.evaluation_task` for this environment's batching."""
        return engine.evaluation_task(self.task, self.batching)

    def _unroll(self) -> int:
        if self.config.unroll is not None:
            return self.config.unroll
        cpu_conv = jax.default_backend() == "cpu" and self.task.uses_conv
        return self.config.steps_per_action if cpu_conv else 1

    def _evaluate(self, params, data, key) -> tuple[jax.Array, jax.Array]:
        """``(L_val estimate on a validation minibatch, predictions on the probe batch)``."""
        val_loss, predictions = self.eval_task.validation_probe(
            params, data, key, self.config.val_batch_size, self.config.probe_size
        )
        return val_loss, jnp.asarray(predictions, jnp.float32)

    def _observe(
        self, params, lr, train_loss, val_loss, predictions, prev_predictions, step, normaliser
    ):
        """chi: the feature inputs the environment provides -> normalised observation."""
        c = self.config.controller
        inputs = {
            "value": train_loss,
            "val_loss": val_loss,
            "predictions": predictions,
            "prev_predictions": prev_predictions,
            "params": params,
            "lr": lr,
            "lr_bounds": (c.lr_min, c.lr_max),
            "step": step,
        }
        return features_lib.observe(c.features, normaliser, inputs)

    # -- gymnax API -----------------------------------------------------------------------

    def reset(self, key: jax.Array, data: Any) -> tuple[jax.Array, EnvState]:
        """A fresh episode: new trainee init, data order and initial LR from ``key``."""
        k_init, k_run, k_lr, k_val = jax.random.split(key, 4)
        lo, hi = self.config.initial_lr_range
        lr = jnp.exp(jax.random.uniform(k_lr, (), minval=math.log(lo), maxval=math.log(hi)))
        params = init_params(self.task, k_init, data)
        tx = self.optimizer(lr)
        trainee = training.TraineeState(params, tx.init(params), k_run, jnp.zeros((), jnp.int32))
        val_loss, predictions = self._evaluate(params, data, k_val)
        normaliser = features_lib.init_normaliser(self.obs_size)
        obs, normaliser = self._observe(
            params,
            lr,
            val_loss,
            val_loss,
            predictions,
            predictions,
            jnp.zeros((), jnp.int32),
            normaliser,
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

    def step(
        self,
        key: jax.Array,
        state: EnvState,
        action: jax.Array,
        data: Any,
        *,
        auto_reset: bool = True,
    ):
        """Apply the action's LR for k trainee steps; observe, reward, auto-reset when done.

        Returns:
          ``(obs, state, reward, done, info)``; ``info`` holds ``lr`` (applied),
          ``val_loss``, ``train_loss``, ``diverged`` and, for the episode that ended,
          ``episode_return`` and ``final_val_loss`` (zeros while ``done`` is False).
        """
        lr = action_to_lr(action, state.lr, self.config.controller)
        return self.step_lr(key, state, lr, data, auto_reset=auto_reset)

    def step_lr(
        self, key: jax.Array, state: EnvState, lr: jax.Array, data: Any, *, auto_reset: bool = True
    ):
        """:meth:`step` with the learning rate given directly (constant-LR baselines).

        ``auto_reset=False`` returns the state after the step even when the episode ended (for
        evaluation, which wants the final trainee)."""
        lr = jnp.asarray(lr, jnp.float32)
        tx = self.optimizer(lr)
        step = lambda s, _: training.train_step(self.task, tx, s, data)
        trainee, (losses, _) = jax.lax.scan(
            step, state.trainee, length=self.config.steps_per_action, unroll=self._unroll()
        )
        return self.conclude_step(key, state, trainee, lr, losses[-1], data, auto_reset=auto_reset)

    def conclude_step(
        self,
        key: jax.Array,
        state: EnvState,
        trainee: training.TraineeState,
        lr: jax.Array,
        train_loss: jax.Array,
        data: Any,
        *,
        auto_reset: bool = True,
    ):
        """The second half of :meth:`step_lr`, once the trainee has taken its k steps at
        ``lr`` (ending with minibatch loss ``train_loss``): observe, reward, detect divergence,
        auto-reset. Public so that a host-driven loop (``benchmarks/ppo_throughput.py``) can
        run the trainee steps itself and still compute exactly what the environment does."""
        cfg = self.config
        k_val, k_reset = jax.random.split(key)
        val_loss, predictions = self._evaluate(trainee.params, data, k_val)
        t = state.t + 1
        obs, normaliser = self._observe(
            trainee.params,
            lr,
            train_loss,
            val_loss,
            predictions,
            state.predictions,
            t,
            state.normaliser,
        )

        limit = cfg.divergence_factor * state.initial_val_loss
        diverged = ~jnp.isfinite(val_loss) | (val_loss > limit) | ~jnp.isfinite(train_loss)
        last = t >= cfg.horizon
        if cfg.reward == "val_loss":
            reward = -val_loss
        elif cfg.reward == "loss_decrement":
            reward = state.val_loss - val_loss
        else:
            reward = jnp.where(last, -val_loss, 0.0)
        penalty = -limit * (cfg.horizon - t + 1).astype(jnp.float32)
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
            obs_out, state_out = jax.lax.cond(
                done, lambda: self.reset(k_reset, data), lambda: (obs, new)
            )
        else:
            obs_out, state_out = obs, new
        zero = jnp.zeros((), jnp.float32)
        info = {
            "lr": lr,
            "val_loss": val_loss,
            "train_loss": train_loss,
            "diverged": diverged,
            "episode_return": jnp.where(done, episode_return, zero),
            "final_val_loss": jnp.where(done, val_loss, zero),
        }
        return obs_out, state_out, reward, done, info
