"""The held-out protocol's guarantees, each observed from outside (lrjax.evaluation, lrjax.tasks):

- tuning reads only the validation split of its episodes (a poisoned test split leaves it
  bit-identical; a changed validation split changes it);
- tuning, held-out and PPO training episodes start from disjoint keys (recorded where each
  trainee is initialised), and every held-out method runs on the same held-out episodes;
- different seeds start every registered task's and every family variant's trainee from other
  weights and other minibatches;
- evaluation applies the controller's deterministic (mean) action: its LRs equal a loop stepped
  by hand on the actor's mean, and differ from a sampling policy's.

The mutation check (``benchmarks/mutation_check.py``) writes each broken guarantee into a copy of
the code and runs these tests against it.
"""

import dataclasses
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _rl_problem import CONTROLLER, make_env, regression_problem

from lrjax import evaluation, tasks, training
from lrjax.algos.policy import sample_action
from lrjax.algos.ppo import PPO, PPOConfig
from lrjax.controller import action_to_lr, actor_step, init_controller, initial_carry
from lrjax.data import Dataset, Split, get_spec
from lrjax.evaluation import BASELINES, protocol, run_episodes, run_schedules
from lrjax.features import init_normaliser, observe_run


@pytest.fixture(scope="module")
def problem():
    return regression_problem()


def _poison(data, split, value):
    """``data`` with the inputs and targets of ``split`` replaced (``value``: an array maker)."""
    x, y = data.split(split)
    return data.replace(**{f"{split}_x": value(x), f"{split}_y": value(y)})


# -- tuning reads only the validation split -------------------------------------------------


def test_tuning_reads_only_the_validation_split(problem):
    task, data = problem
    env = make_env(task, horizon=3)
    grid = dataclasses.replace(BASELINES["constant"], grid=(0.03, 0.1, 0.3))
    key = jax.random.key(11)

    def tune(d):
        (tuned,) = protocol.tune_baselines(env, [grid], key, d, 2, max_extensions=0)
        return tuned

    clean = tune(data)
    assert np.all(np.isfinite(clean.validation_loss)) and len(clean.lrs) == 5  # 3 + refinement
    nan_test = _poison(data, "test", lambda a: jnp.full_like(a, jnp.nan))
    # The poison reaches the episodes tuning runs (their test metrics are NaN) ...
    (poisoned_run,) = run_schedules(env, np.full((1, 3), 0.1), key, nan_test, 2)
    assert np.all(np.isnan(poisoned_run.test_loss))
    # ... and tuning, which reads the validation split only, does not see it.
    poisoned = tune(nan_test)
    assert poisoned.lrs == clean.lrs and poisoned.validation_loss == clean.validation_loss
    assert poisoned.best_lr == clean.best_lr
    # A changed validation split (targets shifted) changes every tuning score.
    shifted = tune(_poison(data, "validation", lambda a: a + 3.0))
    assert all(
        not np.isclose(a, b)
        for a, b in zip(shifted.validation_loss, clean.validation_loss, strict=True)
    ), (shifted.validation_loss, clean.validation_loss)


@pytest.mark.parametrize("grid", [(0.01, 0.03), (3.0, 10.0)])  # winners at the top, bottom
def test_tuning_grows_an_edge_winners_grid_until_the_winner_is_interior(problem, grid):
    task, data = problem
    env = make_env(task, horizon=3)
    family = dataclasses.replace(BASELINES["constant"], grid=grid)
    (tuned,) = protocol.tune_baselines(env, [family], jax.random.key(11), data, 2)
    loss = dict(zip(tuned.lrs, tuned.validation_loss, strict=True))
    best, step = tuned.best_lr, 10.0**0.5
    assert not tuned.at_edge and not grid[0] <= best <= grid[1], (best, loss)
    # a worse neighbour half a decade away on both sides (an extension or the initial grid)
    for neighbour in (best / step, best * step):
        (tried,) = [lr for lr in tuned.lrs if np.isclose(lr, neighbour, rtol=1e-9)]
        assert loss[tried] > loss[best]


