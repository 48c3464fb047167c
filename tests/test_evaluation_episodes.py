"""Evaluation episodes (lrjax.evaluation.episodes): the final trainee's test metrics, schedules on
common episodes."""

import jax
import numpy as np
import pytest
from _rl_problem import make_env, regression_problem

from lrjax._validation import ConfigError
from lrjax.evaluation.episodes import run_episodes, run_schedules


@pytest.fixture(scope="module")
def problem():
    return regression_problem()


def test_evaluation_episodes_report_the_final_trainee(problem):
    task, data = problem
    env = make_env(task, horizon=4)
    slow = run_episodes(env, 0.001, jax.random.key(6), data, 2)
    good = run_episodes(env, 0.3, jax.random.key(6), data, 2)
    assert np.isfinite(good.test_loss).all() and not good.diverged.any()
    # the test loss is that of the trained trainee, not of a fresh (auto-reset) one
    assert good.test_loss.mean() < 0.5 * slow.test_loss.mean()
    np.testing.assert_allclose(good.lr, 0.3, rtol=1e-6)


def test_schedules_run_on_the_same_episodes_as_constants(problem):
    task, data = problem
    env = make_env(task, horizon=4)
    schedules = np.array([[0.3] * 4, [0.3, 0.3, 0.03, 0.03], [50.0] * 4], np.float32)
    constant, decay, diverging = run_schedules(env, schedules, jax.random.key(6), data, 3)
    alone = run_episodes(env, 0.3, jax.random.key(6), data, 3)
    np.testing.assert_allclose(constant.val_loss, alone.val_loss, rtol=1e-5)
    np.testing.assert_allclose(decay.lr[:, :2], 0.3, rtol=1e-6)
    np.testing.assert_allclose(decay.lr[:, 2:], 0.03, rtol=1e-6)
    np.testing.assert_allclose(decay.val_loss[:, :2], alone.val_loss[:, :2], rtol=1e-5)
    assert diverging.diverged.all() and np.isinf(diverging.final_val_loss).all()
    assert np.isnan(diverging.lr[:, 1:]).all()  # steps after the episode ended
    with pytest.raises(ConfigError, match="horizon=4"):
        run_schedules(env, np.ones((2, 3)), jax.random.key(0), data, 1)


def test_a_legacy_prng_key_gives_every_schedule_the_same_episodes(problem):
    """A uint32 ``PRNGKey`` (``[E, 2]`` once split) is tiled along the episodes, as a typed key."""
    task, data = problem
    env = make_env(task, horizon=4)
    schedules = np.array([[0.3] * 4, [0.1] * 4], np.float32)
    first, second = run_schedules(env, schedules, jax.random.PRNGKey(6), data, 3)
    alone = run_episodes(env, 0.1, jax.random.PRNGKey(6), data, 3)
    assert first.val_loss.shape == second.val_loss.shape == alone.val_loss.shape
    np.testing.assert_allclose(second.val_loss, alone.val_loss, rtol=1e-5)


def test_a_table_against_a_method_that_is_not_there_is_refused():
    from lrjax.evaluation.tables import results_table

    with pytest.raises(ConfigError, match="reference='nope' is not allowed"):
        results_table([], "nope")
