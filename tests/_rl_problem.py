"""The small RL problem the env, rollout, PPO and runner tests share: paper B's 2-D regression,
where too small an LR is slow and too large diverges."""

import jax

from lrjax import tasks
from lrjax.controller import ControllerConfig
from lrjax.env import EnvConfig, TraineeEnv
from lrjax.features import FeatureSpec

CONTROLLER = ControllerConfig(
    features=FeatureSpec(features=("train_loss", "val_loss", "log_lr")),
    action_mode="absolute",
    lr_min=1e-3,
    lr_max=2.0,
    initial_lr=1e-2,
    steps_per_action=5,
)


def regression_problem():
    task = tasks.get_task("regression_2d")
    return task, task.load_data(jax.random.key(0))


def make_env(task, controller=CONTROLLER, **kw):
    return TraineeEnv(task, EnvConfig(**({"controller": controller, "horizon": 10} | kw)))


def ac_config(**fields):
    """An ``ActorCriticConfig`` from flat fields: those of its MDP (controller, optimizer,
    reset_every, divergence_factor, engine) go to ``ActorCriticEnvConfig``, the rest to the
    algorithm."""
    import dataclasses

    from lrjax.algos.actor_critic import ActorCriticConfig, ActorCriticEnvConfig

    env_fields = {f.name for f in dataclasses.fields(ActorCriticEnvConfig)}
    env = {k: v for k, v in fields.items() if k in env_fields}
    algo = {k: v for k, v in fields.items() if k not in env_fields}
    return ActorCriticConfig(env=ActorCriticEnvConfig(**env), **algo)
