"""The reference schedules, defined once (lrjax.baselines.schedules) and used per action by the
evaluation (lrjax.evaluation.schedules): each against its formula, and the per-action LRs equal
to the optax schedule at the action steps."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrjax._validation import ConfigError
from lrjax.baselines import registry
from lrjax.baselines import schedules as base
from lrjax.evaluation import schedules


def test_one_warm_up_fraction():
    assert base.WARMUP_FRACTION == 0.1 and not hasattr(registry, "WARMUP_FRACTION")
    assert [base.warmup_steps(n) for n in (1, 10, 40, 100, 400)] == [1, 1, 4, 10, 40]


def test_constant_follows_its_formula():
    np.testing.assert_array_equal(schedules.constant_lrs(0.3, 5), np.full(5, 0.3, np.float32))
    assert float(base.constant_schedule(jnp.float32(0.3))(jnp.int32(7))) == pytest.approx(0.3)


def test_step_decay_follows_its_formula():
    # the evaluation's: x 0.1 at round(0.5 H) and round(0.75 H)
    np.testing.assert_allclose(
        schedules.step_decay_lrs(1.0, 8), [1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01], rtol=1e-6
    )
    for horizon in (1, 3, 5, 10, 40):
        t = np.arange(horizon)
        decays = sum((t >= round(f * horizon)).astype(int) for f in (0.5, 0.75))
        expected = (0.3 * 0.1**decays).astype(np.float32)
        np.testing.assert_array_equal(schedules.step_decay_lrs(0.3, horizon), expected)
    # the registry's: x factor every interval
    every = base.step_decay_schedule(0.1, 0.5, interval=25.0)
    counts = jnp.arange(100)
    np.testing.assert_allclose(every(counts), 0.1 * 0.5 ** np.floor(np.arange(100) / 25))
    with pytest.raises(ConfigError, match="exactly one of boundaries and interval"):
        base.step_decay_schedule(0.1, 0.5)
    with pytest.raises(ConfigError, match="exactly one of boundaries and interval"):
        base.step_decay_schedule(0.1, 0.5, boundaries=(2,), interval=3.0)


def test_cosine_with_warm_up_follows_its_formula():
    for horizon in (1, 4, 10, 15, 40):
        w = max(1, round(0.1 * horizon))
        t = np.arange(horizon, dtype=np.float64)
        warm = 0.5 * (t + 1) / w
        cos = 0.5 * 0.5 * (1 + np.cos(np.pi * (t - w) / max(horizon - w, 1)))
        expected = np.where(t < w, warm, cos).astype(np.float32)
        np.testing.assert_array_equal(schedules.cosine_warmup_lrs(0.5, horizon), expected)
    lrs = schedules.cosine_warmup_lrs(1.0, 40)
    assert lrs[3] == 1.0 and lrs[0] == 0.25 and 0 < lrs[-1] < 0.01  # peak at the warm-up's end


def _optax_schedules(lr, horizon):
    """Each shape's optax schedule, as the registry builds them (``lr`` may be traced)."""
    return {
        "constant": base.constant_schedule(lr),
        "step_decay": base.step_decay_schedule(
            lr, schedules.STEP_DECAY_FACTOR, boundaries=schedules.step_decay_boundaries(horizon)
        ),
        "cosine_warmup": base.warmup_cosine_schedule(lr, base.warmup_steps(horizon), horizon),
    }


@pytest.mark.parametrize("horizon", [4, 10, 40])
def test_per_action_lrs_are_the_optax_schedule_at_the_action_steps(horizon):
    lr = 0.3
    assert set(_optax_schedules(lr, horizon)) == set(schedules.SHAPES)
    # in float64 and rounded once, the optax schedule at each step is the action's LR exactly
    with jax.enable_x64(True):
        exact = {
            shape: np.array([float(f(jnp.int64(t))) for t in range(horizon)], np.float32)
            for shape, f in _optax_schedules(lr, horizon).items()
        }
    # in float32, as a training program runs it, to float32 rounding
    traced = {
        shape: np.array([float(f(jnp.int32(t))) for t in range(horizon)])
        for shape, f in _optax_schedules(jnp.float32(lr), horizon).items()
    }
    for shape in schedules.SHAPES:
        per_action = schedules.shape_lrs(shape, lr, horizon)
        assert per_action.dtype == np.float32 and per_action.shape == (horizon,)
        np.testing.assert_array_equal(per_action, exact[shape], err_msg=shape)
        np.testing.assert_allclose(per_action, traced[shape], rtol=1e-6, atol=1e-7 * lr)


def test_the_registry_trains_with_these_schedules():
    """The registry's cosine and step decay with warm-up are the schedules above, over the run's
    steps (10% warm-up)."""
    steps, w = 100, 10
    spec = registry.get_optimizer("cosine")
    tx = spec.make_tx(steps)({"learning_rate": jnp.float32(0.2)})
    state = tx.init({"w": jnp.zeros(())})
    lrs = []
    for _ in range(steps):
        _, state = tx.update({"w": jnp.ones(())}, state, {"w": jnp.zeros(())})
        lrs.append(float(state.hyperparams["learning_rate"]))
    expected = base.warmup_cosine_schedule(0.2, w, steps)(np.arange(steps))
    np.testing.assert_allclose(lrs, expected, rtol=1e-5, atol=1e-7)
    assert lrs[w - 1] == pytest.approx(0.2) and math.isclose(lrs[0], 0.02, rel_tol=1e-5)
