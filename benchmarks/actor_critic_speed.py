"""The online actor-critic's step beside training the same trainee at a fixed LR, in one run.

Issue 27's speed item: a step of paper B's Algorithm 1 does the trainee's forward and backward
pass, and more forwards (the reward's loss after the step, the actor's observation on another
minibatch), the actor's LSTM and the critic's gradients. This prints, for each variant, the
compile time (``jit(...).lower(...).compile()``) and the steady-state trainee steps per second
(the best of ``--repeats`` runs of the compiled program, the variants' runs taking turns so that
a changing load on the machine reaches each alike), and the ratio of its step time to the
fixed-LR step's (plain SGD in a ``lax.scan`` of :func:`lrjax.training.train_step`, the same
trainee, minibatches and engine):

  python benchmarks/actor_critic_speed.py --task mnist_cnn --steps 500
  python benchmarks/actor_critic_speed.py --only actor_critic --unroll 1,2,5,10

Variants: ``fixed_lr`` (the reference), ``actor_critic`` (its defaults, paper B),
``same_minibatch`` (the actor observes the reward's minibatch: one forward fewer),
``actor_next_minibatch`` (the actor observes the next step's training minibatch, whose loss
and gradient the next step reuses: Algorithm 1 with one forward fewer and the minibatch stream
unchanged). Each actor-critic run includes its per-update metrics (a 1,000-example test loss
every 100 steps), as ``lrjax paper-b compare`` runs it.
"""

from __future__ import annotations

import argparse
import time

import jax
import optax

from lrjax import engine as engine_lib
from lrjax import tasks, training
from lrjax.algos.actor_critic import ActorCritic, ActorCriticConfig, ActorCriticEnvConfig
from lrjax.engine import EngineConfig

STEPS_PER_UPDATE = 100


def _fixed_lr(task, steps: int):
    """``steps`` SGD steps at LR 0.01, as the actor-critic's trainee takes them."""
    eng = engine_lib.resolve(None, uses_conv=task.uses_conv, num_steps=steps)
    train_task = eng.train_task(task)
    tx = optax.sgd(0.01)

    def run(key, data):
        state = training.init_trainee(train_task, tx, key, data)
        step = lambda s, _: training.train_step(train_task, tx, s, data)
        state, (losses, _) = jax.lax.scan(step, state, length=steps, unroll=eng.unroll)
        return losses[-1]

    return run


def _actor_critic(task, steps: int, unroll: int | None = None, **changes):
    env = ActorCriticEnvConfig(engine=EngineConfig(unroll=unroll))
    config = ActorCriticConfig(
        env=env, num_updates=steps // STEPS_PER_UPDATE, steps_per_update=STEPS_PER_UPDATE, **changes
    )
    algo = ActorCritic(task, config)
    return lambda key, data: algo.train(key, data)[1]["train_loss"]


VARIANTS = {
    "fixed_lr": lambda task, steps, unroll: _fixed_lr(task, steps),
    "actor_critic": lambda task, steps, unroll: _actor_critic(task, steps, unroll),
    "same_minibatch": lambda task, steps, unroll: _actor_critic(
        task, steps, unroll, same_minibatch=True
    ),
    "actor_next_minibatch": lambda task, steps, unroll: _actor_critic(
        task, steps, unroll, actor_minibatch="next"
    ),
}


def compile_timed(fn, key, data):
    """(compile seconds, the compiled ``jit(fn)`` for ``(key, data)``)."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(key, data).compile()
    return time.perf_counter() - start, compiled


def run_timed(compiled, key, data) -> float:
    """Seconds of one run of a compiled program, to its results."""
    start = time.perf_counter()
    jax.block_until_ready(compiled(key, data))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mnist_cnn")
    parser.add_argument("--steps", type=int, default=500, help="a multiple of 100")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", help="comma-separated variants (fixed_lr always runs)")
    parser.add_argument(
        "--unroll",
        default="",
        help="comma-separated scan unroll factors of the actor-critic's steps, each a row "
        "(default: the actor-critic's, rolled unless EngineConfig.unroll is set)",
    )
    args = parser.parse_args()
    task = tasks.get_task(args.task)
    key = jax.random.key(0)
    data = task.load_data(jax.random.fold_in(key, 1))
    names = list(VARIANTS) if not args.only else ["fixed_lr", *args.only.split(",")]
    print(f"{args.task}, {args.steps} steps, backend {jax.default_backend()}")
    unrolls = [int(u) for u in args.unroll.split(",") if u] or [None]
    print("| variant | unroll | compile (s) | run (s) | trainee steps/s | step time vs fixed LR |")
    print("|---|---|---|---|---|---|")
    rows = [
        (name, unroll) for name in names for unroll in (unrolls if name != "fixed_lr" else [None])
    ]
    compiled, compile_s = {}, {}
    for row in rows:
        compile_s[row], compiled[row] = compile_timed(
            VARIANTS[row[0]](task, args.steps, row[1]), key, data
        )
    # The runs of every variant take turns (round-robin), so a load that changes during the
    # benchmark reaches them all alike; each variant keeps its best run.
    best = {row: float("inf") for row in rows}
    for _ in range(args.repeats):
        for row in rows:
            best[row] = min(best[row], run_timed(compiled[row], key, data))
    reference = best[rows[0]]
    for row in rows:
        name, unroll = row
        print(
            f"| {name} | {unroll or 'engine'} | {compile_s[row]:.1f} | {best[row]:.2f} | "
            f"{args.steps / best[row]:.1f} | {best[row] / reference:.2f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
