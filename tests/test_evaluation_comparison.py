"""The learned-vs-schedules comparison (lrjax.evaluation.comparison), and its plots."""

import jax
import numpy as np
import pytest
from _rl_problem import CONTROLLER, make_env, regression_problem

from lrjax import plots
from lrjax._validation import ConfigError
from lrjax.controller import init_controller
from lrjax.evaluation import compare_with_schedules, constant_lr_grid, step_decay_lrs


@pytest.fixture(scope="module")
def comparison():
    task, data = regression_problem()
    env = make_env(task, horizon=4)
    controller = init_controller(jax.random.key(0), CONTROLLER)
    return env, compare_with_schedules(
        env, controller, jax.random.key(1), data, 3, lrs=[0.01, 0.1, 0.5]
    )


def test_comparison_runs_every_schedule_on_the_same_episodes(comparison):
    env, c = comparison
    assert c.families == ("constant", "step_decay")
    assert [s.initial_lr for s in c.schedules] == [0.01, 0.1, 0.5] * 2
    best = c.best("constant")
    assert best.mean_final_val_loss == min(
        s.mean_final_val_loss for s in c.schedules if s.family == "constant"
    )
    decay = next(s for s in c.schedules if s.family == "step_decay" and s.initial_lr == 0.1)
    np.testing.assert_allclose(decay.lrs, [0.1, 0.1, 0.01, 0.001], rtol=1e-6)
    np.testing.assert_allclose(decay.episodes.lr[:, 2], 0.01, rtol=1e-6)
    rows = c.rows()
    assert rows[0]["method"] == "learned controller" and len(rows) == 7
    assert sum(r["best_of_family"] for r in rows) == 2
    assert "| learned controller |" in c.table()
    with pytest.raises(ConfigError, match="family='cosine'"):
        c.best("cosine")


def test_step_decay_and_grid():
    np.testing.assert_allclose(
        step_decay_lrs(1.0, 8), [1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01], rtol=1e-6
    )
    task, _ = regression_problem()
    grid = constant_lr_grid(make_env(task))  # initial LR 0.01 in [1e-3, 2]
    np.testing.assert_allclose(grid, np.geomspace(1e-3, 0.1, 5), rtol=1e-6)


def test_plots_write_figures(comparison, tmp_path):
    _, c = comparison
    path = plots.plot_comparison(c, tmp_path / "c.png", title="t", steps_per_action=5)
    assert path.stat().st_size > 10_000
    history = [
        {
            "update": i + 1,
            "episode_return": -i,
            "final_val_loss": 1.0 / (i + 1),
            "lr_min": 0.01,
            "lr_max": 0.1,
            "lr_mean": 0.03,
            "seconds": 1.0,
        }
        for i in range(3)
    ]
    assert plots.plot_training(history, tmp_path / "t.png").stat().st_size > 10_000


def test_lr_schedule_plot_takes_a_diverged_seed(tmp_path):
    steps = np.arange(1, 51)
    lr = np.geomspace(0.1, 0.01, 50)[None].repeat(3, axis=0)
    loss = np.linspace(2.0, 0.5, 50)[None].repeat(3, axis=0)
    loss[1, 30:] = np.nan  # a seed that diverged at step 31
    curves = {"learned": (steps, lr, loss), "constant": (steps, np.full((3, 50), 0.1), loss)}
    path = plots.plot_lr_schedules(curves, tmp_path / "lr.png", title="held out")
    assert path.stat().st_size > 10_000
