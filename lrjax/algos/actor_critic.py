"""Paper B: the deterministic actor-critic that learns the learning rate (Algorithm 1).

Xu et al. 2017, "Reinforcement Learning for Learning Rate Control", sections 3 and 4. At every
trainee step ``t`` of each of ``num_envs`` trainees (episodes run side by side, sharing one actor
and one critic):

1. sample a minibatch ``x_i``; ``s_t = chi(w_t, x_i)`` (paper B: the minibatch loss; any
   features whose inputs are :data:`AC_INPUTS`), normalised as the controller's features say;
2. ``a_t = pi_theta(s_t)``: the LSTM actor's deterministic action (its mean head), mapped to the
   learning rate by :func:`~lrjax.controller.action_to_lr` (``"absolute"``: the LR itself, paper
   B; ``"scale"``: a factor on the previous LR, the ablation);
3. ``w_{t+1} = w_t - lr_t grad f(w_t; x_i)`` (Eq. 2; the base direction of ``optimizer``);
4. ``r_t = (f(w_t; x_i) - f(w_{t+1}; x_i)) / L_0``: the loss decrement on the same minibatch
   (Eq. 5), in units of the initial loss ``L_0 = f(w_0; x)`` so that one critic serves any task;
5. ``s_{t+1} = chi(w_{t+1}, x_i)`` and the TD error
   ``delta_t = r_t + gamma Q(s_{t+1}, pi(s_{t+1})) - Q(s_t, a_t)`` (Eq. 7); the critic's
   gradient ``delta_t grad_phi Q(s_t, a_t)`` (Eq. 8) is accumulated and its mean over
   ``critic_every`` (m_phi) steps (and the episodes) applied with Adam;
6. a different minibatch ``x_j``; ``s^j = chi(w_{t+1}, x_j)``; the actor's gradient
   ``grad_theta pi(s^j) grad_a Q(s^j, a)|_{a = pi(s^j)}`` (Eq. 9) is accumulated and its mean
   over ``actor_every`` (m_theta) steps applied with Adam (ascending Q);
7. every ``reset_every`` (e) steps of an episode, ``w`` goes back to ``w_0``.

An action every k steps (``controller.steps_per_action``, beyond the paper; k = 1 is Algorithm
1): the actor observes and acts at steps ``t = 0, k, 2k, ...``, as a deployed controller does,
and the LR, the state ``s`` and the LSTM state are held in between; the action's reward is the
sum of its k steps' rewards, the TD error (Eq. 7, gamma per action) is taken at the segment's
end against ``s'`` there, and the critic and actor learn only then (their gradients are zeros
at the other steps, and the optimizers, target networks and policy delay move only at steps
where some episode's segment ended). A single step barely moves the loss the critic must
attribute to it; k steps move it k times as much (PPO's controllers act every k steps too).

Choices the paper leaves open, made here:

- The critic's action input is the applied LR's position in the log-LR range,
  ``2 (log lr - log lr_min) / (log lr_max - log lr_min) - 1`` in ``[-1, 1]`` (for ``"absolute"``
  actions a monotone reparametrisation of the actor's output; for ``"scale"`` actions it is what
  the action did, previous LR included). ``grad_a Q`` flows through this map to theta.
- The actor is recurrent: ``pi(s_{t+1})`` and ``pi(s^j)`` are one LSTM step from the carry after
  ``s_t``, and the actor's gradient goes through that step only (the carry is held fixed:
  truncated backpropagation through time of length one).
- The TD target is held fixed (semi-gradient TD, as Eq. 8 states); it bootstraps at a reset (the
  critic values the loss level, not the time left), except after a divergence (a minibatch
  loss not finite or above ``divergence_factor * L_0``: :func:`lrjax.mdp.diverged`), which pays
  the MDP's bounded penalty (:func:`lrjax.mdp.divergence_penalty`, the same rule as PPO's
  environment) with no bootstrap. In meta mode it ends the episode; online, the user's model
  trains on unless its loss is not finite (then it restarts from ``w_0``).
- A model reset also restarts the actor's LSTM state, the LR and the per-run normaliser: each
  episode is a fresh run, as a deployed controller sees one.
- Steps ``s_{t+1}`` and ``s^j`` are normalised with the statistics after ``s_t`` (not updated by
  them), so only what a deployed controller observes enters its running normaliser
  (:func:`lrjax.features.observe_run` with ``update=False``).
- Gradient accumulation is ``optax.MultiSteps`` (mean over m steps), so "update every m
  steps" is the library's, not hand-written.

Two modes:

- ``"online"`` (paper B's figures 2 and 3): one trainee (or a few) trains once, with the
  actor-critic learning alongside; the result is that model's learning curve and final test
  loss (:meth:`ActorCritic.train`, vmapped or mapped over seeds by :meth:`train_seeds`).
- ``"meta"``: many episodes of ``reset_every`` steps train the actor, which is then saved in the
  controller format (:meth:`ActorCritic.controller`) and deploys through
  :func:`~lrjax.controller.scale_by_controller` exactly like a PPO controller.

The algorithm has the runner's interface (``init``, ``run_updates``, ``num_updates``,
``updates_done``): an *update* is ``steps_per_update`` steps in one ``lax.scan``, after which
the host may show progress, write metrics and checkpoint (:func:`lrjax.algos.runner.run`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from lrjax import engine as engine_lib
from lrjax import features as features_lib
from lrjax import mdp, training
from lrjax.algos.actor_critic_config import (  # noqa: F401 (re-exported)
    ActorCriticConfig,
    ActorCriticEnvConfig,
)
from lrjax.algos.actor_critic_math import (  # noqa: F401 (td_error re-exported)
    actor_gradient,
    critic_gradient,
    lr_position,
    td_error,
    td_target,
)
from lrjax.algos.actor_critic_state import ACState, Episode, StepOutput
from lrjax.algos.policy import QCritic
from lrjax.controller import (
    Controller,
    ControllerConfig,
    action_to_lr,
    actor_step,
    init_actor_params,
    initial_carry,
)
from lrjax.controller.nonfinite import zeros_unless
from lrjax.tasks import Task


@dataclasses.dataclass(frozen=True)
class ActorCritic:
    """Algorithm 1 on ``task`` (see the module doc). Frozen and hashable: a static argument."""

    task: Task
    config: ActorCriticConfig = ActorCriticConfig()
    name = "actor-critic"

    @property
    def num_updates(self) -> int:
        return self.config.num_updates

    @property
    def controller_config(self) -> ControllerConfig:
        return self.config.controller

    @property
    def _spec(self):
        return self.controller_config.features

    def _critic(self) -> QCritic:
        return QCritic(hidden=self.config.critic_hidden)

    def engine(self, num_items: int | None = None) -> engine_lib.Engine:
        """The execution policy of ``num_items`` episodes (default ``num_envs``)."""
        return engine_lib.resolve(
            self.config.env.engine,
            uses_conv=self.task.uses_conv,
            cpu_conv_impl=self.task.cpu_conv_impl,
            num_steps=self.config.steps_per_update,
            num_items=num_items or self.config.num_envs,
            shard_vmapped=False,
        )

    def _optimizer(self, lr) -> optax.GradientTransformationExtraArgs:
        return training.controlled_optimizer(self.config.env.optimizer, lr)

    def _tx(self, learning_rate: float, every: int) -> optax.MultiSteps:
        return optax.MultiSteps(optax.adam(learning_rate), every_k_schedule=every)

    def _actor_tx(self):
        return self._tx(self.config.actor_learning_rate, self.config.actor_every)

    def _critic_tx(self):
        return self._tx(self.config.critic_learning_rate, self.config.critic_every)

    # -- observation --------------------------------------------------------------------------

    def _raw(self, params, loss, lr, step) -> jax.Array:
        """chi's raw features (:func:`lrjax.features.feature_inputs`)."""
        c = self.controller_config
        inputs = features_lib.feature_inputs(
            loss=loss,
            params=params,
            last_layer=self.task.output_weights(params),
            lr=lr,
            lr_bounds=(c.lr_min, c.lr_max),
            step=step,
            total_steps=self.config.episode_length,
        )
        return features_lib.raw_features(self._spec, inputs)

    def _observe(self, normaliser, obs_stats, raw):
        """``s_t``: normalised as a deployed controller does (updating per-run statistics)."""
        return features_lib.observe_run(self._spec, obs_stats, normaliser, raw)

    def _peek(self, normaliser, obs_stats, raw):
        """``s_{t+1}``, ``s^j``: normalised with the current statistics, which stay as they are."""
        return features_lib.observe_run(self._spec, obs_stats, normaliser, raw, update=False)[0]

    # -- init ---------------------------------------------------------------------------------

    def _init_episode(self, key, data) -> Episode:
        c = self.controller_config
        lr = jnp.float32(c.initial_lr)
        trainee = training.init_trainee(
            self.engine().train_task(self.task), self._optimizer(lr), key, data
        )
        loss0 = (
            self.engine()
            .eval_task(self.task)
            .loss(trainee.params, data, training.minibatch_key(trainee))
        )
        next_loss = next_grads = None
        if self.config.actor_minibatch == "next":  # the first step's, as later steps keep them
            next_loss, next_grads = (
                self.engine()
                .train_task(self.task)
                .loss_and_grad(trainee.params, data, training.minibatch_key(trainee))
            )
        return Episode(
            trainee=trainee,
            initial_params=trainee.params,
            initial_loss=loss0,
            carry=initial_carry(c),
            lr=lr,
            normaliser=features_lib.init_normaliser(c.features.size),
            t=jnp.zeros((), jnp.int32),
            next_loss=next_loss,
            next_grads=next_grads,
            **self._segment_start(),
        )

    def _segment_start(self) -> dict:
        """An episode's segment fields at its start (None with an action at every step)."""
        c = self.controller_config
        if c.steps_per_action == 1:
            return {}
        return {
            "segment_obs": jnp.zeros((c.obs_size,), jnp.float32),
            "segment_reward": jnp.zeros((), jnp.float32),
        }

    def init(self, key: jax.Array, data: Any) -> ACState:
        """Fresh actor (its untrained output is ``initial_lr``), critic and trainees. With one
        trainee its key is ``key`` itself: the trainee of ``lrjax.training`` given that key
        starts from the same weights and draws the same minibatches."""
        cfg, c = self.config, self.controller_config
        k_actor, k_critic = jax.random.split(jax.random.fold_in(key, 1))
        actor = init_actor_params(k_actor, c)
        init_q = lambda k: self._critic().init(k, jnp.zeros((c.obs_size,)), jnp.zeros(()))["params"]
        critic = init_q(k_critic)
        if cfg.twin_critics:  # the first is the single critic's; the second its own init
            critic = (critic, init_q(jax.random.fold_in(k_critic, 1)))
        # One trainee: the key itself, so an online run and a baseline given the same seed key
        # start from the same weights and see the same minibatches (lrjax.training).
        trainee_keys = key[None] if cfg.num_envs == 1 else jax.random.split(key, cfg.num_envs)
        episodes = self.engine().over_items(self._init_episode, 1)(trainee_keys, data)
        # The "frozen" statistics start from the first observations, as PPO's do.
        raw = jax.vmap(lambda ep: self._raw(ep.trainee.params, ep.initial_loss, ep.lr, 0))(episodes)
        obs_stats = features_lib.accumulate(features_lib.init_normaliser(c.features.size), raw)
        return ACState(
            actor=actor,
            critic=critic,
            actor_opt=self._actor_tx().init(actor),
            critic_opt=self._critic_tx().init(critic),
            episodes=episodes,
            obs_stats=obs_stats,
            steps_done=jnp.zeros((), jnp.int32),
            updates_done=jnp.zeros((), jnp.int32),
            target_actor=None if cfg.target_update is None else actor,
            target_critic=None if cfg.target_update is None else critic,
        )

    def _critics(self, critic) -> tuple:
        """The critics' params as a tuple (one, or two with ``twin_critics``)."""
        return critic if self.config.twin_critics else (critic,)

    # -- one step of one episode ----------------------------------------------------------------

    def episode_step(
        self, episode: Episode, actor, critic, obs_stats, data, targets=None
    ) -> tuple[Episode, StepOutput]:
        """Lines 3-23 and 27 of Algorithm 1 for one trainee, with the shared actor and critic
        fixed: the trainee's step, the TD error and both gradients (to be averaged).
        ``targets``: ``(target_actor, target_critic)`` of the TD target, or None (the learning
        actor and critic, paper B)."""
        cfg, c = self.config, self.controller_config
        k = c.steps_per_action
        q_net = self._critic()
        trainee = episode.trainee
        key, batch_i = jax.random.split(trainee.key)  # as training.train_step draws x_i

        # Lines 3-9: s_t, a_t and the trainee's step w_{t+1} = w_t - lr_t g_t (Eq. 2).
        if cfg.actor_minibatch == "next":  # computed by the step before, for its actor
            loss, grads = episode.next_loss, episode.next_grads
        else:
            loss, grads = self._train_task.loss_and_grad(trainee.params, data, batch_i)
        raw = self._raw(trainee.params, loss, episode.lr, trainee.step)
        obs, normaliser = self._observe(episode.normaliser, obs_stats, raw)
        carry, u, _ = actor_step(actor, episode.carry, obs, c)
        noise = jax.random.normal(jax.random.fold_in(batch_i, 2), (), jnp.float32)
        lr = action_to_lr(u + cfg.exploration_std * noise, episode.lr, c)
        if k > 1:  # an action every k steps; between two, its state, LSTM state and LR are held
            acts, (obs, normaliser, carry, lr) = self._held(episode, obs, normaliser, carry, lr)
        updates, opt_state = self._optimizer(lr).update(grads, trainee.opt_state, trainee.params)
        params = optax.apply_updates(trainee.params, updates)
        stepped = training.TraineeState(params, opt_state, key, trainee.step + 1)

        # Lines 11-15: the decrement on the same minibatch (Eq. 5) and the critic's gradient.
        loss_after = self._eval_task.loss(params, data, batch_i)
        l0 = episode.initial_loss
        reward, diverged = mdp.step_outcome(
            "loss_decrement", loss, loss_after, loss, l0, cfg.env.divergence_factor, None, None
        )
        if cfg.reward_minibatch == "independent":  # the decrement on a minibatch of its own
            reward = self._independent_reward(trainee.params, params, l0, diverged, data, batch_i)
        if k > 1:  # the action's reward: its segment's rewards so far and this step's
            reward = jnp.where(acts, 0.0, episode.segment_reward) + reward

        # Line 27: every e steps the episode restarts from w_0; so does a diverged one in meta
        # mode, while online the user's model trains on unless its params are lost (not finite).
        t = episode.t + 1
        lost = ~jnp.isfinite(loss_after) | ~jnp.isfinite(loss)
        episode_end = diverged if cfg.mode == "meta" else lost
        if cfg.env.reset_every is not None:
            episode_end = episode_end | (t >= cfg.env.reset_every)
        # With k > 1 the critic and actor learn where a segment ends (its transition s -> s'),
        # and this step's gradients are zeros elsewhere.
        learns = None if k == 1 else (t % k == 0) | episode_end
        masked = lambda tree: tree if learns is None else zeros_unless(learns, tree)

        def peek(value):  # chi(w_{t+1}, x) with the minibatch loss ``value``
            return self._peek(normaliser, obs_stats, self._raw(params, value, lr, stepped.step))

        next_obs = peek(loss_after)
        critics = self._critics(critic)
        g_critic, delta = masked(
            self._critic_gradients(
                critics, actor, targets, carry, obs, next_obs, lr, reward, diverged, batch_i
            )
        )

        # Lines 20-23: the actor's gradient, on a different minibatch x_j at w_{t+1} (Eq. 9).
        actor_obs, next_loss, next_grads = self._actor_observation(
            episode, params, key, batch_i, episode_end, next_obs, peek, data
        )
        g_actor = actor_gradient(q_net, critics[0], actor, carry, actor_obs, lr, c)
        finite = lambda g: jnp.where(diverged | ~jnp.isfinite(g), 0.0, g)
        g_actor = masked(jax.tree.map(finite, g_actor))

        new = episode.replace(
            trainee=stepped,
            carry=carry,
            lr=lr,
            normaliser=normaliser,
            t=t,
            next_loss=next_loss,
            next_grads=next_grads,
        )
        if k > 1:
            new = new.replace(segment_obs=obs, segment_reward=reward)
        new = jax.lax.cond(episode_end, lambda: self._reset(new), lambda: new)
        q = q_net.apply({"params": critics[0]}, obs, lr_position(lr, c))
        return new, StepOutput(
            g_critic, g_actor, raw, loss, lr, reward, delta, q, episode_end, diverged, learns
        )

    def _held(self, episode: Episode, obs, normaliser, carry, lr):
        """``(acts, (obs, normaliser, carry, lr))``: this step's where the actor acts (every
        k-th step of the episode), the segment's otherwise, as a deployed controller holds them."""
        acts = episode.t % self.controller_config.steps_per_action == 0
        held = (episode.segment_obs, episode.normaliser, episode.carry, episode.lr)
        now = (obs, normaliser, carry, lr)
        return acts, jax.tree.map(lambda new, old: jnp.where(acts, new, old), now, held)

    @property
    def _train_task(self):
        return self.engine().train_task(self.task)

    @property
    def _eval_task(self):
        return self.engine().eval_task(self.task)

    def _independent_reward(self, params_before, params, l0, diverged, data, batch_key):
        """``(f(w_t; x_r) - f(w_{t+1}; x_r)) / L_0`` on a fresh minibatch ``x_r``
        (``reward_minibatch="independent"``), the divergence penalty where the step diverged."""
        kind, factor = "loss_decrement", self.config.env.divergence_factor
        batch_r = jax.random.fold_in(batch_key, 4)
        before = self._eval_task.loss(params_before, data, batch_r)
        after = self._eval_task.loss(params, data, batch_r)
        penalty = mdp.divergence_penalty(kind, before, l0, factor, None, None)
        decrement = mdp.reward(kind, before, after, l0, None, None)
        return jnp.where(diverged, penalty, decrement).astype(jnp.float32)

    def _critic_gradients(
        self, critics, actor, targets, carry, obs, next_obs, lr, reward, diverged, batch_key
    ):
        """Each critic's TD gradient (Eq. 8) toward the one TD target (Eq. 7) of the step, and
        the first critic's TD error: ``(g_critic, delta)``, non-finite values zeroed. The target
        is the learning actor's and critics' (paper B) or ``targets``' (target networks), with
        TD3's smoothing noise on its action when ``target_noise`` > 0."""
        cfg, c = self.config, self.controller_config
        q_net = self._critic()
        target_actor, target_critics = (
            (actor, critics) if targets is None else (targets[0], self._critics(targets[1]))
        )
        _, u_next, _ = actor_step(jax.lax.stop_gradient(target_actor), carry, next_obs, c)
        if cfg.target_noise > 0:  # target policy smoothing (TD3)
            smooth = cfg.target_noise * jax.random.normal(jax.random.fold_in(batch_key, 3), ())
            u_next = u_next + jnp.clip(smooth, -cfg.target_noise_clip, cfg.target_noise_clip)
        action = lr_position(lr, c)
        next_action = lr_position(action_to_lr(u_next, lr, c), c)
        target = td_target(
            q_net,
            jax.lax.stop_gradient(target_critics),
            cfg.reward_scale * reward,
            next_obs,
            next_action,
            cfg.gamma,
            diverged,
        )
        deltas = [target - q_net.apply({"params": p}, obs, action) for p in critics]
        deltas = [jax.lax.stop_gradient(jnp.where(jnp.isfinite(d), d, 0.0)) for d in deltas]
        g_critic = tuple(
            critic_gradient(q_net, p, obs, action, d) for p, d in zip(critics, deltas, strict=True)
        )
        g_critic = jax.tree.map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), g_critic)
        return (g_critic if cfg.twin_critics else g_critic[0]), deltas[0]

    def _actor_observation(
        self, episode, params, key, batch_key, episode_end, next_obs, peek, data
    ):
        """``s^j`` of line 20, and the next step's loss and gradients when they are computed here
        (``actor_minibatch="next"``, else None): the reward's minibatch with
        ``same_minibatch``; the next training minibatch at ``w_{t+1}`` (``w_0`` after a reset),
        kept for the next step's update; or an independent one."""
        cfg = self.config
        if cfg.same_minibatch:
            return next_obs, None, None
        if cfg.actor_minibatch == "next":  # x_j = x_{t+1}, kept for the next step's update
            start = jax.tree.map(
                lambda w0, w: jnp.where(episode_end, w0, w), episode.initial_params, params
            )
            next_batch = jax.random.split(key)[1]  # what the next step draws from the trainee
            next_loss, next_grads = self._train_task.loss_and_grad(start, data, next_batch)
            return peek(next_loss), next_loss, next_grads
        other = self._eval_task.loss(params, data, jax.random.fold_in(batch_key, 1))
        return peek(other), None, None

    def _reset(self, episode: Episode) -> Episode:
        """``w <- w_0``, with a fresh optimizer state, LSTM state, LR and per-run statistics;
        the minibatch order continues."""
        c = self.controller_config
        lr = jnp.float32(c.initial_lr)
        trainee = episode.trainee
        return episode.replace(
            trainee=training.TraineeState(
                episode.initial_params,
                self._optimizer(lr).init(episode.initial_params),
                trainee.key,
                jnp.zeros_like(trainee.step),
            ),
            carry=initial_carry(c),
            lr=lr,
            normaliser=features_lib.init_normaliser(c.features.size),
            t=jnp.zeros_like(episode.t),
            **self._segment_start(),
        )

    # -- one step of all episodes, and updates ------------------------------------------------

    def step(self, state: ACState, data: Any) -> tuple[ACState, StepOutput]:
        """One step of Algorithm 1 for every episode; the averaged gradients go to the
        accumulating optimizers (which apply their mean every m steps)."""
        cfg = self.config
        targets = None
        if cfg.target_update is not None:
            targets = (state.target_actor, state.target_critic)
        run = self.engine().over_items(self.episode_step, 1)
        episodes, out = run(
            state.episodes, state.actor, state.critic, state.obs_stats, data, targets
        )
        k = self.controller_config.steps_per_action
        # The mean over the episodes that learned (all, with k = 1); no update where none did.
        learning = jnp.bool_(True) if out.learns is None else out.learns.any()
        mean = lambda tree: jax.tree.map(lambda g: _learning_mean(g, out.learns), tree)
        pick = lambda when, new, old: jax.tree.map(lambda n, o: jnp.where(when, n, o), new, old)
        updates, critic_opt = self._critic_tx().update(
            mean(out.critic_grad), state.critic_opt, state.critic
        )
        critic = optax.apply_updates(state.critic, updates)
        updates, actor_opt = self._actor_tx().update(
            mean(out.actor_grad), state.actor_opt, state.actor
        )
        actor = optax.apply_updates(state.actor, updates)
        if out.learns is not None:
            critic, critic_opt = pick(
                learning, (critic, critic_opt), (state.critic, state.critic_opt)
            )
        if cfg.critic_warmup > 0 or cfg.policy_delay > 1 or out.learns is not None:
            # The actor (and its gradient accumulator) moves after the critic's warm-up, on
            # every policy_delay-th action (TD3's delayed policy updates; an action is k steps).
            moves = (
                learning
                & (state.steps_done >= cfg.critic_warmup)
                & ((state.steps_done // k) % cfg.policy_delay == 0)
            )
            actor, actor_opt = pick(moves, (actor, actor_opt), (state.actor, state.actor_opt))
        obs_stats = features_lib.accumulate(state.obs_stats, out.raw_obs)  # "frozen"'s
        state = state.replace(
            actor=actor,
            critic=critic,
            actor_opt=actor_opt,
            critic_opt=critic_opt,
            episodes=episodes,
            obs_stats=obs_stats,
            steps_done=state.steps_done + 1,
        )
        if cfg.target_update is not None:  # Polyak averaging: phi' <- tau phi + (1 - tau) phi'
            tau = cfg.target_update
            moved = (
                optax.incremental_update(actor, state.target_actor, tau),
                optax.incremental_update(critic, state.target_critic, tau),
            )
            if out.learns is not None:  # they move where the critic learned
                moved = pick(learning, moved, (state.target_actor, state.target_critic))
            state = state.replace(target_actor=moved[0], target_critic=moved[1])
        return state, out._replace(critic_grad=None, actor_grad=None)

    def update(self, state: ACState, data: Any) -> tuple[ACState, dict[str, jax.Array]]:
        """``steps_per_update`` steps in one ``lax.scan``, and their summary metrics.

        The scan is rolled unless ``EngineConfig.unroll`` says otherwise: unrolling steps (the
        engine's choice for a conv trainee's plain steps on a CPU) did not make an actor-critic
        step faster and made its compile several times longer (measured in BENCHMARKS.md,
        ``benchmarks/actor_critic_speed.py --unroll``)."""
        unroll = self.config.env.engine.unroll or 1
        state, out = jax.lax.scan(
            lambda s, _: self.step(s, data),
            state,
            None,
            length=self.config.steps_per_update,
            unroll=unroll,
        )
        state = state.replace(updates_done=state.updates_done + 1)
        return state, self._metrics(state, out, data)

    def _metrics(self, state: ACState, out: StepOutput, data) -> dict[str, jax.Array]:
        ends = out.episode_end.astype(jnp.float32)
        completed = (out.episode_end & ~out.diverged).astype(jnp.float32)  # L may be inf else
        finite_loss = jnp.where(jnp.isfinite(out.train_loss), out.train_loss, jnp.nan)
        metrics = {
            "train_loss": jnp.nanmean(finite_loss),
            "mean_reward": _learning_mean(out.reward, out.learns, axes=2),  # per action
            "td_error_sq": _learning_mean(jnp.square(out.td_error), out.learns, axes=2),
            "q_mean": _learning_mean(out.q, out.learns, axes=2),
            "lr_min": out.lr.min(),
            "lr_max": out.lr.max(),
            "lr_mean": out.lr.mean(),
            "lr_last": out.lr[-1].mean(),
            "episodes": ends.sum(),
            "diverged": out.diverged.astype(jnp.float32).sum(),
            "final_train_loss": jnp.where(
                completed.sum() > 0,
                jnp.where(completed > 0, out.train_loss, 0.0).sum()
                / jnp.maximum(completed.sum(), 1.0),
                jnp.nan,
            ),
        }
        if self.config.mode == "online":
            task, n = self.engine().eval_task(self.task), self.config.eval_examples
            test = self.engine().over_items(
                lambda ln, d: task.metrics(ln.trainee.params, d, "test", n), 1
            )(state.episodes, data)
            metrics["test_loss"] = test["loss"].mean()
            metrics["test_accuracy"] = test["accuracy"].mean()
        return metrics

    def run_updates(self, state: ACState, data: Any, num_updates: int):
        """``num_updates`` updates in one ``lax.scan``; metrics stacked per update."""
        return jax.lax.scan(lambda s, _: self.update(s, data), state, None, length=num_updates)

    def train(self, key: jax.Array, data: Any) -> tuple[ACState, dict[str, jax.Array]]:
        """The whole run, ``init`` and ``num_updates`` updates, as one program (vmappable over
        keys: one learner per key)."""
        return self.run_updates(self.init(key, data), data, self.config.num_updates)

    def train_seeds(self, keys: jax.Array, data: Any) -> tuple[ACState, dict[str, jax.Array]]:
        """:meth:`train` for each key (independent learners, e.g. seeds of an online run),
        batched as the engine says (vmap, or ``lax.map`` for conv trainees on CPU, split over
        the host devices). Results have a leading seed axis."""
        eng = engine_lib.resolve(
            self.config.env.engine,
            uses_conv=self.task.uses_conv,
            cpu_conv_impl=self.task.cpu_conv_impl,
            num_steps=self.config.steps_per_update,
            num_items=len(keys),
        )
        return eng.over_items(self.train, 1)(keys, data)

    def final_metrics(self, state: ACState, data: Any) -> dict[str, jax.Array]:
        """Validation and test loss and accuracy of every learner's current model, on the full
        splits, ``[num_envs]`` each."""
        task = self.engine().eval_task(self.task)

        def one(episode, d):
            val = task.metrics(episode.trainee.params, d, "validation")
            test = task.metrics(episode.trainee.params, d, "test")
            return {
                "val_loss": val["loss"],
                "val_accuracy": val["accuracy"],
                "test_loss": test["loss"],
                "test_accuracy": test["accuracy"],
            }

        return self.engine().over_items(one, 1)(state.episodes, data)

    def controller(self, state: ACState) -> Controller:
        """The trained actor as a deployable controller (``scale_by_controller``, savable):
        with the ``"frozen"`` normaliser it carries the statistics of every observation."""
        c = self.controller_config
        return Controller(
            config=c,
            params=state.actor,
            normaliser=features_lib.deployed_normaliser(c.features, state.obs_stats),
        )


def _learning_mean(x: jax.Array, learns, axes: int = 1) -> jax.Array:
    """The mean of ``x`` over its leading ``axes`` axes (episodes; or steps and episodes),
    counting only the entries that learned (``learns``, of those axes' shape; None: all)."""
    if learns is None:
        return x.mean(axis=tuple(range(axes)))
    w = learns.astype(jnp.float32)
    return jnp.tensordot(w, x, axes=axes) / jnp.maximum(w.sum(), 1.0)
