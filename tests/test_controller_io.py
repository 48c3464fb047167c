"""Tests of saving and loading controllers (lrjax.controller.io)."""

import hashlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _params import numpy_params
from flax import serialization, traverse_util

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
from lrjax.features import Feature, NormaliserState, init_normaliser

KEY = jax.random.key(0)


def _controller(config, seed=0, normaliser=None):
    """A controller with numpy-drawn params (jax's initialisers are slow to compile on CPU) and
    the given normaliser statistics (default: fresh ones)."""
    params = numpy_params(init_actor_params, KEY, config, seed=seed)
    if normaliser is None:
        normaliser = init_normaliser(config.obs_size)
    return Controller(config=config, params=params, normaliser=normaliser)


def _stats(mean, var, count):
    """Non-trivial normaliser statistics (as a run leaves them)."""
    return NormaliserState(
        mean=jnp.asarray(mean, jnp.float32),
        var=jnp.asarray(var, jnp.float32),
        count=jnp.asarray(count, jnp.int32),
    )


def _assert_same_stats(a, b):
    assert isinstance(a, NormaliserState)
    for x, y in zip(a, b, strict=True):
        assert isinstance(x, jax.Array) and x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


SMALL = ControllerConfig.paper_a(
    features=("train_loss", "log_lr"), lstm_layers=1, lstm_units=8, steps_per_action=2, lr_max=0.5
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
    assert meta["format"] == "lrjax.controller" and meta["format_version"] == FORMAT_VERSION == 2
    assert isinstance(meta["lrjax_version"], str)
    cfg = meta["config"]
    assert cfg["action_mode"] == "scale" and cfg["alpha"] == 1.05
    assert (cfg["lr_min"], cfg["lr_max"]) == (1e-5, 0.5)
    assert cfg["features"]["features"] == ["train_loss", "log_lr"]
    assert cfg["steps_per_action"] == 2 and "act_every" not in cfg
    assert meta["normaliser"] == {"mean": [0.0, 0.0], "var": [0.0, 0.0], "count": [0, 0]}
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
        return inputs["grad_norm"] / inputs["loss"]

    feat = Feature("ratio", ("grad_norm", "loss"), ratio, log=True)
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


@pytest.mark.parametrize("version, advice", [(3, "upgrade lrjax"), (0, "re-save"), ("1", "")])
def test_other_format_version_is_a_clear_error(tmp_path, version, advice):
    path = save_controller(tmp_path / "c", _controller(SMALL))
    _edit_metadata(path, format_version=version)
    with pytest.raises(ConfigError, match=f"format_version={version!r}") as info:
        load_controller(path)
    assert f"reads format_version 1, {FORMAT_VERSION}" in str(info.value)
    assert advice in str(info.value)


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
    bad = Controller(
        config=SMALL.replace(lstm_units=4), params=ctrl.params, normaliser=ctrl.normaliser
    )
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
        tx = optax.chain(
            optax.scale_by_adam(), scale_by_controller(loaded, predictions_shape=(32,))
        )
        assert tx.init({"w": jnp.ones(2)}) is not None


# ------------------------------------------------------------------------------------------------
# Format version 2: the normaliser's statistics, and reading version 1.


def test_normaliser_statistics_round_trip(tmp_path):
    stats = _stats(mean=[0.1, -1.25], var=[0.3, 2.5e-4], count=[17, 3])
    ctrl = _controller(SMALL, normaliser=stats)
    path = save_controller(tmp_path / "c", ctrl)
    meta = json.loads((path / "metadata.json").read_text())
    assert sorted(meta["normaliser"]) == ["count", "mean", "var"]
    assert meta["normaliser"]["count"] == [17, 3]
    assert all(len(v) == SMALL.obs_size == 2 for v in meta["normaliser"].values())
    loaded = load_controller(path)
    _assert_same_stats(loaded.normaliser, stats)
    # The loaded controller's transform starts from them: the same updates and LRs, which the
    # same controller with fresh statistics does not give.
    (u1, lr1), (u2, lr2) = _updates(ctrl), _updates(loaded)
    np.testing.assert_array_equal(u1["w"], u2["w"])
    np.testing.assert_array_equal(lr1, lr2)
    _, fresh_lr = _updates(ctrl.replace(normaliser=init_normaliser(SMALL.obs_size)))
    assert not np.array_equal(lr1, fresh_lr)


def test_lr_settings_survive_a_round_trip(tmp_path):
    config = ControllerConfig(
        features=("train_loss", "log_lr"),
        lstm_layers=1,
        lstm_units=4,
        steps_per_action=7,
        lr_min=2e-5,
        lr_max=0.3,
        initial_lr=3e-3,
        action_mode="scale",
        alpha=1.2,
    )
    path = save_controller(tmp_path / "c", _controller(config))
    cfg = json.loads((path / "metadata.json").read_text())["config"]
    assert (cfg["steps_per_action"], cfg["initial_lr"]) == (7, 3e-3)
    assert (cfg["lr_min"], cfg["lr_max"], cfg["alpha"]) == (2e-5, 0.3, 1.2)
    loaded = load_controller(path).config
    assert loaded == config
    assert loaded.steps_per_action == 7 and isinstance(loaded.steps_per_action, int)
    assert (loaded.initial_lr, loaded.lr_min, loaded.lr_max) == (3e-3, 2e-5, 0.3)
    assert (loaded.action_mode, loaded.alpha) == ("scale", 1.2)


def _write_version_1(path, config, params, **config_changes):
    """A controller directory as lrjax wrote it with format_version 1, written by hand: the config
    calls the steps per action ``act_every`` and there are no normaliser statistics."""
    config_json = config.to_json()
    config_json["act_every"] = config_json.pop("steps_per_action")
    config_json.update(config_changes)
    state = serialization.to_state_dict(jax.tree.map(np.asarray, params))
    blob = serialization.msgpack_serialize(state)
    flat = traverse_util.flatten_dict(state, sep="/")
    metadata = {
        "format": "lrjax.controller",
        "format_version": 1,
        "lrjax_version": "0.1.0",
        "config": config_json,
        "params": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in flat.items()},
        "params_sha256": hashlib.sha256(blob).hexdigest(),
    }
    path.mkdir(parents=True)
    (path / "params.msgpack").write_bytes(blob)
    (path / "metadata.json").write_text(json.dumps(metadata, indent=2))
    return path


