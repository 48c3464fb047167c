"""What a ``lrjax train --family`` run's ``metrics.jsonl`` says about its training: returns early
and late, PPO's diagnostics, divergences, compiled programs, and whether a sample drawn again
ended better than the first time.

  python benchmarks/family_run_summary.py runs/mixed_mlp_long_cosine
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="the --out folder of a lrjax train --family run")
    parser.add_argument("--window", type=int, default=20, help="updates averaged early and late")
    args = parser.parse_args()
    rows = [json.loads(line) for line in (Path(args.run) / "metrics.jsonl").open()]
    column = lambda name: np.array([r[name] for r in rows], dtype=float)
    w = args.window
    ret, kl, ev = column("episode_return"), column("approx_kl"), column("explained_variance")
    print(f"{len(rows)} updates, {int(column('episodes').sum())} episodes")
    print(f"mean return: first {w} updates {ret[:w].mean():.3f}, last {w} {ret[-w:].mean():.3f}")
    print(f"approx_kl: min {kl.min():.2g}, max {kl.max():.2g}")
    print(f"explained variance: mean of the last {w} updates {ev[-w:].mean():.2f}")
    print(f"diverged episodes: {int(column('diverged').sum())}")
    print(
        f"programs held at most {int(column('programs').max())}; "
        f"compilations {int(rows[-1]['compilations'])}"
    )
    draws: dict[str, list[dict]] = {}
    for r in rows:
        draws.setdefault(json.dumps(r["sample"], sort_keys=True), []).append(r)
    again = [v for v in draws.values() if len(v) >= 2]
    fell = np.mean([v[0]["final_val_loss"] - v[-1]["final_val_loss"] for v in again])
    gain = np.mean([v[-1]["episode_return"] - v[0]["episode_return"] for v in again])
    print(
        f"{len(draws)} distinct samples, {len(again)} drawn twice or more: the last draw's final "
        f"validation loss {fell:+.3f} below the first's on average (return {gain:+.3f})"
    )


if __name__ == "__main__":
    main()
