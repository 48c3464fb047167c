"""The trainee environment: batched episodes equal separate ones, rewards, divergence, the
execution policy it takes from the engine, and the train/deploy round trip: a saved controller
in a plain optax loop applies the LRs it applied in the environment."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _rl_problem import CONTROLLER, make_env, regression_problem

from lrjax import tasks, training
from lrjax._validation import ConfigError
from lrjax.controller import (
    ControllerConfig,
    controller_state,
    current_lr,
    init_controller,
    load_controller,
    save_controller,
    scale_by_controller,
)
from lrjax.engine import EngineConfig
from lrjax.env import EnvConfig, TraineeEnv, VecEnv
from lrjax.evaluation.episodes import run_episodes
from lrjax.features import NormaliserState


@pytest.fixture(scope="module")
def problem():
    return regression_problem()


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


@pytest.mark.slow  # ~17 s; CI runs it (make test-slow)
def test_vmapped_episodes_equal_separate_runs_through_an_episode_end_and_auto_reset(problem):
    """Horizon 2, four steps: each episode ends twice and auto-resets; observations, states,
    rewards, done flags and every ``info`` entry of the vmapped run equal one-by-one runs."""
    task, data = problem
    env = make_env(task, horizon=2)
    keys = jax.random.split(jax.random.key(1), 2)
    actions = jnp.array([[0.3, -1.0], [0.0, 0.5], [-0.2, 0.1], [1.0, -0.4]])
    step_all = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    step_one = jax.jit(env.step)
    _, batched = jax.vmap(env.reset, in_axes=(0, None))(keys, data)
    singles = [env.reset(k, data)[1] for k in keys]
    ends = []
    for t, action in enumerate(actions):
        step_keys = jax.random.split(jax.random.key(100 + t), 2)
        out = step_all(step_keys, batched, action, data)
        batched = out[1]
        ends.append(np.asarray(out[3]).tolist())
        for i in range(2):
            one = step_one(step_keys[i], singles[i], action[i], data)
            singles[i] = one[1]
            for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(one), strict=True):
                if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
                    a, b = jax.random.key_data(a), jax.random.key_data(b)
                np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6)
    assert ends == [[False, False], [True, True], [False, False], [True, True]]


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
    # Relative units, bounded: scored as if the loss stayed at the limit to the end.
    factor = env.config.divergence_factor
    np.testing.assert_allclose(reward[1], 1.0 - factor, rtol=1e-6)  # loss_decrement
    for kind, expected in [("val_loss", -factor * env.config.horizon), ("final", -factor)]:
        other = make_env(task, reward=kind)
        _, _, r, _, _ = jax.vmap(other.step_lr, in_axes=(0, 0, 0, None))(keys, states, lrs, data)
        np.testing.assert_allclose(r[1], expected, rtol=1e-6)
    assert int(new.t[1]) == 0 and int(new.t[0]) == 1  # env 1 auto-reset, env 0 continues
    _, alone, r_alone, _, _ = env.step_lr(
        keys[0], jax.tree.map(lambda x: x[0], states), lrs[0], data
    )
    np.testing.assert_allclose(reward[0], r_alone, rtol=1e-6)


@pytest.mark.parametrize("batching", ["vmap", "map"])
def test_step_episodes_resets_only_the_ended_episodes_as_auto_reset_does(problem, batching):
    """PPO's batched step (fresh episodes computed once some episode ended, outside the vmap)
    equals the per-episode auto-reset: a diverging episode and one at its horizon restart, the
    other continues; then the restarted ones continue and the first ends."""
    task, data = problem
    env = make_env(task, horizon=2, engine=EngineConfig(batching=batching, devices=1))
    keys = jax.random.split(jax.random.key(4), 3)
    _, states = jax.vmap(env.reset, in_axes=(0, None))(keys, data)
    states = states.replace(t=jnp.array([0, 1, 0]))  # episode 1 is at its last action
    actions = jnp.array([0.1, 0.1, 9.0])  # episode 2 diverges (LR at its ceiling, x e^9)
    per_episode = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    batched = jax.jit(VecEnv(env).step)
    for i, action in enumerate([actions, jnp.zeros(3)]):
        k = jax.random.split(jax.random.key(10 + i), 3)
        expected = per_episode(k, states, action, data)
        got = batched(k, states, action, data)
        # First action: 1 at its horizon, 2 diverged; second: 0 at its horizon.
        assert got[3].tolist() == [[False, True, True], [True, False, False]][i]
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
            if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
                a, b = jax.random.key_data(a), jax.random.key_data(b)
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        states = got[1]


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
    # Rewards are in units of the initial validation loss: rescale, then compare with paper A's
    # -L_val and paper B's decrement.
    rewards = [r * prev for r in rewards]
    assert prev != pytest.approx(1.0, abs=0.05)  # else the rescaling would not be checked
    if reward == "val_loss":
        np.testing.assert_allclose(rewards, [-v for v in vals], rtol=1e-6)
    elif reward == "loss_decrement":
        np.testing.assert_allclose(
            rewards, np.array([prev, *vals[:-1]]) - np.array(vals), rtol=1e-5, atol=1e-6
        )
    else:
        np.testing.assert_allclose(rewards, [0.0, 0.0, -vals[-1]], rtol=1e-6)
    assert bool(done)


def test_an_action_is_k_steps_of_the_controller_config_from_its_initial_lr(problem):
    """k and the initial LR have one home, the controller config; the reward's validation
    examples are the same at every step."""
    task, data = problem
    env = make_env(task, controller=CONTROLLER.replace(steps_per_action=3, initial_lr=0.05))
    _, state = env.reset(jax.random.key(0), data)
    assert float(state.lr) == pytest.approx(0.05) and int(state.trainee.step) == 0
    _, state, _, _, info = env.step_lr(jax.random.key(1), state, 0.1, data)
    assert int(state.trainee.step) == 3
    val, _ = task.validation_probe(state.trainee.params, data, 128, 32)
    np.testing.assert_allclose(info["val_loss"], val, rtol=1e-6)
    spread = make_env(task, initial_lr_spread=4.0)
    lrs = [float(spread.reset(jax.random.key(i), data)[1].lr) for i in range(6)]
    assert all(0.01 / 4 <= lr <= 0.01 * 4 for lr in lrs) and len(set(lrs)) == 6


@pytest.mark.parametrize("follow", [False, True])
def test_an_episodes_bounds_move_with_its_drawn_start_only_when_asked(problem, follow):
    """``bounds_follow_start``: an episode drawn at ``f`` times the initial LR is clipped to
    ``f`` times the controller's bounds, as the controller moved there by ``with_initial_lr``
    is when deployed; without it, to the controller's own bounds."""
    task, data = problem
    env = make_env(task, initial_lr_spread=4.0, bounds_follow_start=follow)
    _, state = env.reset(jax.random.key(3), data)
    factor = float(state.lr) / CONTROLLER.initial_lr
    assert abs(np.log(factor)) > 0.1  # this key draws a start away from the initial LR
    moved = CONTROLLER.with_initial_lr(float(state.lr)) if follow else CONTROLLER
    for u, bound in ((50.0, moved.lr_max), (-50.0, moved.lr_min)):
        _, _, _, _, info = env.step_env(jax.random.key(1), state, jnp.float32(u), data)
        assert float(info["lr"]) == pytest.approx(bound, rel=1e-5)


