"""The settings every learned controller rests on, observed from outside: PPO standardises the
advantages in its loss, clips the gradient by its global norm, feeds its critic the time left;
a task family's draws cover every value of every axis, and FamilyPPO's updates draw from the
key as documented.

The mutation check (``benchmarks/mutation_check.py``) removes each setting in a copy of the code
and runs these tests against it.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _rl_problem import make_env, regression_problem

from lrjax import tasks
from lrjax.algos import ppo_math
from lrjax.algos.family import FamilyPPO
from lrjax.algos.policy import ValueCritic, gaussian_log_prob
from lrjax.algos.ppo import PPO, PPOConfig
from lrjax.controller import ControllerConfig
from lrjax.env import EnvConfig
from lrjax.features import LOSS_ONLY_FEATURES, FeatureSpec

HORIZON = 3
ROLLOUT = 5  # longer than an episode: the time input restarts inside the rollout


@pytest.fixture(scope="module")
def rolled():
    """A fresh PPO runner's rollout of 4 environments, with its advantages."""
    task, data = regression_problem()
    config = PPOConfig(num_envs=4, num_minibatches=1, update_epochs=1, rollout_length=ROLLOUT)
    ppo = PPO(make_env(task, horizon=HORIZON), config)
    before = jax.jit(ppo.init)(jax.random.key(0), data)
    after, traj, first_carry = jax.jit(ppo.rollout)(before, data)
    advantages, returns = jax.jit(ppo.advantages)(after, traj)
    return ppo, before, traj, first_carry, advantages, returns


@pytest.fixture(scope="module")
def loss_and_grad(rolled):
    """PPO's loss and its gradient, ``(params, advantages, returns) -> ((loss, aux), grads)``
    on the rollout (one program for every test)."""
    ppo, _, traj, first_carry, _, _ = rolled
    value_and_grad = jax.value_and_grad(ppo.loss, has_aux=True)
    return jax.jit(lambda p, a, r: value_and_grad(p, first_carry, traj, a, r))


def _norm(tree) -> float:
    return float(optax.tree_utils.tree_norm(tree))


# -- advantage standardisation --------------------------------------------------------------


def test_the_loss_standardises_the_advantages(rolled, loss_and_grad):
    ppo, before, traj, first_carry, advantages, returns = rolled
    # Actor params away from the rollout's, so that the ratios are not all 1.
    noise = jax.tree.map(
        lambda p: 0.3 * jax.random.normal(jax.random.key(5), p.shape), before.params["actor"]
    )
    params = {**before.params, "actor": jax.tree.map(jnp.add, before.params["actor"], noise)}
    (_, aux), grads = loss_and_grad(params, advantages, returns)
    shifted = 3.0 * advantages + 5.0
    (_, aux_shifted), grads_shifted = loss_and_grad(params, shifted, returns)
    # Standardised, an affine change of the advantages changes neither loss nor gradient.
    np.testing.assert_allclose(aux_shifted["policy_loss"], aux["policy_loss"], rtol=1e-4, atol=1e-6)
    for a, b in zip(
        jax.tree.leaves(grads_shifted["actor"]), jax.tree.leaves(grads["actor"]), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)
    # By hand: the clipped surrogate of (A - mean A) / std A, not of A.
    mean, log_std = ppo._sequence_log_probs(params["actor"], first_carry, traj.obs, traj.reset)
    log_prob = gaussian_log_prob(traj.action, mean, log_std)
    assert np.abs(np.asarray(log_prob - traj.log_prob)).max() > 0.05  # ratios move
    a = np.asarray(advantages, np.float64)
    by_hand, _ = ppo_math.clipped_surrogate_loss(
        log_prob, traj.log_prob, (a - a.mean()) / a.std(), ppo.config.clip_eps
    )
    np.testing.assert_allclose(aux["policy_loss"], by_hand, rtol=1e-4, atol=1e-6)
    raw, _ = ppo_math.clipped_surrogate_loss(log_prob, traj.log_prob, a, ppo.config.clip_eps)
    raw_shifted, _ = ppo_math.clipped_surrogate_loss(
        log_prob, traj.log_prob, np.asarray(shifted), ppo.config.clip_eps
    )
    assert abs(float(raw_shifted) - float(raw)) > 0.1  # unstandardised, the shift would show


