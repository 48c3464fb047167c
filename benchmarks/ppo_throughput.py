"""PPO engine measurements, side by side in one run (paper A's main job).

  .venv/bin/python benchmarks/ppo_throughput.py --task regression_2d --n 1,8,32,128
  .venv/bin/python benchmarks/ppo_throughput.py --task mnist_cnn --n 1,8 --host-loop

Prints, for the task:
  (1) RL overhead: PPO training time / time of the same trainee steps with a fixed LR, both
      vmapped over the same N episodes (lrjax.training.train, CPU/GPU defaults);
  (2) trainee steps per second of PPO for each N;
  (3) with --host-loop: the speedup over a host-driven loop (a jitted trainee step and a jitted
      controller step called from Python every step, episodes one after another);
  (4) compile time of one PPO update.
Timings exclude compilation (each is measured on a second call); seconds are wall-clock.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lrjax.engine import configure_host_devices  # noqa: E402

configure_host_devices()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from lrjax import tasks, training  # noqa: E402
from lrjax.algos.ppo import PPO, PPOConfig  # noqa: E402
from lrjax.controller import (  # noqa: E402
    ControllerConfig,
    action_to_lr,
    actor_step,
    init_actor_params,
    initial_carry,
)
from lrjax.engine import EngineConfig  # noqa: E402
from lrjax.env import EnvConfig, TraineeEnv  # noqa: E402
from lrjax.features import FeatureSpec, init_normaliser, observe  # noqa: E402


def timed(fn, *args):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


class _FixedSGD:
    def __call__(self, hp):
        return optax.sgd(0.01)

    def __eq__(self, other):
        return isinstance(other, _FixedSGD)

    def __hash__(self):
        return 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--task", default="regression_2d")
    p.add_argument("--n", default="1,8,32,128")
    p.add_argument("--horizon", type=int, default=10)
    p.add_argument("--steps-per-action", type=int, default=10)
    p.add_argument("--updates", type=int, default=2)
    p.add_argument("--host-loop", action="store_true")
    args = p.parse_args()
    task = tasks.get_task(args.task)
    data = (
        task.load_data(jax.random.key(0))
        if args.task == "regression_2d"
        else task.load_data().subset(validation=1000, test=100)
    )
    controller = ControllerConfig.paper_a()
    if args.task == "regression_2d":
        controller = controller.replace(
            features=FeatureSpec(features=("train_loss", "val_loss", "log_lr"))
        )
    env = TraineeEnv(
        task,
        EnvConfig(
            controller=controller, horizon=args.horizon, steps_per_action=args.steps_per_action
        ),
    )
    per_episode = args.horizon * args.steps_per_action
    print(
        f"{args.task}: backend {jax.default_backend()}, {jax.local_device_count()} device(s), "
        f"jax {jax.__version__}; {args.updates} PPO updates x {args.horizon} actions x "
        f"{args.steps_per_action} trainee steps per episode"
    )
    print(
        f"{'N':>5s} {'compile s':>10s} {'PPO st/s':>10s} {'fixed-LR st/s':>14s} "
        f"{'RL overhead':>12s}"
    )
    for n in [int(x) for x in args.n.split(",")]:
        ppo = PPO(
            env, PPOConfig(num_envs=n, num_updates=args.updates, num_minibatches=1 if n == 1 else 2)
        )
        init = jax.jit(ppo.init)
        chunk = jax.jit(
            lambda r, d, ppo=ppo: jax.lax.scan(
                lambda c, _: ppo.update(c, d), r, None, length=args.updates
            )
        )
        runner = init(jax.random.key(0), data)
        start = time.perf_counter()
        compiled = chunk.lower(runner, data).compile()
        compile_s = time.perf_counter() - start
        compiled(runner, data)  # warm
        _, ppo_s = timed(compiled, runner, data)
        steps = n * per_episode * args.updates
        keys = jax.random.split(jax.random.key(1), n)
        kw = dict(eval_examples=100, engine=EngineConfig(chunk_size=per_episode))
        training.train(task, _FixedSGD(), keys, data, per_episode * args.updates, **kw)
        start = time.perf_counter()
        training.train(task, _FixedSGD(), keys, data, per_episode * args.updates, **kw)
        fixed_s = time.perf_counter() - start
        print(
            f"{n:5d} {compile_s:10.1f} {steps / ppo_s:10.1f} {steps / fixed_s:14.1f} "
            f"{ppo_s / fixed_s:11.2f}x",
            flush=True,
        )
    if args.host_loop:
        host = host_loop_rate(task, data, controller, per_episode, episodes=2)
        print(
            f"host-driven loop (jitted trainee step + jitted controller step per step, "
            f"episodes one after another): {host:.1f} trainee st/s; compare the PPO column"
        )


def host_loop_rate(task, data, controller, steps, episodes):
    """Trainee steps/s when Python drives every step: observe, act, train."""
    tx_of = lambda lr: optax.with_extra_args_support(optax.sgd(lr))
    step = jax.jit(lambda s, d, lr: training.train_step(task, tx_of(lr), s, d))
    params = init_actor_params(jax.random.key(0), controller)

    @jax.jit
    def act(carry, norm, loss, lr, trainee_params):
        inputs = {
            "value": loss,
            "val_loss": loss,
            "predictions": jnp.zeros(4),
            "prev_predictions": jnp.zeros(4),
            "params": trainee_params,
            "lr": lr,
            "lr_bounds": (controller.lr_min, controller.lr_max),
            "step": 1,
        }
        obs, norm = observe(controller.features, norm, inputs)
        carry, mean, _ = actor_step(params, carry, obs, controller)
        return carry, norm, action_to_lr(mean, lr, controller)

    def episode(key):
        state = training.init_state(task, tx_of(jnp.float32(0.01)), key, data)
        carry, norm = initial_carry(controller), init_normaliser(controller.obs_size)
        lr, loss = jnp.float32(0.01), jnp.float32(1.0)
        for _ in range(steps):
            carry, norm, lr = act(carry, norm, loss, lr, state.params)
            state, (loss, _) = step(state, data, lr)
        return jax.block_until_ready(state)

    episode(jax.random.key(0))  # compile
    start = time.perf_counter()
    for e in range(episodes):
        episode(jax.random.key(e + 1))
    return episodes * steps / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
