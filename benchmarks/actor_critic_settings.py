"""Why the actor-critic's defaults are what they are: the online learner on paper B's 2-D
regression (section 4.3) with each default changed in turn, against SGD's LR grid.

  python benchmarks/actor_critic_settings.py --problems 8 --steps 1000

For each setting it prints the final test loss (mean over problems), its ratio to the best
constant LR of each problem (mean, max) and the LR at the first and last step. Every run uses
the same problems, start and minibatches (``lrjax.paper_b.regression_analysis``).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from ac_settings import apply_setting, parse_setting

from lrjax import paper_b
from lrjax.algos.actor_critic import ActorCriticConfig

SETTINGS = {
    "defaults": {},
    "exploration_std=0 (paper B)": {"exploration_std": 0.0},
    "critic_learning_rate=1e-3 (Adam's default)": {"critic_learning_rate": 1e-3},
    "actor_every=10": {"actor_every": 10},
    "gamma=0.99": {"gamma": 0.99},
    "gamma=0.5": {"gamma": 0.5},
    "action_mode=log": {"action_mode": "log"},
    "TD3 (log actions, target networks, twin critics, delay, smoothing, warm-up)": {
        "action_mode": "log",
        "target_update": 0.005,
        "twin_critics": True,
        "policy_delay": 2,
        "target_noise": 0.2,
        "critic_warmup": 100,
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--setting",
        action="append",
        default=None,
        help="run only these (name=value,... or defaults) instead of the table's settings",
    )
    args = parser.parse_args()
    print("| setting | final test loss | / best constant LR (mean, max) | LR first -> last | s |")
    print("|---|---|---|---|---|")
    settings = dict(map(parse_setting, args.setting)) if args.setting else SETTINGS
    for name, changes in settings.items():
        start = time.perf_counter()
        analysis = paper_b.regression_analysis(
            jax.random.key(args.seed),
            num_problems=args.problems,
            num_steps=args.steps,
            variants=("actor-critic",),
            config=apply_setting(ActorCriticConfig(), changes),
        )
        trace = analysis.methods["actor-critic"]
        ratio = trace.final_test_loss / analysis.best_sgd_loss
        print(
            f"| {name} | {np.mean(trace.final_test_loss):.4f} | {np.mean(ratio):.3f}, "
            f"{np.max(ratio):.3f} | {np.mean(trace.lr[:, 0]):.3g} -> "
            f"{np.mean(trace.lr[:, -1]):.3g} | {time.perf_counter() - start:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
