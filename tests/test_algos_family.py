"""PPO across a task family (:mod:`lrjax.algos.family`): a fresh draw every update, from the
key, reproducible and resumable; one compiled program per sample, reused; the controller carried
to each base optimizer's start; bad settings refused by name."""

import dataclasses

import jax
import numpy as np
import pytest

from lrjax._validation import ConfigError
from lrjax.algos import runner
from lrjax.algos.family import FamilyPPO
from lrjax.algos.ppo import PPOConfig
from lrjax.controller import ControllerConfig
from lrjax.engine import EngineConfig
from lrjax.env import EnvConfig
from lrjax.features import Probe
from lrjax.tasks import get_family
from lrjax.training import DEFAULT_LEARNING_RATES

# The cheapest family: one tiny MLP on MNIST, a budget of 2 actions, two optimizers (2 programs).
TINY = get_family(
    "image_mlp",
    datasets=("mnist",),
    widths=(8,),
    depths=(1,),
    batch_sizes=(32,),
    budgets=(20,),
    optimizers=("sgd", "adam"),
)
ENV = EnvConfig(
    controller=ControllerConfig.loss_only(),
    initial_lr_spread=10.0,
    val_batch_size=32,
    probe_size=8,
)


def _algo(num_updates=4, **changes):
    ppo = PPOConfig(num_envs=2, num_updates=num_updates, update_epochs=1, num_minibatches=1)
    return FamilyPPO(TINY, **{"env": ENV, "ppo": ppo, **changes})


@pytest.fixture(scope="module")
def data(mnist):
    return {"mnist": mnist}


@pytest.fixture(scope="module")
def trained(data):
    algo = _algo()
    result = runner.run(algo, jax.random.key(0), data, progress=False, updates_per_chunk=2)
    return algo, result


def test_each_update_draws_its_sample_from_the_key_and_compiles_it_once(trained):
    algo, result = trained
    samples = TINY.samples()
    state = algo.init(jax.random.key(0))
    drawn = []
    for update in range(4):
        drawn.append(algo.sample(state.replace(updates_done=np.int32(update))))
    assert [int(r["sample"]) for r in result.history] == [samples.index(s) for s in drawn]
    assert [r["budget"] for r in result.history] == [s.budget for s in drawn]
    # One program per distinct sample so far, never more (a redrawn sample reuses its own).
    distinct = [len(set(drawn[: u + 1])) for u in range(4)]
    programs = [int(r["programs"]) for r in result.history]
    assert all(p - programs[0] == d - distinct[0] for p, d in zip(programs, distinct, strict=True))
    assert algo.programs_compiled() == len(set(drawn)) <= len(samples)
    assert int(result.state.updates_done) == 4
    for row in result.history:
        assert np.isfinite(row["episode_return"]) and row["episodes"] == 2
    # The episodes start spread around the optimizer's start, within its bounds.
    assert all(
        r["lr_min"] >= 1e-6 * (1 - 1e-6) and r["lr_max"] <= 3.0 * (1 + 1e-6) for r in result.history
    )