# -- global-norm gradient clipping ----------------------------------------------------------


def _adam_first_moment(opt_state):
    """Adam's first moment after one step: ``(1 - b1) g`` of the gradient it received."""
    (mu,) = [v for _, v in optax.tree_utils.tree_get_all_with_path(opt_state, "mu")]
    return jax.tree.map(lambda m: m / 0.1, mu)  # optax.adam's b1 = 0.9


def test_a_huge_gradient_is_clipped_to_max_grad_norm(rolled, loss_and_grad):
    ppo, before, traj, first_carry, advantages, returns = rolled
    huge = returns * 1e4 + 1e4  # a value loss far off: a gradient of norm >> max_grad_norm
    _, grads = loss_and_grad(before.params, advantages, huge)
    max_norm = ppo.config.max_grad_norm
    assert _norm(grads) > 1e3 * max_norm
    params, opt_state, _ = jax.jit(ppo.learn)(
        before.params, before.opt_state, jax.random.key(1), traj, first_carry, advantages, huge
    )
    received = _adam_first_moment(opt_state)  # one minibatch step: what Adam was given
    np.testing.assert_allclose(_norm(received), max_norm, rtol=1e-4)
    scaled = jax.tree.map(lambda g: g * (max_norm / _norm(grads)), grads)  # same direction
    for r, s in zip(jax.tree.leaves(received), jax.tree.leaves(scaled), strict=True):
        np.testing.assert_allclose(r, s, rtol=1e-3, atol=1e-6 * max_norm)
    # The step itself is Adam's: at most its learning rate per parameter.
    step = jax.tree.map(jnp.subtract, params, before.params)
    assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(step)) <= (
        ppo.config.learning_rate * 1.01
    )


def test_a_gradient_within_max_grad_norm_is_not_clipped(rolled):
    ppo, before, *_ = rolled
    tx = ppo._tx()
    grads = jax.tree.map(lambda p: jnp.full_like(p, 1.0), before.params)
    grads = jax.tree.map(lambda g: g * (0.5 * ppo.config.max_grad_norm / _norm(grads)), grads)
    _, state = jax.jit(tx.update)(grads, tx.init(before.params), before.params)
    for r, g in zip(
        jax.tree.leaves(_adam_first_moment(state)), jax.tree.leaves(grads), strict=True
    ):
        np.testing.assert_allclose(r, g, rtol=1e-5)


# -- the critic's time input ----------------------------------------------------------------


def test_the_critic_sees_the_time_left_in_the_episode(rolled):
    ppo, before, traj, *_ = rolled
    done = np.asarray(traj.done)
    # t / horizon of each step: 0 at an episode's start, + 1 / horizon per step.
    expected = np.zeros(done.shape)
    expected[0] = np.asarray(before.env_state.t) / HORIZON
    for t in range(1, ROLLOUT):
        expected[t] = np.where(done[t - 1], 0.0, expected[t - 1] + 1.0 / HORIZON)
    np.testing.assert_allclose(traj.progress, expected, atol=1e-6)
    assert done.any() and len(np.unique(expected)) == HORIZON
    # The rollout's values are V([s, t / horizon]), by hand.
    critic = before.params["critic"]
    x = np.concatenate([np.asarray(traj.obs), expected[..., None]], axis=-1)
    by_hand = ValueCritic(hidden=ppo.config.critic_hidden).apply({"params": critic}, x)
    np.testing.assert_allclose(traj.value, by_hand, rtol=1e-5, atol=1e-6)
    # The time input moves the value: the same observation later in the episode.
    later = ppo._value(critic, traj.obs, jnp.full(done.shape, 0.9))
    assert np.abs(np.asarray(later - traj.value)).min() > 1e-4


