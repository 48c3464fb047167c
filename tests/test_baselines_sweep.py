"""Baseline sweeps (lrjax.baselines.sweep): a grid of LRs x seeds as one program equals the runs
one by one and picks the best configuration on validation; every baseline runs through the same
function; a new grid of the same shape compiles nothing."""

import jax
import numpy as np
import pytest

from lrjax import baselines, tasks, training
from lrjax._validation import ConfigError
from lrjax.baselines import sweep
from lrjax.engine import EngineConfig


@pytest.fixture(scope="module")
def mlp_setup(fashion_mnist):
    task = tasks.get_task("mlp", batch_size=32, hidden=(32,))
    return task, fashion_mnist.subset(validation=300, test=300)


def test_grid_of_5_lrs_x_3_seeds_is_one_program_equal_to_runs_one_by_one(mlp_setup):
    task, data = mlp_setup
    spec = baselines.get_optimizer("sgd")
    steps, key = 40, jax.random.key(7)
    engine = EngineConfig(chunk_size=20)
    grid = sweep.run_optimizer(
        task, spec, data, key, num_seeds=3, num_steps=steps, eval_every=20, engine=engine
    )
    assert grid.result.train_loss.shape == (15, steps)
    assert len(grid.configs) == 5
    seed_keys = jax.random.split(key, 3)
    make_tx = spec.make_tx(steps)
    for c, config in enumerate(grid.configs):
        for s in range(3):
            one = training.train(
                task,
                make_tx,
                seed_keys[s][None],
                data,
                steps,
                hparams=baselines.stack_configs([config]),
                eval_every=20,
                engine=EngineConfig(chunk_size=20, devices=1),
            )
            i = c * 3 + s
            np.testing.assert_allclose(
                grid.result.train_loss[i], one.train_loss[0], rtol=2e-5, atol=1e-6
            )
            np.testing.assert_allclose(grid.result.learning_rate[i], config["learning_rate"])
            np.testing.assert_allclose(grid.result.test_loss[i], one.test_loss[0], rtol=2e-5)
    # best config selected on validation: lowest mean final validation loss
    means = grid.per_config(grid.result.val_loss[:, -1]).mean(axis=1)
    assert grid.best == int(np.nanargmin(np.where(np.isfinite(means), means, np.inf)))


@pytest.mark.parametrize("name", sorted(baselines.OPTIMIZERS))
def test_every_baseline_runs_through_the_same_training_function(name):
    task = tasks.get_task("regression_2d")
    data = task.load_data(jax.random.key(0))
    spec = baselines.get_optimizer(name)
    run = sweep.run_optimizer(
        task, spec, data, jax.random.key(1), num_seeds=2, num_steps=60, lrs=[spec.lr_grid[0]]
    )
    r = run.result
    assert r.train_loss.shape == (2 * len(run.configs), 60)
    assert np.isfinite(r.train_loss).all() and np.isfinite(r.test_loss).all()
    if name in ("vsgd", "dog"):  # per-parameter / distance-based step sizes: no single LR
        assert np.isnan(r.learning_rate).all(), name
    else:
        assert np.isfinite(r.learning_rate).all(), name
    summary = run.summary()
    assert summary["optimizer"] == name and "mean" in summary["test_loss"]


def test_another_grid_of_the_same_shape_compiles_nothing():
    """The documented claim: hyperparameters are traced, so a new grid of LRs (and new seeds)
    reuses the executables of the first (XLA compilations counted; the first call compiles)."""
    task = tasks.get_task("regression_2d")
    data = task.load_data(jax.random.key(0))
    spec = baselines.get_optimizer("step_decay")
    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, *_, **__: compiles.append(name) if "backend_compile" in name else None
    )

    def grid(lrs, key):
        before = len(compiles)
        sweep.run_optimizer(task, spec, data, key, num_seeds=2, num_steps=30, lrs=lrs)
        return len(compiles) - before

    assert grid([0.1, 0.01], jax.random.key(1)) > 0
    assert grid([0.3, 0.03], jax.random.key(2)) == 0


def test_bad_sweep_inputs_name_the_field():
    task = tasks.get_task("regression_2d")
    data = task.load_data(jax.random.key(0))
    with pytest.raises(ConfigError, match="num_seeds=0"):
        sweep.run_optimizer(
            task, baselines.get_optimizer("sgd"), data, jax.random.key(0), num_seeds=0, num_steps=5
        )