def test_each_baseline_runs_its_own_optimizer_on_the_held_out_episodes(problem):
    task, data = problem
    env = make_env(task, horizon=3)  # the controllers' optimizer: SGD
    key = jax.random.key(12)
    tuned = [protocol.Tuned(BASELINES[n], (0.03,), (0.0,)) for n in ("constant", "adam")]
    constant, adam = protocol.evaluate_methods(env, {}, tuned, key, data, 2)
    assert (constant.name, adam.name) == ("constant (lr 0.03)", "adam (lr 0.03)")
    lrs = np.full((1, 3), 0.03)
    (sgd_alone,) = run_schedules(env, lrs, key, data, 2)
    (adam_alone,) = run_schedules(make_env(task, horizon=3, optimizer="adam"), lrs, key, data, 2)
    np.testing.assert_allclose(constant.episodes.val_loss, sgd_alone.val_loss, rtol=1e-5)
    np.testing.assert_allclose(adam.episodes.val_loss, adam_alone.val_loss, rtol=1e-5)
    assert not np.allclose(adam_alone.val_loss, sgd_alone.val_loss, rtol=1e-3)


# -- tuning, held-out and training episodes are disjoint ------------------------------------

INIT_KEYS: list[tuple[str, tuple[int, ...]]] = []
PHASE = ["none"]


@dataclasses.dataclass(frozen=True)
class _RecordingRegression(tasks.Regression2DTask):
    """regression_2d that records the key of every trainee initialisation (its episode's key)."""

    def init(self, key, data):
        record = lambda k: INIT_KEYS.append((PHASE[0], tuple(np.asarray(k).ravel().tolist())))
        jax.debug.callback(record, jax.random.key_data(key))
        return super().init(key, data)


def _in_phase(name, fn):
    def run(*args, **kwargs):
        PHASE[0] = name
        try:
            return fn(*args, **kwargs)
        finally:
            jax.effects_barrier()
            PHASE[0] = "none"

    return run


def _keys(phase):
    return [k for p, k in INIT_KEYS if p == phase]


def test_tuning_held_out_and_training_episodes_are_disjoint(problem, monkeypatch):
    _, data = problem
    INIT_KEYS.clear()
    monkeypatch.setitem(tasks.TASKS, "recording_2d", lambda **kw: _RecordingRegression(**kw))
    monkeypatch.setattr(protocol, "tune_baselines", _in_phase("tuning", protocol.tune_baselines))
    monkeypatch.setattr(
        protocol, "evaluate_methods", _in_phase("held_out", protocol.evaluate_methods)
    )
    eval_seed = inspect.signature(evaluation.evaluate).parameters["seed"].default
    result = evaluation.evaluate(
        ["recording_2d"], {"c": init_controller(jax.random.key(0), CONTROLLER)},
        baselines=("constant",), tune_seeds=2, seeds=3, horizon=3,
        data={"recording_2d": data},
    )  # fmt: skip
    assert result.seed == eval_seed
    tuning, held_out = _keys("tuning"), _keys("held_out")
    # Every LR tried is tuned on the same 2 episodes, and the controller and the tuned
    # baseline run on the same 3 held-out episodes (paired), each a trainee of its own.
    tried = len(result.task("recording_2d").tuned[0].lrs)
    assert len(tuning) == 2 * tried and len(set(tuning)) == 2
    assert len(held_out) == 2 * 3 and len(set(held_out)) == 3
    assert not set(tuning) & set(held_out)

    # PPO's training episodes from lrjax train's default root seed (0): its first episodes
    # and those it resets to within the rollout.
    from lrjax.cli import build_parser

    train_seed = build_parser().parse_args(["train", "--task", "regression_2d"]).seed
    assert train_seed != eval_seed
    env = make_env(_RecordingRegression(), horizon=3)
    ppo = PPO(env, PPOConfig(num_envs=2, num_minibatches=1, rollout_length=4))
    PHASE[0] = "training"
    # lrjax train: runner.run(algo, key(seed)) starts from algo.init(key(seed)).
    start = jax.jit(ppo.init)(jax.random.key(train_seed), data)
    jax.block_until_ready(jax.jit(ppo.rollout)(start, data))  # and one rollout
    jax.effects_barrier()
    PHASE[0] = "none"
    training_keys = _keys("training")
    assert len(set(training_keys)) == 4  # 2 episodes, then 2 fresh ones after the horizon
    assert not set(training_keys) & (set(tuning) | set(held_out))


# -- seeds give other weights and other minibatches -----------------------------------------


def _fake_data(dataset: str, size: int = 256) -> Dataset:
    """A dataset of the right image shape whose labels number the examples, so that a
    minibatch's labels are the indices it drew."""
    spec = get_spec(dataset)
    split = Split(
        jnp.zeros((size, *spec.image_shape), jnp.uint8), jnp.arange(size, dtype=jnp.int32)
    )
    shape = spec.image_shape
    return Dataset(
        split, split, split, jnp.zeros(shape), jnp.ones(shape[-1:]), dataset, spec.num_classes
    )