@pytest.mark.slow  # the default suite's budget; CI runs it (make test-slow)
def test_the_same_key_trains_the_same_controller_and_a_resumed_run_equals_it(
    trained, data, tmp_path
):
    algo, result = trained
    out = tmp_path / "run"
    runner.run(_algo(num_updates=2), jax.random.key(0), data, out_dir=out, progress=False)
    resumed = runner.run(algo, jax.random.key(0), data, out_dir=out, progress=False)
    assert resumed.new_updates == 2
    for a, b in zip(
        jax.tree.leaves(result.state.params), jax.tree.leaves(resumed.state.params), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    other = runner.run(_algo(num_updates=1), jax.random.key(1), data, progress=False)
    first = runner.run(_algo(num_updates=1), jax.random.key(0), data, progress=False)
    flat = lambda r: np.concatenate([np.ravel(x) for x in jax.tree.leaves(r.state.params)])
    assert not np.array_equal(flat(other), flat(first))


@pytest.mark.slow  # ~30-40 s; CI runs it in make test-slow
def test_a_run_sharded_over_devices_resumes_and_compiles_each_sample_once(data, tmp_path):
    """Episodes split over the two test devices (as ``lrjax train`` runs them): the state a
    checkpoint restores sits on one device, and the resumed run must still take it (it once
    raised "incompatible devices") and reuse each sample's one program."""
    env = dataclasses.replace(ENV, engine=EngineConfig(shard_vmapped=True))
    algo = _algo(env=env)
    assert algo.ppo_for(TINY.samples()[0]).vec_env.engine(2).num_devices == 2
    out = tmp_path / "run"
    first = runner.run(
        _algo(num_updates=2, env=env), jax.random.key(3), data, out_dir=out, progress=False
    )
    resumed = runner.run(algo, jax.random.key(3), data, out_dir=out, progress=False)
    assert first.new_updates == 2 and resumed.new_updates == 2
    drawn = [int(r["sample"]) for r in resumed.history]
    assert int(resumed.history[-1]["programs"]) == len(set(drawn)) == algo.programs_compiled()
    assert all(np.isfinite(r["episode_return"]) for r in resumed.history)


@pytest.mark.slow  # ~30-40 s; CI runs it in make test-slow
def test_programs_in_memory_are_bounded_and_a_dropped_one_is_compiled_again(data):
    """With room for one program, every switch of sample compiles (the other was dropped) and
    a repeat does not; the run goes on unchanged."""
    algo = _algo(num_updates=6, max_programs=1)
    result = runner.run(algo, jax.random.key(5), data, progress=False, updates_per_chunk=6)
    rows = result.history
    assert all(r["programs"] == 1 for r in rows)
    drawn = [r["sample"] for r in rows]
    assert len(set(drawn)) == 2  # both samples drawn: the bound was exercised
    for i in range(1, len(rows)):
        before, after = rows[i - 1], rows[i]
        switched = drawn[i] != drawn[i - 1]
        assert after["compilations"] - before["compilations"] == int(switched)
    assert all(np.isfinite(r["episode_return"]) for r in rows)
    with pytest.raises(ConfigError, match="max_programs=0"):
        _algo(max_programs=0)


def test_the_controller_starts_at_each_optimizers_documented_lr(trained):
    algo, result = trained
    for optimizer in ("sgd", "adam"):
        c = algo.controller(result.state, optimizer)
        start = DEFAULT_LEARNING_RATES[optimizer]
        assert c.config.initial_lr == start
        np.testing.assert_allclose((c.config.lr_min, c.config.lr_max), (start / 1e3, start * 30))
        # The features trained, and the probe every sample's environment observed.
        probe = Probe(ENV.val_batch_size, ENV.probe_size, "probabilities")
        assert c.config.features == dataclasses.replace(ENV.controller.features, probe=probe)
    a, b = (algo.controller(result.state, o).params for o in ("sgd", "adam"))
    assert all(
        np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )
    with pytest.raises(ConfigError, match="optimizer='rmsprop'"):
        algo.controller(result.state, "rmsprop")


def test_each_sample_is_its_own_environment():
    algo = _algo()
    for sample in TINY.samples():
        env = algo.ppo_for(sample).env
        assert env.task == sample.task and env.config.optimizer == sample.optimizer
        assert env.config.horizon * env.config.steps_per_action == sample.budget
        assert env.config.controller.initial_lr == DEFAULT_LEARNING_RATES[sample.optimizer]


def test_a_controller_with_actions_per_run_acts_as_often_on_every_budget():
    per_run = ENV.controller.replace(actions_per_run=4)
    family = dataclasses.replace(TINY, budgets=(20, 40))
    algo = FamilyPPO(family, env=dataclasses.replace(ENV, controller=per_run, horizon=4))
    for sample in family.samples():
        config = algo.ppo_for(sample).env.config
        assert config.horizon == 4
        assert config.controller.steps_per_action == sample.budget // 4  # 5 or 10
    with pytest.raises(ConfigError, match="actions_per_run=4 does not divide"):
        FamilyPPO(dataclasses.replace(TINY, budgets=(20, 30)), env=algo.env)


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ConfigError, match="budget 25"):
        FamilyPPO(dataclasses.replace(TINY, budgets=(20, 25)), env=ENV)
    with pytest.raises(ConfigError, match="rollout_length"):
        FamilyPPO(TINY, env=ENV, ppo=PPOConfig(rollout_length=2))
    with pytest.raises(ConfigError, match="'adam'"):
        FamilyPPO(TINY, env=ENV, start_lrs=(("sgd", 0.1),))
    with pytest.raises(ConfigError, match="family="):
        FamilyPPO("mixed_mlp", env=ENV)
