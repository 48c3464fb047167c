"""What the actor-critic (:mod:`lrjax.algos.actor_critic`) carries: one trainee episode in
progress, the whole algorithm's state between updates, and what one step of one episode gives."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
from flax import struct

from lrjax import features as features_lib
from lrjax import training
from lrjax.controller import Carry


@struct.dataclass
class Episode:
    """One trainee episode in progress (one of ``num_envs``; online, the model's whole run)."""

    trainee: training.TraineeState
    initial_params: Any  # w_0, restored every reset_every steps
    initial_loss: jax.Array  # L_0 = f(w_0; first minibatch)
    carry: Carry  # the actor's LSTM state
    lr: jax.Array  # the LR applied at the last step (initial_lr before the first)
    normaliser: features_lib.NormaliserState  # per-run statistics ("ema")
    t: jax.Array  # steps of this episode
    # With actor_minibatch="next": f and its gradient at the params the next step starts from,
    # on the minibatch it trains on (computed by the step before, for its actor); else None.
    next_loss: Any = None
    next_grads: Any = None
    # With controller.steps_per_action k > 1 (an action every k steps): the state s of the
    # segment's action (what the critic values it at) and the segment's rewards so far; else None.
    segment_obs: Any = None
    segment_reward: Any = None


@struct.dataclass
class ACState:
    """Everything the actor-critic carries from one update to the next."""

    actor: Any  # theta
    critic: Any  # phi (a pair (phi_1, phi_2) with ActorCriticConfig.twin_critics)
    actor_opt: Any  # optax.MultiSteps(adam) state: accumulates m_theta gradients
    critic_opt: Any  # optax.MultiSteps(adam) state: accumulates m_phi gradients
    episodes: Episode  # [num_envs]
    obs_stats: features_lib.NormaliserState  # of every s_t so far ("frozen" normaliser)
    steps_done: jax.Array
    updates_done: jax.Array
    target_actor: Any = None  # theta', with ActorCriticConfig.target_update (else None)
    target_critic: Any = None  # phi' (a pair with twin_critics)


class StepOutput(NamedTuple):
    """What one step of one episode gives: the gradients to average and what to log."""

    critic_grad: Any  # -delta grad_phi Q(s_t, a_t)  (Adam descends it)
    actor_grad: Any  # -grad_theta Q(s^j, pi(s^j))
    raw_obs: jax.Array  # chi(w_t, x_i) before normalisation
    train_loss: jax.Array  # f(w_t; x_i)
    lr: jax.Array
    reward: jax.Array
    td_error: jax.Array  # of the (first) critic
    q: jax.Array  # Q(s_t, a_t) (of the first critic)
    episode_end: jax.Array
    diverged: jax.Array
    # With k > 1: whether this step ended its segment (its gradients count; the others are
    # zeros); None with k = 1 (every step learns).
    learns: Any = None


# ----------------------------------------------------------------------------------------------
# The algorithm.
