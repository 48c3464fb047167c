"""PPO's wiring, not only its maths: what the rollout records reaches GAE and the loss as it
should across an episode end, the critic learns, and the entropy bonus acts with its sign.

Each test is the one the mutation check (``benchmarks/mutation_check.py``) runs against a bug
that slipped through before: GAE fed the reset flags, the LSTM carry not reset at an episode
start (rollout or loss replay), the critic never trained, the entropy term's sign.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _rl_problem import make_env, regression_problem

from lrjax.algos import ppo_math
from lrjax.algos.policy import gaussian_entropy, gaussian_log_prob
from lrjax.algos.ppo import PPO, PPOConfig

HORIZON = 4
ROLLOUT = 7  # longer than an episode: every environment ends one and auto-resets inside it


@pytest.fixture(scope="module")
def problem():
    task, data = regression_problem()
    return make_env(task, horizon=HORIZON), data


@pytest.fixture(scope="module")
def rolled(problem):
    """A PPO runner after one update (a trained, non-trivial actor) and then one rollout."""
    env, data = problem
    ppo = PPO(env, PPOConfig(num_envs=4, num_minibatches=2, rollout_length=ROLLOUT))
    runner = jax.jit(ppo.init)(jax.random.key(0), data)
    runner, _ = jax.jit(ppo.update)(runner, data)
    before = runner
    runner, traj, first_carry = jax.jit(ppo.rollout)(runner, data)
    return ppo, before, runner, traj, first_carry


def test_done_flags_mark_episode_ends_and_resets_follow_one_step_later(rolled):
    _, before, _, traj, _ = rolled
    done, reset = np.asarray(traj.done), np.asarray(traj.reset)
    for env in range(done.shape[1]):  # every HORIZON steps, counted from the episode's start
        ends = np.flatnonzero(done[:, env])
        first = HORIZON - 1 - int(before.env_state.t[env])
        np.testing.assert_array_equal(ends, np.arange(first, ROLLOUT, HORIZON))
    np.testing.assert_array_equal(reset[0], before.done)
    np.testing.assert_array_equal(reset[1:], done[:-1])


def test_gae_is_computed_with_the_done_flags(rolled):
    ppo, _, runner, traj, _ = rolled
    advantages, returns = jax.jit(ppo.advantages)(runner, traj)
    last_value = ppo._value(
        runner.params["critic"],
        ppo.policy_obs(runner)[0],
        ppo._progress(runner.env_state),
    )
    cfg = ppo.config
    for flags, same in ((traj.done, True), (traj.reset, False)):
        expected, _ = ppo_math.gae(
            traj.reward, traj.value, flags, last_value, cfg.gamma, cfg.gae_lambda
        )
        assert np.allclose(advantages, expected, atol=1e-6) == same
    np.testing.assert_allclose(returns, advantages + traj.value, atol=1e-6)


def test_the_loss_replay_gives_the_rollout_log_probs_across_an_episode_start(rolled):
    """Rollout and replay must reset the LSTM carry at the same steps (episode starts); if
    either does not, the log-probabilities after the reset differ (the first PPO ratio is not 1)."""
    ppo, before, _, traj, first_carry = rolled
    mean, log_std = ppo._sequence_log_probs(
        before.params["actor"], first_carry, traj.obs, traj.reset
    )
    replayed = gaussian_log_prob(traj.action, mean, log_std)
    np.testing.assert_allclose(replayed, traj.log_prob, atol=2e-5)
    # The check has teeth: the carry at an episode start is far from a fresh one here.
    mean_no_reset, _ = ppo._sequence_log_probs(
        before.params["actor"], first_carry, traj.obs, jnp.zeros_like(traj.reset)
    )
    after_reset = np.asarray(traj.reset)
    assert np.abs(np.asarray(mean_no_reset - mean)[after_reset]).max() > 1e-3


def _learn(ppo, runner, traj, first_carry, **changes):
    ppo = dataclasses.replace(ppo, config=dataclasses.replace(ppo.config, **changes))
    advantages, returns = ppo.advantages(runner, traj)
    params, _, stats = jax.jit(ppo.learn)(
        runner.params, runner.opt_state, jax.random.key(1), traj, first_carry, advantages, returns
    )
    return ppo, params, stats, returns


def test_the_critic_learns_the_returns_of_a_fixed_rollout(rolled):
    ppo, _, runner, traj, first_carry = rolled
    ppo, params, stats, returns = _learn(ppo, runner, traj, first_carry, update_epochs=16)
    value_loss = np.asarray(stats["value_loss"]).mean(axis=1)  # per epoch
    # Measured: 16 epochs bring the value loss down to ~25% of the first epoch's; a critic
    # that is never trained (value loss weighted 0) keeps it where it was.
    assert value_loss[-1] < 0.6 * value_loss[0], value_loss
    values_after = ppo._value(params["critic"], traj.obs, traj.progress)
    ev_before = ppo_math.explained_variance(traj.value, returns)
    ev_after = ppo_math.explained_variance(values_after, returns)
    assert ev_after > ev_before + 0.1, (ev_before, ev_after)


def test_an_entropy_bonus_raises_the_policy_entropy(rolled):
    ppo, _, runner, traj, first_carry = rolled

    def entropy_after(ent_coef):
        _, params, _, _ = _learn(ppo, runner, traj, first_carry, ent_coef=ent_coef)
        _, log_std = ppo._sequence_log_probs(params["actor"], first_carry, traj.obs, traj.reset)
        return float(jnp.mean(gaussian_entropy(log_std)))

    without, bonus = entropy_after(0.0), entropy_after(1.0)
    # The bonus (weight 1, far above the surrogate's gradient) must raise the entropy; with its
    # sign flipped it lowers it.
    assert bonus > without + 0.01, (without, bonus)
