"""The chunked runner every RL algorithm goes through: checkpoint + resume equals an
uninterrupted run; a finished run is not redone; a different run is never mixed in."""

import dataclasses
import json

import jax
import numpy as np
import pytest
from _rl_problem import make_env, regression_problem

from lrjax._validation import ConfigError
from lrjax.algos.ppo import PPO, PPOConfig
from lrjax.algos.runner import read_metrics, run

CONFIG = PPOConfig(num_envs=2, num_updates=4, num_minibatches=1, update_epochs=1)


@pytest.fixture(scope="module")
def setup():
    task, data = regression_problem()
    return make_env(task, horizon=4), data


@pytest.mark.slow  # moved out of the default run for its time (make test-slow runs it)
def test_checkpoint_and_resume_equal_an_uninterrupted_run(setup, tmp_path):
    env, data = setup
    key = jax.random.key(3)
    kw = dict(updates_per_chunk=2, progress=False, signature={"seed": 3})
    full = run(PPO(env, CONFIG), key, data, out_dir=tmp_path / "a", **kw)
    half = PPO(env, dataclasses.replace(CONFIG, num_updates=2))
    run(half, key, data, out_dir=tmp_path / "b", **kw)
    resumed = run(PPO(env, CONFIG), key, data, out_dir=tmp_path / "b", **kw)
    assert int(resumed.state.updates_done) == 4 and resumed.new_updates == 2
    for a, b in zip(
        jax.tree.leaves(full.state.params), jax.tree.leaves(resumed.state.params), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        jax.random.key_data(full.state.key), jax.random.key_data(resumed.state.key)
    )
    rows = read_metrics(tmp_path / "b" / "metrics.jsonl")
    assert [r["update"] for r in rows] == [1, 2, 3, 4]
    assert [r["update"] for r in resumed.history] == [1, 2, 3, 4]
    strip = lambda r: {k: v for k, v in r.items() if k != "seconds"}
    assert strip(full.history[-1]) == strip(resumed.history[-1])
    assert all(r["seconds"] > 0 for r in rows)


@pytest.mark.slow  # moved out of the default run for its time (make test-slow runs it)
def test_a_finished_run_is_complete_and_keeps_its_time(setup, tmp_path):
    env, data = setup
    algo = PPO(env, dataclasses.replace(CONFIG, num_updates=2))
    first = run(algo, jax.random.key(0), data, out_dir=tmp_path, progress=False)
    again = run(algo, jax.random.key(0), data, out_dir=tmp_path, progress=False)
    assert not first.already_complete and again.already_complete
    assert again.train_seconds == pytest.approx(first.train_seconds)
    assert len(again.history) == 2


def test_a_different_run_is_refused(setup, tmp_path):
    env, data = setup
    start = lambda updates, horizon: run(
        PPO(env, dataclasses.replace(CONFIG, num_updates=updates)),
        jax.random.key(0),
        data,
        out_dir=tmp_path,
        progress=False,
        signature={"horizon": horizon, "seed": 0},
    )
    start(2, 4)
    assert json.loads((tmp_path / "run.json").read_text()) == {"horizon": 4, "seed": 0}
    with pytest.raises(ConfigError, match="horizon: 4 there, 5 now"):
        start(2, 5)
    with pytest.raises(ConfigError, match="2 updates done, more than the 1 asked for"):
        start(1, 4)


@pytest.mark.slow  # moved out of the default run for its time (make test-slow runs it)
def test_a_checkpoint_of_other_shapes_is_refused_naming_the_arrays(setup, tmp_path):
    """No run.json to compare (an API run without a signature): the checkpoint's arrays are
    compared with the new run's before orbax restores anything."""
    env, data = setup
    small = PPO(env, dataclasses.replace(CONFIG, num_updates=1))
    run(small, jax.random.key(0), data, out_dir=tmp_path, progress=False)
    wider = PPO(env, dataclasses.replace(CONFIG, num_envs=4))
    with pytest.raises(ConfigError) as error:
        run(wider, jax.random.key(0), data, out_dir=tmp_path, progress=False)
    message = str(error.value)
    assert "written by a run with other settings" in message
    assert "done: bool[2] there, bool[4] now" in message  # one flag per episode
    assert len(message) < 1000  # one message, not orbax's tree dump
    assert [r["update"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1]


def test_each_chunk_compiles_once_across_calls(setup, tmp_path, monkeypatch):
    """Episodes split over the two host devices: the state must come out of a chunk with the
    sharding it went in with, or the next call compiles the whole program again."""
    from lrjax.algos import runner
    from lrjax.engine import EngineConfig

    _, data = setup
    task, _ = regression_problem()
    env = make_env(task, horizon=4, engine=EngineConfig(batching="map", devices=2))
    compiles, per_call = [], []
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, *_, **__: compiles.append(name) if "backend_compile" in name else None
    )
    compile_chunk = runner.compile_chunk

    def counting(algo, n, state):
        fn = compile_chunk(algo, n, state)

        def call(*args):
            before = len(compiles)
            out = jax.block_until_ready(fn(*args))
            per_call.append(len(compiles) - before)
            return out

        return call

    monkeypatch.setattr(runner, "compile_chunk", counting)
    algo = PPO(env, dataclasses.replace(CONFIG, num_updates=3))
    result = run(algo, jax.random.key(0), data, updates_per_chunk=1, progress=False)
    assert int(result.state.updates_done) == 3
    assert len(jax.tree.leaves(result.state.env_state)[0].sharding.device_set) == 2
    # Before the fix: [1, 1, 0] (the second call compiled the whole program again).
    assert per_call == [1, 0, 0]


def test_resume_drops_metrics_of_updates_after_the_checkpoint(setup, tmp_path):
    """A run killed after writing an update's metrics but before its checkpoint: on resume the
    file is rewritten without those rows, so no update appears twice."""
    env, data = setup
    kw = dict(updates_per_chunk=1, progress=False)
    run(
        PPO(env, dataclasses.replace(CONFIG, num_updates=2)),
        jax.random.key(0),
        data,
        out_dir=tmp_path,
        **kw,
    )
    metrics = tmp_path / "metrics.jsonl"
    rows = read_metrics(metrics)
    with metrics.open("a") as f:  # update 3 logged, its checkpoint never written, and
        f.write(json.dumps(dict(rows[-1], update=3)) + "\n")  # half of update 4's row
        f.write(json.dumps(dict(rows[-1], update=4))[:25])
    resumed = run(PPO(env, CONFIG), jax.random.key(0), data, out_dir=tmp_path, **kw)
    assert [r["update"] for r in read_metrics(metrics)] == [1, 2, 3, 4]
    assert [r["update"] for r in resumed.history] == [1, 2, 3, 4]
