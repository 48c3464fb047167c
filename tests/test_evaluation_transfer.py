"""Baselines tuned across trainees (lrjax.evaluation.transfer): the choice is the configuration
of lowest mean relative regret, computed here by hand from independent runs; it reads only the
validation split; a diverging configuration is never chosen."""

import dataclasses

import jax
import numpy as np
import pytest

from lrjax import tasks, training
from lrjax._validation import ConfigError
from lrjax.baselines import get_optimizer
from lrjax.evaluation import relative_regret, tune_across

LRS = (1e-3, 3e-2, 0.3, 50.0)  # 50 diverges on the regression problem
STEPS = 30


@pytest.fixture(scope="module")
def trainees():
    task = tasks.get_task("regression_2d")
    return [(task, task.load_data(jax.random.key(i))) for i in (0, 1)]


@pytest.fixture(scope="module")
def tuned(trainees):
    return tune_across(
        get_optimizer("sgd"), trainees, jax.random.split(jax.random.key(5), 2), STEPS, lrs=LRS
    )


def test_relative_regret_by_hand():
    v = np.array([[1.0, 2.0, np.nan], [4.0, 3.0, 6.0], [np.inf, np.inf, np.inf]])
    # trainee 0: regrets 0, 1, inf; trainee 1: 1/3, 0, 1; trainee 2 (all failed) counts for none
    np.testing.assert_allclose(relative_regret(v), [1 / 6, 1 / 2, np.inf])
    assert np.all(np.isinf(relative_regret(np.full((2, 3), np.nan))))


def test_the_choice_is_the_lowest_mean_regret_of_independent_runs(trainees, tuned):
    spec = get_optimizer("sgd")
    keys = jax.random.split(jax.random.key(5), 2)
    by_hand = np.zeros((len(trainees), len(LRS)))
    for i, (task, data) in enumerate(trainees):
        for j, lr in enumerate(LRS):  # each configuration in its own run
            hp = {"learning_rate": np.full((2,), lr, np.float32)}
            r = training.train(task, spec.make_tx(STEPS), keys, data, STEPS, hparams=hp)
            final = np.where(np.isfinite(r.val_loss[:, -1]), r.val_loss[:, -1], np.inf)
            by_hand[i, j] = final.mean()
    np.testing.assert_allclose(tuned.val_loss, by_hand, rtol=1e-5)
    best = by_hand.min(axis=1, keepdims=True)
    scores = (by_hand / best - 1).mean(axis=0)
    np.testing.assert_allclose(tuned.scores, scores, rtol=1e-5)
    assert tuned.config["learning_rate"] == LRS[int(np.argmin(scores))]
    assert np.isinf(tuned.scores[-1]) and tuned.config["learning_rate"] != 50.0
    assert tuned.trainees == ("regression_2d", "regression_2d") and len(tuned.configs) == 4


def test_tuning_reads_the_validation_split_only(trainees, tuned):
    keys = jax.random.split(jax.random.key(5), 2)
    spec = get_optimizer("sgd")

    def poisoned(split):
        out = []
        for task, data in trainees:
            fields = {f"{split}_y": getattr(data, f"{split}_y") * 0 + 1e3}
            out.append((task, dataclasses.replace(data, **fields)))
        return out

    on_test = tune_across(spec, poisoned("test"), keys, STEPS, lrs=LRS)
    np.testing.assert_array_equal(on_test.val_loss, tuned.val_loss)
    assert on_test.config == tuned.config
    on_validation = tune_across(spec, poisoned("validation"), keys, STEPS, lrs=LRS)
    assert not np.allclose(on_validation.val_loss, tuned.val_loss)


def test_nothing_to_tune_on_is_refused():
    with pytest.raises(ConfigError, match="trainees=()"):
        tune_across(get_optimizer("sgd"), [], jax.random.split(jax.random.key(0), 2), STEPS)
