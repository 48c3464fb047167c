"""Training under injected faults (:mod:`lrjax.testing.faults`): NaN and Inf losses and
gradients and exploding steps in about 10% of the episodes, and huge LRs chosen by the actions.
Nothing non-finite may reach the controller's params, the critic, the optimizers' statistics or
any healthy episode; each bad episode ends with its bounded penalty and is counted; training goes
on.
"""

import dataclasses

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from _rl_problem import CONTROLLER, ac_config, make_env, regression_problem

from lrjax._validation import ConfigError
from lrjax.algos.actor_critic import ActorCritic
from lrjax.algos.ppo import PPO, PPOConfig
from lrjax.engine import EngineConfig
from lrjax.env import VecEnv
from lrjax.features import FeatureSpec
from lrjax.testing.faults import FAULT_KINDS, FaultyTask, rate_for_episodes

FRACTION = 0.1  # of episodes hit by at least one fault


@pytest.fixture(scope="module")
def problem():
    return regression_problem()


def _float_leaves(tree):
    leaves = jax.tree.leaves(tree)
    return [x for x in leaves if jnp.issubdtype(x.dtype, jnp.floating)]


def assert_all_finite(tree, what):
    bad = [i for i, x in enumerate(_float_leaves(tree)) if not bool(jnp.isfinite(x).all())]
    assert not bad, f"non-finite values in {what} (leaves {bad})"


def _env_faulty_task(task, env):
    """Faults in FRACTION of the environment's episodes: an episode draws a minibatch at each
    trainee step and one for the ``value`` it observes at each action."""
    calls = env.total_steps + env.config.horizon
    return FaultyTask(task, rate=rate_for_episodes(FRACTION, calls))


# -- the injector itself ----------------------------------------------------------------------


def test_faults_hit_the_rate_and_each_kind_does_what_it_says(problem):
    task, data = problem
    faulty = FaultyTask(task, rate=0.25)
    keys = jax.random.split(jax.random.key(0), 4000)
    faults = np.asarray(jax.vmap(faulty.fault)(keys))
    assert abs((faults >= 0).mean() - 0.25) < 0.03  # 4000 draws: std 0.007
    assert set(np.unique(faults)) == {-1, 0, 1, 2, 3}
    params = task.init(jax.random.key(1), data)
    for kind, index in [(k, FAULT_KINDS.index(k)) for k in FAULT_KINDS]:
        key = keys[int(np.flatnonzero(faults == index)[0])]
        loss, grads = faulty.loss_and_grad(params, data, key)
        clean_loss, clean_grads = task.loss_and_grad(params, data, key)
        g, clean_g = jax.tree.leaves(grads)[0], jax.tree.leaves(clean_grads)[0]
        assert bool(jnp.isnan(loss)) == (kind == "nan")
        assert bool(jnp.isposinf(loss)) == (kind == "inf_loss")
        assert float(faulty.loss(params, data, key)) == float(loss) or kind == "nan"
        if kind == "inf_grad":
            assert bool(jnp.isposinf(g).all())
        elif kind == "huge_grad":
            np.testing.assert_allclose(g, clean_g * 1e8, rtol=1e-6)
        elif kind == "inf_loss":
            np.testing.assert_array_equal(g, clean_g)
    clean_key = keys[int(np.flatnonzero(faults == -1)[0])]
    np.testing.assert_array_equal(
        faulty.loss(params, data, clean_key), task.loss(params, data, clean_key)
    )
    assert faulty.name == task.name and faulty.batch_size == task.batch_size


def test_bad_fault_settings_name_the_field(problem):
    task, _ = problem
    with pytest.raises(ConfigError, match="rate=1.5"):
        FaultyTask(task, rate=1.5)
    with pytest.raises(ConfigError, match="kinds=.*'typo'"):
        FaultyTask(task, kinds=("nan", "typo"))
    with pytest.raises(ConfigError, match="task="):
        FaultyTask("regression_2d")


# -- the environment --------------------------------------------------------------------------


def _rollout(env, data, actions, key):
    """Steps ``actions[T, E]`` through E auto-resetting episodes; the per-step outputs."""
    num_envs = actions.shape[1]
    vec = VecEnv(env)
    _, state = vec.reset(jax.random.split(key, num_envs), data)

    def step(state, xs):
        k, action = xs
        _, state, reward, done, info = vec.step(jax.random.split(k, num_envs), state, action, data)
        return state, (reward, done, info)

    keys = jax.random.split(jax.random.fold_in(key, 1), len(actions))
    return jax.jit(lambda s: jax.lax.scan(step, s, (keys, actions)))(state)


