"""PPO engine measurements, side by side in one run (paper A's main job).

  .venv/bin/python benchmarks/ppo_throughput.py --task regression_2d --n 1,8,32,128
  .venv/bin/python benchmarks/ppo_throughput.py --task mnist_cnn --n 1,8 --host-loop

Prints, for the task:
  (1) RL overhead: PPO training time / time of the same trainee steps with a fixed LR, both
      batched over the same N episodes (lrjax.training.train with its backend defaults; its
      one-off init and final evaluation excluded, see fixed_lr_seconds);
  (2) trainee steps per second of PPO for each N;
  (3) with --host-loop: the speedup over a host-driven loop (jitted controller step, trainee
      steps and observation called from Python, episodes one after another);
  (4) compile time of the PPO program (--updates updates);
  with --breakdown: one action's cost in pieces (trainee steps, reward/observation evaluation).
Timings exclude compilation (PPO is compiled ahead of time, the others run once first);
seconds are wall-clock.
"""

from __future__ import annotations

import argparse
import math
import time

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
from lrjax.env import EnvConfig, TraineeEnv, VecEnv  # noqa: E402
from lrjax.features import FeatureSpec  # noqa: E402


def timed(fn, *args):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def fixed_sgd(hp):
    """SGD at LR 0.01: one module-level function, so the engine reuses its compiled programs
    across calls (its runner cache compares ``make_tx`` by identity)."""
    return optax.sgd(0.01)


def fixed_adam(hp):
    """Adam at LR 1e-3 (module-level, as :func:`fixed_sgd`)."""
    return optax.adam(1e-3)


FIXED_LR = {"sgd": fixed_sgd, "adam": fixed_adam}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--task", default="regression_2d")
    p.add_argument("--n", default="1,8,32,128")
    p.add_argument("--horizon", type=int, default=10)
    p.add_argument("--steps-per-action", type=int, default=10)
    p.add_argument("--updates", type=int, default=2)
    p.add_argument("--val-batch-size", type=int, default=EnvConfig.val_batch_size)
    p.add_argument("--probe-size", type=int, default=EnvConfig.probe_size)
    p.add_argument(
        "--preset",
        default="paper_a",
        choices=["paper_a", "lrjax"],
        help="controller preset (lrjax: the one `lrjax train` uses)",
    )
    p.add_argument(
        "--one-device",
        action="store_true",
        help="keep vmapped episodes on one device (the library default) instead of what "
        "`lrjax train` does (EngineConfig(shard_vmapped=True))",
    )
    p.add_argument("--batch-size", type=int, default=None, help="trainee minibatch")
    p.add_argument("--optimizer", default="sgd", choices=sorted(FIXED_LR))
    p.add_argument("--host-loop", action="store_true")
    p.add_argument("--host-max-episodes", type=int, default=128)
    p.add_argument("--breakdown", action="store_true")
    args = p.parse_args()
    task = tasks.get_task(
        args.task, **({} if args.batch_size is None else {"batch_size": args.batch_size})
    )
    data = task.load_data(jax.random.key(0))
    if hasattr(data, "subset"):
        data = data.subset(validation=1000, test=100)
    preset = getattr(ControllerConfig, args.preset)
    controller = preset(steps_per_action=args.steps_per_action)
    if args.task == "regression_2d":
        controller = controller.replace(
            features=FeatureSpec(features=("train_loss", "val_loss", "log_lr"))
        )
    env = TraineeEnv(
        task,
        EnvConfig(
            controller=controller,
            horizon=args.horizon,
            optimizer=args.optimizer,
            engine=EngineConfig(shard_vmapped=not args.one_device),
            val_batch_size=args.val_batch_size,
            probe_size=args.probe_size,
        ),
    )
    per_episode = args.horizon * args.steps_per_action
    print(
        f"{args.task}: backend {jax.default_backend()}, {jax.local_device_count()} device(s), "
        f"jax {jax.__version__}; {args.updates} PPO updates x {args.horizon} actions x "
        f"{args.steps_per_action} trainee steps per episode ({args.optimizer}, batch "
        f"{task.batch_size}); validation minibatch "
        f"{args.val_batch_size}, probe {args.probe_size}; "
        f"episodes batched by {VecEnv(env).engine().batching!r} over "
        f"{'1 device' if args.one_device else 'all devices'}; controller preset {args.preset}"
    )
    if args.breakdown:
        breakdown(env, data)
    host = f" {'host st/s':>10s} {'PPO/host':>9s}" if args.host_loop else ""
    print(
        f"{'N':>5s} {'compile s':>10s} {'PPO st/s':>10s} {'fixed-LR st/s':>14s} "
        f"{'RL overhead':>12s}{host}"
    )
    for n in [int(x) for x in args.n.split(",")]:
        ppo = PPO(
            env, PPOConfig(num_envs=n, num_updates=args.updates, num_minibatches=1 if n == 1 else 2)
        )
        init = jax.jit(ppo.init)
        chunk = jax.jit(lambda r, d, ppo=ppo: ppo.run_updates(r, d, args.updates))
        runner = init(jax.random.key(0), data)
        start = time.perf_counter()
        compiled = chunk.lower(runner, data).compile()
        compile_s = time.perf_counter() - start
        _, ppo_s = timed(compiled, runner, data)
        steps = n * per_episode * args.updates
        keys = jax.random.split(jax.random.key(1), n)
        fixed_s = fixed_lr_seconds(
            task, FIXED_LR[args.optimizer], keys, data, per_episode * args.updates
        )
        row = (
            f"{n:5d} {compile_s:10.1f} {steps / ppo_s:10.1f} {steps / fixed_s:14.1f} "
            f"{ppo_s / fixed_s:11.2f}x"
        )
        if args.host_loop:
            episodes = min(n, args.host_max_episodes)
            rate = host_loop_rate(env, data, episodes)
            row += f" {rate:10.1f} {steps / ppo_s / rate:8.2f}x"
            row += "" if episodes == n else f" (host: {episodes} episodes)"
        print(row, flush=True)
    if args.host_loop:
        print(
            f"host: the host-driven loop on N episodes one after another (per action a jitted "
            f"controller step, {args.steps_per_action} jitted trainee steps and the jitted "
            "observation, each called from Python; it acts only, PPO also learns)"
        )


