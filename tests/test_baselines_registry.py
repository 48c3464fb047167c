"""The baselines' registry (lrjax.baselines.registry): schedules apply the documented LR, bad
names and settings are refused naming the field, and the best configuration is the one with the
lowest mean final validation loss."""

import jax.numpy as jnp
import numpy as np
import pytest

from lrjax import baselines, training
from lrjax._validation import ConfigError


def test_step_decay_schedule_applies_the_documented_lr():
    spec = baselines.get_optimizer("step_decay")
    tx = spec.make_tx(100)(
        {
            "learning_rate": jnp.float32(0.1),
            "interval": jnp.float32(0.25),
            "factor": jnp.float32(0.5),
        }
    )
    params = {"w": jnp.zeros(2)}
    state = tx.init(params)
    lrs = []
    for _ in range(100):
        _, state = tx.update({"w": jnp.ones(2)}, state, params)
        lrs.append(float(training.applied_learning_rate(state)))
    np.testing.assert_allclose(lrs[0], 0.1)
    np.testing.assert_allclose(lrs[24], 0.1)
    np.testing.assert_allclose(lrs[25], 0.05)
    np.testing.assert_allclose(lrs[99], 0.1 * 0.5**3, rtol=1e-6)
    assert len(spec.grid()) == 16


def test_bad_optimizer_names_and_settings_name_the_field():
    with pytest.raises(ConfigError, match="optimizer='adamw2' is not known.*sgd"):
        baselines.get_optimizer("adamw2")
    with pytest.raises(ConfigError, match="learning_rate=0.0"):
        baselines.get_optimizer("sgd").grid([0.0])
    with pytest.raises(ConfigError, match="learning_rate=-0.1"):
        baselines.get_optimizer("adam").grid([-0.1])
    with pytest.raises(ConfigError, match="num_steps=-5"):
        baselines.get_optimizer("sgd").make_tx(-5)


def test_select_best_takes_the_lowest_mean_and_counts_nonfinite_as_worst():
    val_loss = np.array([[0.5, 0.7], [0.4, np.nan], [0.6, 0.6], [0.9, 0.1]])  # [configs, seeds]
    assert baselines.select_best(val_loss) == 3  # mean 0.5 beats 0.6; the NaN seed rules out 1
    assert baselines.select_best(np.array([[np.inf], [2.0]])) == 1
