"""Paired differences between a method of one held-out run and the rows of another.

Two runs of ``benchmarks/heldout_general.py`` with the same ``--seeds`` and ``--steps`` train
the same trainees (the same init and minibatch keys), so a method of one is paired with every
row of the other: this prints, per target, each row of ``OTHER`` minus ``--method`` of ``RUN``
(test loss, mean and 95% CI; positive: the method is better), after checking that a row both
runs have (``--check``, default ``adam_1e-3``) gave the same per-seed losses in both:

  python benchmarks/paired_across_runs.py runs/heldout_follow/results.json \
      runs/heldout_cosine_adam/results.json --method controller_adam
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from lrjax.evaluation.stats import paired_difference


def _losses(row: dict) -> np.ndarray:
    return np.array([np.inf if v is None else v for v in row["test_loss"]], np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="results.json holding --method")
    parser.add_argument("other", help="results.json whose rows it is compared with")
    parser.add_argument("--method", default="controller_adam")
    parser.add_argument("--check", default="adam_1e-3", help="a row both runs have")
    parser.add_argument("--rows", default="", help="prefixes of OTHER's rows (default: all)")
    args = parser.parse_args()
    run, other = json.load(open(args.run)), json.load(open(args.other))
    prefixes = tuple(p for p in args.rows.split(",") if p) or ("",)
    for target in run:
        if target not in other:
            continue
        mine = _losses(run[target][args.method])
        if args.check in run[target] and args.check in other[target]:
            same = np.array_equal(
                _losses(run[target][args.check]), _losses(other[target][args.check])
            )
            if not same:
                raise SystemExit(f"{target}: {args.check} differs between the runs: not paired")
        print(f"### {target}: rows of {args.other} minus {args.method} of {args.run}\n")
        print("| row | test loss | minus the method [95% CI] |\n|---|---|---|")
        for name, row in other[target].items():
            if not name.startswith(prefixes):
                continue
            theirs = _losses(row)
            if not (np.all(np.isfinite(theirs)) and np.all(np.isfinite(mine))):
                print(f"| {name} | {np.mean(theirs):.4f} | n/a (a run diverged) |")
                continue
            d = paired_difference(theirs, mine)
            print(
                f"| {name} | {np.mean(theirs):.4f} | {d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}] |"
            )
        print()


if __name__ == "__main__":
    main()
