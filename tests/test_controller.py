"""Tests of the controller: config, networks and the optax transform."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.training.train_state import TrainState
from hypothesis import given, settings
from hypothesis import strategies as st

from lrjax._validation import ConfigError
from lrjax.controller import (
    Controller,
    ControllerConfig,
    LSTMActor,
    QCritic,
    ValueCritic,
    action_to_lr,
    actor_step,
    apply_gradients,
    controlled_sgd,
    controller_state,
    current_lr,
    gaussian_entropy,
    gaussian_log_prob,
    init_actor_params,
    init_controller,
    initial_carry,
    reset_carry,
    sample_action,
    scale_by_controller,
)
from lrjax.features import PAPER_A_FEATURES, grads_and_feature_inputs

KEY = jax.random.key(0)


def _numpy_params(init_fn, *args, seed=0, scale=0.5):
    """Params of the shapes ``init_fn(*args)`` returns, drawn with numpy.

    jax's random initialisers take seconds to compile on CPU; these tests compile enough already.
    """
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(init_fn, *args)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, scale, s.shape), s.dtype), shapes)


def _controller(config, seed=0, scale=0.5):
    params = _numpy_params(init_actor_params, KEY, config, seed=seed, scale=scale)
    return Controller(config=config, params={**params, "log_std": jnp.float32(config.log_std_init)})


def _untrained(config):
    """Like ``init_controller(key, config)`` (whose output the README test checks): the mean head
    outputs ``config.initial_action``."""
    ctrl = _controller(config)
    head = {
        "kernel": jnp.zeros_like(ctrl.params["mean"]["kernel"]),
        "bias": jnp.full((1,), config.initial_action, jnp.float32),
    }
    return ctrl.replace(params={**ctrl.params, "mean": head})


CTRL = _untrained(ControllerConfig())  # the default config, untrained
# A controller whose LR moves at every step (random weights, scale actions; a small LSTM: these
# tests compile many programs).
LIVELY = _controller(
    ControllerConfig(action_mode="scale", alpha=2.0, lstm_layers=1, lstm_units=8), scale=1.0
)
ABSOLUTE = _controller(ControllerConfig(lstm_layers=1, lstm_units=8), scale=1.0)
PAPER_A = _controller(ControllerConfig.paper_a(lstm_layers=1, lstm_units=8))


class _MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.tanh(nn.Dense(16)(x)))


MODEL = _MLP()
X = jnp.asarray(np.random.default_rng(1).normal(size=(32, 3)), jnp.float32)
Y = jnp.sin(X).sum(axis=1, keepdims=True)
PARAMS = _numpy_params(MODEL.init, KEY, X)


def _loss(params, x=X, y=Y):
    return jnp.mean((MODEL.apply(params, x) - y) ** 2)


LOSS, GRADS = jax.jit(jax.value_and_grad(_loss))(PARAMS)


TX_CTRL = scale_by_controller(CTRL)
UPDATE_CTRL = jax.jit(TX_CTRL.update)  # shared: each compile of a controller costs seconds


def _poison(tree, value):
    """``tree`` with the first entry of every leaf set to ``value`` (numpy: nothing to compile)."""

    def poison(leaf):
        leaf = np.array(leaf)
        leaf.flat[0] = value
        return jnp.asarray(leaf)

    return jax.tree.map(poison, tree)


def _norm(tree):
    return np.sqrt(sum(np.sum(np.square(np.asarray(x, np.float64))) for x in jax.tree.leaves(tree)))


def _same(a, b):
    return all(jax.tree.leaves(jax.tree.map(lambda x, y: np.array_equal(x, y), a, b)))


def _per_step(lrs, x):
    """Reshape per-step LRs ``(n,)`` to broadcast against stacked leaves ``(n, ...)``."""
    return lrs.reshape(lrs.shape + (1,) * (x.ndim - 1))


def _scan(f, init, n):
    """jit(scan) of ``f(carry) -> (carry, out)`` for n steps."""
    return jax.jit(lambda c: jax.lax.scan(lambda c, _: f(c), c, None, length=n))(init)


def _steps(tx, n, params=PARAMS, loss_fn=_loss):
    """n jitted steps of tx on the MLP; returns (params, opt_state, losses, lrs)."""

    def step(carry, _):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params, value=loss)
        return (optax.apply_updates(params, updates), opt_state), (loss, current_lr(opt_state))

    (params, opt_state), (losses, lrs) = jax.jit(
        lambda p: jax.lax.scan(step, (p, tx.init(p)), None, length=n)
    )(params)
    return params, opt_state, losses, lrs


# ------------------------------------------------------------------------------------------------
# Config.


def test_config_defaults():
    c = ControllerConfig()
    assert (c.lstm_layers, c.lstm_units, c.act_every) == (2, 20, 1)
    assert (c.lr_min, c.lr_max, c.alpha, c.initial_lr) == (1e-5, 1e-1, 1.05, 1e-3)
    assert c.action_mode == "absolute" and c.features.names == ("train_loss",)
    a = ControllerConfig.paper_a()
    assert a.action_mode == "scale" and a.features.names == PAPER_A_FEATURES and a.alpha == 1.05
    b = ControllerConfig.paper_b(lstm_units=8)
    assert b.action_mode == "absolute" and (b.lr_min, b.lr_max) == (1e-4, 1.0)
    assert b.lstm_units == 8
    assert hash(c) == hash(ControllerConfig()) and c == ControllerConfig()
    assert c.replace(act_every=3).act_every == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lr_min": 0.1, "lr_max": 0.1}, "lr_min=0.1 must be smaller than lr_max=0.1"),
        ({"lr_min": 1.0, "lr_max": 0.5, "initial_lr": 0.7}, "lr_min=1.0 must be smaller"),
        ({"lr_min": 0.0}, "lr_min=0.0"),
        ({"lr_max": float("nan")}, "lr_max=nan"),
        ({"alpha": 1.0}, "alpha=1.0"),
        ({"alpha": 0.5}, "alpha=0.5"),
        ({"alpha": float("inf")}, "alpha=inf"),
        ({"alpha": True}, "alpha=True"),
        ({"action_mode": "log"}, "action_mode='log'"),
        ({"initial_lr": 1.0}, "initial_lr=1.0"),
        ({"act_every": 0}, "act_every=0"),
        ({"act_every": 1.5}, "act_every=1.5"),
        ({"lstm_layers": 0}, "lstm_layers=0"),
        ({"lstm_units": -3}, "lstm_units=-3"),
        ({"log_std_init": 10.0}, "log_std_init=10.0"),
        ({"features": ("train_loss", "nope")}, "features='nope'"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match.replace("(", r"\(")) as info:
        ControllerConfig(**kwargs)
    assert isinstance(info.value, ValueError)


def test_config_json_round_trip():
    c = ControllerConfig.paper_a(act_every=2, features=("train_loss", "log_lr"))
    assert ControllerConfig.from_json(c.to_json()) == c
    with pytest.raises(ConfigError, match="unknown keys"):
        ControllerConfig.from_json({**c.to_json(), "gamma": 0.9})


# ------------------------------------------------------------------------------------------------
# action_to_lr.

_actions = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0.0, 1e30, -1e30, float("inf"), float("-inf"), float("nan")]),
)


@settings(max_examples=60, deadline=None)
@given(
    u=_actions,
    log_lo=st.floats(-12.0, 1.0),
    span=st.floats(1e-3, 12.0),
    alpha=st.floats(1.0001, 100.0),
    pos=st.floats(0.0, 1.0),
    mode=st.sampled_from(["absolute", "scale"]),
)
def test_action_to_lr_always_within_bounds(u, log_lo, span, alpha, pos, mode):
    lo, hi = 10.0**log_lo, 10.0 ** (log_lo + span)
    config = ControllerConfig(
        action_mode=mode, lr_min=lo, lr_max=hi, alpha=alpha, initial_lr=math.sqrt(lo * hi)
    )
    prev = np.float32(np.clip(lo * (hi / lo) ** pos, lo, hi))
    lr = action_to_lr(jnp.float32(u), prev, config)
    assert lr.dtype == jnp.float32 and lr.shape == ()
    assert np.float32(lo) <= lr <= np.float32(hi), (u, lo, hi, float(lr))


def test_action_to_lr_formulas():
    cfg = ControllerConfig(lr_min=1e-4, lr_max=1e-2, initial_lr=1e-3)
    np.testing.assert_allclose(action_to_lr(0.0, 0.5, cfg), 1e-3, rtol=1e-5)
    np.testing.assert_allclose(action_to_lr(jnp.inf, 0.5, cfg), 1e-2, rtol=1e-6)
    np.testing.assert_allclose(action_to_lr(-jnp.inf, 0.5, cfg), 1e-4, rtol=1e-6)
    np.testing.assert_allclose(action_to_lr(jnp.nan, 0.5, cfg), 1e-3, rtol=1e-5)
    u0 = cfg.replace(initial_lr=3e-3).initial_action
    np.testing.assert_allclose(action_to_lr(u0, 0.5, cfg), 3e-3, rtol=1e-5)
    sc = cfg.replace(action_mode="scale", alpha=1.05)
    np.testing.assert_allclose(action_to_lr(jnp.inf, 1e-3, sc), 1.05e-3, rtol=1e-6)
    np.testing.assert_allclose(action_to_lr(-jnp.inf, 1e-3, sc), 1e-3 / 1.05, rtol=1e-6)
    np.testing.assert_allclose(action_to_lr(0.5, 1e-3, sc), 1e-3 * 1.05 ** np.tanh(0.5), rtol=1e-6)
    np.testing.assert_allclose(action_to_lr(10.0, 1e-2, sc), 1e-2, rtol=1e-6)  # clipped
    np.testing.assert_allclose(action_to_lr(jnp.nan, 2e-3, sc), 2e-3, rtol=1e-6)  # NaN = keep
    assert action_to_lr(jnp.zeros((4, 2)), 1e-3, sc).shape == (4, 2)


@jax.jit
def _lrs_of(controller, losses):
    tx = scale_by_controller(controller)
    params = {"w": jnp.ones(2)}

    def step(state, loss):
        _, state = tx.update(params, state, params, value=loss)
        return state, state.learning_rate

    return jax.lax.scan(step, tx.init(params), losses)[1]


@settings(max_examples=15, deadline=None)
@given(
    factor=st.floats(-1e4, 1e4),
    losses=st.lists(st.floats(width=32), min_size=6, max_size=6),
    mode=st.sampled_from(["scale", "absolute"]),
)
def test_applied_lr_within_bounds_whatever_the_actor(factor, losses, mode):
    base = LIVELY if mode == "scale" else ABSOLUTE
    scaled = jax.tree.map(lambda p: jnp.asarray(np.asarray(p) * np.float32(factor)), base.params)
    controller = base.replace(params=scaled)
    lrs = np.asarray(_lrs_of(controller, jnp.asarray(losses, jnp.float32)))
    cfg = controller.config
    assert np.all(np.isfinite(lrs))
    assert np.all((lrs >= np.float32(cfg.lr_min)) & (lrs <= np.float32(cfg.lr_max))), lrs


# ------------------------------------------------------------------------------------------------
# The transform.


def test_untrained_controller_is_sgd_at_about_initial_lr():
    grads = GRADS
    updates, state = UPDATE_CTRL(grads, TX_CTRL.init(PARAMS), PARAMS, value=LOSS)
    lr = state.learning_rate
    assert lr.dtype == jnp.float32 and lr.shape == ()
    np.testing.assert_allclose(lr, 1e-3, rtol=0.05)
    jax.tree.map(lambda u, g: np.testing.assert_allclose(u, -lr * g, rtol=1e-6), updates, grads)
    assert int(state.count) == 1 and int(state.skipped) == 0
    assert current_lr(state) == lr


def test_lr_moves_holds_between_actions_and_training_progresses():
    k = 3
    ctrl = LIVELY.replace(config=LIVELY.config.replace(act_every=k))
    _, state, losses, lrs = _steps(scale_by_controller(ctrl), 9)
    lrs = np.asarray(lrs)
    for block in lrs.reshape(3, k):
        assert np.all(block == block[0])
    assert len(np.unique(lrs)) == 3
    assert int(state.count) == 9
    assert losses[-1] < losses[0]


def test_chain_with_clip_and_adam():
    inner = optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_adam())
    tx = optax.chain(inner, scale_by_controller(LIVELY))

    def step(states):
        state, inner_state = states
        loss = LOSS * (1.0 + controller_state(state).count)  # the LR moves when the loss does
        updates, state = tx.update(GRADS, state, PARAMS, value=loss)
        direction, inner_state = inner.update(GRADS, inner_state, PARAMS)
        return (state, inner_state), (updates, direction, current_lr(state))

    _, (updates, direction, lrs) = _scan(step, (tx.init(PARAMS), inner.init(PARAMS)), 3)
    assert len(np.unique(np.asarray(lrs))) == 3
    jax.tree.map(
        lambda u, d: np.testing.assert_allclose(u, -_per_step(lrs, d) * d, rtol=1e-5),
        updates,
        direction,
    )


def test_plain_sgd_shortcut():
    txs = [controlled_sgd(LIVELY), controlled_sgd(LIVELY, momentum=0.9)]
    refs = [optax.sgd(1.0), optax.sgd(1.0, momentum=0.9)]  # -1 * (trace of) the gradients

    def step(states):
        new_states, out = [], []
        for tx, ref, (state, ref_state) in zip(txs, refs, states, strict=True):
            updates, state = tx.update(GRADS, state, PARAMS, value=LOSS)
            expected, ref_state = ref.update(GRADS, ref_state, PARAMS)
            new_states.append((state, ref_state))
            out.append((updates, expected, current_lr(state)))
        return new_states, out

    init = [(tx.init(PARAMS), ref.init(PARAMS)) for tx, ref in zip(txs, refs, strict=True)]
    _, out = _scan(step, init, 2)
    for updates, expected, lrs in out:
        jax.tree.map(
            lambda u, e, lrs=lrs: np.testing.assert_allclose(u, _per_step(lrs, e) * e, rtol=1e-6),
            updates,
            expected,
        )
    assert not np.allclose(
        out[0][0]["params"]["Dense_0"]["kernel"][1], out[1][0]["params"]["Dense_0"]["kernel"][1]
    )


def test_flax_train_state():
    tx = optax.chain(optax.scale_by_adam(), scale_by_controller(LIVELY))
    state = TrainState.create(apply_fn=MODEL.apply, params=PARAMS, tx=tx)

    @jax.jit
    def train_step(state):
        loss, grads = jax.value_and_grad(_loss)(state.params)
        return apply_gradients(state, grads, value=loss), loss

    losses = []
    for _ in range(5):
        state, loss = train_step(state)
        losses.append(loss)
    assert int(state.step) == 5 and losses[-1] < losses[0]
    assert int(controller_state(state.opt_state).count) == 5
    with pytest.raises(ConfigError, match="value=loss"):  # TrainState.apply_gradients has no value
        jax.eval_shape(lambda s: s.apply_gradients(grads=GRADS), state)


def test_nnx_optimizer():
    rng = np.random.default_rng(0)

    def init(key, shape, dtype=jnp.float32):  # numpy draws, as in _numpy_params
        return jnp.asarray(rng.normal(0.0, 0.5, shape), dtype)

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.a = nnx.Linear(3, 8, kernel_init=init, rngs=rngs)
            self.b = nnx.Linear(8, 1, kernel_init=init, rngs=rngs)

        def __call__(self, x):
            return self.b(jnp.tanh(self.a(x)))

    model = Net(nnx.Rngs(0))
    tx = optax.chain(optax.clip_by_global_norm(1.0), scale_by_controller(LIVELY))
    opt = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def train_step(model, opt):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(X) - Y) ** 2))(model)
        opt.update(model, grads, value=loss)
        return loss

    losses = [train_step(model, opt) for _ in range(4)]
    assert losses[-1] < losses[0]
    state = controller_state(opt.opt_state)
    assert int(state.count) == 4
    lr = current_lr(opt.opt_state)
    assert isinstance(lr, jax.Array) and lr.dtype == jnp.float32


def test_multi_steps():
    k = 2
    tx = optax.MultiSteps(scale_by_controller(LIVELY), every_k_schedule=k)
    state = tx.init(PARAMS)
    update = jax.jit(tx.update)
    lrs = []
    for i in range(4):
        updates, state = update(GRADS, state, PARAMS, value=LOSS)
        emitted = (i + 1) % k == 0
        assert (int(state.mini_step) == 0) == emitted  # optax's has_updated, without compiling
        norm = _norm(updates)
        assert (norm > 0) == emitted
        lrs.append(float(current_lr(state)))
    assert int(controller_state(state).count) == 2
    assert lrs[0] == np.float32(LIVELY.config.initial_lr)  # the controller waits for the emit


def test_apply_if_finite():
    tx = optax.apply_if_finite(scale_by_controller(LIVELY), max_consecutive_errors=3)
    state = tx.init(PARAMS)
    grads = GRADS
    bad = _poison(grads, np.nan)
    update = jax.jit(tx.update)
    updates, state = update(bad, state, PARAMS, value=1.0)
    assert _norm(updates) == 0 and int(state.total_notfinite) == 1
    updates, state = update(grads, state, PARAMS, value=1.0)
    assert _norm(updates) > 0 and int(controller_state(state).count) == 1


def test_jit_and_vmap_over_seeds():
    tx = scale_by_controller(LIVELY)
    inits = [_numpy_params(MODEL.init, KEY, X, seed=i) for i in range(3)]
    inits = jax.tree.map(lambda *x: jnp.stack(x), *inits)

    def run(params):
        def step(carry):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(_loss)(params)
            updates, opt_state = tx.update(grads, opt_state, params, value=loss)
            return (optax.apply_updates(params, updates), opt_state), (loss, current_lr(opt_state))

        (_, state), (losses, lrs) = jax.lax.scan(
            lambda c, _: step(c), (params, tx.init(params)), None, length=3
        )
        return losses, lrs, state

    losses, lrs, state = jax.jit(jax.vmap(run))(inits)
    assert losses.shape == (3, 3) and lrs.shape == (3, 3)
    assert current_lr(state).shape == (3,)
    run_one = jax.jit(run)
    for i in range(3):
        one_losses, one_lrs, _ = run_one(jax.tree.map(lambda x, i=i: x[i], inits))
        np.testing.assert_allclose(losses[i], one_losses, rtol=1e-5)
        np.testing.assert_allclose(lrs[i], one_lrs, rtol=1e-5)
    means = np.asarray(state.normaliser.mean)[:, 0]  # each trainee has its own normaliser
    assert len(np.unique(means)) == 3


def test_bfloat16_params_keep_their_dtype():
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), PARAMS)
    x, y = X.astype(jnp.bfloat16), Y.astype(jnp.bfloat16)
    tx = scale_by_controller(LIVELY)

    @jax.jit
    def run(params):
        loss, grads = jax.value_and_grad(_loss)(params, x, y)
        updates, state = tx.update(grads, tx.init(params), params, value=loss)
        return loss, grads, updates, state, optax.apply_updates(params, updates)

    loss, grads, updates, state, new_params = run(params)
    assert loss.dtype == jnp.bfloat16
    for tree in (grads, updates, new_params):
        assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(tree))
    lr = current_lr(state)
    assert lr.dtype == jnp.float32
    # The product is taken in float32 and rounded once to bfloat16.
    expected = jax.tree.map(lambda g: (np.float32(g) * -np.float32(lr)).astype(g.dtype), grads)
    jax.tree.map(np.testing.assert_array_equal, updates, expected)


def test_any_params_pytree():
    params = {"a": (jnp.ones(2), [jnp.ones(()), {"b": jnp.ones((2, 2))}]), "c": None}
    tx = scale_by_controller(LIVELY)

    @jax.jit
    def run(params):
        return tx.update(params, tx.init(params), params, value=2.0), tx.update(
            {}, tx.init({}), {}, value=2.0
        )

    (updates, state), (empty, empty_state) = run(params)
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    np.testing.assert_allclose(updates["a"][0], -state.learning_rate * params["a"][0])
    assert empty == {} and int(empty_state.count) == 1


def test_non_finite_loss_or_gradient_skips_the_step():
    one = jnp.float32(1.0)
    _, state = UPDATE_CTRL(GRADS, TX_CTRL.init(PARAMS), PARAMS, value=one)
    cases = [
        (GRADS, jnp.float32(jnp.nan)),
        (GRADS, jnp.float32(-jnp.inf)),
        (_poison(GRADS, np.inf), one),
        (_poison(GRADS, np.nan), one),
    ]
    for i, (g, loss) in enumerate(cases, start=1):
        updates, new = UPDATE_CTRL(g, state, PARAMS, value=loss)
        assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates))
        assert int(new.skipped) == int(state.skipped) + 1 == i
        assert _same(new._replace(skipped=state.skipped), state)  # LR, carry, normaliser, count
        state = new
    updates, state = UPDATE_CTRL(GRADS, state, PARAMS, value=one)
    assert _norm(updates) > 0 and int(state.count) == 2 and int(state.skipped) == 4


def test_overflow_after_scaling_skips_the_step():
    config = LIVELY.config.replace(lr_min=1.0, lr_max=10.0, initial_lr=5.0)
    tx = scale_by_controller(Controller(config=config, params=LIVELY.params))
    params = {"w": jnp.asarray([60000.0, 1.0], jnp.float16)}  # float16 max is 65504
    updates, state = jax.jit(tx.update)(params, tx.init(params), params, value=1.0)
    assert updates["w"].dtype == jnp.float16 and np.all(np.asarray(updates["w"]) == 0)
    assert int(state.skipped) == 1 and int(state.count) == 0


def test_paper_a_features_in_a_flax_step():
    ctrl = PAPER_A
    xv, yv = X[:8] + 0.1, Y[:8]
    tx = optax.chain(optax.scale_by_adam(), scale_by_controller(ctrl, predictions_shape=(8, 1)))

    def loss_fn(out, y):
        return jnp.mean((out - y) ** 2)

    @jax.jit
    def step(params, opt_state):
        grads, inputs = grads_and_feature_inputs(
            MODEL.apply, params, (X, Y), loss_fn, val_batch=(xv, yv)
        )
        updates, opt_state = tx.update(grads, opt_state, params, **inputs)
        return optax.apply_updates(params, updates), opt_state

    params, opt_state = PARAMS, tx.init(PARAMS)
    for _ in range(3):
        params, opt_state = step(params, opt_state)
    state = controller_state(opt_state)
    assert int(state.count) == 3
    assert np.all(np.isfinite(state.obs)) and np.any(state.obs != 0)
    assert state.prev_predictions.shape == (8, 1)


def test_bad_inputs_are_clear_errors():
    grads = GRADS
    tx = scale_by_controller(CTRL)
    state = tx.init(PARAMS)
    with pytest.raises(ConfigError, match=r"needs the training loss.*value=loss"):
        tx.update(grads, state, PARAMS)
    with pytest.raises(ConfigError, match=r"value of shape \(4,\)"):
        tx.update(grads, state, PARAMS, value=jnp.ones(4))

    cfg = ControllerConfig(features=("train_loss", "val_loss", "last_layer_var"))
    tx = scale_by_controller(_controller(cfg))
    state = tx.init(PARAMS)
    with pytest.raises(ConfigError) as info:
        jax.jit(lambda g, s: tx.update(g, s, None, value=1.0))(grads, state)
    msg = str(info.value)
    assert "'val_loss' needed by val_loss" in msg and "computed from 'params'" in msg
    assert "Given:" in msg and "value" in msg

    paper_a = PAPER_A
    with pytest.raises(ConfigError, match="predictions_shape"):
        scale_by_controller(paper_a)
    tx = scale_by_controller(paper_a, predictions_shape=(8, 1))
    with pytest.raises(ConfigError, match=r"predictions of shape \(5, 1\)"):
        jax.eval_shape(
            lambda s: tx.update(
                grads, s, PARAMS, value=1.0, val_loss=1.0, predictions=np.ones((5, 1))
            ),
            tx.init(PARAMS),
        )
    with pytest.raises(ConfigError, match="expected a lrjax Controller"):
        scale_by_controller(CTRL.params)


def test_current_lr_needs_exactly_one_controller():
    with pytest.raises(ConfigError, match="Found 0"):
        current_lr(optax.adam(1e-3).init(PARAMS))
    tx = optax.chain(scale_by_controller(CTRL), scale_by_controller(CTRL))
    with pytest.raises(ConfigError, match="Found 2"):
        current_lr(tx.init(PARAMS))


# ------------------------------------------------------------------------------------------------
# Networks.


def test_actor_shapes_and_carry():
    cfg = CTRL.config
    carry = initial_carry(cfg)
    assert len(carry) == 2 and carry[0][0].shape == (20,)
    done = jnp.asarray([True, False, True, False, False])

    @jax.jit
    def run(params):
        one = actor_step(params, initial_carry(cfg), jnp.ones(1), cfg)
        batched = actor_step(params, initial_carry(cfg, (5,)), jnp.ones((5, 1)), cfg)
        return one, batched, reset_carry(batched[0], done, cfg)

    (_, mean, log_std), (batched, bmean, blog_std), reset = run(CTRL.params)
    assert mean.shape == () and log_std.shape == ()
    np.testing.assert_allclose(log_std, cfg.log_std_init)
    assert bmean.shape == (5,) and blog_std.shape == (5,) and batched[1][1].shape == (5, 20)
    assert any(np.abs(np.asarray(h)).sum() > 0 for pair in batched for h in pair)
    assert np.all(np.asarray(reset[0][0][0]) == 0) and np.all(reset[0][0][1] == batched[0][0][1])
    with pytest.raises(ConfigError, match=r"expected \(\.\.\., 1\)"):
        actor_step(CTRL.params, carry, jnp.ones(3), cfg)
    assert isinstance(LSTMActor(), nn.Module) and LSTMActor().layers == 2


def test_init_controller_structure():
    cfg = ControllerConfig.paper_a(lstm_layers=3, lstm_units=5)
    ctrl = jax.eval_shape(lambda k: init_controller(k, cfg), KEY)  # traced, nothing compiled
    assert isinstance(ctrl, Controller) and ctrl.config == cfg
    p = ctrl.params
    assert set(p) == {"lstm_0", "lstm_1", "lstm_2", "mean", "log_std"}
    assert p["lstm_0"]["ii"]["kernel"].shape == (7, 5) and p["lstm_2"]["hi"]["kernel"].shape == (
        5,
        5,
    )
    assert p["mean"]["kernel"].shape == (5, 1) and p["log_std"].shape == ()
    with pytest.raises(ConfigError, match="expected a ControllerConfig"):
        init_controller(KEY, {"lstm_units": 5})


def test_controller_is_a_pytree():
    leaves = jax.tree.leaves(CTRL)
    assert len(leaves) == len(jax.tree.leaves(CTRL.params))
    carry, lr = jax.jit(lambda c: c.act(c.initial_carry(), jnp.zeros(1), 1e-3))(CTRL)
    np.testing.assert_allclose(lr, 1e-3, rtol=0.05)


def test_critics():
    obs = jnp.ones((4, 7))
    q, v = QCritic(), ValueCritic()
    qp, vp = _numpy_params(q.init, KEY, obs, jnp.zeros(4)), _numpy_params(v.init, KEY, obs)
    assert qp["params"]["hidden"]["kernel"].shape == (8, 10)  # paper B: 1 hidden layer, 10 units

    @jax.jit
    def run(qp, vp):
        dq = jax.grad(lambda a: q.apply(qp, obs[0], a))(0.3)  # Eq. 9 needs grad_a Q
        q4, q1 = q.apply(qp, obs, jnp.zeros(4)), q.apply(qp, obs[0], jnp.zeros(()))
        return q4, q1, dq, v.apply(vp, obs)

    qs, q1, dq, vs = run(qp, vp)
    assert qs.shape == (4,) and q1.shape == () and np.isfinite(dq) and vs.shape == (4,)


def test_gaussian_helpers():
    u, mean, log_std = jnp.asarray([0.3, -1.0]), jnp.asarray([0.0, 0.5]), jnp.asarray([-0.5, 0.2])

    @jax.jit
    def run():
        return (
            gaussian_log_prob(u, mean, log_std),
            jax.scipy.stats.norm.logpdf(u, mean, jnp.exp(log_std)),
            gaussian_entropy(log_std),
            sample_action(KEY, mean, log_std),
            sample_action(KEY, mean, log_std),
        )

    logp, expected, entropy, a, b = run()
    np.testing.assert_allclose(logp, expected, rtol=1e-5)
    std = np.exp(np.asarray(log_std))
    np.testing.assert_allclose(entropy, 0.5 * np.log(2 * np.pi * np.e * std**2), rtol=1e-5)
    assert a.shape == (2,) and np.all(a == b)
