"""Issue 26's learning test: a tiny family run learns a controller that, on a held-out tiny
trainee (deeper and wider than any family member), does not diverge and beats its own initial
policy, both deployed as a user deploys them (``scale_by_controller`` in a plain loop)."""

import dataclasses

import jax
import numpy as np
import optax
import pytest

from lrjax import training
from lrjax.algos import runner
from lrjax.algos.family import FamilyPPO
from lrjax.algos.ppo import PPOConfig
from lrjax.controller import ControllerConfig, scale_by_controller
from lrjax.env import EnvConfig
from lrjax.tasks import get_family

BUDGET = 40
FAMILY = get_family(
    "image_mlp",
    datasets=("mnist",),
    widths=(8,),
    depths=(1,),
    batch_sizes=(32,),
    budgets=(BUDGET,),
    optimizers=("sgd",),
)
# two layers of 16: no family member equals it
HELD_OUT = dataclasses.replace(FAMILY, widths=(16,), depths=(2,)).variants()[0]


@pytest.fixture(scope="module")
def learned(mnist):
    env = EnvConfig(
        controller=ControllerConfig.loss_only(actions_per_run=8),
        horizon=8,
        val_batch_size=32,
        probe_size=8,
    )
    ppo = PPOConfig(num_envs=8, num_updates=20, update_epochs=4, num_minibatches=2)
    algo = FamilyPPO(FAMILY, env=env, ppo=ppo)
    initial = algo.controller(algo.init(jax.random.key(0)))
    result = runner.run(
        algo, jax.random.key(0), {"mnist": mnist}, progress=False, updates_per_chunk=5
    )
    return initial, algo.controller(result.state), mnist


def _deployed(controller, data):
    tx = optax.chain(optax.identity(), scale_by_controller(controller, total_steps=BUDGET))
    keys = jax.random.split(jax.random.key(123), 8)  # seeds nothing trained on
    return training.train(HELD_OUT, lambda hp: tx, keys, data, BUDGET)


def test_a_tiny_family_run_beats_its_initial_policy_on_a_held_out_trainee(learned):
    initial, trained, data = learned
    before, after = _deployed(initial, data), _deployed(trained, data)
    assert np.isfinite(after.train_loss).all() and np.isfinite(after.val_loss).all()
    assert after.val_loss[:, -1].mean() < before.val_loss[:, -1].mean()
    # what it learned on the family: raise SGD's LR from its start (the initial policy holds it)
    assert after.learning_rate[:, -1].mean() > 1.5 * before.learning_rate[:, -1].mean()