def test_bad_configs():
    with pytest.raises(ConfigError, match="reward='accuracy'"):
        EnvConfig(reward="accuracy")
    with pytest.raises(ConfigError, match="optimizer='lion'"):
        EnvConfig(optimizer="lion")
    with pytest.raises(ConfigError, match="initial_lr_spread=0.5"):
        EnvConfig(initial_lr_spread=0.5)
    with pytest.raises(ConfigError, match="bounds_follow_start='yes'"):
        EnvConfig(bounds_follow_start="yes")
    per_run = ControllerConfig.loss_only(actions_per_run=20)
    with pytest.raises(ConfigError, match="horizon=40 is not allowed with controller.actions_per"):
        EnvConfig(controller=per_run)
    assert EnvConfig(controller=per_run, horizon=20).horizon == 20
    with pytest.raises(ConfigError, match="steps_per_action=0"):
        ControllerConfig(steps_per_action=0)
    with pytest.raises(ConfigError, match="batching='pmap'"):
        EnvConfig(engine=EngineConfig(batching="pmap"))
    with pytest.raises(ConfigError, match="engine="):
        EnvConfig(engine="map")


@pytest.fixture(scope="module")
def tiny_conv(fashion_mnist):
    task = tasks.get_task("fashion_cnn", batch_size=8, features=(2, 4), hidden=(8,))
    return task, fashion_mnist.subset(train=256, validation=64, test=32)


