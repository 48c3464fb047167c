"""The shipped controller: listed, loadable in one call, with its model card, and usable in a
plain optax loop (the README's example, run as written; the docs' own-model page has
tests/test_docs_pages.py)."""

import pathlib
import re

import numpy as np
import pytest

import lrjax
from lrjax._validation import ConfigError

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_shipped_controller_loads_with_its_card():
    assert "fashion_mlp_ppo" in lrjax.pretrained.available()
    controller = lrjax.pretrained.load("fashion_mlp_ppo")
    config = controller.config
    assert config.features.normaliser == "frozen" and "progress" in config.features.names
    # Frozen statistics from training: thousands of observations per feature, not fresh ones.
    assert np.all(np.asarray(controller.normaliser.count) > 1000)
    card = lrjax.pretrained.model_card("fashion_mlp_ppo")
    assert "lrjax train" in card and "lrjax evaluate" in card and "| method |" in card
    with pytest.raises(ConfigError, match="'nope' is not known"):
        lrjax.pretrained.load("nope")


def test_the_family_adam_controller_drops_into_an_adam_chain_given_only_the_loss():
    """mlp_family_adam reads nothing but ``value=loss`` and the run's length, in a chain after
    Adam's direction, on a problem it never saw; its applied LR ends under the cosine."""
    import jax
    import jax.numpy as jnp
    import optax

    from lrjax.features import LOSS_ONLY_FEATURES

    controller = lrjax.pretrained.load("mlp_family_adam")
    config = controller.config
    assert config.base_schedule == "cosine" and config.actions_per_run == 40
    assert config.initial_lr == 1e-3 and config.features.names == tuple(LOSS_ONLY_FEATURES)
    card = lrjax.pretrained.model_card("mlp_family_adam")
    assert "lrjax train --family" in card and "| target |" in card and "## Limits" in card

    x = jax.random.normal(jax.random.key(0), (64, 8))
    y = x @ (jnp.arange(1.0, 9.0) / 40)  # weights Adam reaches at ~1e-3 in 200 steps
    loss_fn = lambda w: jnp.mean((x @ w - y) ** 2)
    steps = 200
    tx = optax.chain(
        optax.scale_by_adam(), lrjax.scale_by_controller(controller, total_steps=steps)
    )

    @jax.jit
    def step(w, state):
        loss, grads = jax.value_and_grad(loss_fn)(w)
        updates, state = tx.update(grads, state, w, value=loss)
        return optax.apply_updates(w, updates), state, lrjax.current_lr(state)

    w = jnp.zeros(8)
    state = tx.init(w)
    lrs = []
    for _ in range(steps):
        w, state, lr = step(w, state)
        lrs.append(float(lr))
    assert np.all(np.isfinite(lrs)) and 1e-3 / 1.25 <= lrs[0] <= 1e-3 * 1.25  # one action in
    assert np.ptp(lrs) > 0 and lrs[-1] < 1e-4  # the cosine's end
    assert float(loss_fn(w)) < 0.5 * float(loss_fn(jnp.zeros(8)))


