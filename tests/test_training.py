"""The training engine: chunking, unrolling, batching and sharding do not change results; the
same key gives the same run (the baseline sweeps built on it: test_baselines_sweep.py)."""

import jax
import numpy as np
import optax
import pytest

from lrjax import tasks, training
from lrjax._validation import ConfigError
from lrjax.engine import EngineConfig


@pytest.fixture(scope="module")
def mlp_setup(fashion_mnist):
    task = tasks.get_task("mlp", batch_size=32, hidden=(32,))
    return task, fashion_mnist.subset(validation=300, test=300)


def test_chunking_and_unrolling_do_not_change_the_result(mlp_setup):
    task, data = mlp_setup
    key = jax.random.split(jax.random.key(0), 2)
    runs = [
        training.train(task, lambda hp: optax.adam(1e-3), key, data, 30, engine=e)
        for e in (
            EngineConfig(chunk_size=30, devices=1),
            EngineConfig(chunk_size=7, unroll=7),
            EngineConfig(chunk_size=1),
        )
    ]
    for r in runs[1:]:
        np.testing.assert_allclose(r.train_loss, runs[0].train_loss, rtol=2e-5, atol=1e-6)


def test_map_and_vmap_batching_give_the_same_trainees(mlp_setup):
    task, data = mlp_setup
    keys = jax.random.split(jax.random.key(4), 4)
    runs = [
        training.train(
            task,
            lambda hp: optax.sgd(0.1),
            keys,
            data,
            12,
            engine=EngineConfig(chunk_size=6, batching=b, devices=d),
        )
        for b, d in (("vmap", 1), ("map", 1), ("map", 2))
    ]
    for r in runs[1:]:
        np.testing.assert_allclose(r.train_loss, runs[0].train_loss, rtol=2e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="batching='pmap'"):
        EngineConfig(batching="pmap")


def test_same_key_same_result(mlp_setup):
    task, data = mlp_setup
    run = lambda k: training.train_one(task, optax.sgd(0.1), jax.random.key(k), data, 10)
    a, b, c = run(1), run(1), run(2)
    np.testing.assert_array_equal(a.train_loss, b.train_loss)
    assert not np.array_equal(a.train_loss, c.train_loss)


def test_eval_schedule_and_chunks():
    assert training.eval_schedule(100, 30) == [30, 60, 90, 100]
    assert training.eval_schedule(100, None) == [100]
    assert training.chunk_lengths(25, 10, [12, 25]) == [10, 2, 10, 3]


def test_bad_inputs(mlp_setup):
    task, data = mlp_setup
    with pytest.raises(ConfigError, match="num_steps=0"):
        training.train_one(task, optax.sgd(0.1), jax.random.key(0), data, 0)
    with pytest.raises(ConfigError, match="chunk_size=0"):
        EngineConfig(chunk_size=0)
