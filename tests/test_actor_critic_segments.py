"""The actor-critic acting every k steps (``controller.steps_per_action = k``): the LR is held
between actions, an action's reward is its segment's, and the networks learn once per action;
what it learns deploys as ``scale_by_controller`` acts (every k steps)."""

import jax
import numpy as np
import pytest
from _rl_problem import ac_config

from lrjax import tasks, training
from lrjax.algos.actor_critic import ActorCritic
from lrjax.controller import ControllerConfig, scale_by_controller
from lrjax.engine import EngineConfig

K = 3


@pytest.fixture(scope="module")
def regression():
    task = tasks.get_task("regression_2d")
    return task, task.load_data(jax.random.key(3))


def _ac(task, **changes):
    controller = ControllerConfig.paper_b(steps_per_action=K, action_mode="log")
    fields = {"engine": EngineConfig(unroll=1), "controller": controller, "num_envs": 2}
    return ActorCritic(task, ac_config(**{**fields, **changes}))


def _steps(ac, state, data, n):
    """``n`` steps one by one: the states before each step and what each gave."""
    step = jax.jit(lambda s: ac.step(s, data))
    states, outs = [state], []
    for _ in range(n):
        state, out = step(state)
        states.append(state)
        outs.append(jax.device_get(out))
    return states, outs


def test_the_lr_is_held_between_actions_and_the_networks_learn_once_per_action(regression):
    task, data = regression
    ac = _ac(task, critic_warmup=0, policy_delay=1)
    states, outs = _steps(ac, ac.init(jax.random.key(0), data), data, 2 * K + 1)
    learns = np.stack([o.learns for o in outs])  # [steps, envs]
    np.testing.assert_array_equal(learns[:, 0], [(t + 1) % K == 0 for t in range(2 * K + 1)])
    lrs = np.stack([o.lr for o in outs])
    for start in (0, K):  # one LR per segment
        np.testing.assert_array_equal(
            lrs[start : start + K], np.repeat(lrs[start : start + 1], K, 0)
        )
    assert not np.array_equal(lrs[0], lrs[K])  # the second action changed it
    leaves = lambda s: jax.tree.leaves((s.actor, s.critic))
    for t in range(2 * K + 1):  # the actor and critic move only where a segment ended
        moved = any(
            not np.array_equal(a, b)
            for a, b in zip(leaves(states[t]), leaves(states[t + 1]), strict=True)
        )
        assert moved == learns[t].any(), t
        if not learns[t].any():
            np.testing.assert_array_equal(outs[t].td_error, 0.0)


def test_an_actions_reward_is_the_sum_of_its_steps_decrements(regression):
    task, data = regression
    ac = _ac(task)
    states, outs = _steps(ac, ac.init(jax.random.key(1), data), data, 2 * K)
    loss = ac._eval_task.loss
    decrements = []
    for t in range(2 * K):
        before, after = states[t].episodes, states[t + 1].episodes
        one = lambda e: jax.tree.map(lambda x: x[0], e)  # the first episode
        batch = jax.random.split(one(before).trainee.key)[1]
        l0 = one(before).initial_loss
        w0, w1 = one(before).trainee.params, one(after).trainee.params
        decrements.append((loss(w0, data, batch) - loss(w1, data, batch)) / l0)
    rewards = np.array([o.reward[0] for o in outs])
    expected = np.concatenate([np.cumsum(decrements[:K]), np.cumsum(decrements[K:])])
    np.testing.assert_allclose(rewards, expected, rtol=1e-4, atol=1e-7)


def test_a_frozen_k_step_actor_applies_the_lrs_the_deployed_transform_applies(regression):
    task, data = regression
    ac = _ac(task, num_envs=1, actor_learning_rate=0.0, exploration_std=0.0)
    key = jax.random.key(5)
    state0 = ac.init(key, data)
    _, outs = _steps(ac, state0, data, 5 * K)
    controller = ac.controller(state0)
    assert controller.config.steps_per_action == K
    deployed = training.train_one(task, scale_by_controller(controller), key, data, 5 * K)
    lrs = np.array([o.lr[0] for o in outs])
    np.testing.assert_allclose(lrs, deployed.learning_rate[0], rtol=1e-5)
    assert np.ptp(np.log(lrs)) > 1e-4  # it does act


def test_k_equal_one_is_algorithm_1_unchanged(regression):
    # the k = 1 path carries no segment fields and every step learns
    task, data = regression
    ac = _ac(task, controller=ControllerConfig.paper_b())
    state = ac.init(jax.random.key(2), data)
    assert state.episodes.segment_obs is None and state.episodes.segment_reward is None
    _, out = jax.jit(lambda s: ac.step(s, data))(state)
    assert out.learns is None
