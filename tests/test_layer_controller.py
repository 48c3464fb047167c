"""Per-layer and momentum control through ``scale_by_layer_controller`` (issue 30): the
one-group case is ``scale_by_controller``, groups get their own LRs, the momentum is SGD's heavy
ball, and such controllers save, load and refuse misuse."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrjax._validation import ConfigError
from lrjax.controller import (
    ControllerConfig,
    current_lr,
    group_lrs,
    group_momenta,
    init_controller,
    load_controller,
    make_groups,
    save_controller,
    scale_by_controller,
    scale_by_layer_controller,
)
from lrjax.features import FeatureSpec

GROUPED = ("group_lr_vs_start", "group_step_vs_mean", "group_depth")


def _problem():
    """A 3-layer least-squares MLP with a loss and its gradient."""
    keys = jax.random.split(jax.random.key(0), 5)
    params = {
        "dense1": {"kernel": jax.random.normal(keys[0], (4, 8)) * 0.5, "bias": jnp.zeros(8)},
        "dense2": {"kernel": jax.random.normal(keys[1], (8, 8)) * 0.5, "bias": jnp.zeros(8)},
        "logits": {"kernel": jax.random.normal(keys[2], (8, 1)) * 0.5, "bias": jnp.zeros(1)},
    }
    x = jax.random.normal(keys[3], (32, 4))
    y = jnp.sin(x.sum(-1, keepdims=True))

    def loss(p):
        h = jnp.tanh(x @ p["dense1"]["kernel"] + p["dense1"]["bias"])
        h = jnp.tanh(h @ p["dense2"]["kernel"] + p["dense2"]["bias"])
        return jnp.mean((h @ p["logits"]["kernel"] + p["logits"]["bias"] - y) ** 2)

    return params, jax.value_and_grad(loss)


def _run(tx, steps=30):
    params, value_and_grad = _problem()
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        loss, grads = value_and_grad(params)
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state, loss

    losses = []
    for _ in range(steps):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    return params, state, losses


def _trained_looking(config, key=1, scale=1.0):
    """A controller whose actor's head is not near zero, so that its actions vary."""
    c = init_controller(jax.random.key(key), config)
    head = c.params["mean"]
    kernel = jax.random.normal(jax.random.key(key + 1), head["kernel"].shape) * scale
    return c.replace(params={**c.params, "mean": {**head, "kernel": kernel}})


@pytest.mark.parametrize("preset", ["loss_only", "lrjax_ema"])
def test_the_one_group_case_is_scale_by_controller(preset):
    """A single-LR controller without momentum control applies the LRs and updates of
    ``scale_by_controller`` step for step (unnormalised features, or normalised per run)."""
    if preset == "loss_only":
        config = ControllerConfig.loss_only(steps_per_action=3)
    else:  # the update norm and the loss, normalised by the run's own statistics
        spec = FeatureSpec(features=("train_loss", "update_norm", "log_lr"), normaliser="ema")
        config = ControllerConfig(features=spec, action_mode="scale", steps_per_action=3)
    c = _trained_looking(config)
    p1, s1, l1 = _run(scale_by_controller(c, total_steps=30))
    p2, s2, l2 = _run(scale_by_layer_controller(c, total_steps=30))
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    chex_close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    jax.tree.map(chex_close, p1, p2)
    assert group_lrs(s2).shape == (1,)
    np.testing.assert_allclose(group_lrs(s2)[0], current_lr(s1), rtol=1e-6)
    assert float(current_lr(s1)) != pytest.approx(c.config.initial_lr)  # it acted


def test_groups_are_layers_in_depth_order_or_the_labels_given():
    params, _ = _problem()
    groups = make_groups(params)
    assert groups.names == ("dense1", "dense2", "logits")
    np.testing.assert_allclose(groups.depth(), [0.0, 0.5, 1.0])  # group_depth: input to output
    together = make_groups(params, lambda p: jax.tree.map(lambda _: "all", p))
    assert together.names == ("all",) and set(together.index) == {0}
    with pytest.raises(ConfigError, match="labels do not match"):
        make_groups(params, {"dense1": 0})


