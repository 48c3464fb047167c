"""Tests of saving and loading controllers (lrjax.controller.io)."""

import hashlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import serialization

from lrjax._validation import ConfigError
from lrjax.controller import (
    FORMAT_VERSION,
    Controller,
    ControllerConfig,
    init_actor_params,
    load_controller,
    save_controller,
    scale_by_controller,
)
from lrjax.features import Feature

KEY = jax.random.key(0)


def _controller(config, seed=0):
    """A controller with numpy-drawn params (jax's initialisers are slow to compile on CPU)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(init_actor_params, KEY, config)
    params = jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.5, s.shape), s.dtype), shapes)
    return Controller(config=config, params=params)


SMALL = ControllerConfig.paper_a(
    features=("train_loss", "log_lr"), lstm_layers=1, lstm_units=8, act_every=2, lr_max=0.5
)


@jax.jit
def _updates(controller):
    """Three steps of the controller's transform; the controller is an argument, so one compile
    serves every controller of the same config."""
    tx = scale_by_controller(controller)
    params = {"w": jnp.linspace(-1.0, 1.0, 5)}

    def step(state, loss):
        updates, state = tx.update(params, state, params, value=loss)
        return state, (updates, state.learning_rate)

    return jax.lax.scan(step, tx.init(params), jnp.asarray([1.0, 0.5, 0.7, 0.2]))[1]


def test_round_trip_gives_identical_updates(tmp_path):
    ctrl = _controller(SMALL)
    path = save_controller(tmp_path / "ctrl", ctrl)
    loaded = load_controller(path)
    assert loaded.config == ctrl.config
    assert jax.tree.structure(loaded.params) == jax.tree.structure(ctrl.params)
    for a, b in zip(jax.tree.leaves(loaded.params), jax.tree.leaves(ctrl.params), strict=True):
        assert isinstance(a, jax.Array) and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    (u1, lr1), (u2, lr2) = _updates(ctrl), _updates(loaded)
    np.testing.assert_array_equal(u1["w"], u2["w"])
    np.testing.assert_array_equal(lr1, lr2)
    assert len(np.unique(np.asarray(lr1))) > 1


def test_files_are_versioned_json_and_msgpack(tmp_path):
    path = save_controller(tmp_path / "ctrl", _controller(SMALL))
    assert sorted(p.name for p in path.iterdir()) == ["metadata.json", "params.msgpack"]
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["format"] == "lrjax.controller" and meta["format_version"] == FORMAT_VERSION == 1
    assert isinstance(meta["lrjax_version"], str)
    cfg = meta["config"]
    assert cfg["action_mode"] == "scale" and cfg["alpha"] == 1.05
    assert (cfg["lr_min"], cfg["lr_max"]) == (1e-5, 0.5)
    assert cfg["features"]["features"] == ["train_loss", "log_lr"]
    assert meta["params"]["mean/kernel"] == {"shape": [8, 1], "dtype": "float32"}
    blob = (path / "params.msgpack").read_bytes()
    assert not blob.startswith(b"\x80")  # not a pickle
    assert meta["params_sha256"] == hashlib.sha256(blob).hexdigest()


def test_overwrite(tmp_path):
    a, b = _controller(SMALL, seed=1), _controller(SMALL, seed=2)
    save_controller(tmp_path / "c", a)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_controller(tmp_path / "c", b)
    save_controller(tmp_path / "c", b, overwrite=True)
    loaded = load_controller(tmp_path / "c")
    np.testing.assert_array_equal(loaded.params["mean"]["kernel"], b.params["mean"]["kernel"])
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="it is a file"):
        save_controller(tmp_path / "file", a)


def test_custom_features_must_be_passed_again(tmp_path):
    def ratio(inputs):
        return inputs["grad_norm"] / inputs["value"]

    feat = Feature("ratio", ("grad_norm", "value"), ratio, log=True)
    config = SMALL.replace(features=("train_loss", feat))
    save_controller(tmp_path / "c", _controller(config))
    with pytest.raises(ConfigError, match="custom_features"):
        load_controller(tmp_path / "c")
    loaded = load_controller(tmp_path / "c", custom_features=[feat])
    assert loaded.config == config
    other = Feature("ratio", ("grad_norm",), ratio, log=True)
    with pytest.raises(ConfigError, match="trained with"):
        load_controller(tmp_path / "c", custom_features=[other])


def _edit_metadata(path, **changes):
    meta = json.loads((path / "metadata.json").read_text())
    meta.update(changes)
    (path / "metadata.json").write_text(json.dumps(meta))
    return meta


@pytest.mark.parametrize("version, advice", [(2, "upgrade lrjax"), (0, "re-save"), ("1", "")])
def test_other_format_version_is_a_clear_error(tmp_path, version, advice):
    path = save_controller(tmp_path / "c", _controller(SMALL))
    _edit_metadata(path, format_version=version)
    with pytest.raises(ConfigError, match=f"format_version={version!r}") as info:
        load_controller(path)
    assert f"reads format_version={FORMAT_VERSION}" in str(info.value) and advice in str(info.value)


def test_not_a_controller(tmp_path):
    with pytest.raises(FileNotFoundError, match="No saved controller"):
        load_controller(tmp_path / "missing")
    path = save_controller(tmp_path / "c", _controller(SMALL))
    _edit_metadata(path, format="something.else")
    with pytest.raises(ConfigError, match="format='something.else'"):
        load_controller(path)
    (path / "metadata.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_controller(path)


def test_params_that_do_not_fit_the_config(tmp_path):
    path = save_controller(tmp_path / "c", _controller(SMALL))
    meta = json.loads((path / "metadata.json").read_text())
    cfg = meta["config"]
    _edit_metadata(path, config={**cfg, "lstm_units": 6})
    with pytest.raises(ConfigError, match=r"'lstm_0/hf/bias' has shape \(8,\), expected \(6,\)"):
        load_controller(path)
    _edit_metadata(path, config={**cfg, "lstm_layers": 2})
    with pytest.raises(ConfigError, match="'lstm_1/hf/bias' is missing"):
        load_controller(path)
    three = {**cfg["features"], "features": ["train_loss", "log_lr", "val_loss"]}
    _edit_metadata(path, config={**cfg, "features": three})
    with pytest.raises(ConfigError, match=r"'lstm_0/if/kernel' has shape \(2, 8\)"):
        load_controller(path)
    _edit_metadata(path, config={**cfg, "gamma": 0.5})
    with pytest.raises(ConfigError, match="unknown keys \\['gamma'\\]"):
        load_controller(path)
    _edit_metadata(path, config={**cfg, "lr_min": 1.0})  # invalid values are caught too
    with pytest.raises(ConfigError, match="lr_min=1.0 must be smaller"):
        load_controller(path)


def test_wrong_dtype_extra_leaf_and_corruption(tmp_path):
    ctrl = _controller(SMALL)
    path = save_controller(tmp_path / "c", ctrl)

    def write(params):
        blob = serialization.msgpack_serialize(jax.tree.map(np.asarray, params))
        (path / "params.msgpack").write_bytes(blob)
        _edit_metadata(path, params_sha256=hashlib.sha256(blob).hexdigest())

    write({**ctrl.params, "mean": {**ctrl.params["mean"], "bias": np.zeros(1, np.float16)}})
    with pytest.raises(ConfigError, match="'mean/bias' has dtype float16, expected float32"):
        load_controller(path)
    write({**ctrl.params, "extra": np.zeros(2, np.float32)})
    with pytest.raises(ConfigError, match="'extra' is not expected"):
        load_controller(path)
    write(ctrl.params)
    assert load_controller(path).config == SMALL
    blob = bytearray((path / "params.msgpack").read_bytes())
    blob[-1] ^= 0xFF
    (path / "params.msgpack").write_bytes(bytes(blob))
    with pytest.raises(ConfigError, match="checksum"):
        load_controller(path)


def test_save_checks_the_controller(tmp_path):
    ctrl = _controller(SMALL)
    bad = Controller(config=SMALL.replace(lstm_units=4), params=ctrl.params)
    with pytest.raises(ConfigError, match="'lstm_0/hf/bias' has shape"):
        save_controller(tmp_path / "c", bad)
    with pytest.raises(ConfigError, match="expected a lrjax Controller"):
        save_controller(tmp_path / "c", ctrl.params)
    assert not (tmp_path / "c").exists()


def test_paper_configs_round_trip(tmp_path):
    for i, config in enumerate([ControllerConfig.paper_a(), ControllerConfig.paper_b()]):
        path = save_controller(tmp_path / str(i), _controller(config))
        loaded = load_controller(path)
        assert loaded.config == config
        # The loaded controller drops into an optax chain.
        tx = optax.chain(optax.scale_by_adam(), scale_by_controller(loaded, predictions_shape=(3,)))
        assert tx.init({"w": jnp.ones(2)}) is not None
