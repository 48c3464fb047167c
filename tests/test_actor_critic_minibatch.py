"""``ActorCriticConfig.actor_minibatch="next"``: the actor's minibatch x_j is the trainee's next
training minibatch, whose loss and gradient the next step reuses. The trainee, its minibatches,
the critic and everything logged are those of paper B's order wherever the actor's data does
not matter (a frozen actor), across episode resets; the actor observes exactly the next step's
training loss; and the setting is refused where it contradicts ``same_minibatch``."""

import jax
import numpy as np
import pytest
from _rl_problem import ac_config

from lrjax import tasks
from lrjax._validation import ConfigError
from lrjax.algos.actor_critic import ActorCritic
from lrjax.engine import EngineConfig

STEPS = 7  # crosses two resets at reset_every=3


@pytest.fixture(scope="module")
def regression():
    task = tasks.get_task("regression_2d")
    return task, task.load_data(jax.random.key(3))


def _run(task, data, **changes):
    fields = {
        "engine": EngineConfig(unroll=1),
        "mode": "meta",
        "reset_every": 3,
        "num_envs": 2,
        **changes,
    }
    ac = ActorCritic(task, ac_config(**fields))
    step = jax.jit(ac.step)
    state = ac.init(jax.random.key(0), data)
    states, outs = [state], []
    for _ in range(STEPS):
        state, out = step(state, data)
        states.append(state)
        outs.append(out)
    return ac, states, outs


def _close(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-7), a, b)


def test_with_a_frozen_actor_the_run_is_paper_bs_across_resets(regression):
    """Only the actor's data changes: with the actor frozen, the trainees' params, LRs, losses,
    rewards, TD errors and the critic are those of the independent x_j, step by step, through
    two resets to w_0 (where the kept gradient is w_0's)."""
    task, data = regression
    _, paper, paper_out = _run(task, data, actor_learning_rate=0.0)
    _, nxt, nxt_out = _run(task, data, actor_learning_rate=0.0, actor_minibatch="next")
    assert any(bool(o.episode_end.any()) for o in paper_out)  # resets are crossed
    for a, b in zip(paper[1:], nxt[1:], strict=True):
        _close(a.episodes.trainee.params, b.episodes.trainee.params)
        _close(a.critic, b.critic)
        _close(a.episodes.lr, b.episodes.lr)
    for a, b in zip(paper_out, nxt_out, strict=True):
        for field in ("train_loss", "lr", "reward", "td_error", "q", "episode_end"):
            _close(getattr(a, field), getattr(b, field))


def test_the_actor_observes_the_next_steps_training_loss_and_learns_from_it(regression):
    """The kept loss is the next step's ``train_loss`` (f(w_{t+1}; x_{t+1})), and with the actor
    learning, its different data moves it differently from paper B's independent draw."""
    task, data = regression
    _, paper, _ = _run(task, data)
    _, nxt, outs = _run(task, data, actor_minibatch="next")
    for state, out in zip(nxt[1:-1], outs[1:], strict=True):
        np.testing.assert_allclose(state.episodes.next_loss, out.train_loss, rtol=1e-6)
    assert paper[-1].episodes.next_loss is None
    pairs = zip(jax.tree.leaves(paper[-1].actor), jax.tree.leaves(nxt[-1].actor), strict=True)
    assert any(not np.allclose(x, y) for x, y in pairs)


def test_actor_minibatch_is_checked():
    with pytest.raises(ConfigError, match="actor_minibatch='previous'"):
        ac_config(actor_minibatch="previous")
    with pytest.raises(ConfigError, match="actor_minibatch='next' is not allowed with same_mini"):
        ac_config(actor_minibatch="next", same_minibatch=True)