def test_conv_env_evaluates_with_the_stock_convolution_when_mapped(tiny_conv):
    """Mapped episodes evaluate with XLA's convolution (faster forward on CPU, not grouped
    when nothing is vmapped); the numbers are those of the training convolution."""
    task, data = tiny_conv
    cfg = EnvConfig(val_batch_size=16, probe_size=8)
    mapped = TraineeEnv(task, dataclasses.replace(cfg, engine=EngineConfig(batching="map")))
    vmapped = TraineeEnv(task, dataclasses.replace(cfg, engine=EngineConfig(batching="vmap")))
    assert mapped.eval_task.model.conv_impl == "xla"
    assert mapped.train_task.model.conv_impl == "patches"
    assert vmapped.eval_task.model.conv_impl == "patches"
    params = task.init(jax.random.key(0), data)
    a = mapped.eval_task.validation_probe(params, data, 16, 8)
    b = task.with_conv_impl("patches").validation_probe(params, data, 16, 8)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "optimizer, preset",
    [
        ("sgd", "paper_a"),
        ("momentum", "paper_a"),
        ("adam", "paper_a"),
        ("sgd", "lrjax"),
        ("adam", "loss_only"),
        ("momentum", "loss_only_cosine"),
    ],
)
def test_saved_controller_in_a_plain_loop_applies_the_env_lrs(problem, tmp_path, optimizer, preset):
    """Train and deploy the same way: a controller (scale actions, k = 3; paper A's features
    with per-run statistics, or lrjax's with progress and frozen statistics from training)
    saved and loaded, as ``chain(base, scale_by_controller)`` in a plain loop over the same
    trainee and minibatches, sets the LR sequence it set in the environment (with a cosine
    base schedule: the same products of its LR and the schedule)."""
    task, data = problem
    schedule = "cosine" if preset.endswith("_cosine") else "constant"
    config = getattr(ControllerConfig, preset.removesuffix("_cosine"))(
        lr_min=1e-3,
        lr_max=0.5,
        alpha=1.5,
        initial_lr=0.02,
        steps_per_action=3,
        base_schedule=schedule,
    )
    env = make_env(
        task, controller=config, horizon=6, optimizer=optimizer, val_batch_size=50, probe_size=8
    )
    # Trained on this env, a controller records its probe (PPO.controller does so).
    config = config.replace(features=dataclasses.replace(config.features, probe=env.probe))
    controller = init_controller(jax.random.key(3), config)
    # A controller that moves the LR: scale the untrained actor's weights up.
    controller = controller.replace(params=jax.tree.map(lambda p: 30 * p, controller.params))
    if preset == "lrjax":  # statistics as training leaves them: not the identity
        n = config.obs_size
        controller = controller.replace(
            normaliser=NormaliserState(
                mean=jnp.linspace(-2.0, 1.0, n),
                var=jnp.linspace(0.5, 3.0, n),
                count=jnp.full((n,), 100, jnp.int32),
            )
        )
    save_controller(tmp_path / "c", controller)
    loaded = load_controller(tmp_path / "c")

    key = jax.random.key(5)
    env_lrs = run_episodes(env, loaded, key, data, 1).lr[0]
    assert np.ptp(np.log(env_lrs)) > 0.05  # the LR moved

    # The same episode's trainee: run_episodes resets episode i with split(split(key)[i])[0].
    _, state = env.reset(jax.random.split(jax.random.split(key, 1)[0])[0], data)
    base = {"sgd": optax.identity(), "momentum": optax.trace(0.9), "adam": optax.scale_by_adam()}
    tx = optax.chain(
        base[optimizer], scale_by_controller(loaded, predictions_shape=(8,), total_steps=6 * 3)
    )
    trainee = state.trainee.replace(opt_state=tx.init(state.trainee.params))

    @jax.jit
    def step(trainee):
        val_loss, predictions = task.validation_probe(trainee.params, data, 50, 8)
        key, batch_key = jax.random.split(trainee.key)
        loss, grads = jax.value_and_grad(task.loss)(trainee.params, data, batch_key)
        updates, opt_state = tx.update(
            grads,
            trainee.opt_state,
            trainee.params,
            value=loss,
            val_loss=val_loss,
            predictions=predictions,
        )
        new = training.TraineeState(
            optax.apply_updates(trainee.params, updates), opt_state, key, trainee.step + 1
        )
        return new, current_lr(opt_state), controller_state(opt_state).learning_rate

    loop_lrs, controller_lrs = [], []
    for _ in range(6 * 3):
        trainee, lr, own_lr = step(trainee)
        loop_lrs.append(float(lr))
        controller_lrs.append(float(own_lr))
    np.testing.assert_allclose(np.array(loop_lrs)[::3], env_lrs, rtol=1e-5)
    np.testing.assert_allclose(
        np.array(loop_lrs).reshape(6, 3), np.repeat(env_lrs, 3).reshape(6, 3), rtol=1e-5
    )
    if schedule == "cosine":  # the applied LR is the controller's times s(t / horizon)
        factors = 0.5 * (1 + np.cos(np.pi * np.arange(6) / 6))
        np.testing.assert_allclose(
            np.array(loop_lrs)[::3] / factors,
            np.array(controller_lrs)[::3],
            rtol=1e-5,
        )
