"""Where one PPO update's time goes, piece by piece (best of repeated calls, after compilation).

  .venv/bin/python benchmarks/ppo_profile.py --task regression_2d --n 128 --horizon 10
  .venv/bin/python benchmarks/ppo_profile.py --task fashion_mlp --n 32 --horizon 40

Rows: the whole update; its rollout (``horizon`` actions of every episode: trainee steps,
evaluation, features, actor, critic); the same number of trainee steps alone (a fixed LR, no
evaluation); then the PPO learning phase's pieces on one minibatch (``n / 2`` whole sequences):
the LSTM actor's sequence replay (forward and gradient), the critic's gradient, the whole loss's
gradient and one clipped-Adam step. An update takes ``update_epochs x num_minibatches`` (4 x 2)
of those gradient steps. Settings are ``ppo_throughput.py``'s (paper A preset, 10 steps per
action; ``--preset lrjax`` as ``lrjax train``).
"""

from __future__ import annotations

import argparse
import time

from lrjax.engine import configure_host_devices  # noqa: E402

configure_host_devices()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from lrjax import tasks, training  # noqa: E402
from lrjax.algos.ppo import PPO, PPOConfig  # noqa: E402
from lrjax.controller import ControllerConfig, reset_carry  # noqa: E402
from lrjax.engine import EngineConfig  # noqa: E402
from lrjax.env import EnvConfig, TraineeEnv, VecEnv  # noqa: E402
from lrjax.features import FeatureSpec  # noqa: E402


def best_ms(fn, *args, reps: int = 10) -> float:
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return 1e3 * best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="regression_2d")
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--horizon", type=int, default=10)
    p.add_argument("--preset", default="paper_a", choices=["paper_a", "lrjax"])
    p.add_argument("--one-device", action="store_true")
    args = p.parse_args()
    task = tasks.get_task(args.task)
    data = task.load_data(jax.random.key(0))
    if hasattr(data, "subset"):
        data = data.subset(validation=1000, test=100)
    controller = getattr(ControllerConfig, args.preset)(steps_per_action=10)
    if args.task == "regression_2d":
        controller = controller.replace(
            features=FeatureSpec(features=("train_loss", "val_loss", "log_lr"))
        )
    engine = EngineConfig(shard_vmapped=not args.one_device)
    env = TraineeEnv(task, EnvConfig(controller=controller, horizon=args.horizon, engine=engine))
    ppo = PPO(env, PPOConfig(num_envs=args.n, num_updates=1, num_minibatches=2))
    runner = jax.jit(ppo.init)(jax.random.key(0), data)
    rollout = jax.jit(
        lambda r, d: jax.lax.scan(lambda r, _: ppo._env_step(r, d), r, None, length=args.horizon)
    )
    _, traj = rollout(runner, data)
    half = args.n // 2
    batch = jax.tree.map(lambda x: x[:, :half], traj)
    carry = jax.tree.map(lambda x: x[:half], reset_carry(runner.carry, runner.done, controller))
    adv = ret = jnp.ones((args.horizon, half))
    actor_fwd = jax.jit(ppo._sequence_log_probs)
    actor_grad = jax.jit(jax.grad(lambda a, *x: ppo._sequence_log_probs(a, *x)[0].sum()))
    critic_grad = jax.jit(jax.grad(lambda c: ppo._value(c, batch.obs, batch.progress).sum()))
    loss_grad = jax.jit(jax.grad(lambda prm, *x: ppo.loss(prm, *x)[0]))
    tx = ppo._tx()
    adam = jax.jit(lambda g, s, prm: tx.update(g, s, prm))

    def trainee_steps(state, d):  # every episode's k steps per action at a fixed LR
        tx_fixed = env.optimizer(jnp.float32(0.01))
        step = lambda s, _: (training.train_step(env.train_task, tx_fixed, s, d)[0], None)
        k = env.config.steps_per_action * args.horizon
        run = lambda s: jax.lax.scan(step, s, None, length=k)[0]
        return VecEnv(env).over_episodes(lambda s, d: run(s), 1)(state.trainee, d)

    rows = [
        (
            "update (rollout + GAE + 4 epochs x 2 minibatches)",
            best_ms(jax.jit(ppo.update), runner, data),
        ),
        (f"rollout ({args.horizon} actions x {args.n} episodes)", best_ms(rollout, runner, data)),
        (
            "  the same trainee steps alone (fixed LR)",
            best_ms(jax.jit(trainee_steps), runner.env_state, data),
        ),
        (
            f"actor sequence replay, forward ({half} sequences)",
            best_ms(actor_fwd, runner.params["actor"], carry, batch.obs, batch.reset),
        ),
        (
            "actor sequence replay, gradient",
            best_ms(actor_grad, runner.params["actor"], carry, batch.obs, batch.reset),
        ),
        ("critic gradient", best_ms(critic_grad, runner.params["critic"])),
        (
            "whole loss gradient (one minibatch)",
            best_ms(loss_grad, runner.params, carry, batch, adv, ret),
        ),
        ("clip + Adam step", best_ms(adam, runner.params, tx.init(runner.params), runner.params)),
    ]
    print(
        f"{args.task}: N={args.n}, horizon {args.horizon}, backend {jax.default_backend()}, "
        f"{jax.local_device_count()} device(s), episodes over "
        f"{env.engine(args.n).num_devices} device(s)"
    )
    for name, ms in rows:
        print(f"{name:55s} {ms:9.2f} ms")


if __name__ == "__main__":
    main()