def test_a_per_layer_controller_gives_each_layer_its_own_lr():
    config = ControllerConfig.loss_only(group_features=GROUPED)
    c = _trained_looking(config, scale=3.0)
    params, state, losses = _run(scale_by_layer_controller(c, total_steps=30))
    lrs = np.asarray(group_lrs(state))
    assert lrs.shape == (3,) and np.all(np.isfinite(lrs))
    np.testing.assert_allclose(current_lr(state), np.exp(np.log(lrs).mean()), rtol=1e-6)
    assert len(set(np.round(lrs, 7))) == 3, lrs  # depth and the layers' moves differ
    assert np.all((lrs >= config.lr_min) & (lrs <= config.lr_max))
    # the labels decide the groups: one group, one LR
    one = scale_by_layer_controller(
        c, labels=lambda p: jax.tree.map(lambda _: 0, p), total_steps=30
    )
    assert group_lrs(_run(one, steps=3)[1]).shape == (1,)


def test_momentum_control_is_heavy_ball_sgd_and_stays_in_bounds():
    """An untrained actor (head 0) keeps its starting LR and momentum: the updates are
    ``optax.sgd(lr, momentum=beta_0)``'s; a trained-looking one moves beta within bounds."""
    config = ControllerConfig.loss_only(
        momentum_control=True, head_init_scale=0.0, initial_momentum=0.5
    )
    still = init_controller(jax.random.key(0), config)
    p1, s1, _ = _run(scale_by_layer_controller(still, total_steps=30))
    p2, _, _ = _run(optax.sgd(config.initial_lr, momentum=0.5))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), p1, p2)
    np.testing.assert_allclose(group_momenta(s1), [0.5], rtol=1e-6)

    grouped = ControllerConfig.loss_only(
        group_features=(*GROUPED, "group_momentum"), momentum_control=True
    )
    moving = _trained_looking(grouped, scale=3.0)
    _, state, losses = _run(scale_by_layer_controller(moving, total_steps=30))
    beta = np.asarray(group_momenta(state))
    assert beta.shape == (3,) and np.all((beta >= 0) & (beta <= grouped.momentum_max))
    assert not np.allclose(beta, 0.9) and np.all(np.isfinite(losses))


def test_a_non_finite_step_is_skipped_and_keeps_the_momentum_buffer():
    config = ControllerConfig.loss_only(group_features=GROUPED, momentum_control=True)
    tx = scale_by_layer_controller(init_controller(jax.random.key(0), config), total_steps=10)
    params, value_and_grad = _problem()
    state = tx.init(params)
    loss, grads = value_and_grad(params)
    _, state = tx.update(grads, state, params, value=loss)
    updates, after = tx.update(grads, state, params, value=jnp.float32(jnp.nan))
    assert all(float(jnp.abs(u).max()) == 0.0 for u in jax.tree.leaves(updates))
    assert int(after.skipped) == 1 and int(after.count) == 1
    jax.tree.map(np.testing.assert_array_equal, after.trace, state.trace)


def test_per_layer_momentum_controllers_save_and_load(tmp_path):
    config = ControllerConfig.loss_only(
        group_features=(*GROUPED, "group_momentum"), momentum_control=True
    )
    c = _trained_looking(config)
    loaded = load_controller(save_controller(tmp_path / "c", c))
    assert loaded.config == config and loaded.config.action_size == 2
    jax.tree.map(np.testing.assert_array_equal, loaded.params, c.params)
    _, s1, _ = _run(scale_by_layer_controller(c, total_steps=30), steps=5)
    _, s2, _ = _run(scale_by_layer_controller(loaded, total_steps=30), steps=5)
    np.testing.assert_array_equal(group_lrs(s1), group_lrs(s2))


def test_misuse_is_refused_by_name():
    grouped = init_controller(jax.random.key(0), ControllerConfig.loss_only(group_features=GROUPED))
    with pytest.raises(ConfigError, match="scale_by_layer_controller"):
        scale_by_controller(grouped, total_steps=10)
    tx = scale_by_layer_controller(grouped, total_steps=10)
    with pytest.raises(ConfigError, match="needs the params"):
        tx.init(None)
    params, value_and_grad = _problem()
    state = tx.init(params)
    loss, grads = value_and_grad(params)
    with pytest.raises(ConfigError, match="needs the params"):
        tx.update(grads, state, value=loss)


def test_the_actor_critic_refuses_a_layered_controller():
    from lrjax.algos.actor_critic import ActorCriticEnvConfig

    with pytest.raises(ConfigError, match="not allowed for the actor-critic"):
        ActorCriticEnvConfig(controller=ControllerConfig.loss_only(momentum_control=True))