def fixed_lr_seconds(task, make_tx, keys, data, num_steps):
    """Seconds the training engine (``lrjax.training.train``, backend defaults) takes for
    ``num_steps`` steps of each trainee at a fixed LR, measured as a marginal cost:
    (time of m * num_steps - time of num_steps) / (m - 1), so one-off costs (init, the final
    full evaluation) drop out; m grows until the difference spans about 2 s."""

    def seconds(steps):
        start = time.perf_counter()
        training.train(task, make_tx, keys, data, steps)
        return time.perf_counter() - start

    seconds(num_steps)  # compile
    once = seconds(num_steps)
    m = min(max(2, math.ceil(2.0 / once) + 1), 50)
    seconds(m * num_steps)  # compile the longer run's chunking
    return (seconds(m * num_steps) - seconds(num_steps)) / (m - 1)


def best_of(fn, *args, reps=5):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
        _, t = timed(fn, *args)
        times.append(t)
    return min(times)


def breakdown(env, data):
    """One action of one episode, in pieces: the k trainee steps, and the evaluation that
    gives the reward and observation, with the convolution the environment evaluates with and
    with the one training uses."""
    k = env.config.steps_per_action
    _, state = jax.jit(env.reset)(jax.random.key(0), data)
    tx = env.optimizer(jnp.float32(0.01))
    steps = jax.jit(
        lambda s, d: jax.lax.scan(
            lambda s, _: training.train_step(env.train_task, tx, s, d),
            s,
            length=k,
            unroll=VecEnv(env).engine().unroll,
        )[0]
    )
    cfg = env.config

    def evaluate(task):
        fn = lambda p, d: task.validation_probe(p, d, cfg.val_batch_size, cfg.probe_size)
        return best_of(jax.jit(fn), state.trainee.params, data)

    t_steps = best_of(steps, state.trainee, data)
    t_eval = evaluate(env.eval_task)
    line = (
        f"one action, one episode: {k} trainee steps {1e3 * t_steps:.2f} ms; evaluation "
        f"(validation minibatch + probe) {1e3 * t_eval:.2f} ms = {t_eval / t_steps:.1%} of them"
    )
    if env.eval_task != env.train_task:
        t_train_impl = evaluate(env.train_task)
        line += (
            f" (with the training convolution instead: {1e3 * t_train_impl:.1f} ms, "
            f"{t_train_impl / t_eval:.2f}x the time)"
        )
    print(line)


def host_loop_rate(env, data, episodes):
    """Trainee steps/s when Python drives the episode: every action a jitted controller step,
    then k jitted trainee steps, then the environment's own observation/reward computation
    (``env.conclude``), each dispatched from Python; episodes one after another."""
    controller = env.config.controller
    params = init_actor_params(jax.random.key(0), controller)
    reset = jax.jit(lambda key, d: env.reset(key, d))
    train_step = jax.jit(
        lambda s, d, lr: training.train_step(env.train_task, env.optimizer(lr), s, d)
    )

    @jax.jit
    def act(carry, obs, lr):
        carry, mean, _ = actor_step(params, carry, obs, controller)
        return carry, action_to_lr(mean, lr, controller)

    conclude = jax.jit(env.conclude)

    def episode(key):
        k_reset, key = jax.random.split(key)
        obs, state = reset(k_reset, data)
        carry = initial_carry(controller)
        for _ in range(env.config.horizon):
            carry, lr = act(carry, obs, state.lr)
            trainee = state.trainee
            for _ in range(env.config.steps_per_action):
                trainee, (loss, _) = train_step(trainee, data, lr)
            obs, state, *_ = conclude(state, trainee, lr, loss, data)
        return jax.block_until_ready(state)

    episode(jax.random.key(0))  # compile
    start = time.perf_counter()
    for e in range(episodes):
        episode(jax.random.key(e + 1))
    steps = episodes * env.config.horizon * env.config.steps_per_action
    return steps / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
