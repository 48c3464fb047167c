"""The run's loss history and the loss-only features read from it, against hand computations."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrjax import training
from lrjax.controller import ControllerConfig, init_controller, scale_by_controller
from lrjax.features import (
    BUILTIN_FEATURES,
    HISTORY_DECAYS,
    LOSS_ONLY_FEATURES,
    FeatureSpec,
    init_history,
    raw_features,
    update_history,
)
from lrjax.features.history import MAX_LOG_LOSS
from lrjax.tasks import get_task


def _by_hand(losses, lrs):
    """The history's fields after observing ``losses`` at ``lrs``, in plain Python."""
    logs = [math.log(x) for x in losses]
    ema = [logs[0]] * len(HISTORY_DECAYS)
    best = logs[0]
    for x in logs[1:]:
        ema = [d * e + (1 - d) * x for d, e in zip(HISTORY_DECAYS, ema, strict=True)]
        best = min(best, ema[1])
    return logs[0], math.log(lrs[0]), ema, best


def test_the_history_is_the_ema_and_running_minimum_of_log_losses():
    losses = [2.3, 1.9, 2.5, 1.2, 1.4, 0.9]
    lrs = [0.1, 0.12, 0.15, 0.1, 0.08, 0.08]
    h = init_history()
    for loss, lr in zip(losses, lrs, strict=True):
        h = update_history(h, loss, lr)
    start, start_lr, ema, best = _by_hand(losses, lrs)
    assert int(h.count) == len(losses)
    np.testing.assert_allclose(float(h.start), start, rtol=1e-6)
    np.testing.assert_allclose(float(h.start_lr), start_lr, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(h.ema), ema, rtol=1e-5)
    np.testing.assert_allclose(float(h.best), best, rtol=1e-5)


def test_loss_noise_is_the_spread_of_the_changes_by_hand_and_zero_for_a_steady_fall():
    """``loss_noise``: the EMA spread of the log loss's changes about their EMA mean (module
    docstring of lrjax.features.history), by hand; a geometric fall (the same change every
    time) settles at no noise, a zigzag about the same fall has much, a rescaled loss the same."""
    spec = FeatureSpec(features=("loss_noise",), normaliser="none")

    def noise(losses):
        h = init_history()
        for loss in losses:
            h = update_history(h, loss, 0.1)
        return float(raw_features(spec, {"loss_history": h})[0]), h

    losses = [2.3, 1.9, 2.5, 1.2, 1.4, 0.9]
    d, mean, var = HISTORY_DECAYS[1], 0.0, 0.0
    logs = [math.log(x) for x in losses]
    for prev, x in zip(logs, logs[1:], strict=False):
        change = x - prev
        var = d * var + (1 - d) * (change - mean) ** 2
        mean = d * mean + (1 - d) * change
    got, h = noise(losses)
    np.testing.assert_allclose(got, math.sqrt(var), rtol=1e-5)
    np.testing.assert_allclose(float(h.last), logs[-1], rtol=1e-6)
    steady = [2.0 * 0.9**i for i in range(60)]
    zigzag = [x * (1.3 if i % 2 else 1 / 1.3) for i, x in enumerate(steady)]
    assert noise(steady)[0] < 0.01 < 0.2 < noise(zigzag)[0]
    np.testing.assert_allclose(noise([1000 * x for x in zigzag])[0], noise(zigzag)[0], rtol=1e-4)


def test_a_non_finite_loss_is_recorded_as_very_bad_not_as_nan():
    h = update_history(update_history(init_history(), 2.0, 0.1), jnp.nan, 0.1)
    assert np.all(np.isfinite(np.asarray(h.ema)))
    d = HISTORY_DECAYS[0]
    np.testing.assert_allclose(float(h.ema[0]), d * math.log(2.0) + (1 - d) * MAX_LOG_LOSS)
    h = update_history(h, jnp.inf, 0.1)
    assert np.all(np.isfinite(np.asarray(h.ema)))


def test_loss_only_features_are_relative_to_the_run_and_equal_for_a_rescaled_loss():
    losses, lrs = [2.3, 1.9, 2.5, 1.2], [0.1, 0.12, 0.15, 0.2]
    spec = FeatureSpec(features=LOSS_ONLY_FEATURES, normaliser="none")

    def features(scale):
        h = init_history()
        for loss, lr in zip(losses, lrs, strict=True):
            h = update_history(h, scale * loss, lr)
        inputs = {"loss_history": h, "lr": lrs[-1], "step": 30, "total_steps": 120}
        return np.asarray(raw_features(spec, inputs))

    start, start_lr, ema, best = _by_hand(losses, lrs)
    expected = {
        "loss_vs_start_fast": ema[0] - start,
        "loss_vs_start_slow": ema[-1] - start,
        "loss_vs_best": ema[0] - best,
        "loss_trend": ema[0] - ema[-1],
        "lr_vs_start": (math.log(lrs[-1]) - start_lr) / math.log(10.0),
        "progress": 0.25,
    }
    got = features(1.0)
    np.testing.assert_allclose(got, [expected[n] for n in spec.names], rtol=1e-5, atol=1e-6)
    # A loss 1000x larger (another trainee's units) gives the same observation.
    np.testing.assert_allclose(features(1000.0), got, rtol=1e-4, atol=1e-5)
    assert all(not BUILTIN_FEATURES[n].normalise for n in LOSS_ONLY_FEATURES)


def test_the_loss_only_controller_runs_in_a_plain_optax_loop_given_only_value():
    """``value=`` (training's train_step passes nothing else) and ``total_steps`` are all it
    needs: it trains, moves the LR, skips nothing."""
    task = get_task("regression_2d")
    data = task.load_data(jax.random.key(0))
    config = ControllerConfig.loss_only().with_initial_lr(0.05)
    controller = init_controller(jax.random.key(1), config)
    controller = controller.replace(params=jax.tree.map(lambda p: 30 * p, controller.params))
    tx = optax.chain(optax.scale_by_adam(), scale_by_controller(controller, total_steps=60))
    result = training.train_one(task, tx, jax.random.key(2), data, 60)
    lrs = result.learning_rate[0]
    assert np.all(np.isfinite(result.train_loss))
    assert result.train_loss[0, -10:].mean() < result.train_loss[0, :5].mean()
    assert lrs[0] == pytest.approx(config.initial_lr)  # the first action sees a zero history
    assert np.ptp(np.log(lrs)) > 0.05  # the actor moved the LR from there
    assert np.all((lrs >= config.lr_min * (1 - 1e-6)) & (lrs <= config.lr_max * (1 + 1e-6)))


def test_with_initial_lr_moves_the_bounds_with_the_start():
    c = ControllerConfig.loss_only()
    adam = c.with_initial_lr(1e-3)
    assert (adam.initial_lr, adam.lr_min, adam.lr_max) == (1e-3, 1e-6, 0.03)
    assert adam.features == c.features and adam.alpha == c.alpha