# -- task families' draws -------------------------------------------------------------------

DRAWS = jax.random.split(jax.random.key(7), 240)

AXES = ("datasets", "architectures", "batch_sizes", "budgets", "optimizers")


def _drawn(sample, axis):
    task = sample.task
    return {
        "datasets": task.dataset,
        "architectures": task.name.split("/")[1].split("-")[0],
        "batch_sizes": task.batch_size,
        "budgets": sample.budget,
        "optimizers": sample.optimizer,
    }[axis]


@pytest.mark.parametrize("name", sorted(tasks.FAMILIES))
def test_a_familys_draws_cover_every_value_of_every_axis_about_uniformly(name):
    family = tasks.get_family(name)
    drawn = [family.sample(k) for k in DRAWS]
    counts = {axis: {} for axis in AXES}
    for s in drawn:
        for axis in AXES:
            value = _drawn(s, axis)
            counts[axis][value] = counts[axis].get(value, 0) + 1
        if _drawn(s, "architectures") == "mlp":  # an MLP's width and depth are drawn too
            hidden = s.task.model.hidden
            for axis, value in (("widths", hidden[0]), ("depths", len(hidden))):
                counts.setdefault(axis, {})
                counts[axis][value] = counts[axis].get(value, 0) + 1
    for axis, seen in counts.items():
        declared = getattr(family, axis)
        assert set(seen) == set(declared), (axis, seen)
        total = sum(seen.values())
        assert min(seen.values()) > 0.5 * total / len(declared), (axis, seen)
    # Different keys give different draws, and a draw is a function of its key:
    # len(DRAWS) uniform draws from n samples hit n * (1 - (1 - 1/n) ** k) distinct
    # ones on average, whatever the family's size.
    n, k = len(family.samples()), len(DRAWS)
    expected_distinct = n * (1.0 - (1.0 - 1.0 / n) ** k)
    assert len(set(drawn)) > 0.8 * expected_distinct, (len(set(drawn)), expected_distinct)
    assert [family.sample(k) for k in DRAWS[:5]] == drawn[:5]


def test_family_ppo_draws_update_u_from_fold_in_of_its_sample_key():
    family = tasks.get_family(
        "image_mlp", datasets=("mnist",), widths=(8, 16), depths=(1,), batch_sizes=(32,),
        budgets=(20, 40), optimizers=("sgd", "adam"),
    )  # fmt: skip
    env = EnvConfig(controller=ControllerConfig.loss_only(), val_batch_size=32, probe_size=8)
    algo = FamilyPPO(family, env=env, ppo=PPOConfig(num_envs=2, num_minibatches=1))
    state = algo.init(jax.random.key(0))
    draws = [algo.sample(state.replace(updates_done=np.int32(u))) for u in range(12)]
    expected = [family.sample(jax.random.fold_in(state.sample_key, u)) for u in range(12)]
    assert draws == expected
    assert len(set(draws)) > 3  # the updates do not all train on one trainee
    other = algo.init(jax.random.key(1))
    assert [algo.sample(other.replace(updates_done=np.int32(u))) for u in range(12)] != draws
    assert dataclasses.replace(algo).sample(state) == draws[0]


def test_the_family_controller_observes_the_loss_only_features_unnormalised():
    """What FamilyPPO trains by default (its features are O(1) and mean the same on every
    trainee; a per-run or frozen normaliser would rescale them by its own statistics)."""
    expected = FeatureSpec(features=LOSS_ONLY_FEATURES, normaliser="none")
    assert ControllerConfig.loss_only().features == expected
    assert FamilyPPO(tasks.get_family("mixed_mlp")).env.controller.features == expected
    moved = ControllerConfig.loss_only().with_initial_lr(1e-3)
    assert moved.features == expected and moved.action_mode == "scale"
