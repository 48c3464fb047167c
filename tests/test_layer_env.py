"""Per-layer and momentum controllers in the RL environment and PPO (issue 30): the
environment's per-group actions, replayed by ``scale_by_layer_controller`` in a plain optax
loop, give the same LRs, momenta and weights; PPO trains such a controller across a family of
trainees of different depths."""

import dataclasses

import jax
import numpy as np
import optax
import pytest

from lrjax.algos import runner
from lrjax.algos.family import FamilyPPO
from lrjax.algos.ppo import PPOConfig
from lrjax.controller import (
    ControllerConfig,
    actor_step,
    group_lrs,
    group_momenta,
    init_controller,
    initial_carry,
    load_controller,
    save_controller,
    scale_by_layer_controller,
)
from lrjax.env import EnvConfig, TraineeEnv
from lrjax.tasks import get_family

FAMILY = get_family(
    "image_mlp",
    datasets=("mnist",),
    widths=(8,),
    depths=(1, 2),
    batch_sizes=(32,),
    budgets=(24,),
    optimizers=("momentum",),
)
TRAINEE = dataclasses.replace(FAMILY, widths=(16,), depths=(2,)).variants()[0]  # 3 groups
LAYERED = ControllerConfig.loss_only(
    group_features=("group_lr_vs_start", "group_step_vs_mean", "group_depth", "group_momentum"),
    momentum_control=True,
    steps_per_action=3,
)


def _moving(config):
    """A controller whose actions vary (an untrained actor's head scaled up)."""
    c = init_controller(jax.random.key(3), config)
    return c.replace(params=jax.tree.map(lambda p: 30 * p, c.params))


@pytest.mark.parametrize("momentum", [True, False])
def test_the_environments_per_layer_actions_replay_in_a_plain_optax_loop(mnist, tmp_path, momentum):
    config = (
        LAYERED
        if momentum
        else LAYERED.replace(group_features=LAYERED.group_features[:3], momentum_control=False)
    )
    optimizer = "momentum" if momentum else "sgd"
    env = TraineeEnv(
        TRAINEE,
        EnvConfig(
            controller=config, horizon=6, optimizer=optimizer, val_batch_size=32, probe_size=8
        ),
    )
    controller = load_controller(save_controller(tmp_path / "c", _moving(config)))

    key = jax.random.key(5)
    obs, state = env.reset(key, mnist)
    first = state.trainee
    assert obs.shape == (3, config.obs_size)
    step_env = jax.jit(env.step_env)
    carry = initial_carry(config, (3,))
    env_lrs, env_momenta = [], []
    for k in jax.random.split(key, 6):
        carry, mean, _ = actor_step(controller.params, carry, obs, config)
        obs, state, _, _, info = step_env(k, state, mean, mnist)
        env_lrs.append(np.asarray(info["group_lr"]))
        env_momenta.append(np.asarray(info["momentum"]))
    env_lrs = np.stack(env_lrs)
    assert np.ptp(np.log(env_lrs), axis=0).max() > 0.05  # the LRs moved
    assert np.ptp(env_lrs[-1]) > 0  # and differ between layers

    tx = scale_by_layer_controller(controller, total_steps=18)
    opt_state = tx.init(first.params)

    @jax.jit
    def step(params, opt_state, key):
        key, batch_key = jax.random.split(key)
        loss, grads = TRAINEE.loss_and_grad(params, mnist, batch_key)
        updates, opt_state = tx.update(grads, opt_state, params, value=loss)
        return optax.apply_updates(params, updates), opt_state, key

    params, key, loop_lrs, loop_momenta = first.params, first.key, [], []
    for _ in range(18):
        params, opt_state, key = step(params, opt_state, key)
        loop_lrs.append(np.asarray(group_lrs(opt_state)))
        loop_momenta.append(np.asarray(group_momenta(opt_state)))
    np.testing.assert_allclose(np.stack(loop_lrs)[::3], env_lrs, rtol=1e-4)
    if momentum:
        np.testing.assert_allclose(np.stack(loop_momenta)[::3], np.stack(env_momenta), rtol=1e-4)
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    jax.tree.map(close, params, state.trainee.params)


@pytest.mark.slow
def test_ppo_trains_a_per_layer_momentum_controller_across_depths(mnist):
    env = EnvConfig(
        controller=LAYERED.replace(actions_per_run=8, steps_per_action=1),
        horizon=8,
        val_batch_size=32,
        probe_size=8,
    )
    ppo = PPOConfig(num_envs=4, num_updates=4, update_epochs=2, num_minibatches=2)
    algo = FamilyPPO(FAMILY, env=env, ppo=ppo)
    result = runner.run(
        algo, jax.random.key(0), {"mnist": mnist}, progress=False, updates_per_chunk=2
    )
    assert len(result.history) == 4
    for update in result.history:
        assert np.isfinite(update["approx_kl"]) and np.isfinite(update["value_loss"])
    controller = algo.controller(result.state, optimizer="momentum")
    assert controller.config.layered and controller.config.action_size == 2
    initial = algo.controller(algo.init(jax.random.key(0)), optimizer="momentum")
    moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), controller.params, initial.params)
    assert max(jax.tree.leaves(moved)) > 0


def test_the_layer_schedules_benchmark_reads_each_groups_lr(mnist):
    """``benchmarks/layer_schedules.py`` (RESULTS.md's per-layer schedules): each group's LR at
    every step of a deployed per-layer controller, in depth order."""
    import importlib.util
    import sys
    from pathlib import Path

    benchmarks = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(benchmarks))
    try:
        spec = importlib.util.spec_from_file_location(
            "layer_schedules", benchmarks / "layer_schedules.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(benchmarks))
    config = LAYERED.replace(group_features=LAYERED.group_features[:3], momentum_control=False)
    controller = _moving(config)
    keys = jax.random.split(jax.random.key(0), 2)
    names, lrs, betas = module.group_schedule(controller, "sgd", TRAINEE, mnist, keys, 12)
    assert names == ("dense1", "dense2", "logits")
    assert lrs.shape == betas.shape == (2, 12, 3) and np.isfinite(lrs).all()
    assert np.ptp(lrs[:, -1], axis=-1).max() > 0  # the layers' LRs differ
    _, _, betas = module.group_schedule(_moving(LAYERED), "sgd", TRAINEE, mnist, keys, 12)
    assert not np.allclose(betas, LAYERED.initial_momentum)  # its momentum moved
