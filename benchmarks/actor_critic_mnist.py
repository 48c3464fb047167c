"""The online actor-critic on MNIST (paper B's CNN, minibatch 50), update by update: what the
learner does, not only where it ends.

  python benchmarks/actor_critic_mnist.py --steps 500 --setting defaults --setting gamma=0.5

For each setting (``name=value`` changes of :class:`ActorCriticConfig`, e.g.
``twin_critics=True,target_update=0.005``; ``action_mode=log`` changes its controller's; or
``defaults``) it runs two seeds (the seeds of ``lrjax paper-b compare --seed 0``) and prints per
update of 100 steps: the mean minibatch training loss, the test loss (1,000 examples), the
applied LR (min / mean / max), the critic's mean squared TD error, its mean Q(s_t, a_t) and the
mean reward.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from ac_settings import apply_setting, parse_setting

from lrjax import tasks
from lrjax.algos.actor_critic import ActorCritic, ActorCriticConfig


def _config(steps: int, changes: dict) -> ActorCriticConfig:
    return apply_setting(ActorCriticConfig(num_updates=steps // 100, steps_per_update=100), changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500, help="a multiple of 100")
    parser.add_argument("--setting", action="append", default=None, help="e.g. gamma=0.5")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    task = tasks.get_task("mnist_cnn")
    key = jax.random.key(args.seed)
    data = task.load_data(jax.random.fold_in(key, 1))
    seed_keys = jax.random.split(jax.random.split(key)[0], 2)  # compare_on_task's seeds
    for name, changes in map(parse_setting, args.setting or ["defaults"]):
        config = _config(args.steps, changes)
        start = time.perf_counter()
        _, metrics = jax.jit(ActorCritic(task, config).train_seeds)(seed_keys, data)
        m = jax.tree.map(np.asarray, metrics)
        print(f"== {name} ({time.perf_counter() - start:.0f} s)")
        for s in range(len(seed_keys)):
            for u in range(m["train_loss"].shape[1]):
                print(
                    f"  seed {s} update {u}: train {m['train_loss'][s, u]:.3f} test "
                    f"{m['test_loss'][s, u]:.3f} lr {m['lr_min'][s, u]:.3g}/"
                    f"{m['lr_mean'][s, u]:.3g}/{m['lr_max'][s, u]:.3g} td2 "
                    f"{m['td_error_sq'][s, u]:.2e} q {m['q_mean'][s, u]:.3f} reward "
                    f"{m['mean_reward'][s, u]:.2e}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
