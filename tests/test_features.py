"""Tests of the state function chi (lrjax.features)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrjax._validation import ConfigError
from lrjax.features import (
    BUILTIN_FEATURES,
    PAPER_A_FEATURES,
    Feature,
    FeatureSpec,
    NormaliserState,
    Probe,
    accumulate,
    check_inputs,
    find_last_layer,
    grads_and_feature_inputs,
    init_normaliser,
    normalise,
    observe,
    raw_features,
    required_inputs,
)


def _params():
    return {
        "params": {
            "Dense_9": {"kernel": jnp.ones((3, 3)), "bias": jnp.zeros(3)},
            "Dense_10": {"kernel": jnp.arange(6.0).reshape(3, 2), "bias": jnp.zeros(2)},
            "Dense_2": {"kernel": jnp.zeros((3, 3))},
        }
    }


def _inputs(**overrides):
    inputs = {
        "loss": jnp.asarray(0.5),
        "val_loss": jnp.asarray(0.25),
        "predictions": jnp.asarray([1.0, 2.0, 3.0, 4.0]),
        "prev_predictions": jnp.asarray([1.0, 1.0, 1.0, 1.0]),
        "params": _params(),
        "updates": {"a": jnp.asarray([3.0, 4.0])},
        "lr": jnp.asarray(1e-3),
        "lr_bounds": (1e-5, 1e-1),
        "step": jnp.asarray(3),
    }
    inputs.update(overrides)
    return inputs


def test_builtin_raw_values():
    spec = FeatureSpec(features=PAPER_A_FEATURES + ("update_norm",))
    raw = np.asarray(raw_features(spec, _inputs()))
    kernel = np.arange(6.0)
    expected = [
        np.log(0.5),
        np.log(0.25),
        np.log(np.var([1.0, 2.0, 3.0, 4.0])),
        np.log(np.var([0.0, 1.0, 2.0, 3.0])),
        kernel.mean(),
        np.log(kernel.var()),
        0.0,  # 1e-3 is the geometric middle of [1e-5, 1e-1]
        np.log(5.0),
    ]
    np.testing.assert_allclose(raw, expected, rtol=1e-5, atol=1e-6)
    assert raw.dtype == np.float32 and raw.shape == (spec.size,)


def test_log_lr_spans_minus_one_to_one():
    spec = FeatureSpec(features=("log_lr",))
    lo = raw_features(spec, _inputs(lr=jnp.asarray(1e-5)))
    hi = raw_features(spec, _inputs(lr=jnp.asarray(1e-1)))
    np.testing.assert_allclose([lo[0], hi[0]], [-1.0, 1.0], atol=1e-5)
    assert not BUILTIN_FEATURES["log_lr"].normalise


def test_pred_change_var_missing_at_first_step():
    spec = FeatureSpec(features=("pred_change_var", "train_loss"))
    raw = raw_features(spec, _inputs(step=jnp.asarray(0)))
    assert np.isnan(raw[0]) and np.isfinite(raw[1])
    obs, state = observe(spec, init_normaliser(2), _inputs(step=jnp.asarray(0)))
    assert obs[0] == 0.0 and int(state.count[0]) == 0 and int(state.count[1]) == 1


def test_log_features_are_floored_not_nan():
    spec = FeatureSpec(features=("train_loss", "pred_var"))
    raw = raw_features(spec, _inputs(loss=jnp.asarray(0.0), predictions=jnp.ones(4)))
    assert np.all(np.isfinite(raw))
    np.testing.assert_allclose(raw, np.log(1e-12), rtol=1e-5)


def test_last_layer_natural_order_and_path():
    assert find_last_layer(_params()).shape == (3, 2)  # Dense_10 comes after Dense_9
    assert find_last_layer(_params(), "params/Dense_9/kernel").shape == (3, 3)
    with pytest.raises(ConfigError, match="params/Dense_9/kernel"):
        find_last_layer(_params(), "params/nope/kernel")
    with pytest.raises(ConfigError, match="no params leaf is named 'kernel'"):
        find_last_layer({"w": jnp.ones(2)})
    # Lists and tuples in the tree work too.
    assert find_last_layer([{"kernel": jnp.ones(1)}, {"kernel": jnp.ones(2)}]).shape == (2,)
    spec = FeatureSpec(features=("last_layer_mean",), last_layer_path="params/Dense_9/kernel")
    np.testing.assert_allclose(raw_features(spec, _inputs()), [1.0])


def test_missing_inputs_are_listed_with_what_was_given():
    spec = FeatureSpec(features=PAPER_A_FEATURES)
    given = {"loss": 1.0, "lr": 1e-3, "lr_bounds": (1e-5, 1e-1), "step": 0}
    with pytest.raises(ConfigError) as info:
        check_inputs(spec, given)
    msg = str(info.value)
    for missing in ("'val_loss'", "'predictions'", "'prev_predictions'", "'last_layer'"):
        assert missing in msg
    assert "computed from 'params'" in msg
    assert "Given: loss, lr, lr_bounds, step" in msg
    with pytest.raises(ConfigError, match="val_loss"):
        raw_features(spec, given)


def test_required_inputs_order():
    spec = FeatureSpec(features=("val_loss", "train_loss", "last_layer_var"))
    assert required_inputs(spec) == ("val_loss", "loss", "last_layer")


def test_custom_feature_declares_its_inputs():
    seen = {}

    def grad_ratio(inputs):
        seen.update(inputs)
        return inputs["grad_norm"] / inputs["loss"]

    feat = Feature("grad_ratio", ("grad_norm", "loss"), grad_ratio, log=True)
    spec = FeatureSpec(features=("train_loss", feat))
    raw = raw_features(spec, _inputs(grad_norm=jnp.asarray(2.0)))
    np.testing.assert_allclose(raw, [np.log(0.5), np.log(4.0)], rtol=1e-6)
    assert set(seen) == {"grad_norm", "loss"}  # exactly the declared inputs
    with pytest.raises(ConfigError, match="'grad_norm' needed by grad_ratio"):
        raw_features(spec, _inputs())


def test_feature_must_be_scalar():
    feat = Feature("vec", ("predictions",), lambda i: i["predictions"])
    with pytest.raises(ConfigError, match="must be a scalar"):
        raw_features(FeatureSpec(features=(feat,)), _inputs())


def test_normaliser_is_welford_then_ema():
    spec = FeatureSpec(features=("train_loss",), momentum=0.5, clip=100.0, eps=1e-12)
    xs = [1.0, 3.0, 2.0, 7.0, -1.0]
    state = init_normaliser(1)
    mean, var = 0.0, 0.0
    for t, x in enumerate(xs, start=1):
        obs, state = normalise(spec, state, jnp.asarray([x]))
        a = max(0.5, 1.0 / t)
        d = x - mean
        mean, var = mean + a * d, (1 - a) * (var + a * d * d)
        np.testing.assert_allclose(state.mean, [mean], rtol=1e-6)
        np.testing.assert_allclose(state.var, [var], rtol=1e-6)
        expected = 0.0 if t == 1 else (x - mean) / np.sqrt(var)
        np.testing.assert_allclose(obs, [expected], rtol=1e-5, atol=1e-6)
    # The first two steps are an exact running mean/variance.
    spec = FeatureSpec(features=("train_loss",), momentum=0.99)
    state = init_normaliser(1)
    for x in xs:
        _, state = normalise(spec, state, jnp.asarray([x]))
    np.testing.assert_allclose(state.mean, [np.mean(xs)], rtol=1e-6)
    np.testing.assert_allclose(state.var, [np.var(xs)], rtol=1e-5)


def test_normaliser_masks_non_finite_and_clips():
    # At the third observation |obs| <= sqrt(2) (the stats include it): clip at 1 to see clipping.
    spec = FeatureSpec(features=("train_loss", "val_loss"), clip=1.0)
    state = init_normaliser(2)
    _, state = normalise(spec, state, jnp.asarray([0.0, 0.0]))
    _, state = normalise(spec, state, jnp.asarray([1.0, 1.0]))
    obs, new = normalise(spec, state, jnp.asarray([jnp.nan, 1e6]))
    assert obs[0] == 0.0 and obs[1] == 1.0
    assert new.mean[0] == state.mean[0] and new.var[0] == state.var[0]
    assert int(new.count[0]) == 2 and int(new.count[1]) == 3
    obs, _ = normalise(spec, state, jnp.asarray([jnp.inf, -1e6]))
    assert obs[0] == 0.0 and obs[1] == -1.0


def test_normaliser_none_only_clips():
    spec = FeatureSpec(features=("train_loss",), normaliser="none", clip=3.0)
    obs, _ = normalise(spec, init_normaliser(1), jnp.asarray([2.5]))
    np.testing.assert_allclose(obs, [2.5])
    obs, _ = normalise(spec, init_normaliser(1), jnp.asarray([-7.0]))
    np.testing.assert_allclose(obs, [-3.0])


def test_accumulate_is_the_exact_mean_and_variance_of_all_finite_observations():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, (n, 2)) for n in (1, 7, 30)]
    batches[1][2, 0] = np.nan  # a missing entry counts for neither mean nor variance
    state = init_normaliser(2)
    for b in batches:
        state = accumulate(state, jnp.asarray(b))
    every = np.concatenate(batches)
    for i in range(2):
        col = every[:, i][np.isfinite(every[:, i])]
        np.testing.assert_allclose(state.mean[i], col.mean(), rtol=1e-5)
        np.testing.assert_allclose(state.var[i], col.var(), rtol=1e-4)
        assert int(state.count[i]) == col.size
    assert int(state.count[0]) == 37 and int(state.count[1]) == 38


def test_frozen_normaliser_uses_fixed_statistics():
    spec = FeatureSpec(features=("train_loss", "log_lr", "val_loss"), normaliser="frozen")
    stats = NormaliserState(
        mean=jnp.asarray([1.0, 5.0, 2.0]),
        var=jnp.asarray([4.0, 9.0, 1.0]),
        count=jnp.asarray([10, 10, 0], jnp.int32),
    )
    obs, new = normalise(spec, stats, jnp.asarray([3.0, 0.5, 7.0]))
    # (3 - 1) / 2; log_lr is never normalised; a feature without statistics passes, clipped.
    np.testing.assert_allclose(obs, [1.0, 0.5, 5.0], rtol=1e-6)
    assert all(np.array_equal(a, b) for a, b in zip(new, stats, strict=True))


def test_progress_feature():
    spec = FeatureSpec(features=("progress",))
    inputs = {"step": jnp.asarray(30), "total_steps": 120}
    np.testing.assert_allclose(raw_features(spec, inputs), [0.25])
    obs, _ = observe(spec, init_normaliser(1), inputs)  # not normalised
    np.testing.assert_allclose(obs, [0.25])


def test_observe_under_jit_and_vmap():
    spec = FeatureSpec(features=("train_loss", "val_loss"))

    def f(value, val_loss):
        return observe(spec, init_normaliser(2), {"loss": value, "val_loss": val_loss})[0]

    out = jax.jit(jax.vmap(f))(jnp.asarray([1.0, 2.0]), jnp.asarray([3.0, 4.0]))
    assert out.shape == (2, 2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"features": ("nope",)}, "features='nope'"),
        ({"features": ()}, "at least one"),
        ({"features": ("train_loss", "train_loss")}, "duplicate"),
        ({"features": (3,)}, "entry 3"),
        ({"clip": 0.0}, "clip=0.0"),
        ({"momentum": 1.0}, "momentum=1.0"),
        ({"normaliser": "batch"}, "normaliser='batch'"),
        ({"eps": -1.0}, "eps=-1.0"),
        ({"last_layer_path": ""}, "last_layer_path"),
    ],
)
def test_spec_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        FeatureSpec(**kwargs)


def test_feature_validation():
    with pytest.raises(ConfigError, match="inputs"):
        Feature("f", "loss", lambda i: 0.0)
    with pytest.raises(ConfigError, match="fn="):
        Feature("f", ("loss",), None)
    with pytest.raises(ConfigError, match="name"):
        Feature("", ("loss",), lambda i: 0.0)
    assert Feature("f", ["loss"], lambda i: 0.0).inputs == ("loss",)


def test_spec_json_round_trip():
    custom = Feature("c", ("grad_norm",), lambda i: i["grad_norm"], log=True)
    spec = FeatureSpec(features=("train_loss", custom, "log_lr"), clip=3.0)
    data = spec.to_json()
    assert data["features"][0] == "train_loss" and data["features"][1]["name"] == "c"
    assert FeatureSpec.from_json(data, [custom]) == spec
    with pytest.raises(ConfigError, match="custom_features"):
        FeatureSpec.from_json(data)
    other = Feature("c", ("loss",), lambda i: i["loss"], log=True)
    with pytest.raises(ConfigError, match="trained with"):
        FeatureSpec.from_json(data, [other])
    with pytest.raises(ConfigError, match="unknown keys"):
        FeatureSpec.from_json({**data, "extra": 1}, [custom])


class _MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(nn.relu(nn.Dense(8)(x)))


def test_grads_and_feature_inputs_for_a_flax_model():
    model = _MLP()
    x, xv = jnp.ones((5, 4)), jnp.arange(12.0).reshape(3, 4) / 12
    y, yv = jnp.zeros((5, 3)), jnp.ones((3, 3))
    rng = np.random.default_rng(0)  # numpy draws: jax's initialisers are slow to compile on CPU
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)
    params = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape), s.dtype), shapes)

    def loss_fn(out, target):
        return jnp.mean((out - target) ** 2)

    grads, inputs = jax.jit(
        lambda p: grads_and_feature_inputs(model.apply, p, (x, y), loss_fn, (xv, yv))
    )(params)
    (loss, expected), val_loss = jax.jit(
        lambda p: (
            jax.value_and_grad(lambda p: loss_fn(model.apply(p, x), y))(p),
            loss_fn(model.apply(p, xv), yv),
        )
    )(params)
    np.testing.assert_allclose(inputs["value"], loss, rtol=1e-6)
    np.testing.assert_allclose(inputs["val_loss"], val_loss, rtol=1e-6)
    assert inputs["predictions"].shape == (3, 3)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), grads, expected)
    # Every built-in feature of paper A can be computed from them (plus the transform's own).
    spec = FeatureSpec(features=PAPER_A_FEATURES)
    provided = {"params": params, "lr": 1e-3, "lr_bounds": (1e-5, 1e-1), "step": 1}
    provided["prev_predictions"] = jnp.zeros((3, 3))
    as_features = {**inputs, "loss": inputs["value"], **provided}  # update's value= is "loss"
    assert np.all(np.isfinite(raw_features(spec, as_features)))

    _, inputs = jax.eval_shape(
        lambda p: grads_and_feature_inputs(model.apply, p, (x, y), loss_fn), params
    )
    assert set(inputs) == {"value", "predictions"} and inputs["predictions"].shape == (5, 3)


# -- the prediction-change feature where a wrong formula gives another answer ---------------------
# var(p - prev) equals var(p) when prev is constant (e.g. ones), so these use varying prev.

P1 = jnp.asarray([0.2, 0.9, 0.4, 0.1])
P2 = jnp.asarray([0.5, 0.3, 0.8, 0.6])
P3 = jnp.asarray([0.1, 0.7, 0.2, 0.9])


def test_pred_change_var_is_the_variance_of_the_change():
    spec = FeatureSpec(features=("pred_change_var",), normaliser="none")
    raw = raw_features(spec, _inputs(predictions=P2, prev_predictions=P1))
    np.testing.assert_allclose(raw[0], np.log(np.var(P2 - P1)), rtol=1e-6)
    assert abs(np.log(np.var(P2 - P1)) - np.log(np.var(P2))) > 0.1  # the test has teeth


def test_the_transform_observes_the_change_since_its_previous_observation():
    from lrjax.controller import (
        ControllerConfig,
        controller_state,
        init_controller,
        scale_by_controller,
    )

    spec = FeatureSpec(
        features=("pred_change_var",), normaliser="none", probe=Probe(examples=4, outputs="raw")
    )
    controller = init_controller(jax.random.key(0), ControllerConfig(features=spec))
    tx = scale_by_controller(controller, predictions_shape=(4,))
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    observed = []
    for predictions in (P1, P2, P3):
        _, state = tx.update(params, state, params, value=1.0, predictions=predictions)
        observed.append(float(controller_state(state).obs[0]))
    expected = [0.0, np.log(np.var(P2 - P1)), np.log(np.var(P3 - P2))]  # step 0: missing, 0
    np.testing.assert_allclose(observed, expected, rtol=1e-5, atol=1e-6)


def test_the_environment_observes_the_change_between_its_observations():
    from _rl_problem import make_env, regression_problem

    from lrjax.controller import ControllerConfig

    task, data = regression_problem()
    spec = FeatureSpec(features=("pred_change_var",), normaliser="frozen")  # raw observations
    env = make_env(task, controller=ControllerConfig(features=spec, steps_per_action=2))
    key = jax.random.key(0)
    _, state = env.reset(key, data)
    obs, after, *_ = env.step(key, state, jnp.float32(0.5), data)
    change = np.asarray(after.predictions) - np.asarray(state.predictions)
    np.testing.assert_allclose(obs[0], np.log(np.var(change)), rtol=1e-4)
    assert abs(np.log(np.var(change)) - np.log(np.var(after.predictions))) > 0.1
