"""Training across a family: episodes per second and the RL overhead, per sample, in one run.

Issue 26's throughput item. For each chosen sample of the family (a trainee, a budget, a base
optimizer), one PPO update of :class:`lrjax.algos.family.FamilyPPO` (``--num-envs`` fresh
episodes of the whole run, observations, rewards, then PPO's epochs; compiled once, timed as the
best of ``--repeats`` calls) beside training the same ``--num-envs`` trainees for the same budget
at a fixed LR with :func:`lrjax.training.train` (vmapped, the same engine), so the ratio is what
the controller's observations and PPO's learning cost on top of the trainee steps (the
fixed-LR run also evaluates its final trainees on the full validation and test splits, a few
percent of a budget's training on these MLPs):

  python benchmarks/family_throughput.py --family mixed_mlp_long --num-envs 16

Default samples: the family's first trainee at each of its budgets with SGD, and its largest
trainee at the longest budget with Adam.
"""

from __future__ import annotations

import argparse
import time

import jax

from lrjax import training
from lrjax.algos import family as family_lib
from lrjax.algos.ppo import PPOConfig
from lrjax.controller import ControllerConfig
from lrjax.env import EnvConfig
from lrjax.tasks import get_family


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best


def _default_samples(family):
    samples = family.samples()
    first = samples[0].task
    chosen = [s for s in samples if s.task == first and s.optimizer == "sgd"]
    longest = max(s.budget for s in samples)
    largest = max(
        (s for s in samples if s.budget == longest and s.optimizer == "adam"),
        key=lambda s: sum(getattr(s.task.model, "hidden", (0,))),
    )
    return [*chosen, largest]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="mixed_mlp_long")
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--actions-per-run", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    family = get_family(args.family)
    controller = ControllerConfig.loss_only(actions_per_run=args.actions_per_run)
    env = EnvConfig(controller=controller, initial_lr_spread=10.0, horizon=args.actions_per_run)
    algo = family_lib.FamilyPPO(
        family, env, PPOConfig(num_envs=args.num_envs, num_minibatches=2, num_updates=1)
    )
    data = family.load_data()
    state = algo.init(jax.random.key(0))
    keys = jax.random.split(jax.random.key(1), args.num_envs)
    print(f"{args.family}, {args.num_envs} episodes per update, backend {jax.default_backend()}")
    print(
        "| sample | PPO update (s) | episodes/s | trainee steps/s | fixed LR (s) | "
        "RL overhead |\n|---|---|---|---|---|---|"
    )
    for sample in _default_samples(family):
        ppo = algo.ppo_for(sample)
        d = data[sample.task.dataset]
        placed = jax.device_put(state, ppo.vec_env.engine(args.num_envs).shared_placement())
        program = family_lib._program(ppo, placed, d, algo.max_programs)
        rl = _best(lambda p=program, s=placed, d=d: p(s, d)[1], args.repeats)
        tx = training.controlled_optimizer(sample.optimizer, algo.starts[sample.optimizer])
        make_tx = lambda hp, tx=tx: tx  # one object: train() reuses its compiled runner
        fixed = lambda s=sample, d=d, make_tx=make_tx: (
            training.train(s.task, make_tx, keys, d, s.budget).train_loss
        )
        fixed()  # compile
        ref = _best(fixed, args.repeats)
        steps = args.num_envs * sample.budget
        print(
            f"| {sample.name} | {rl:.2f} | {args.num_envs / rl:.2f} | {steps / rl:.0f} | "
            f"{ref:.2f} | {rl / ref:.2f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
