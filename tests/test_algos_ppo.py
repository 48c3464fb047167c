"""Paper A's PPO: it learns on a task whose best schedule is known; vmapped controllers equal
separate trainings; episodes one after another or vmapped give the same update."""

import dataclasses

import jax
import numpy as np
import pytest
from _rl_problem import CONTROLLER, make_env, regression_problem

from lrjax import tasks
from lrjax._validation import ConfigError
from lrjax.algos.ppo import PPO, PPOConfig
from lrjax.controller import init_controller
from lrjax.engine import EngineConfig
from lrjax.env import EnvConfig, TraineeEnv
from lrjax.rollouts import run_episodes


@pytest.fixture(scope="module")
def problem():
    return regression_problem()


def test_ppo_learns_a_controller_near_the_best_constant_lr(problem):
    """On 2-D regression too small an LR is slow and too large diverges. The untrained
    controller applies ~initial_lr = 0.01 (slow); PPO must find a much better schedule."""
    task, data = problem
    env = make_env(task)
    ppo = PPO(env, PPOConfig(num_envs=8, num_updates=30, learning_rate=3e-3))
    runner, metrics = jax.jit(ppo.train)(jax.random.key(0), data)
    key = jax.random.key(123)
    initial = init_controller(jax.random.key(0), CONTROLLER)
    before = run_episodes(env, initial, key, data, 16).final_val_loss.mean()
    after = run_episodes(env, ppo.controller(runner), key, data, 16).final_val_loss.mean()
    constants = {
        lr: run_episodes(env, lr, key, data, 16).final_val_loss.mean()
        for lr in (0.01, 0.03, 0.1, 0.3, 1.0, 1.9)
    }
    best = min(constants.values())
    noise_floor = 0.5 * 0.5**2  # 0.5 * noise^2: the loss of the true parameters
    assert before > 3 * best, (before, constants)  # the initial policy is far from the best
    assert after < 0.5 * before, (after, before)
    assert after - noise_floor < 1.5 * (best - noise_floor) + 0.02, (after, constants)
    returns = np.asarray(metrics["episode_return"])
    assert returns[-5:].mean() > returns[:5].mean()
    # The policy moved and the critic fitted something (a never-trained critic stays <= 0).
    assert np.mean(metrics["approx_kl"]) > 1e-3
    assert np.nanmax(metrics["explained_variance"]) > 0.3


def test_vmapped_controllers_equal_separate_trainings(problem):
    task, data = problem
    ppo = PPO(
        make_env(task, horizon=4),
        PPOConfig(num_envs=2, num_updates=2, num_minibatches=1, update_epochs=2),
    )
    keys = jax.random.split(jax.random.key(2), 2)
    both, _ = jax.jit(jax.vmap(ppo.train, in_axes=(0, None)))(keys, data)
    for i in range(2):
        one, _ = jax.jit(ppo.train)(keys[i], data)
        for a, b in zip(jax.tree.leaves(both.params), jax.tree.leaves(one.params), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6)


def test_bad_config():
    with pytest.raises(ConfigError, match="num_minibatches=3"):
        PPOConfig(num_envs=8, num_minibatches=3)


@pytest.fixture(scope="module")
def tiny_conv(fashion_mnist):
    task = tasks.get_task("fashion_cnn", batch_size=8, features=(2, 4), hidden=(8,))
    return task, fashion_mnist.subset(train=256, validation=64, test=32)


def test_mapped_and_vmapped_episodes_give_the_same_ppo_update(tiny_conv):
    """PPO on a conv trainee: episodes one after another (the CPU default) or vmapped give the
    same rollout and update."""
    task, data = tiny_conv
    base = EnvConfig(horizon=2, val_batch_size=16, probe_size=8)
    base = dataclasses.replace(base, controller=base.controller.replace(steps_per_action=2))
    config = PPOConfig(num_envs=2, num_updates=1, num_minibatches=1, update_epochs=1)
    out = {}
    for batching in ("map", "vmap"):
        env_config = dataclasses.replace(base, engine=EngineConfig(batching=batching))
        ppo = PPO(TraineeEnv(task, env_config), config)
        out[batching] = jax.jit(ppo.train)(jax.random.key(4), data)
    (r_map, m_map), (r_vmap, m_vmap) = out["map"], out["vmap"]
    for a, b in zip(jax.tree.leaves(r_map.params), jax.tree.leaves(r_vmap.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m_map["mean_reward"], m_vmap["mean_reward"], rtol=1e-4)
    np.testing.assert_allclose(m_map["lr_mean"], m_vmap["lr_mean"], rtol=1e-5)