def test_version_1_files_are_still_read(tmp_path):
    ctrl = _controller(SMALL, normaliser=_stats([1.0, 2.0], [3.0, 4.0], [5, 6]))
    path = _write_version_1(tmp_path / "v1", SMALL, ctrl.params, act_every=3)
    meta = json.loads((path / "metadata.json").read_text())
    assert "steps_per_action" not in meta["config"] and "normaliser" not in meta
    loaded = load_controller(path)
    assert loaded.config == SMALL.replace(steps_per_action=3)  # act_every is steps_per_action
    for a, b in zip(jax.tree.leaves(loaded.params), jax.tree.leaves(ctrl.params), strict=True):
        np.testing.assert_array_equal(a, b)
    _assert_same_stats(loaded.normaliser, init_normaliser(SMALL.obs_size))  # fresh statistics
    # Saved again, it is a version-2 controller that loads the same.
    again = load_controller(save_controller(tmp_path / "v2", loaded))
    assert again.config == loaded.config
    _assert_same_stats(again.normaliser, loaded.normaliser)
    meta = json.loads((tmp_path / "v2" / "metadata.json").read_text())
    assert meta["format_version"] == 2 and meta["config"]["steps_per_action"] == 3


def _assert_config_error(path, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_controller(path)
    assert not isinstance(info.value, (KeyError, TypeError))


@pytest.mark.parametrize("config", ["missing", None, [], "scale", 3, [["lr_min", 1e-5]]])
@pytest.mark.parametrize("version", [1, 2])
def test_config_that_is_not_an_object(tmp_path, config, version):
    path = save_controller(tmp_path / "c", _controller(SMALL))
    meta = _edit_metadata(path, format_version=version)
    if config == "missing":
        del meta["config"]
        (path / "metadata.json").write_text(json.dumps(meta))
    else:
        _edit_metadata(path, config=config)
    _assert_config_error(path, "saved controller config .* expected an object")


@pytest.mark.parametrize(
    "normaliser, match",
    [
        ("missing", "expected an object with the keys"),
        (None, "expected an object with the keys"),
        ([[0.0, 0.0], [1.0, 1.0], [0, 0]], "expected an object with the keys"),
        ({"mean": [0.0, 0.0], "var": [1.0, 1.0]}, "expected an object with the keys"),
        (
            {"mean": [0.0, 0.0], "var": [1.0, 1.0], "count": [0, 0], "std": [1.0, 1.0]},
            "expected an object with the keys",
        ),
        ({"mean": [0.0, 0.0], "var": [1.0, 1.0], "n": [0, 0]}, "expected an object"),
        ({"mean": [0.0], "var": [1.0, 1.0], "count": [0, 0]}, r"'mean' has shape \(1,\)"),
        ({"mean": [0.0, 0.0], "var": [1.0, 1.0, 1.0], "count": [0, 0]}, r"'var' has shape \(3,"),
        ({"mean": [0.0, 0.0], "var": [1.0, 1.0], "count": 3}, r"'count' has shape \(\)"),
        ({"mean": [0.0, 0.0], "var": [[1.0, 1.0]], "count": [0, 0]}, r"'var' has shape \(1, 2\)"),
        ({"mean": [0.0, 0.0], "var": None, "count": [0, 0]}, "'var' has shape"),
        ({"mean": ["a", "b"], "var": [1.0, 1.0], "count": [0, 0]}, "'mean' is not numeric"),
        ({"mean": [0.0, 0.0], "var": [1.0, 1.0], "count": [{}, {}]}, "'count' is not numeric"),
        ({"mean": [0.0, 0.0], "var": [1.0, 1.0], "count": [10**12, 0]}, "'count' is .* integers"),
        ({"mean": [0.0, 0.0], "var": [1.0, 1.0], "count": [2.7, 0]}, "'count' is .* integers"),
        ({"mean": [0.0, 0.0], "var": [1.0, 1.0], "count": [-1, 0]}, "'count' is .* integers"),
        ({"mean": [0.0, 0.0], "var": [-1.0, 1.0], "count": [0, 0]}, "'var' is .* >= 0"),
        ({"mean": [float("nan"), 0.0], "var": [1.0, 1.0], "count": [0, 0]}, "'mean' is .* finite"),
    ],
)
def test_malformed_normaliser_is_a_clear_error(tmp_path, normaliser, match):
    path = save_controller(tmp_path / "c", _controller(SMALL))
    if normaliser == "missing":
        meta = json.loads((path / "metadata.json").read_text())
        del meta["normaliser"]
        (path / "metadata.json").write_text(json.dumps(meta))
    else:
        _edit_metadata(path, normaliser=normaliser)
    _assert_config_error(path, "saved normaliser.*" + match)


def test_save_checks_the_normaliser(tmp_path):
    ctrl = _controller(SMALL, normaliser=init_normaliser(3))  # SMALL has 2 features
    with pytest.raises(ConfigError, match=r"'mean' has shape \(3,\)"):
        save_controller(tmp_path / "c", ctrl)
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("spec", "x", "saved feature spec is 'x'"),
        ("spec", -1, "saved feature spec is -1"),
        ("spec", {"features": "train_loss"}, "saved feature spec does not match"),
        ("list", 7, "saved feature list is 7"),
        ("list", [1], "saved feature 1 is neither"),
        ("list", [{"name": "f"}], "is neither a feature name nor"),
    ],
)
def test_malformed_feature_spec_is_a_clear_error(tmp_path, field, value, match):
    """Found by an outside user: these raised a bare ValueError, TypeError or KeyError."""
    path = save_controller(tmp_path / "c", _controller(SMALL))
    meta = json.loads((path / "metadata.json").read_text())
    if field == "spec":
        meta["config"]["features"] = value
    else:
        meta["config"]["features"]["features"] = value
    (path / "metadata.json").write_text(json.dumps(meta))
    _assert_config_error(path, match)
