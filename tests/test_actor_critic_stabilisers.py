"""The actor-critic's stabilisers (issue 27), each a switch of ActorCriticConfig whose default is
paper B's Algorithm 1, observed from outside: log-space actions keep a gradient past a bound,
target networks (tau = 1 is paper B, tau = 0 freezes the targets, tau by hand), clipped double Q
(the TD target is the smaller critic's), delayed actor updates and the critic's warm-up, target
policy smoothing, and the reward scale."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _rl_problem import ac_config

from lrjax import tasks
from lrjax._validation import ConfigError
from lrjax.algos.actor_critic import ActorCritic, td_target
from lrjax.algos.policy import QCritic
from lrjax.controller import ControllerConfig, action_position, action_to_lr
from lrjax.engine import EngineConfig

STEPS = 4


def _config(**changes):
    return ac_config(**{"engine": EngineConfig(unroll=1), **changes})


@pytest.fixture(scope="module")
def regression():
    task = tasks.get_task("regression_2d")
    return task, task.load_data(jax.random.key(3))


def _run(task, data, steps=STEPS, state=None, **changes):
    """``steps`` steps of a fresh (or the given) state; the states after each and the outputs."""
    ac = ActorCritic(task, _config(**changes))
    step = jax.jit(ac.step)
    state = ac.init(jax.random.key(0), data) if state is None else state
    states, outs = [state], []
    for _ in range(steps):
        state, out = step(state, data)
        states.append(state)
        outs.append(out)
    return ac, states, outs


def _close(a, b, **kw):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **{"rtol": 1e-6, **kw}), a, b)


def _differ(a, b):
    return any(
        not np.allclose(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


# -- actions in log space ----------------------------------------------------------------------


def test_log_actions_are_the_clipped_lr_and_keep_a_gradient_past_a_bound():
    log = ControllerConfig(action_mode="log", lr_min=1e-4, lr_max=1e-1, initial_lr=1e-2)
    assert log.initial_action == 0.0
    np.testing.assert_allclose(action_to_lr(0.0, 0.5, log), 1e-2, rtol=1e-6)
    np.testing.assert_allclose(action_to_lr(np.log(3.0), 0.5, log), 3e-2, rtol=1e-5)
    np.testing.assert_allclose(action_to_lr(10.0, 0.5, log), 1e-1, rtol=1e-6)  # clipped
    np.testing.assert_allclose(action_to_lr(-10.0, 0.5, log), 1e-4, rtol=1e-6)
    # The position the critic reads is linear in u: the same slope inside and past the bounds.
    slope = 2.0 / (np.log(1e-1) - np.log(1e-4))
    for u in (-20.0, -3.0, 0.0, 1.0, 20.0):
        np.testing.assert_allclose(jax.grad(action_position)(u, 0.5, log), slope, rtol=1e-5)
    np.testing.assert_allclose(action_position(0.0, 0.5, log), 2 * 2 / 3 - 1, rtol=1e-5)
    np.testing.assert_allclose(action_position(20.0, 0.5, log), 1 / 3 + 20 * slope, rtol=1e-5)
    # Paper B's sigmoid: no gradient left at a saturated action.
    sig = log.replace(action_mode="absolute")
    assert abs(float(jax.grad(action_position)(-20.0, 0.5, sig))) < 1e-6
    assert float(jax.grad(action_position)(sig.initial_action, 0.5, sig)) > 0.1


def test_an_actor_past_the_floor_is_pushed_back_in_log_mode_not_with_the_sigmoid(regression):
    """A critic that prefers larger LRs everywhere, and an actor whose output sits far below
    the floor: in log mode its gradient pulls the output up, with the sigmoid it has none."""
    task, data = regression
    grads = {}
    for mode in ("log", "absolute"):
        controller = ControllerConfig.paper_b(action_mode=mode)
        ac = ActorCritic(task, _config(controller=controller))
        state = ac.init(jax.random.key(0), data)
        head = state.actor["mean"]
        state = state.replace(
            actor={**state.actor, "mean": {**head, "bias": head["bias"] - 30.0}},
            critic=jax.tree.map(jnp.zeros_like, state.critic),
        )
        hidden = state.critic["hidden"]  # Q(s, a) = a: one unit passing the action through
        kernel = hidden["kernel"].at[-1, 0].set(1.0)
        critic = {
            "hidden": {**hidden, "kernel": kernel, "bias": hidden["bias"].at[0].set(50.0)},
            "out": {**state.critic["out"], "kernel": state.critic["out"]["kernel"].at[0].set(1.0)},
        }
        _, out = ac.engine().over_items(ac.episode_step, 1)(
            state.episodes, state.actor, critic, state.obs_stats, data
        )
        assert float(out.lr[0]) == pytest.approx(controller.lr_min, rel=1e-5)  # at the floor
        grads[mode] = float(out.actor_grad["mean"]["bias"].mean())
    assert grads["log"] < -0.01  # a minimiser's gradient: descending it raises the output
    assert abs(grads["absolute"]) < 1e-9


# -- target networks ---------------------------------------------------------------------------


def test_target_networks_with_tau_1_are_paper_bs_td_target(regression):
    task, data = regression
    _, paper, _ = _run(task, data)
    _, tau1, _ = _run(task, data, target_update=1.0)
    assert paper[-1].target_critic is None and tau1[-1].target_critic is not None
    _close(tau1[-1].actor, paper[-1].actor)
    _close(tau1[-1].critic, paper[-1].critic)
    _close(tau1[-1].target_critic, tau1[-1].critic)


def test_target_networks_move_by_tau_and_change_the_td_target(regression):
    task, data = regression
    _, paper, _ = _run(task, data)
    _, frozen, _ = _run(task, data, target_update=0.0)
    _close(frozen[-1].target_critic, frozen[0].critic, rtol=0)  # never moved
    _close(frozen[-1].target_actor, frozen[0].actor, rtol=0)
    assert _differ(frozen[-1].critic, paper[-1].critic)  # the critic fits the frozen target
    _, soft, _ = _run(task, data, steps=2, target_update=0.25)
    for t in (1, 2):  # phi'_t = 0.25 phi_t + 0.75 phi'_{t-1}
        expected = jax.tree.map(
            lambda new, old: 0.25 * new + 0.75 * old, soft[t].critic, soft[t - 1].target_critic
        )
        _close(soft[t].target_critic, expected, rtol=1e-5)
        expected = jax.tree.map(
            lambda new, old: 0.25 * new + 0.75 * old, soft[t].actor, soft[t - 1].target_actor
        )
        _close(soft[t].target_actor, expected, rtol=1e-5)


def test_the_td_targets_next_action_is_the_target_actors(regression):
    task, data = regression
    _, paper, paper_out = _run(task, data, steps=1)
    start = ActorCritic(task, _config(target_update=0.5)).init(jax.random.key(0), data)
    _, _, copy = _run(task, data, steps=1, state=start, target_update=0.5)
    np.testing.assert_allclose(copy[0].td_error, paper_out[0].td_error, rtol=1e-5, atol=1e-7)
    head = start.actor["mean"]
    moved = {**start.actor, "mean": {**head, "bias": head["bias"] + 2.0}}
    _, _, other = _run(
        task, data, steps=1, state=start.replace(target_actor=moved), target_update=0.5
    )
    assert not np.allclose(other[0].td_error, paper_out[0].td_error, atol=1e-4)
    np.testing.assert_allclose(other[0].lr, paper_out[0].lr)  # the applied LR is the actor's


# -- clipped double Q --------------------------------------------------------------------------


def test_td_target_is_the_smaller_critics():
    q = QCritic(hidden=3)
    p1 = q.init(jax.random.key(1), jnp.zeros((2,)), jnp.zeros(()))["params"]
    p2 = q.init(jax.random.key(2), jnp.zeros((2,)), jnp.zeros(()))["params"]
    s1, a1, r, gamma = jnp.array([0.3, -1.2]), 0.4, 0.05, 0.9
    q1, q2 = (float(q.apply({"params": p}, s1, a1)) for p in (p1, p2))
    assert abs(q1 - q2) > 1e-3
    got = td_target(q, (p1, p2), r, s1, a1, gamma, False)
    np.testing.assert_allclose(got, r + gamma * min(q1, q2), rtol=1e-6)
    np.testing.assert_allclose(td_target(q, (p1,), r, s1, a1, gamma, False), r + gamma * q1)
    np.testing.assert_allclose(td_target(q, (p1, p2), r, s1, a1, gamma, True), r)


def test_twin_critics_fit_one_target_the_minimum_of_both(regression):
    task, data = regression
    ac, paper, paper_out = _run(task, data, steps=1)
    twin = ActorCritic(task, _config(twin_critics=True))
    state = twin.init(jax.random.key(0), data)
    assert isinstance(state.critic, tuple) and _differ(state.critic[0], state.critic[1])
    _close(state.critic[0], paper[0].critic, rtol=0)  # the first is the single critic's init
    # Two equal critics: the same run as one critic.
    same = state.replace(critic=(paper[0].critic,) * 2)
    same = same.replace(critic_opt=twin._critic_tx().init(same.critic))
    _, equal, _ = _run(task, data, steps=STEPS, state=same, twin_critics=True)
    _, single, _ = _run(task, data)
    _close(equal[-1].critic[0], single[-1].critic, rtol=1e-5)
    _close(equal[-1].critic[1], single[-1].critic, rtol=1e-5)
    _close(equal[-1].actor, single[-1].actor, rtol=1e-5)
    # The actor ascends the first critic: a different second one leaves its step unchanged.
    c = paper[0].critic
    mixed = same.replace(critic=(c, state.critic[1]))
    _, mixed, _ = _run(task, data, steps=1, state=mixed, twin_critics=True)
    _close(mixed[1].actor, paper[1].actor, rtol=1e-5)
    # The second critic 1 lower everywhere: the first critic's TD target drops by gamma.
    lower = {**c, "out": {**c["out"], "bias": c["out"]["bias"] - 1.0}}
    shifted = same.replace(critic=(c, lower))
    _, _, out = _run(task, data, steps=1, state=shifted, twin_critics=True)
    gamma = ac.config.gamma
    np.testing.assert_allclose(out[0].td_error, paper_out[0].td_error - gamma, atol=1e-5)
    # ... and raising it instead leaves the target as the first critic's (the minimum).
    higher = {**c, "out": {**c["out"], "bias": c["out"]["bias"] + 1.0}}
    _, _, out = _run(task, data, steps=1, state=same.replace(critic=(c, higher)), twin_critics=True)
    np.testing.assert_allclose(out[0].td_error, paper_out[0].td_error, atol=1e-5)


# -- delayed actor, warm-up ------------------------------------------------------------------


def test_policy_delay_moves_the_actor_every_dth_step_only(regression):
    task, data = regression
    _, states, _ = _run(task, data, policy_delay=2)
    moved = [_differ(states[t].actor, states[t - 1].actor) for t in range(1, STEPS + 1)]
    assert moved == [True, False, True, False]
    critic_moved = [_differ(states[t].critic, states[t - 1].critic) for t in range(1, STEPS + 1)]
    assert all(critic_moved)


def test_critic_warmup_holds_the_actor_while_the_critic_learns(regression):
    task, data = regression
    _, states, _ = _run(task, data, steps=5, critic_warmup=3)
    moved = [_differ(states[t].actor, states[t - 1].actor) for t in range(1, 6)]
    assert moved == [False, False, False, True, True]
    assert all(_differ(states[t].critic, states[t - 1].critic) for t in range(1, 6))
    _close(states[3].actor_opt, states[0].actor_opt, rtol=0)  # no gradient accumulated either


# -- target policy smoothing, reward scale ---------------------------------------------------


def test_target_noise_changes_the_target_and_its_clip_bounds_it(regression):
    task, data = regression
    _, paper, _ = _run(task, data)
    _, clipped_to_zero, _ = _run(task, data, target_noise=1.0, target_noise_clip=0.0)
    _close(clipped_to_zero[-1].critic, paper[-1].critic)
    _, noisy, _ = _run(task, data, target_noise=1.0)
    assert _differ(noisy[-1].critic, paper[-1].critic)
    _, _, paper_out = _run(task, data, steps=1)
    _, _, small = _run(task, data, steps=1, target_noise=100.0, target_noise_clip=1e-4)
    np.testing.assert_allclose(small[0].td_error, paper_out[0].td_error, atol=1e-3)


def test_reward_scale_multiplies_the_rewards_of_the_td_target(regression):
    task, data = regression
    _, _, one = _run(task, data, steps=1, gamma=0.0)
    _, _, ten = _run(task, data, steps=1, gamma=0.0, reward_scale=10.0)
    target = lambda out: np.asarray(out.td_error) + np.asarray(out.q)  # y = delta + Q(s, a)
    np.testing.assert_allclose(target(ten[0]), 10.0 * target(one[0]), rtol=1e-5)
    np.testing.assert_allclose(ten[0].reward, one[0].reward)  # the logged reward is unscaled
    np.testing.assert_allclose(target(one[0]), one[0].reward, rtol=1e-5)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"target_update": 1.5}, "target_update"),
        ({"target_update": -0.1}, "target_update"),
        ({"twin_critics": "yes"}, "twin_critics"),
        ({"policy_delay": 0}, "policy_delay"),
        ({"target_noise": -1.0}, "target_noise"),
        ({"target_noise_clip": -1.0}, "target_noise_clip"),
        ({"reward_scale": 0.0}, "reward_scale"),
        ({"critic_warmup": -1}, "critic_warmup"),
        ({"critic_warmup": 2.5}, "critic_warmup"),
    ],
)
def test_bad_stabiliser_settings_name_the_field(changes, field):
    with pytest.raises(ConfigError, match=field):
        _config(**changes)
