"""Paper A: train a learning-rate controller with PPO, many trainee episodes in one program.

:class:`PPO` holds pure functions in the PureJaxRL manner (Lu et al. 2022):

- ``init(key, data) -> RunnerState``;
- ``update(runner, data) -> (runner, metrics)``: one PPO iteration: a rollout of
  ``rollout_length`` environment steps in ``num_envs`` trainee episodes (``vmap`` over
  environments, or ``lax.map`` for conv trainees on CPU: ``EnvConfig.batching``; ``lax.scan``
  over time), generalised advantage estimation, then
  ``update_epochs`` epochs over ``num_minibatches`` minibatches of whole environment sequences
  (the actor is an LSTM, so its log-probabilities are recomputed along each sequence from the
  rollout's first carry, resetting the carry at episode starts);
- ``run_updates(runner, data, n) -> (runner, metrics)``: ``n`` updates in one ``lax.scan``;
- ``train(key, data) -> (runner, metrics)``: ``init`` and ``num_updates`` updates, i.e. the
  whole training as one compiled program;
  ``jax.jit(jax.vmap(train, in_axes=(0, None)))(keys, data)`` trains one controller per key.

The host-side driver :func:`lrjax.algos.runner.run` executes ``run_updates`` in chunks, and
between chunks shows progress, appends metrics to a JSONL file and saves orbax checkpoints from
which it resumes bit-identically.

Loss (Schulman et al. 2017, eq. 9): ``L = L^CLIP + vf_coef * L^VF - ent_coef * H[pi]``.

Observations: with the ``"frozen"`` feature normaliser (the default of
:meth:`~lrjax.controller.ControllerConfig.lrjax`), PPO normalises the environment's raw features
with the exact mean and variance of every observation of its training so far
(:func:`lrjax.features.accumulate`), as PPO implementations normalise observations; the
statistics are fixed during an update (the rollout and the loss see the same normalisation) and
grow after it, and the trained controller carries them. With ``"ema"`` each episode normalises
with its own statistics, restarted at its start. Both through
:func:`lrjax.features.observe_run`, as the evaluation episodes and a deployed controller do.

The critic is time-aware, ``V(s_t, t / horizon)`` (Pardo et al. 2018, "Time Limits in
Reinforcement Learning"): episodes have a fixed horizon, so the value depends on the time left,
which the actor's features need not show. The critic is only used in training.

Rewards are O(1) by construction (the environment's rewards are relative to the initial
validation loss, :mod:`lrjax.mdp`), so PPO scales none.
The Gaussian policy over the actor's action and the critic are :mod:`lrjax.algos.policy`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from lrjax._validation import (
    ConfigError,
    check_in_range,
    check_non_negative,
    check_positive,
    check_positive_int,
)
from lrjax.algos import ppo_math
from lrjax.algos.policy import ValueCritic, gaussian_entropy, gaussian_log_prob, sample_action
from lrjax.controller import (
    Controller,
    actor_step,
    init_actor_params,
    initial_carry,
    reset_carry,
)
from lrjax.controller import layer_transform as layers
from lrjax.env import TraineeEnv, VecEnv
from lrjax.features import (
    NormaliserState,
    accumulate,
    deployed_normaliser,
    init_normaliser,
    observe_run,
)


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """PPO settings. Paper A gives none; these are PureJaxRL's continuous-control defaults
    scaled to trainee episodes (expensive environment steps, short horizons).

    Attributes:
      num_envs: trainee episodes run in parallel (vmapped). Default 8.
      num_updates: PPO iterations. Default 50.
      rollout_length: environment steps per rollout (None: the episode horizon, so each rollout
        is one episode per environment).
      update_epochs: passes over each rollout. Default 4.
      num_minibatches: minibatches per epoch, split over environments (whole sequences, as the
        actor is recurrent); must divide ``num_envs``. Default 2.
      gamma: discount. Default 1: episodes have a fixed horizon and the critic sees the time
        left, and undiscounted decrements of the validation loss (the environment's
        ``"loss_decrement"`` reward) sum to the improvement of the final loss, the quantity a
        schedule is judged by.
      gae_lambda: GAE lambda. Default 0.95.
      clip_eps: PPO ratio clip. Default 0.2.
      vf_coef: value-loss weight. Default 0.5.
      ent_coef: entropy bonus weight. Default 0.0 (the state-independent log-std already
        explores; a bonus keeps it from shrinking).
      learning_rate: Adam step size of actor and critic. Default 3e-3: at PureJaxRL's 3e-4 the
        policy barely moved on trainee episodes (approx_kl far below PPO's usual 1e-3..2e-2);
        at 3e-3 it stays within that range (``RESULTS.md``).
      max_grad_norm: global gradient-norm clip. Default 0.5.
      critic_hidden: hidden sizes of V(s). Default (64, 64).

    How the environments run side by side (vmapped, or one after another for conv trainees on
    CPU) is the environment's execution policy, ``EnvConfig.engine``.
    """

    num_envs: int = 8
    num_updates: int = 50
    rollout_length: int | None = None
    update_epochs: int = 4
    num_minibatches: int = 2
    gamma: float = 1.0
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    learning_rate: float = 3e-3
    max_grad_norm: float = 0.5
    critic_hidden: tuple[int, ...] = (64, 64)

    def __post_init__(self):
        for f in ("num_envs", "num_updates", "update_epochs", "num_minibatches"):
            check_positive_int(f, getattr(self, f))
        if self.rollout_length is not None:
            check_positive_int("rollout_length", self.rollout_length)
        if self.num_envs % self.num_minibatches:
            raise ConfigError(
                f"num_minibatches={self.num_minibatches} is not allowed: it must "
                f"divide num_envs={self.num_envs}."
            )
        check_in_range("gamma", self.gamma, 0.0, 1.0)
        check_in_range("gae_lambda", self.gae_lambda, 0.0, 1.0)
        check_positive("clip_eps", self.clip_eps)
        check_non_negative("vf_coef", self.vf_coef)
        check_non_negative("ent_coef", self.ent_coef)
        check_positive("learning_rate", self.learning_rate)
        check_positive("max_grad_norm", self.max_grad_norm)


@struct.dataclass
class RunnerState:
    """Everything PPO training carries from one update to the next."""

    params: dict[str, Any]  # {"actor": ..., "critic": ...}
    opt_state: Any
    env_state: Any  # [num_envs] EnvState
    obs: jax.Array  # [num_envs, obs_size]
    carry: Any  # actor LSTM carry, batched [num_envs, ...]
    done: jax.Array  # [num_envs] whether the previous step ended an episode
    obs_stats: NormaliserState  # of every raw observation so far ("frozen" normaliser)
    run_stats: NormaliserState  # [num_envs]: each episode's own, before ``obs`` ("ema")
    key: jax.Array
    updates_done: jax.Array


class Transition(NamedTuple):
    """One environment step of a rollout, as PPO's update reads it: arrays with leading axes
    ``[T, E]`` (steps of the rollout, episodes side by side); ``info`` holds the environment's
    per-step diagnostics (e.g. the LR applied, the validation loss)."""

    obs: jax.Array  # as the actor saw it (normalised)
    raw_obs: jax.Array  # as the environment returned it
    progress: jax.Array  # t / horizon, the critic's time input
    reset: jax.Array  # carry was reset before this step (episode start)
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array  # the critic's V(s_t, t / horizon)
    reward: jax.Array
    done: jax.Array
    info: dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class PPO:
    """The pure functions of PPO training for one environment and config (see module doc)."""

    env: TraineeEnv
    config: PPOConfig
    name = "PPO"

    @property
    def num_updates(self) -> int:
        return self.config.num_updates

    @property
    def controller_config(self):
        return self.env.config.controller

    @property
    def rollout_length(self) -> int:
        return self.config.rollout_length or self.env.config.horizon

    def _critic(self) -> ValueCritic:
        return ValueCritic(hidden=self.config.critic_hidden)

    def _value(self, critic_params, obs, progress) -> jax.Array:
        """The time-aware critic, ``V(s, t / horizon)`` (a layered controller's ``s``: the mean
        over its groups)."""
        obs = layers.value_input(obs, self.controller_config)
        x = jnp.concatenate([obs, progress[..., None].astype(obs.dtype)], axis=-1)
        return self._critic().apply({"params": critic_params}, x)

    def _progress(self, env_state) -> jax.Array:
        return env_state.t.astype(jnp.float32) / self.env.config.horizon

    @property
    def vec_env(self) -> VecEnv:
        """The environment's episodes side by side."""
        return VecEnv(self.env)

    def policy_obs(self, runner: RunnerState) -> tuple[jax.Array, NormaliserState]:
        """What the actor sees of ``runner.obs`` (the environment's raw observations):
        normalised as :func:`lrjax.features.observe_run` says, an episode that starts there
        with fresh statistics; and the episodes' statistics after it."""
        spec = self.controller_config.features
        if self.controller_config.layered:  # unnormalised (group_observation clips them)
            return runner.obs, runner.run_stats
        fresh = init_normaliser(spec.size)
        starts = lambda x, f: jnp.where(runner.done.reshape((-1,) + (1,) * (x.ndim - 1)), f, x)
        run_stats = jax.tree.map(
            lambda x, f: starts(x, jnp.broadcast_to(f, x.shape)), runner.run_stats, fresh
        )
        return jax.vmap(lambda s, o: observe_run(spec, runner.obs_stats, s, o))(
            run_stats, runner.obs
        )

    def _tx(self) -> optax.GradientTransformation:
        return optax.chain(
            optax.clip_by_global_norm(self.config.max_grad_norm),
            optax.adam(self.config.learning_rate, eps=1e-5),
        )

    # -- init -------------------------------------------------------------------------------

    def init_agent(self, key: jax.Array) -> tuple[dict[str, Any], Any]:
        """Fresh ``(params, opt_state)`` of actor and critic (their shapes depend on the
        controller's features only, not on the trainee: a family's updates share them)."""
        return self._agent(*jax.random.split(key))

    def _agent(self, k_actor, k_critic) -> tuple[dict[str, Any], Any]:
        ccfg = self.controller_config
        params = {
            "actor": init_actor_params(k_actor, ccfg),
            "critic": self._critic().init(k_critic, jnp.zeros((ccfg.obs_size + 1,)))["params"],
        }
        return params, self._tx().init(params)

    def start(
        self, key: jax.Array, data: Any, params, opt_state, obs_stats: NormaliserState
    ) -> RunnerState:
        """A runner of ``num_envs`` fresh episodes for the agent ``(params, opt_state)`` whose
        observation statistics so far are ``obs_stats`` (they grow by the first observations)."""
        return self._start(*jax.random.split(key), data, params, opt_state, obs_stats)

    def _start(self, k_env, key, data, params, opt_state, obs_stats) -> RunnerState:
        cfg, ccfg = self.config, self.controller_config
        obs, env_state = self.vec_env.reset(jax.random.split(k_env, cfg.num_envs), data)
        fresh = init_normaliser(ccfg.features.size)
        return RunnerState(
            params=params,
            opt_state=opt_state,
            env_state=env_state,
            obs=obs,
            carry=initial_carry(ccfg, obs.shape[:-1]),
            done=jnp.zeros((cfg.num_envs,), bool),
            obs_stats=obs_stats if ccfg.layered else accumulate(obs_stats, obs),
            run_stats=jax.tree.map(lambda x: jnp.stack([x] * cfg.num_envs), fresh),
            key=key,
            updates_done=jnp.zeros((), jnp.int32),
        )

    def init(self, key: jax.Array, data: Any) -> RunnerState:
        k_actor, k_critic, k_env, key = jax.random.split(key, 4)
        params, opt_state = self._agent(k_actor, k_critic)
        fresh = init_normaliser(self.controller_config.features.size)
        return self._start(k_env, key, data, params, opt_state, fresh)

    # -- rollout ----------------------------------------------------------------------------

    def _env_step(self, runner: RunnerState, data: Any):
        cfg, ccfg = self.config, self.controller_config
        key, k_act, k_env = jax.random.split(runner.key, 3)
        carry = reset_carry(runner.carry, runner.done, ccfg)
        obs, run_stats = self.policy_obs(runner)
        progress = self._progress(runner.env_state)
        carry, mean, log_std = actor_step(runner.params["actor"], carry, obs, ccfg)
        action = sample_action(k_act, mean, log_std)
        log_prob = layers.joint(gaussian_log_prob(action, mean, log_std), ccfg, 1)
        value = self._value(runner.params["critic"], obs, progress)
        next_obs, env_state, reward, done, info = self.vec_env.step(
            jax.random.split(k_env, cfg.num_envs), runner.env_state, action, data
        )
        transition = Transition(
            obs, runner.obs, progress, runner.done, action, log_prob, value, reward, done, info
        )
        runner = runner.replace(
            env_state=env_state, obs=next_obs, carry=carry, done=done, run_stats=run_stats, key=key
        )
        return runner, transition

    # -- loss -------------------------------------------------------------------------------

    def _sequence_log_probs(self, actor_params, first_carry, obs, resets):
        """Re-run the LSTM along ``[T, B, ...]`` sequences from ``first_carry``."""
        ccfg = self.controller_config

        def step(carry, xs):
            o, r = xs
            carry = reset_carry(carry, r, ccfg)
            carry, mean, log_std = actor_step(actor_params, carry, o, ccfg)
            return carry, (mean, log_std)

        _, (mean, log_std) = jax.lax.scan(step, first_carry, (obs, resets))
        return mean, log_std

    def loss(self, params, first_carry, batch: Transition, advantages, returns):
        """PPO loss on a minibatch of whole sequences (time-major ``[T, B]``)."""
        cfg = self.config
        mean, log_std = self._sequence_log_probs(
            params["actor"], first_carry, batch.obs, batch.reset
        )
        ccfg = self.controller_config
        log_prob = layers.joint(gaussian_log_prob(batch.action, mean, log_std), ccfg, 2)
        adv = ppo_math.normalize_advantages(advantages)
        policy_loss, aux = ppo_math.clipped_surrogate_loss(
            log_prob, batch.log_prob, adv, cfg.clip_eps
        )
        values = self._value(params["critic"], batch.obs, batch.progress)
        v_loss = ppo_math.value_loss(values, batch.value, returns, cfg.clip_eps)
        entropy = jnp.mean(layers.joint(gaussian_entropy(log_std), ccfg, 2))
        total = policy_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
        return total, {"policy_loss": policy_loss, "value_loss": v_loss, "entropy": entropy, **aux}

    # -- one PPO iteration ------------------------------------------------------------------

    def rollout(self, runner: RunnerState, data: Any) -> tuple[RunnerState, Transition, Any]:
        """``rollout_length`` steps of every environment with the current policy: the runner
        after them, the trajectory (time-major ``[T, num_envs]``) and the actor's carry at its
        first step (reset where an episode starts there), from which the loss replays it."""
        first_carry = reset_carry(runner.carry, runner.done, self.controller_config)
        runner, traj = jax.lax.scan(
            lambda r, _: self._env_step(r, data), runner, None, length=self.rollout_length
        )
        return runner, traj, first_carry

    def advantages(self, runner: RunnerState, traj: Transition) -> tuple[jax.Array, jax.Array]:
        """GAE ``(advantages, returns)`` of a rollout, bootstrapped from the critic's value of
        the observation after it; episodes end where ``traj.done`` (not where the carry was
        reset, one step later)."""
        cfg = self.config
        last_value = self._value(
            runner.params["critic"],
            self.policy_obs(runner)[0],
            self._progress(runner.env_state),
        )
        return ppo_math.gae(
            traj.reward, traj.value, traj.done, last_value, cfg.gamma, cfg.gae_lambda
        )

    def learn(self, params, opt_state, key, traj: Transition, first_carry, advantages, returns):
        """``update_epochs`` epochs of ``num_minibatches`` gradient steps on a fixed rollout:
        the new ``(params, opt_state)`` and the loss statistics ``[epochs, minibatches]``."""
        cfg, tx = self.config, self._tx()
        grad_fn = jax.value_and_grad(self.loss, has_aux=True)

        def minibatch_step(state, idx):
            params, opt_state = state
            take = lambda x: jnp.take(x, idx, axis=1)
            batch = jax.tree.map(take, traj)
            carry0 = jax.tree.map(lambda c: jnp.take(c, idx, axis=0), first_carry)
            (_, stats), grads = grad_fn(params, carry0, batch, take(advantages), take(returns))
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), stats

        def epoch(state, key):
            batches = ppo_math.minibatch_indices(key, cfg.num_envs, cfg.num_minibatches)
            return jax.lax.scan(minibatch_step, state, batches)

        keys = jax.random.split(key, cfg.update_epochs)
        (params, opt_state), stats = jax.lax.scan(epoch, (params, opt_state), keys)
        return params, opt_state, stats

    def update(self, runner: RunnerState, data: Any) -> tuple[RunnerState, dict[str, jax.Array]]:
        """One PPO iteration: :meth:`rollout`, :meth:`advantages`, :meth:`learn`, then the
        observation statistics grow by the rollout's observations."""
        runner, traj, first_carry = self.rollout(runner, data)
        advantages, returns = self.advantages(runner, traj)
        key, k_epochs = jax.random.split(runner.key)
        params, opt_state, stats = self.learn(
            runner.params, runner.opt_state, k_epochs, traj, first_carry, advantages, returns
        )
        # Every observation the actor will have seen: each step's next one (the statistics a
        # "frozen" normaliser uses; an "ema" one ignores them).
        seen = jnp.concatenate([traj.raw_obs[1:], runner.obs[None]])
        layered = self.controller_config.layered  # unnormalised: no statistics
        obs_stats = runner.obs_stats if layered else accumulate(runner.obs_stats, seen)
        runner = runner.replace(
            params=params,
            opt_state=opt_state,
            obs_stats=obs_stats,
            key=key,
            updates_done=runner.updates_done + 1,
        )
        return runner, _metrics(traj, stats) | {
            "explained_variance": ppo_math.explained_variance(traj.value, returns)
        }

    def run_updates(
        self, runner: RunnerState, data: Any, num_updates: int
    ) -> tuple[RunnerState, dict[str, jax.Array]]:
        """``num_updates`` updates in one ``lax.scan``; metrics stacked per update."""
        return jax.lax.scan(lambda r, _: self.update(r, data), runner, None, length=num_updates)

    def train(self, key: jax.Array, data: Any) -> tuple[RunnerState, dict[str, jax.Array]]:
        """The whole training, ``init`` and ``num_updates`` updates, as one program."""
        return self.run_updates(self.init(key, data), data, self.config.num_updates)

    def controller(self, runner: RunnerState) -> Controller:
        """The trained controller (usable as ``scale_by_controller(...)``, savable). With the
        ``"frozen"`` normaliser it carries the statistics of every training observation; with
        ``"ema"`` it starts from fresh statistics, as every training episode did. Its
        ``features.probe`` records what the environment observed (:attr:`lrjax.env.Env.probe`),
        so a user's loop can feed it the same (:func:`lrjax.features.probe_inputs`)."""
        config = self.controller_config
        config = config.replace(features=dataclasses.replace(config.features, probe=self.env.probe))
        return Controller(
            config=config,
            params=runner.params["actor"],
            normaliser=deployed_normaliser(config.features, runner.obs_stats),
        )


def _metrics(traj: Transition, stats: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """A rollout's summary. ``final_val_loss`` averages the episodes that ended at their
    horizon (a diverged one's loss may be inf or NaN: it is counted in ``diverged`` and scored
    by its bounded penalty in ``episode_return``); NaN when none did."""
    done = traj.done.astype(jnp.float32)
    diverged = traj.info["diverged"] & traj.done
    completed = (traj.done & ~diverged).astype(jnp.float32)
    mean_over = lambda x, w: jnp.where(
        w.sum() > 0, jnp.where(w > 0, x, 0.0).sum() / jnp.maximum(w.sum(), 1.0), jnp.nan
    )
    lr = traj.info["lr"]
    return {
        "episode_return": mean_over(traj.info["episode_return"], done),
        "final_val_loss": mean_over(traj.info["final_val_loss"], completed),
        "diverged_fraction": diverged.sum() / jnp.maximum(done.sum(), 1.0),
        "diverged": diverged.sum().astype(jnp.float32),
        "episodes": done.sum(),
        "mean_reward": traj.reward.mean(),
        "lr_min": lr.min(),
        "lr_max": lr.max(),
        "lr_mean": lr.mean(),
        **{k: v.mean() for k, v in stats.items()},
    }