def _starts(task, data, keys):
    """The trainees of ``keys`` as every run starts them (``training.init_trainee``, which the
    environment and the training engine call): their params and the example indices of their
    first minibatch."""

    def start(key):
        state = training.init_trainee(task, optax.identity(), key, data)
        return state.params, task.minibatch(data, training.minibatch_key(state))[1]

    return jax.jit(jax.vmap(start))(keys)


SEED_KEYS = jax.random.split(jax.random.key(2024), 2)


def _check_seeds_differ(task, data, *, weights=True, minibatches=True):
    params, batches = _starts(task, data, SEED_KEYS)
    kernels = [x for x in jax.tree.leaves(params) if x.ndim >= 3]  # [seeds, ...] matrices
    assert kernels or not weights
    if weights:  # every weight matrix and conv kernel is drawn anew
        for leaf in kernels:
            assert not np.allclose(leaf[0], leaf[1]), (task.name, leaf.shape)
    if minibatches:
        assert not np.array_equal(batches[0], batches[1]), task.name


@pytest.mark.parametrize("name", sorted(tasks.TASKS))
def test_each_seed_starts_every_task_from_its_own_weights_and_minibatches(name, problem):
    task = tasks.get_task(name)
    if isinstance(task, tasks.Regression2DTask):
        # Paper B's problem fixes the start (w_init is part of the drawn problem, by design);
        # its seeds differ in their minibatches.
        data = problem[1]
        params, _ = _starts(task, data, SEED_KEYS)
        np.testing.assert_array_equal(params["kernel"], np.tile(data.w_init, (2, 1)))
        _check_seeds_differ(task, data, weights=False)
        return
    _check_seeds_differ(task, _fake_data(task.dataset))


def test_each_seed_starts_every_family_variant_from_its_own_weights_and_minibatches():
    weights, minibatches = set(), set()
    for family in tasks.FAMILIES.values():
        for task in family.variants():
            shape = get_spec(task.dataset).image_shape
            new_weights = (task.model, shape) not in weights  # the same model and input: the
            new_batches = task.batch_size not in minibatches  # same init; the same batch size
            if new_weights or new_batches:  # and split: the same draws
                data = _fake_data(task.dataset)
                _check_seeds_differ(task, data, weights=new_weights, minibatches=new_batches)
            weights.add((task.model, shape))
            minibatches.add(task.batch_size)
    assert len(weights) >= 7 and minibatches == {64, 128}


# -- evaluation applies the deterministic action --------------------------------------------


def test_evaluation_applies_the_controllers_mean_action(problem):
    task, data = problem
    horizon, episodes = 4, 2
    config = CONTROLLER.replace(head_init_scale=3.0)  # a mean action that moves with the state
    env = make_env(task, config, horizon=horizon)
    controller = init_controller(jax.random.key(3), config)
    key = jax.random.key(8)
    evaluated = run_episodes(env, controller, key, data, episodes)

    @jax.jit
    def step(raw, state, carry, run_stats, k, k_act, sample):
        obs, run_stats = observe_run(config.features, controller.normaliser, run_stats, raw)
        carry, mean, log_std = actor_step(controller.params, carry, obs, config)
        u = jnp.where(sample, sample_action(k_act, mean, log_std), mean)
        lr = action_to_lr(u, state.lr, config)
        raw, state, _, _, _ = env.step_env_lr(k, state, lr, data)
        return raw, state, carry, run_stats, lr

    reset = jax.jit(lambda k: env.reset(k, data))

    def by_hand(sample):
        lrs = []
        for i, k in enumerate(jax.random.split(key, episodes)):  # run_episodes' keys
            k_reset, k_steps = jax.random.split(k)
            raw, state = reset(k_reset)
            carry, run_stats = initial_carry(config), init_normaliser(config.obs_size)
            for t, kt in enumerate(jax.random.split(k_steps, horizon)):
                k_act = jax.random.fold_in(jax.random.key(99), i * horizon + t)
                raw, state, carry, run_stats, lr = step(
                    raw, state, carry, run_stats, kt, k_act, sample
                )
                lrs.append(float(lr))
        return np.asarray(lrs).reshape(episodes, horizon)

    mean_lrs = by_hand(False)
    assert np.ptp(np.log(mean_lrs)) > 0.05  # the actor's mean moves the LR
    np.testing.assert_allclose(evaluated.lr, mean_lrs, rtol=1e-5)
    # A policy that samples its actions (PPO's, with the actor's std) would apply other LRs.
    sampled = by_hand(True)
    assert np.abs(np.log(sampled) - np.log(evaluated.lr)).max() > 0.1