def test_readme_family_controller_example_runs(capsys):
    """The README's example of the family controller, run as written: Adam's direction and the
    controller in a plain optax chain given only ``value=loss``."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    (code,) = [b for b in blocks if "mlp_family_adam" in b and "scale_by_adam" in b]
    exec(compile(code, str(README), "exec"), {"__name__": "readme_family"})
    out = capsys.readouterr().out
    match = re.search(r"family controller: test loss (\d+\.\d+), last LR ([\d.e+-]+)", out)
    assert match, out
    loss, last_lr = (float(g) for g in match.groups())
    assert loss < 0.6  # an untrained MLP is at ln(10) = 2.3
    assert 0 < last_lr < 1e-3  # the cosine has taken the LR below its start by the end


def test_the_family_sgd_controller_trains_with_plain_sgd_given_only_the_loss():
    """mlp_family_sgd: SGD's controller (with the loss-noise feature), on the raw gradients of a
    problem it never saw, given only ``value=loss``; it starts at 0.1 and ends under the cosine."""
    import jax
    import jax.numpy as jnp
    import optax

    controller = lrjax.pretrained.load("mlp_family_sgd")
    config = controller.config
    assert config.initial_lr == 0.1 and config.base_schedule == "cosine"
    assert "loss_noise" in config.features.names and config.features.normaliser == "none"
    card = lrjax.pretrained.model_card("mlp_family_sgd")
    assert "lrjax train --family" in card and "| target |" in card and "## Limits" in card
    assert lrjax.pretrained.TRAINING_SEEDS["mlp_family_sgd"] == 0

    x = jax.random.normal(jax.random.key(0), (64, 8))
    y = x @ (jnp.arange(1.0, 9.0) / 8)
    loss_fn = lambda w: jnp.mean((x @ w - y) ** 2)
    steps = 200
    tx = lrjax.scale_by_controller(controller, total_steps=steps)

    @jax.jit
    def step(w, state):
        loss, grads = jax.value_and_grad(loss_fn)(w)
        updates, state = tx.update(grads, state, w, value=loss)
        return optax.apply_updates(w, updates), state, lrjax.current_lr(state)

    w = jnp.zeros(8)
    state = tx.init(w)
    lrs = []
    for _ in range(steps):
        w, state, lr = step(w, state)
        lrs.append(float(lr))
    assert np.all(np.isfinite(lrs)) and 0.1 / 1.25 <= lrs[0] <= 0.1 * 1.25
    assert lrs[-1] < 0.01  # the cosine's end
    assert float(loss_fn(w)) < 0.1 * float(loss_fn(jnp.zeros(8)))


def test_the_family_momentum_controller_sets_lr_and_momentum_given_only_the_loss():
    """mlp_family_momentum: the LR and the momentum of SGD with momentum, on the raw gradients of
    a problem it never saw through ``scale_by_layer_controller``, given only ``value=loss``; it
    starts at (0.01, 0.9), keeps beta within its bounds, ends under the cosine, and refuses
    ``scale_by_controller`` (which has no momentum to set)."""
    import jax
    import jax.numpy as jnp
    import optax

    controller = lrjax.pretrained.load("mlp_family_momentum")
    config = controller.config
    assert config.momentum_control and not config.per_group
    assert (config.initial_lr, config.initial_momentum, config.momentum_max) == (0.01, 0.9, 0.99)
    assert config.base_schedule == "cosine" and config.features.normaliser == "none"
    card = lrjax.pretrained.model_card("mlp_family_momentum")
    assert "lrjax train --family" in card and "--momentum-control" in card
    assert "| target |" in card and "## Limits" in card and "scale_by_layer_controller" in card
    assert lrjax.pretrained.TRAINING_SEEDS["mlp_family_momentum"] == 0
    with pytest.raises(ConfigError, match="scale_by_layer_controller"):
        lrjax.scale_by_controller(controller, total_steps=10)

    x = jax.random.normal(jax.random.key(0), (64, 8))
    y = x @ (jnp.arange(1.0, 9.0) / 8)
    loss_fn = lambda w: jnp.mean((x @ w - y) ** 2)
    steps = 200
    tx = lrjax.scale_by_layer_controller(controller, total_steps=steps)

    @jax.jit
    def step(w, state):
        loss, grads = jax.value_and_grad(loss_fn)(w)
        updates, state = tx.update(grads, state, w, value=loss)
        return optax.apply_updates(w, updates), state

    w = jnp.zeros(8)
    state = tx.init(w)
    lrs, betas = [], []
    for _ in range(steps):
        w, state = step(w, state)
        lrs.append(float(lrjax.current_lr(state)))
        betas.append(float(lrjax.group_momenta(state)[0]))
    assert np.all(np.isfinite(lrs)) and 0.01 / 1.25 <= lrs[0] <= 0.01 * 1.25  # one action in
    assert lrs[-1] < 1e-3  # the cosine's end
    assert min(betas) >= 0.0 and max(betas) <= 0.99 and np.ptp(betas) > 0  # it moved beta
    assert float(loss_fn(w)) < 0.1 * float(loss_fn(jnp.zeros(8)))
