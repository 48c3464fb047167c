"""``ActorCriticConfig.reward_minibatch="independent"``: the reward is the loss decrement on a
fresh minibatch, not the one the step descended (paper B's Eq. 5, the default); the trainee's
step is the same; a bad value and the option with PPO are refused, naming them."""

import jax
import numpy as np
import pytest
from _rl_problem import ac_config

from lrjax import cli, tasks
from lrjax._validation import ConfigError
from lrjax.algos.actor_critic import ActorCritic
from lrjax.engine import EngineConfig


@pytest.fixture(scope="module")
def regression():
    task = tasks.get_task("regression_2d")
    return task, task.load_data(jax.random.key(3))


def _first_step(task, data, **changes):
    fields = {"engine": EngineConfig(unroll=1), "mode": "meta", "reset_every": 5, "num_envs": 2}
    ac = ActorCritic(task, ac_config(**fields, **changes))
    state = ac.init(jax.random.key(0), data)
    after, out = jax.jit(ac.step)(state, data)
    return ac, state, after, out


def test_the_independent_reward_is_the_decrement_on_a_fresh_minibatch(regression):
    task, data = regression
    _, _, paper_after, paper_out = _first_step(task, data)
    ac, before, after, out = _first_step(task, data, reward_minibatch="independent")
    # The step itself does not depend on the reward: same LR, same new weights.
    np.testing.assert_allclose(out.lr, paper_out.lr, rtol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
        after.episodes.trainee.params,
        paper_after.episodes.trainee.params,
    )
    # By hand: (f(w_0; x_r) - f(w_1; x_r)) / L_0, x_r drawn from the step's minibatch key.
    for i in range(2):
        pick = lambda tree, i=i: jax.tree.map(lambda x: x[i], tree)
        batch_i = jax.random.split(pick(before.episodes.trainee.key))[1]
        batch_r = jax.random.fold_in(batch_i, 4)
        w0, w1 = pick(before.episodes.trainee.params), pick(after.episodes.trainee.params)
        l0 = before.episodes.initial_loss[i]
        expected = (task.loss(w0, data, batch_r) - task.loss(w1, data, batch_r)) / l0
        np.testing.assert_allclose(out.reward[i], expected, rtol=1e-5, atol=1e-7)
    assert not np.allclose(out.reward, paper_out.reward)  # another minibatch, another decrement


def test_reward_minibatch_is_checked_and_is_the_actor_critics_option(capsys):
    with pytest.raises(ConfigError, match="reward_minibatch='next' is not allowed"):
        ac_config(reward_minibatch="next")
    argv = ["train", "--task", "regression_2d", "--reward-minibatch", "independent"]
    assert cli.main(argv) == 2  # PPO by default
    assert "--reward-minibatch is not allowed with --algo ppo" in capsys.readouterr().err
