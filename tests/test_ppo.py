"""Paper A's PPO: it learns on a task whose best schedule is known, vmapped episodes and
controllers equal separate runs, checkpoint + resume equals an uninterrupted run; the
environment's rewards and divergence handling."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrjax import tasks
from lrjax._validation import ConfigError
from lrjax.algos.ppo import PPO, PPOConfig
from lrjax.algos.ppo_run import run
from lrjax.controller import Controller, ControllerConfig, init_actor_params
from lrjax.env import EnvConfig, TraineeEnv
from lrjax.features import FeatureSpec
from lrjax.rollouts import run_episodes

CONTROLLER = ControllerConfig(
    features=FeatureSpec(features=("train_loss", "val_loss", "log_lr")),
    action_mode="absolute",
    lr_min=1e-3,
    lr_max=2.0,
    initial_lr=1e-2,
)


@pytest.fixture(scope="module")
def problem():
    task = tasks.get_task("regression_2d")
    return task, task.load_data(jax.random.key(0))


def make_env(task, **kw):
    cfg = dict(controller=CONTROLLER, horizon=10, steps_per_action=5, initial_lr_range=(1e-2, 1e-1))
    return TraineeEnv(task, EnvConfig(**(cfg | kw)))


def test_ppo_learns_a_controller_near_the_best_constant_lr(problem):
    """On 2-D regression too small an LR is slow and too large diverges. The untrained
    controller applies ~initial_lr = 0.01 (slow); PPO must find a much better schedule."""
    task, data = problem
    env = make_env(task)
    ppo = PPO(env, PPOConfig(num_envs=8, num_updates=30, learning_rate=3e-3))
    runner, metrics = jax.jit(ppo.train)(jax.random.key(0), data)
    key = jax.random.key(123)
    initial = Controller(CONTROLLER, init_actor_params(jax.random.key(0), CONTROLLER))
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


def test_vmapped_episodes_equal_separate_runs(problem):
    task, data = problem
    env = make_env(task)
    keys = jax.random.split(jax.random.key(1), 2)
    actions = jnp.array([0.3, -1.0])
    obs2, st2 = jax.vmap(env.reset, in_axes=(0, None))(keys, data)
    out2 = jax.vmap(env.step, in_axes=(0, 0, 0, None))(keys, st2, actions, data)
    for i in range(2):
        obs1, st1 = env.reset(keys[i], data)
        out1 = env.step(keys[i], st1, actions[i], data)
        np.testing.assert_allclose(obs2[i], obs1, rtol=1e-6, atol=1e-6)
        for a, b in zip(jax.tree.leaves(out2[:4]), jax.tree.leaves(out1[:4]), strict=True):
            if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
                a, b = jax.random.key_data(a), jax.random.key_data(b)
            np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6)


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


def test_checkpoint_and_resume_equal_an_uninterrupted_run(problem, tmp_path):
    task, data = problem
    env = make_env(task, horizon=4)
    config = PPOConfig(num_envs=2, num_updates=4, num_minibatches=1, update_epochs=1)
    key = jax.random.key(3)
    full, full_metrics = run(
        PPO(env, config), key, data, out_dir=tmp_path / "a", updates_per_chunk=2, progress=False
    )
    half = PPO(env, config.__class__(**{**config.__dict__, "num_updates": 2}))
    run(half, key, data, out_dir=tmp_path / "b", updates_per_chunk=2, progress=False)
    resumed, resumed_metrics = run(
        PPO(env, config), key, data, out_dir=tmp_path / "b", updates_per_chunk=2, progress=False
    )
    assert int(resumed.update) == 4 and len(resumed_metrics) == 2
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(jax.random.key_data(full.key), jax.random.key_data(resumed.key))
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4 and full_metrics[-1] == resumed_metrics[-1]


def test_divergence_ends_only_that_episode_with_a_penalty(problem):
    task, data = problem
    env = make_env(task)
    keys = jax.random.split(jax.random.key(4), 2)
    _, states = jax.vmap(env.reset, in_axes=(0, None))(keys, data)
    lrs = jnp.array([0.1, 50.0])
    _, new, reward, done, info = jax.vmap(env.step_lr, in_axes=(0, 0, 0, None))(
        keys, states, lrs, data
    )
    assert not bool(done[0]) and bool(done[1])
    assert not bool(info["diverged"][0]) and bool(info["diverged"][1])
    limit = env.config.divergence_factor * states.initial_val_loss[1]
    np.testing.assert_allclose(reward[1], -limit * env.config.horizon, rtol=1e-6)
    assert int(new.t[1]) == 0 and int(new.t[0]) == 1  # env 1 auto-reset, env 0 continues
    _, alone, r_alone, _, _ = env.step_lr(
        keys[0], jax.tree.map(lambda x: x[0], states), lrs[0], data
    )
    np.testing.assert_allclose(reward[0], r_alone, rtol=1e-6)


@pytest.mark.parametrize("reward", ["val_loss", "loss_decrement", "final"])
def test_rewards(problem, reward):
    task, data = problem
    env = make_env(task, reward=reward, horizon=3)
    obs, state = env.reset(jax.random.key(5), data)
    rewards, vals, prev = [], [], float(state.val_loss)
    for t in range(3):
        obs, state, r, done, info = env.step_lr(jax.random.key(10 + t), state, 0.1, data)
        rewards.append(float(r))
        vals.append(float(info["val_loss"]))
    if reward == "val_loss":
        np.testing.assert_allclose(rewards, [-v for v in vals], rtol=1e-6)
    elif reward == "loss_decrement":
        np.testing.assert_allclose(
            rewards, np.array([prev, *vals[:-1]]) - np.array(vals), rtol=1e-5, atol=1e-6
        )
    else:
        np.testing.assert_allclose(rewards, [0.0, 0.0, -vals[-1]], rtol=1e-6)
    assert bool(done)


def test_bad_configs(problem):
    task, _ = problem
    with pytest.raises(ConfigError, match="num_minibatches=3"):
        PPOConfig(num_envs=8, num_minibatches=3)
    with pytest.raises(ConfigError, match="reward='accuracy'"):
        EnvConfig(reward="accuracy")
    with pytest.raises(ConfigError, match="optimizer='lion'"):
        EnvConfig(optimizer="lion")
    with pytest.raises(ConfigError, match="initial_lr_range"):
        EnvConfig(initial_lr_range=(1e-6, 1e-2))
    with pytest.raises(ConfigError, match="steps_per_action=0"):
        EnvConfig(steps_per_action=0)


def test_evaluation_episodes_report_the_final_trainee(problem):
    task, data = problem
    env = make_env(task, horizon=4)
    slow = run_episodes(env, 0.001, jax.random.key(6), data, 2)
    good = run_episodes(env, 0.3, jax.random.key(6), data, 2)
    assert np.isfinite(good.test_loss).all() and not good.diverged.any()
    # the test loss is that of the trained trainee, not of a fresh (auto-reset) one
    assert good.test_loss.mean() < 0.5 * slow.test_loss.mean()
    np.testing.assert_allclose(good.lr, 0.3, rtol=1e-6)


@pytest.fixture(scope="module")
def tiny_conv(fashion_mnist):
    task = tasks.get_task("fashion_cnn", batch_size=8, features=(2, 4), hidden=(8,))
    return task, fashion_mnist.subset(train=256, validation=64, test=32)


def test_conv_env_evaluates_with_the_stock_convolution_when_mapped(tiny_conv):
    """Mapped episodes evaluate with XLA's convolution (faster forward on CPU, not grouped
    when nothing is vmapped); the numbers are those of the training convolution."""
    task, data = tiny_conv
    cfg = EnvConfig(val_batch_size=16, probe_size=8)
    mapped = TraineeEnv(task, dataclasses.replace(cfg, batching="map"))
    vmapped = TraineeEnv(task, dataclasses.replace(cfg, batching="vmap"))
    assert mapped.eval_task.model.conv_impl == "xla"
    assert vmapped.eval_task is task
    params = task.init(jax.random.key(0))
    a = mapped.eval_task.validation_probe(params, data, jax.random.key(1), 16, 8)
    b = task.with_conv_impl("patches").validation_probe(params, data, jax.random.key(1), 16, 8)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    regression = tasks.get_task("regression_2d")
    assert regression.with_conv_impl("xla") is regression
    with pytest.raises(ConfigError, match="batching='pmap'"):
        EnvConfig(batching="pmap")


def test_mapped_and_vmapped_episodes_give_the_same_ppo_update(tiny_conv):
    """PPO on a conv trainee: episodes one after another (the CPU default) or vmapped give the
    same rollout and update."""
    task, data = tiny_conv
    base = EnvConfig(horizon=2, steps_per_action=2, val_batch_size=16, probe_size=8)
    config = PPOConfig(num_envs=2, num_updates=1, num_minibatches=1, update_epochs=1)
    out = {}
    for batching in ("map", "vmap"):
        ppo = PPO(TraineeEnv(task, dataclasses.replace(base, batching=batching)), config)
        out[batching] = jax.jit(ppo.train)(jax.random.key(4), data)
    (r_map, m_map), (r_vmap, m_vmap) = out["map"], out["vmap"]
    for a, b in zip(jax.tree.leaves(r_map.params), jax.tree.leaves(r_vmap.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m_map["mean_reward"], m_vmap["mean_reward"], rtol=1e-4)
    np.testing.assert_allclose(m_map["lr_mean"], m_vmap["lr_mean"], rtol=1e-5)
