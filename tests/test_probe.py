"""A controller declares what its ``val_loss`` and ``predictions`` inputs hold (its Probe);
``probe_inputs`` and ``grads_and_feature_inputs(probe=)`` produce exactly that; an input that
does not match the declaration is an error or a warning, never a quiet change of behaviour."""

import dataclasses
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _rl_problem import make_env, regression_problem

from lrjax import tasks
from lrjax._validation import ConfigError
from lrjax.algos.ppo import PPO, PPOConfig
from lrjax.controller import (
    ControllerConfig,
    init_controller,
    load_controller,
    save_controller,
    scale_by_controller,
)
from lrjax.features import FeatureSpec, Probe, grads_and_feature_inputs, probe_inputs

RNG = np.random.default_rng(0)
LOGITS = jnp.asarray(RNG.normal(size=(150, 10)) * 3, jnp.float32)
LABELS = jnp.asarray(RNG.integers(0, 10, size=150))


def _xent(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def test_probe_inputs_are_the_loss_on_the_first_val_examples_and_softmax_of_the_first_few():
    inputs = probe_inputs(Probe(), LOGITS, LABELS, _xent)
    np.testing.assert_allclose(inputs["val_loss"], _xent(LOGITS[:128], LABELS[:128]), rtol=1e-6)
    np.testing.assert_allclose(inputs["predictions"], jax.nn.softmax(LOGITS[:32]), rtol=1e-6)
    assert inputs["predictions"].shape == (32, 10)

    raw = probe_inputs(Probe(val_examples=20, examples=5, outputs="raw"), LOGITS, LABELS, _xent)
    np.testing.assert_allclose(raw["val_loss"], _xent(LOGITS[:20], LABELS[:20]), rtol=1e-6)
    np.testing.assert_array_equal(raw["predictions"], LOGITS[:5])


def test_probe_inputs_refuse_fewer_examples_than_the_probe_reads():
    with pytest.raises(ConfigError, match=r"shape \(100, 10\).*at least 128 examples"):
        probe_inputs(Probe(), LOGITS[:100], LABELS[:100], _xent)


def test_a_bad_probe_names_the_field_and_what_is_allowed():
    with pytest.raises(ConfigError, match="outputs='logits' is not allowed"):
        Probe(outputs="logits")
    with pytest.raises(ConfigError, match="examples=0"):
        Probe(examples=0)
    with pytest.raises(ConfigError, match="probe=32 is not allowed"):
        FeatureSpec(probe=32)


def test_a_probe_round_trips_and_a_spec_saved_without_one_has_the_default():
    spec = FeatureSpec(probe=Probe(64, 16, "raw"))
    assert FeatureSpec.from_json(spec.to_json()) == spec
    old = spec.to_json()
    del old["probe"]  # a controller saved before probes were recorded
    assert FeatureSpec.from_json(old).probe == Probe()
    with pytest.raises(ConfigError, match="The saved probe"):
        Probe.from_json({"examples": 3})


class _Classifier(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(10, name="logits")(nn.relu(nn.Dense(16, name="hidden")(x)))


MODEL = _Classifier()
X = jnp.asarray(RNG.normal(size=(150, 5)), jnp.float32)
PARAMS = MODEL.init(jax.random.key(0), X)


def test_grads_and_feature_inputs_with_a_probe_give_what_the_probe_declares():
    batch, val = (X[:64], LABELS[:64]), (X, LABELS)
    grads, inputs = grads_and_feature_inputs(MODEL.apply, PARAMS, batch, _xent, val, probe=Probe())
    expected = probe_inputs(Probe(), MODEL.apply(PARAMS, X), LABELS, _xent)
    np.testing.assert_allclose(inputs["val_loss"], expected["val_loss"], rtol=1e-6)
    np.testing.assert_allclose(inputs["predictions"], expected["predictions"], rtol=1e-6)
    np.testing.assert_allclose(inputs["value"], _xent(MODEL.apply(PARAMS, X[:64]), LABELS[:64]))
    assert jax.tree.structure(grads) == jax.tree.structure(PARAMS)
    with pytest.raises(ConfigError, match="needs val_batch"):
        grads_and_feature_inputs(MODEL.apply, PARAMS, batch, _xent, probe=Probe())


PAPER_A = init_controller(jax.random.key(1), ControllerConfig.paper_a(lstm_layers=1, lstm_units=4))


def _steps(predictions, num_steps=2):
    """Jitted updates of the default-probe controller fed ``predictions``; the warnings raised."""
    tx = scale_by_controller(PAPER_A, predictions_shape=(32, 10))
    params = {"out": {"kernel": jnp.ones((3, 2))}}

    @jax.jit
    def step(state):
        _, state = tx.update(
            params, state, params, value=1.0, val_loss=1.0, predictions=predictions
        )
        return state

    state = tx.init(params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(num_steps):
            state = step(state)
        jax.effects_barrier()
    return [w for w in caught if "not probabilities" in str(w.message)]


def test_logits_where_probabilities_are_expected_warn_and_probabilities_do_not():
    assert _steps(jax.nn.softmax(LOGITS[:32])) == []
    caught = _steps(LOGITS[:32])
    assert caught and "probe_inputs" in str(caught[0].message)


def test_the_warning_holds_under_vmap():
    tx = scale_by_controller(PAPER_A, predictions_shape=(32, 10))
    params = {"out": {"kernel": jnp.ones((3, 2))}}

    def run(predictions):
        _, state = tx.update(
            params, tx.init(params), params, value=1.0, val_loss=1.0, predictions=predictions
        )
        return state

    batched = jnp.stack([jax.nn.softmax(LOGITS[:32]), LOGITS[32:64]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        jax.jit(jax.vmap(run))(batched)
        jax.effects_barrier()
    assert any("not probabilities" in str(w.message) for w in caught)


def test_predictions_of_another_number_of_examples_are_refused():
    with pytest.raises(ConfigError, match=r"predictions_shape=\(128, 10\).*leading axis of 32"):
        scale_by_controller(PAPER_A, predictions_shape=(128, 10))


def test_a_trained_controller_records_its_environments_probe_and_keeps_it_when_saved(tmp_path):
    task, data = regression_problem()
    env = make_env(
        task,
        controller=ControllerConfig.paper_a(lstm_layers=1, lstm_units=4),
        horizon=3,
        val_batch_size=40,
        probe_size=6,
    )
    ppo = PPO(env, PPOConfig(num_envs=2, num_updates=1, num_minibatches=1, update_epochs=1))
    controller = ppo.controller(ppo.init(jax.random.key(0), data))
    assert controller.config.features.probe == Probe(40, 6, "raw")
    loaded = load_controller(save_controller(tmp_path / "c", controller))
    assert loaded.config.features.probe == Probe(40, 6, "raw")
    # The image tasks observe softmax probabilities.
    image_env = make_env(tasks.get_task("fashion_mlp"), controller=controller.config)
    assert image_env.probe == Probe(128, 32, "probabilities")
    assert dataclasses.replace(image_env.probe, outputs="raw") != image_env.probe