@pytest.mark.parametrize("reward", ["loss_decrement", "val_loss"])
def test_faulty_episodes_end_with_their_bounded_penalty_and_healthy_ones_are_untouched(
    problem, reward
):
    task, data = problem
    env = make_env(task, reward=reward)
    faulty_env = make_env(_env_faulty_task(task, env), reward=reward)
    horizon, factor = env.config.horizon, env.config.divergence_factor
    # 64 episodes side by side for 3 horizons; a few lanes ask for the largest LR (2.0: a
    # trainee that diverges by itself), the others for LRs around the initial one.
    actions = jax.random.normal(jax.random.key(5), (3 * horizon, 64))
    actions = actions.at[:, :4].set(10.0)
    state, (reward_c, done_c, info_c) = _rollout(env, data, actions, jax.random.key(2))
    faulty_state, (reward_f, done_f, info_f) = _rollout(
        faulty_env, data, actions, jax.random.key(2)
    )
    assert_all_finite((faulty_state, reward_f, info_f["episode_return"], info_f["lr"]), "env")
    diverged = np.asarray(info_f["diverged"])
    faulted = diverged & ~np.asarray(info_c["diverged"])
    # The faults hit about FRACTION of the 64 x 3 episodes (a few more end in the huge LRs).
    assert 8 <= faulted.sum() <= 40, faulted.sum()
    assert diverged[:, :4].sum() >= 4  # the huge-LR lanes diverged, each episode of them
    ended_returns = np.asarray(info_f["episode_return"])[diverged]
    if reward == "loss_decrement":  # the decrements sum to 1 - factor once diverged
        np.testing.assert_allclose(ended_returns, 1 - factor, atol=1e-5)
    else:  # -L / L0 per step, then -factor for each step left: at least -factor (H + 1)
        assert (ended_returns >= -factor * (horizon + 1) - 1e-4).all()
    # A lane is the same in both runs up to its first fault: the faults touch no other episode.
    first_fault = np.where(faulted.any(0), faulted.argmax(0), len(actions))
    for lane in range(actions.shape[1]):
        t = first_fault[lane]
        np.testing.assert_array_equal(reward_f[:t, lane], reward_c[:t, lane])
        np.testing.assert_array_equal(done_f[:t, lane], done_c[:t, lane])


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_kind_of_fault_ends_the_episode_at_once_with_the_penalty(problem, kind):
    """Every minibatch faulty: an infinite training loss alone (the params still finite) ends
    the episode as surely as a NaN gradient does."""
    task, data = problem
    env = make_env(FaultyTask(task, rate=1.0, kinds=(kind,)))
    key = jax.random.key(0)
    _, state = env.reset(key, data)
    _, _, reward, done, info = env.step(key, state, jnp.float32(0.0), data)
    assert bool(done) and bool(info["diverged"])
    np.testing.assert_allclose(reward, 1 - env.config.divergence_factor, atol=1e-6)


# -- PPO and the actor-critic -----------------------------------------------------------------


@pytest.mark.slow  # ~15 s; CI runs it (make test-slow)
def test_ppo_trains_on_under_faults_and_keeps_every_statistic_finite(problem):
    task, data = problem
    ppo = PPO(
        make_env(_env_faulty_task(task, make_env(task))), PPOConfig(num_envs=16, num_updates=6)
    )
    runner, metrics = jax.jit(ppo.train)(jax.random.key(0), data)
    assert_all_finite(runner.params, "the actor and the critic")
    assert_all_finite(runner.opt_state, "PPO's Adam statistics")
    assert_all_finite((runner.obs_stats, runner.env_state), "the observation statistics")
    assert int(runner.updates_done) == 6
    diverged = np.asarray(metrics["diverged"])
    assert diverged.sum() >= 3, diverged  # counted: ~10% of 96 episodes
    np.testing.assert_allclose(metrics["diverged_fraction"], diverged / metrics["episodes"])
    for name in ("episode_return", "final_val_loss", "mean_reward", "value_loss", "approx_kl"):
        assert np.isfinite(metrics[name]).all(), name
    # Training went on: the actor moved away from its initialisation.
    ravel = lambda tree: jax.flatten_util.ravel_pytree(tree)[0]
    initial = ppo.init(jax.random.key(0), data).params["actor"]
    assert not np.allclose(ravel(runner.params["actor"]), ravel(initial))


@pytest.mark.slow  # ~15 s; CI runs it (make test-slow)
@pytest.mark.parametrize("mode", ["meta", "online"])
def test_actor_critic_under_faults_keeps_actor_critic_and_adam_finite(problem, mode):
    task, data = problem
    episode = 25
    controller = dataclasses.replace(
        CONTROLLER, steps_per_action=1, features=FeatureSpec(features=("train_loss", "log_lr"))
    )
    # A fault in a step's training minibatch (its gradient, the loss before and after) ends
    # the episode; one in the actor's x_j only blanks that observation's loss feature.
    faulty = FaultyTask(task, rate=rate_for_episodes(FRACTION, episode))
    config = ac_config(
        mode=mode,
        num_envs=8,
        num_updates=4,
        steps_per_update=episode,
        reset_every=episode,
        controller=controller,
        engine=EngineConfig(unroll=1),
    )
    ac = ActorCritic(faulty, config)
    state = ac.init(jax.random.key(0), data)
    step = jax.jit(lambda s: jax.lax.scan(lambda s, _: ac.step(s, data), s, None, length=200))
    state, out = step(state)
    assert_all_finite((state.actor, state.critic), "the actor and the critic")
    assert_all_finite((state.actor_opt, state.critic_opt), "the accumulating Adam states")
    assert_all_finite(state.obs_stats, "the observation statistics")
    assert_all_finite((out.reward, out.td_error, out.q, out.lr), "the step outputs")
    factor = config.env.divergence_factor
    assert (np.asarray(out.reward)[np.asarray(out.diverged)] >= -factor).all()
    assert np.asarray(out.diverged).sum() >= 3  # ~10% of 64 episodes
    metrics = ac._metrics(state, out, data)  # what an update reports for these 200 steps
    assert metrics["diverged"] == np.asarray(out.diverged).sum()
    for name, value in metrics.items():  # (the regression task has no accuracy)
        assert np.isfinite(value) or name == "test_accuracy", (name, value)
