"""Tests of the controller as an optax transform (lrjax.controller.transform): scale_by_controller,
controlled_sgd, current_lr, controller_state, apply_gradients, and nnx / TrainState integration."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _params import numpy_params
from flax import nnx
from flax.training.train_state import TrainState
from hypothesis import given, settings
from hypothesis import strategies as st

from lrjax._validation import ConfigError
from lrjax.controller import (
    Controller,
    ControllerConfig,
    action_to_lr,
    actor_step,
    apply_gradients,
    controlled_sgd,
    controller_state,
    current_lr,
    init_actor_params,
    init_controller,
    initial_carry,
    scale_by_controller,
)
from lrjax.features import (
    FeatureSpec,
    NormaliserState,
    Probe,
    grads_and_feature_inputs,
    init_normaliser,
    normalise,
    raw_features,
)

KEY = jax.random.key(0)


def _controller(config, seed=0, scale=0.5):
    params = numpy_params(init_actor_params, KEY, config, seed=seed, scale=scale)
    return Controller(
        config=config,
        params={**params, "log_std": jnp.float32(config.log_std_init)},
        normaliser=init_normaliser(config.obs_size),
    )


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
_PAPER_A_CONFIG = ControllerConfig.paper_a(lstm_layers=1, lstm_units=8)
# Observing the regression below: raw outputs of its first 8 validation examples.
PAPER_A = _controller(
    _PAPER_A_CONFIG.replace(
        features=dataclasses.replace(_PAPER_A_CONFIG.features, probe=Probe(8, 8, "raw"))
    )
)


class _MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.tanh(nn.Dense(16)(x)))


MODEL = _MLP()
X = jnp.asarray(np.random.default_rng(1).normal(size=(32, 3)), jnp.float32)
Y = jnp.sin(X).sum(axis=1, keepdims=True)
PARAMS = numpy_params(MODEL.init, KEY, X)


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
    ctrl = LIVELY.replace(config=LIVELY.config.replace(steps_per_action=k))
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
    inits = [numpy_params(MODEL.init, KEY, X, seed=i) for i in range(3)]
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
    tx = scale_by_controller(
        Controller(config=config, params=LIVELY.params, normaliser=LIVELY.normaliser)
    )
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
    assert "Given:" in msg and "loss" in msg

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
# Where the feature normaliser starts, and how often the controller acts.


@jax.jit
def _first_step(controller, value):
    """The state before and after one step of a chain holding the controller's transform (the
    controller is an argument: one compile serves every controller of the same config)."""
    tx = optax.chain(optax.identity(), scale_by_controller(controller))
    state = tx.init(PARAMS)
    _, new_state = tx.update(GRADS, state, PARAMS, value=value)
    return controller_state(state), controller_state(new_state)


def test_normaliser_starts_from_the_controllers_statistics():
    stats = NormaliserState(
        mean=jnp.asarray([-1.0], jnp.float32),
        var=jnp.asarray([0.25], jnp.float32),
        count=jnp.asarray([7], jnp.int32),
    )
    ctrl = LIVELY.replace(normaliser=stats)
    spec = ctrl.config.features
    assert spec.names == ("train_loss",)
    value = jnp.float32(2.0)
    before, after = _first_step(ctrl, value)
    jax.tree.map(np.testing.assert_array_equal, before.normaliser, stats)

    # The observation the actor saw is chi of the known input, normalised from those statistics.
    raw = raw_features(spec, {"loss": value})
    np.testing.assert_allclose(raw, [np.log(2.0)], rtol=1e-6)  # train_loss is logged
    expected_obs, expected_stats = normalise(spec, ctrl.normaliser, raw)
    np.testing.assert_allclose(after.obs, expected_obs, rtol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), after.normaliser, expected_stats
    )
    assert int(after.normaliser.count[0]) == 8
    # By hand: a = max(1 - momentum, 1 / 8), d = x - mean, mean' = mean + a d,
    # var' = (1 - a)(var + a d^2), obs = (x - mean') / sqrt(var' + eps), within the clip.
    x, a = np.log(2.0), max(1.0 - spec.momentum, 1.0 / 8.0)
    d = x - (-1.0)
    mean, var = -1.0 + a * d, (1.0 - a) * (0.25 + a * d * d)
    by_hand = (x - mean) / np.sqrt(var + spec.eps)
    assert 1.0 < by_hand < spec.clip
    np.testing.assert_allclose(after.obs, [by_hand], rtol=1e-5)
    np.testing.assert_allclose(after.normaliser.mean, [mean], rtol=1e-5)
    np.testing.assert_allclose(after.normaliser.var, [var], rtol=1e-5)

    # The actor acted on that observation.
    _, u, _ = actor_step(ctrl.params, initial_carry(ctrl.config), expected_obs, ctrl.config)
    lr = action_to_lr(u, ctrl.config.initial_lr, ctrl.config)
    np.testing.assert_allclose(after.learning_rate, lr, rtol=1e-6)

    # Fresh statistics (LIVELY's) see the same input as exactly their mean: a different
    # observation, and so a different learning rate.
    fresh_before, fresh_after = _first_step(LIVELY, value)
    assert all(np.all(np.asarray(leaf) == 0) for leaf in fresh_before.normaliser)
    np.testing.assert_array_equal(fresh_after.obs, [0.0])
    assert float(fresh_after.learning_rate) != float(after.learning_rate)


def test_steps_per_action_acts_every_k_steps():
    k, n = 4, 12
    ctrl = LIVELY.replace(config=LIVELY.config.replace(steps_per_action=k))
    tx = scale_by_controller(ctrl)
    losses = jnp.asarray(np.linspace(2.0, 0.2, n), jnp.float32)  # a new loss at every step

    def step(state, loss):
        _, state = tx.update(GRADS, state, PARAMS, value=loss)
        return state, (state.learning_rate, state.normaliser.count[0], state.obs[0], state.carry)

    _, (lrs, counts, obs, carries) = jax.jit(lambda s: jax.lax.scan(step, s, losses))(
        tx.init(PARAMS)
    )
    lrs, counts, obs = np.asarray(lrs), np.asarray(counts), np.asarray(obs)
    acts = np.arange(n) % k == 0  # steps 0, 4, 8
    prev_lrs = np.concatenate([[np.float32(ctrl.config.initial_lr)], lrs[:-1]])
    np.testing.assert_array_equal(lrs != prev_lrs, acts)  # the LR changes exactly when it acts
    np.testing.assert_array_equal(counts, np.cumsum(acts))  # features observed only then
    np.testing.assert_array_equal(obs[1:] != obs[:-1], acts[1:])
    h = np.asarray(carries[0][1])  # the LSTM state steps only then
    np.testing.assert_array_equal(np.any(h[1:] != h[:-1], axis=1), acts[1:])
    # Acting every k steps on a loss sequence is acting at every step on its k-th losses.
    every_step = LIVELY.replace(config=LIVELY.config.replace(steps_per_action=1))
    np.testing.assert_allclose(lrs[::k], _lrs_of(every_step, losses[::k]), rtol=1e-6)


def test_actions_per_run_acts_that_many_times_whatever_the_budget():
    config = LIVELY.config.replace(actions_per_run=3)
    ctrl = LIVELY.replace(config=config)
    for total in (12, 30):
        tx = scale_by_controller(ctrl, total_steps=total)
        losses = jnp.asarray(np.linspace(2.0, 0.2, total), jnp.float32)

        def step(state, loss, tx=tx):
            _, state = tx.update(GRADS, state, PARAMS, value=loss)
            return state, state.normaliser.count[0]

        _, counts = jax.lax.scan(step, tx.init(PARAMS), losses)
        # every total // 3 steps: at steps 0, k, 2k
        expected = np.cumsum(np.arange(total) % (total // 3) == 0)
        np.testing.assert_array_equal(np.asarray(counts), expected)
        assert int(counts[-1]) == 3
    with pytest.raises(ConfigError, match="total_steps=None"):
        scale_by_controller(ctrl)


def test_frozen_statistics_and_progress_as_trained():
    """lrjax's preset: the trained controller's statistics stay fixed during a run, and the
    progress feature needs the run's length."""
    config = LIVELY.config.replace(
        features=FeatureSpec(features=("train_loss", "progress"), normaliser="frozen")
    )
    stats = NormaliserState(
        mean=jnp.asarray([-1.0, 0.0]), var=jnp.asarray([0.25, 1.0]), count=jnp.asarray([7, 7])
    )
    ctrl = init_controller(jax.random.key(0), config).replace(normaliser=stats)
    with pytest.raises(ConfigError, match="total_steps=None"):
        scale_by_controller(ctrl)
    with pytest.raises(ConfigError, match="total_steps=0"):
        scale_by_controller(ctrl, total_steps=0)
    tx = scale_by_controller(ctrl, total_steps=8)
    state = tx.init(PARAMS)
    for step in range(3):
        _, state = tx.update(GRADS, state, PARAMS, value=jnp.float32(2.0))
        # (log 2 + 1) / 0.5, clipped at 5; progress = step / 8, not normalised.
        np.testing.assert_allclose(state.obs, [min((np.log(2.0) + 1) / 0.5, 5.0), step / 8])
        jax.tree.map(np.testing.assert_array_equal, state.normaliser, stats)
